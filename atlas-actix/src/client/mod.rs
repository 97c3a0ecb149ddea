//! The Atlas client: every call of the official SDK, over the platform API, with caches,
//! limits and usage events.

pub(crate) mod api;
pub(crate) mod push;
pub(crate) mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use self::api::PlatformApi;
pub use self::api::{CustomerInfo, Pagination};
pub use self::push::PushLink;
use self::transport::{ApiKey, Transport, TransportConfig};
use crate::auth::UserResolver;
use crate::cache::Cache;
use crate::config::{AtlasBuilder, DenyHandler};
use crate::csrf::AllowedOrigins;
use crate::entitlements::{
    customer_features, is_allowed, is_limited, limited_features, CustomerFeature, LimitOutcome,
};
use crate::error::RequestError;
use crate::error::{AtlasError, BuildError};
use crate::events::EventQueue;
use crate::exclusive::ExclusiveLocks;
use crate::guard::Denial;
use crate::limits::Limits;
use crate::models::{
    now_iso, CheckoutSession, CreditUsage, Customer, EventData, Invoice, InvoiceLineItem, Merchant,
    Page, PricingModel, Subscription, Transaction, UsageEvent,
};
use crate::outage::{OutagePolicies, OutagePolicy};
use crate::registration::Registrations;
use crate::spool::Spool;
use crate::throttle::Throttle;

/// The SDK's name in the platform's SDK version reports.
const SDK_LIBRARY: &str = "actix";
/// The most distinct SDK versions reported in a process's life: there are a few SDKs, each
/// at one version, so more is a caller making them up.
const MAX_SDK_VERSIONS: usize = 16;
/// The most feature ids registered at one platform request, far below its body limit.
const REGISTRATION_CHUNK: usize = 100;

/// The client of the Atlas platform. Cheap to clone: clones share caches, queues and the
/// connection. Build it once, outside `HttpServer::new`, and hand it to the app as
/// `web::Data`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let atlas = atlas_actix::Atlas::builder().build()?; // ATLAS_API_KEY from the environment
/// let check = atlas.allowed("user_123", ["data-explorer"]).await?;
/// if check.ok {
///     // serve the feature
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Atlas {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Atlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Atlas")
            .field("platform", &self.inner.base_url)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// What initialisation learnt: the merchant, and the limited features the app registered no
/// limit callback for. `/atlas-api/status` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The merchant the API key belongs to.
    #[serde(flatten)]
    pub merchant: Merchant,
    /// Limit-based features without a limit callback: denied unless `allow_unknown_limits`.
    pub unconfigured_limits: Vec<String>,
}

/// The answer of [`Atlas::allowed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allowed {
    /// Whether every feature checked is allowed.
    pub ok: bool,
    /// Each feature checked, and whether it is allowed.
    pub features: BTreeMap<String, bool>,
}

impl Allowed {
    /// The features checked that are not allowed.
    pub fn denied(&self) -> impl Iterator<Item = &str> {
        self.features
            .iter()
            .filter(|(_, allowed)| !**allowed)
            .map(|(feature, _)| feature.as_str())
    }
}

/// How often a plan is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingCadence {
    /// Every month.
    Monthly,
    /// Every three months.
    Quarterly,
    /// Every year.
    Annually,
}

/// Which of the customer's subscriptions a cancellation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelType {
    /// The subscription in force; the merchant's default plan, if any, follows it.
    Active,
    /// A subscription that has not started; the one in force then runs on.
    Upcoming,
}

/// A request to subscribe a customer to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// How often the plan is paid.
    pub billing_cadence: BillingCadence,
    /// Where the checkout sends the customer afterwards.
    pub success_url: String,
    /// The customer's email, for the checkout.
    pub email: Option<String>,
    /// The customer's name, for the checkout.
    pub name: Option<String>,
}

/// Whether an initialisation is the client's first, or one the platform asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initialisation {
    First,
    Again,
}

enum InitState {
    Pending,
    Ready(Arc<Status>),
    Failed(AtlasError),
}

pub(crate) struct Inner {
    base_url: String,
    api: Arc<PlatformApi>,
    allow_unknown_limits: bool,
    limits: Limits,
    customers: Cache<String, Customer>,
    pricing_model: Cache<(), PricingModel>,
    invoices: Cache<String, Vec<Invoice>>,
    line_items: Cache<(String, String), Vec<InvoiceLineItem>>,
    credit_usage: Cache<(String, String), CreditUsage>,
    subscriptions: Cache<String, Subscription>,
    events: EventQueue,
    registrations: Registrations,
    init: watch::Sender<InitState>,
    sdk_versions: Mutex<HashSet<(String, String)>>,
    shutdown_timeout: Duration,
    resolver: Option<Arc<dyn UserResolver>>,
    deny: Option<DenyHandler>,
    body_limit: usize,
    link: watch::Receiver<PushLink>,
    outage: OutagePolicies,
    /// Whether initialisation succeeded: what every check looks at, without a lock.
    ready: AtomicBool,
    origins: AllowedOrigins,
    public_throttle: Throttle,
    exclusive: ExclusiveLocks,
}

impl Inner {
    fn set_init(&self, state: InitState) {
        self.ready
            .store(matches!(state, InitState::Ready(_)), Ordering::Release);
        self.init.send_replace(state);
    }
}

impl Atlas {
    /// Starts configuring a client.
    pub fn builder() -> AtlasBuilder {
        AtlasBuilder::default()
    }

    pub(crate) fn start(
        builder: AtlasBuilder,
        api_key: ApiKey,
        base_url: String,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, BuildError> {
        let link_config = push::LinkConfig {
            url: push::LinkConfig::socket_url(&base_url),
            key: api_key
                .header_value()
                .map_err(|_| BuildError::InvalidOption {
                    option: "api_key",
                    reason: "not a valid header value".to_owned(),
                })?,
            tls: Arc::clone(&tls),
        };
        let transport = Transport::start(TransportConfig {
            base_url: base_url.clone(),
            api_key,
            timeout: builder.timeout,
            backoff: builder.backoff,
            tls,
        })?;
        let (link_state, link) = watch::channel(if builder.push_invalidation {
            PushLink::Connecting
        } else {
            PushLink::Disconnected {
                reason: "push invalidation is turned off".to_owned(),
            }
        });
        let capacity = builder.cache_capacity;
        let spool = builder.spool.as_deref().map(Spool::open).transpose()?;
        let inner = Arc::new(Inner {
            base_url,
            api: Arc::new(PlatformApi::new(transport)),
            allow_unknown_limits: builder.allow_unknown_limits,
            limits: Limits::new(builder.limits, builder.limit_timeout),
            customers: Cache::new(builder.customer_ttl, capacity),
            pricing_model: Cache::new(builder.pricing_model_ttl, 1),
            invoices: Cache::new(builder.invoice_ttl, capacity),
            line_items: Cache::new(builder.invoice_ttl, capacity),
            credit_usage: Cache::new(builder.credit_usage_ttl, capacity),
            subscriptions: Cache::new(builder.subscription_ttl, capacity),
            events: EventQueue::new(
                builder.events_queue_capacity,
                builder.events_flush_at,
                builder.events_flush_interval,
                spool,
            ),
            registrations: Registrations::new(builder.registration_debounce),
            init: watch::Sender::new(InitState::Pending),
            sdk_versions: Mutex::new(HashSet::new()),
            shutdown_timeout: builder.shutdown_timeout,
            resolver: builder.resolver,
            deny: builder.deny,
            body_limit: builder.body_limit,
            link,
            outage: builder.outage,
            ready: AtomicBool::new(false),
            origins: builder.allowed_origins,
            public_throttle: Throttle::new(
                builder.public_rate_limit.0,
                builder.public_rate_limit.1,
            ),
            exclusive: ExclusiveLocks::default(),
        });
        let atlas = Self { inner };
        atlas.spawn_initialisation(Initialisation::First);
        if builder.push_invalidation {
            let weak = Arc::downgrade(&atlas.inner);
            atlas
                .transport()
                .spawn(move || push::run(weak, link_config, link_state));
        }
        atlas.spawn_when_due(
            atlas.inner.events.wake(),
            |inner| inner.events.due_at(),
            |atlas| async move { atlas.flush().await },
        );
        atlas.spawn_when_due(
            atlas.inner.registrations.wake(),
            |inner| inner.registrations.due_at(),
            |atlas| async move { atlas.send_registrations().await },
        );
        Ok(atlas)
    }

    fn transport(&self) -> &Transport {
        self.inner.api.transport()
    }

    /// Initialises in the background: the merchant check, then the pricing model. A refused
    /// key is final; any other failure is retried with backoff until it succeeds, and, the
    /// first time, reported to calls meanwhile (later, the last status stays in force).
    fn spawn_initialisation(&self, which: Initialisation) {
        let weak = Arc::downgrade(&self.inner);
        self.transport().spawn(move || async move {
            let mut failures: u32 = 0;
            loop {
                let Some(atlas) = upgrade(&weak) else { return };
                match atlas.initialise().await {
                    Ok(status) => {
                        atlas.inner.set_init(InitState::Ready(Arc::new(status)));
                        if which == Initialisation::First {
                            atlas.report_sdk_version(SDK_LIBRARY, env!("CARGO_PKG_VERSION"));
                        }
                        return;
                    }
                    Err(AtlasError::InvalidApiKey) => {
                        tracing::error!("the Atlas platform refused the API key; every call will fail until ATLAS_API_KEY is fixed");
                        atlas.inner.set_init(InitState::Failed(AtlasError::InvalidApiKey));
                        return;
                    }
                    Err(err) => {
                        failures += 1;
                        let wait = retry_delay(failures);
                        tracing::warn!(%err, ?wait, "Atlas initialisation failed; retrying");
                        if which == Initialisation::First {
                            atlas.inner.set_init(InitState::Failed(err));
                        }
                        drop(atlas);
                        actix_rt::time::sleep(wait).await;
                    }
                }
            }
        });
    }

    async fn initialise(&self) -> Result<Status, AtlasError> {
        let merchant = self.inner.api.merchant().await?;
        let model = self.fetch_pricing_model().await?;
        let mut unconfigured_limits: Vec<String> = model
            .entitlements
            .iter()
            .filter(|entitlement| {
                model.plans.iter().any(|plan| {
                    plan.entitlements
                        .iter()
                        .any(|grant| grant.id == entitlement.id && grant.limit.is_some())
                })
            })
            .map(|entitlement| entitlement.slug.clone())
            .filter(|slug| !self.inner.limits.has(slug))
            .collect();
        unconfigured_limits.dedup();
        if !unconfigured_limits.is_empty() {
            tracing::warn!(
                features = %unconfigured_limits.join(", "),
                "these features are limit-based but have no limit callback: they are denied unless allow_unknown_limits is set"
            );
        }
        tracing::info!(mode = %merchant.mode, "Atlas client initialised");
        Ok(Status {
            merchant,
            unconfigured_limits,
        })
    }

    /// Runs `work` on the I/O thread whenever `due` says it is time, woken by `wake`; after a
    /// failure it waits with backoff before trying again.
    fn spawn_when_due<D, W, Fut>(&self, wake: Arc<Notify>, due: D, work: W)
    where
        D: Fn(&Inner) -> Option<Instant> + Send + 'static,
        W: Fn(Atlas) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), AtlasError>>,
    {
        let weak = Arc::downgrade(&self.inner);
        self.transport().spawn(move || async move {
            let mut failures: u32 = 0;
            loop {
                let next = match weak.upgrade() {
                    Some(inner) => due(&inner),
                    None => return,
                };
                match next {
                    None => wake.notified().await,
                    Some(at) if at > Instant::now() => {
                        let _ = tokio::time::timeout_at(at.into(), wake.notified()).await;
                    }
                    Some(_) => {
                        let Some(atlas) = upgrade(&weak) else { return };
                        match work(atlas).await {
                            Ok(()) => failures = 0,
                            Err(AtlasError::Shutdown) => return,
                            Err(err) => {
                                failures += 1;
                                let wait = retry_delay(failures);
                                tracing::warn!(%err, ?wait, "Atlas background work failed; retrying");
                                actix_rt::time::sleep(wait).await;
                            }
                        }
                    }
                }
            }
        });
    }

    /// Initialises again, as the platform asks with `invalidateMerchant`: the pricing model is
    /// refetched and the status replaced once the platform answers.
    pub(crate) fn reinitialise(&self) {
        self.invalidate_plans();
        self.spawn_initialisation(Initialisation::Again);
    }

    /// Waits for initialisation, without a lock once it succeeded.
    async fn ensure_ready(&self) -> Result<(), AtlasError> {
        if self.inner.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.status().await.map(drop)
    }

    /// The state of the push link through which the platform invalidates cached data.
    pub fn push_link(&self) -> PushLink {
        self.inner.link.borrow().clone()
    }

    /// Waits for initialisation: the merchant, and the limited features lacking a callback.
    /// While the platform is unreachable this answers the last failure at once (initialisation
    /// keeps retrying in the background).
    pub async fn status(&self) -> Result<Arc<Status>, AtlasError> {
        // Every check comes here: once initialised, one read lock and no waiting.
        if let InitState::Ready(status) = &*self.inner.init.borrow() {
            return Ok(Arc::clone(status));
        }
        let mut state = self.inner.init.subscribe();
        let state = state
            .wait_for(|state| !matches!(state, InitState::Pending))
            .await
            .map_err(|_| AtlasError::Shutdown)?;
        match &*state {
            InitState::Ready(status) => Ok(Arc::clone(status)),
            InitState::Failed(err) => Err(err.clone()),
            InitState::Pending => Err(AtlasError::Shutdown),
        }
    }

    /// The customer's details, created on the platform (with `info`) when it has none.
    pub async fn customer(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<Arc<Customer>, AtlasError> {
        check_id("customer id", customer_id)?;
        self.ensure_ready().await?;
        if let Some(customer) = self.inner.customers.get_fresh(customer_id) {
            return Ok(customer);
        }
        let api = Arc::clone(&self.inner.api);
        let external_id = customer_id.to_owned();
        let info = info.cloned().unwrap_or_default();
        self.inner
            .customers
            .get_or_fetch(customer_id.to_owned(), move || async move {
                if let Some(customer) = api.customer(&external_id).await? {
                    return Ok(customer);
                }
                tracing::info!(customer = ?external_id, "creating the customer on the Atlas platform");
                api.create_customer(&external_id, &info).await
            })
            .await
    }

    async fn fetch_pricing_model(&self) -> Result<Arc<PricingModel>, AtlasError> {
        if let Some(model) = self.inner.pricing_model.get_fresh(&()) {
            return Ok(model);
        }
        let api = Arc::clone(&self.inner.api);
        self.inner
            .pricing_model
            .get_or_fetch((), move || async move { api.pricing_model().await })
            .await
    }

    /// The merchant's whole pricing model.
    pub async fn pricing_model(&self) -> Result<Arc<PricingModel>, AtlasError> {
        self.status().await?;
        self.fetch_pricing_model().await
    }

    /// The pricing model a pricing page may show: available plans only, private plans only to
    /// the customer they are offered to, internal ids removed.
    pub async fn public_pricing_model(
        &self,
        customer_id: Option<&str>,
    ) -> Result<PricingModel, AtlasError> {
        let model = self.pricing_model().await?;
        let customer = match customer_id {
            Some(id) => match self.customer(id, None).await {
                Ok(customer) => Some(customer),
                Err(err) => {
                    tracing::warn!(customer = ?id, %err, "no customer for the public pricing model; showing public plans only");
                    None
                }
            },
            None => None,
        };
        Ok(model.public_view(customer.as_deref()))
    }

    /// Everything the customer's plans grant, with limits counted by the app's callbacks. The
    /// customer is created (with `info`) when the platform does not know it.
    ///
    /// While the platform cannot answer, a [`ServeStale`](OutagePolicy::ServeStale) default
    /// policy serves the last known features; otherwise the outage is the answer.
    pub async fn features(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<Vec<CustomerFeature>, AtlasError> {
        match self.features_of(customer_id, info, None).await {
            Err(err) if err.is_outage() => match self.inner.outage.default {
                OutagePolicy::ServeStale { max_age } => {
                    match self.stale_data(customer_id, max_age) {
                        Some((customer, model)) => {
                            tracing::warn!(customer = ?customer_id, %err, "Atlas unavailable: serving the last known features");
                            Ok(self
                                .features_from(customer_id, &customer, &model, None)
                                .await)
                        }
                        None => Err(err),
                    }
                }
                _ => Err(err),
            },
            other => other,
        }
    }

    /// The last customer and pricing model fetched, if both are younger than `max_age`.
    fn stale_data(
        &self,
        customer_id: &str,
        max_age: Duration,
    ) -> Option<(Arc<Customer>, Arc<PricingModel>)> {
        let customer = self
            .inner
            .customers
            .get_stale(&customer_id.to_owned(), max_age)?;
        let model = self.inner.pricing_model.get_stale(&(), max_age)?;
        Some((customer, model))
    }

    /// Features of the customer; with `only`, limit callbacks run for those features alone.
    async fn features_of(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
        only: Option<&[&str]>,
    ) -> Result<Vec<CustomerFeature>, AtlasError> {
        let customer = self.customer(customer_id, info).await?;
        let model = self.fetch_pricing_model().await?;
        Ok(self
            .features_from(customer_id, &customer, &model, only)
            .await)
    }

    /// The features a customer and pricing model grant, with limit callbacks run (for `only`
    /// the features listed, when given).
    async fn features_from(
        &self,
        customer_id: &str,
        customer: &Customer,
        model: &PricingModel,
        only: Option<&[&str]>,
    ) -> Vec<CustomerFeature> {
        let now = OffsetDateTime::now_utc();
        let limited = limited_features(customer, model, now)
            .into_iter()
            .filter(|slug| only.is_none_or(|only| only.contains(slug)));
        let outcomes = self.inner.limits.outcomes(customer_id, limited).await;
        customer_features(
            customer,
            model,
            now,
            self.inner.allow_unknown_limits,
            &outcomes,
        )
    }

    /// Whether the customer may use each of the features (by id, such as `data-explorer`):
    /// granted by a valid plan, within its limit, with access or credits left. It also tells
    /// the platform which features the code checks (debounced), for its dashboard.
    pub async fn allowed<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
    ) -> Result<Allowed, AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let feature_ids: Vec<S> = feature_ids.into_iter().collect();
        let slugs: Vec<&str> = feature_ids.iter().map(AsRef::as_ref).collect();
        let flags = self.allowed_flags(customer_id, &slugs).await?;
        let features: BTreeMap<String, bool> = slugs
            .iter()
            .map(|slug| (*slug).to_owned())
            .zip(flags)
            .collect();
        Ok(Allowed {
            ok: features.values().all(|allowed| *allowed),
            features,
        })
    }

    /// Whether each feature is allowed, in order; what [`allowed`](Self::allowed) and the
    /// guards decide from, without building a map on the hot path.
    pub(crate) async fn allowed_flags(
        &self,
        customer_id: &str,
        slugs: &[&str],
    ) -> Result<Vec<bool>, AtlasError> {
        self.inner.registrations.register(slugs.iter().copied());
        let checked = async {
            self.ensure_ready().await?;
            let customer = self.customer(customer_id, None).await?;
            let model = self.fetch_pricing_model().await?;
            Ok::<_, AtlasError>(self.decide(customer_id, slugs, &customer, &model).await)
        };
        match checked.await {
            Err(err) if err.is_outage() => {
                self.allowed_during_outage(customer_id, slugs, err).await
            }
            other => other,
        }
    }

    /// Whether a customer and pricing model allow each feature. Limit callbacks (the app's
    /// database) run only for the limited features checked.
    async fn decide(
        &self,
        customer_id: &str,
        slugs: &[&str],
        customer: &Customer,
        model: &PricingModel,
    ) -> Vec<bool> {
        let now = OffsetDateTime::now_utc();
        let limited: Vec<&str> = slugs
            .iter()
            .copied()
            .filter(|slug| self.inner.limits.has(slug) && is_limited(customer, model, now, slug))
            .collect();
        let outcomes = if limited.is_empty() {
            HashMap::new()
        } else {
            self.inner.limits.outcomes(customer_id, limited).await
        };
        slugs
            .iter()
            .map(|slug| {
                let outcome = outcomes
                    .get(slug)
                    .copied()
                    .unwrap_or(LimitOutcome::NoCallback);
                is_allowed(
                    customer,
                    model,
                    now,
                    slug,
                    self.inner.allow_unknown_limits,
                    outcome,
                )
            })
            .collect()
    }

    /// The check while the platform cannot answer: each feature as its outage policy says.
    async fn allowed_during_outage(
        &self,
        customer_id: &str,
        slugs: &[&str],
        err: AtlasError,
    ) -> Result<Vec<bool>, AtlasError> {
        let mut flags = Vec::with_capacity(slugs.len());
        for slug in slugs {
            let allowed = match self.inner.outage.of(slug) {
                OutagePolicy::FailOpen => {
                    tracing::warn!(customer = ?customer_id, feature = ?slug, %err, "Atlas unavailable: allowing the feature (fail open)");
                    true
                }
                OutagePolicy::ServeStale { max_age } => match self.stale_data(customer_id, max_age)
                {
                    Some((customer, model)) => {
                        let allowed =
                            self.decide(customer_id, &[*slug], &customer, &model).await[0];
                        tracing::warn!(customer = ?customer_id, feature = ?slug, allowed, %err, "Atlas unavailable: deciding from the last known entitlements");
                        allowed
                    }
                    None => {
                        tracing::warn!(customer = ?customer_id, feature = ?slug, %err, "Atlas unavailable and no recent entitlements: failing closed");
                        return Err(err);
                    }
                },
                OutagePolicy::FailClosed => {
                    tracing::warn!(customer = ?customer_id, feature = ?slug, %err, "Atlas unavailable: failing closed");
                    return Err(err);
                }
            };
            flags.push(allowed);
        }
        Ok(flags)
    }

    /// Queues a usage event for each feature the customer has that reports usage
    /// (usage-based and credit-based ones; others are skipped), sent in batches by the
    /// background flusher. Returns once queued. `quantity` must be finite and above zero.
    pub async fn enqueue<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
        quantity: f64,
    ) -> Result<(), AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if !quantity.is_finite() || quantity <= 0.0 {
            return Err(AtlasError::InvalidInput(
                "quantity must be a positive number".to_owned(),
            ));
        }
        let feature_ids: Vec<S> = feature_ids.into_iter().collect();
        let features = self.features_of(customer_id, None, Some(&[])).await?;
        let customer = self.customer(customer_id, None).await?;
        let events: Vec<UsageEvent> = feature_ids
            .iter()
            .filter_map(|slug| {
                features
                    .iter()
                    .find(|f| f.id == slug.as_ref() && f.should_report_events)
            })
            .map(|feature| UsageEvent {
                customer_id: customer.id.clone(),
                event_name: feature.internal_id.clone(),
                generated_at: now_iso(),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                data: EventData {
                    quantity,
                    extra: Default::default(),
                },
                extra: Default::default(),
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len();
        self.inner.events.push(events).inspect_err(|err| {
            tracing::error!(customer = ?customer_id, %err, count, "usage events refused");
        })
    }

    /// Sends every queued usage event now, after a flush under way, and returns once the
    /// platform accepted them.
    pub async fn flush(&self) -> Result<(), AtlasError> {
        let api = &self.inner.api;
        self.inner
            .events
            .flush(|batch| async move { api.send_events(&batch).await })
            .await
    }

    /// Sends the pending registrations, in requests well under the platform's body limit. A
    /// chunk the platform refuses (4xx) is dropped with an error log: sending it again would
    /// be refused again, forever.
    async fn send_registrations(&self) -> Result<(), AtlasError> {
        let slugs = self.inner.registrations.take();
        let mut chunks = slugs.chunks(REGISTRATION_CHUNK);
        while let Some(chunk) = chunks.next() {
            match self.inner.api.register_features(chunk).await {
                Ok(()) => {
                    tracing::debug!(features = ?chunk, "features registered with Atlas");
                }
                Err(AtlasError::Rejected { status, message }) => {
                    tracing::error!(status, message = ?message, features = ?chunk, "the Atlas platform refused a feature registration; not retrying it");
                }
                Err(err) => {
                    let unsent = chunk.iter().chain(chunks.flatten()).cloned().collect();
                    self.inner.registrations.put_back(unsent);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Reports an SDK's version to the platform, once per library and version (the scope's
    /// `sdk-version` route relays the frontend's).
    ///
    /// At most 16 distinct versions are reported in a process's life; later ones are
    /// ignored, with one warning, so a caller making versions up cannot turn them into
    /// platform calls.
    pub fn report_sdk_version(&self, library: &str, version: &str) {
        {
            let mut reported = self
                .inner
                .sdk_versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (library.to_owned(), version.to_owned());
            if reported.contains(&key) {
                return;
            }
            if reported.len() >= MAX_SDK_VERSIONS {
                if reported.len() == MAX_SDK_VERSIONS {
                    tracing::warn!(
                        library = ?library,
                        version = ?version,
                        "more SDK versions than any app has were reported; ignoring this and later ones"
                    );
                    // One more entry marks the warning as given.
                    reported.insert(key);
                }
                return;
            }
            reported.insert(key);
        }
        let api = Arc::clone(&self.inner.api);
        let (library, version) = (library.to_owned(), version.to_owned());
        self.transport().spawn(move || async move {
            if let Err(err) = api.report_sdk_version(&library, &version).await {
                tracing::warn!(library = ?library, version = ?version, %err, "could not report the SDK version to Atlas");
            }
        });
    }

    /// The customer's invoices (void and paused ones left out), a page of them: `page` from 1
    /// (default 1), `page_size` items (default 10). All are fetched once and cached.
    pub async fn invoices(
        &self,
        customer_id: &str,
        page: Option<u32>,
        page_size: Option<u32>,
    ) -> Result<Page<Invoice>, AtlasError> {
        check_id("customer id", customer_id)?;
        self.status().await?;
        let api = Arc::clone(&self.inner.api);
        let external_id = customer_id.to_owned();
        let invoices = self
            .inner
            .invoices
            .get_or_fetch(customer_id.to_owned(), move || async move {
                api.invoices(&external_id).await
            })
            .await?;
        Ok(paginate(&invoices, page, page_size))
    }

    /// The line items of one of the customer's invoices (empty when the invoice is not the
    /// customer's).
    pub async fn invoice_line_items(
        &self,
        customer_id: &str,
        invoice_id: &str,
    ) -> Result<Arc<Vec<InvoiceLineItem>>, AtlasError> {
        check_id("customer id", customer_id)?;
        check_id("invoice id", invoice_id)?;
        self.status().await?;
        let api = Arc::clone(&self.inner.api);
        let key = (customer_id.to_owned(), invoice_id.to_owned());
        let (external_id, invoice) = key.clone();
        self.inner
            .line_items
            .get_or_fetch(key, move || async move {
                api.line_items(&external_id, &invoice).await
            })
            .await
    }

    /// The customer's credit transactions, a page of them.
    pub async fn transactions(
        &self,
        customer_id: &str,
        pagination: &Pagination,
    ) -> Result<Page<Transaction>, AtlasError> {
        check_id("customer id", customer_id)?;
        self.status().await?;
        self.inner.api.transactions(customer_id, pagination).await
    }

    /// A subscription, with its plan. Any customer's: check ownership before showing it to a
    /// user (the Atlas scope does).
    pub async fn subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Arc<Subscription>, AtlasError> {
        check_id("subscription id", subscription_id)?;
        self.status().await?;
        let api = Arc::clone(&self.inner.api);
        let id = subscription_id.to_owned();
        self.inner
            .subscriptions
            .get_or_fetch(subscription_id.to_owned(), move || async move {
                api.subscription(&id).await
            })
            .await
    }

    /// The customer's usage of a credit currency.
    pub async fn credit_usage(
        &self,
        customer_id: &str,
        unit_id: &str,
    ) -> Result<Arc<CreditUsage>, AtlasError> {
        check_id("customer id", customer_id)?;
        check_id("custom pricing unit id", unit_id)?;
        self.status().await?;
        let api = Arc::clone(&self.inner.api);
        let key = (customer_id.to_owned(), unit_id.to_owned());
        let (external_id, unit) = key.clone();
        self.inner
            .credit_usage
            .get_or_fetch(key, move || async move {
                api.credit_usage(&external_id, &unit).await
            })
            .await
    }

    /// Checks that none of the customer's subscriptions forbids changes by the customer.
    async fn check_changes_allowed(&self, customer_id: &str) -> Result<(), AtlasError> {
        let customer = self.customer(customer_id, None).await?;
        // As the official client: only an explicit `allowCustomerChanges: true` allows.
        if customer
            .subscriptions()
            .all(|subscription| subscription.allow_customer_changes == Some(true))
        {
            Ok(())
        } else {
            Err(AtlasError::SubscriptionChangesNotAllowed)
        }
    }

    /// Subscribes the customer to a plan: a checkout session to send the customer to, or, when
    /// no payment is needed (a free plan, a downgrade), `{url: success_url}`.
    pub async fn subscribe(
        &self,
        customer_id: &str,
        plan_id: &str,
        request: &SubscribeRequest,
    ) -> Result<CheckoutSession, AtlasError> {
        check_id("plan id", plan_id)?;
        self.check_changes_allowed(customer_id).await?;
        let body = json!({
            "billingCadence": request.billing_cadence,
            "email": request.email,
            "id": customer_id,
            "name": request.name,
            "successUrl": request.success_url,
        });
        let result = self.inner.api.subscribe(plan_id, body).await;
        // The customer may change before the checkout completes: refetch it next time.
        self.invalidate_customer(customer_id);
        result
    }

    /// Cancels one of the customer's subscriptions.
    pub async fn cancel_subscription(
        &self,
        customer_id: &str,
        subscription_id: &str,
        kind: CancelType,
    ) -> Result<(), AtlasError> {
        check_id("subscription id", subscription_id)?;
        self.check_changes_allowed(customer_id).await?;
        let body = json!({"externalCustomerId": customer_id, "type": kind});
        let result = self.inner.api.cancel(subscription_id, body).await;
        self.invalidate_customer(customer_id);
        result
    }

    /// Renews one of the customer's subscriptions that was set to end.
    pub async fn renew_subscription(
        &self,
        customer_id: &str,
        subscription_id: &str,
    ) -> Result<Subscription, AtlasError> {
        check_id("subscription id", subscription_id)?;
        self.check_changes_allowed(customer_id).await?;
        let body = json!({"externalCustomerId": customer_id});
        let result = self.inner.api.renew(subscription_id, body).await;
        self.invalidate_customer(customer_id);
        result
    }

    /// A checkout session in which the customer sets a new payment method.
    pub async fn update_payment_method(
        &self,
        customer_id: &str,
        success_url: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<CheckoutSession, AtlasError> {
        check_id("customer id", customer_id)?;
        self.status().await?;
        let info = info.cloned().unwrap_or_default();
        let body = json!({"email": info.email, "name": info.name, "successUrl": success_url});
        self.inner.api.payment_method(customer_id, body).await
    }

    /// Forgets what is cached about the customer (details, invoices, line items, credit
    /// usage, subscriptions): the next call refetches it. The platform's pushes do this.
    pub fn invalidate_customer(&self, customer_id: &str) {
        let inner = &self.inner;
        inner.customers.invalidate(&customer_id.to_owned());
        inner.invoices.invalidate(&customer_id.to_owned());
        inner
            .line_items
            .invalidate_where(|(customer, _)| customer == customer_id);
        inner
            .credit_usage
            .invalidate_where(|(customer, _)| customer == customer_id);
        inner.subscriptions.invalidate_all();
    }

    /// Forgets the cached pricing model: the next call refetches it.
    pub fn invalidate_plans(&self) {
        self.inner.pricing_model.invalidate(&());
    }

    /// Sends the queued usage events (waiting at most the shutdown timeout), then stops the
    /// client's background work and connection. Later calls answer
    /// [`AtlasError::Shutdown`]. Call it when the server stops.
    pub async fn shutdown(&self) -> Result<(), AtlasError> {
        let left = self.inner.events.len();
        let flushed = match actix_rt::time::timeout(self.inner.shutdown_timeout, self.flush()).await
        {
            Ok(result) => result,
            Err(_) => Err(AtlasError::unavailable("the final flush timed out")),
        };
        if let Err(err) = &flushed {
            tracing::error!(%err, events = self.inner.events.len(), "usage events could not be sent before shutdown");
        } else if left > 0 {
            tracing::info!(events = left, "queued usage events sent before shutdown");
        }
        self.inner.set_init(InitState::Failed(AtlasError::Shutdown));
        self.transport().stop();
        flushed
    }

    /// The Atlas customer id of the request's user, from the configured
    /// [`user_resolver`](AtlasBuilder::user_resolver); `Ok(None)` when the request has no
    /// user, an error when no resolver is configured.
    pub async fn resolve_user(
        &self,
        request: &actix_web::HttpRequest,
    ) -> Result<Option<String>, RequestError> {
        let Some(resolver) = &self.inner.resolver else {
            tracing::error!("no user resolver: call AtlasBuilder::user_resolver (with ClerkAuth or a function of the request)");
            return Err(RequestError::Misconfigured("no user resolver"));
        };
        Ok(resolver
            .resolve(request.clone())
            .await
            .filter(|id| !id.is_empty()))
    }

    /// The answer to a guard's denial: the custom one, if configured.
    pub(crate) fn deny(
        &self,
        request: &actix_web::HttpRequest,
        denial: &Denial,
    ) -> actix_web::HttpResponse {
        match &self.inner.deny {
            Some(answer) => answer(request, denial),
            None => denial.default_response(),
        }
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.inner.body_limit
    }

    pub(crate) fn allowed_origins(&self) -> &AllowedOrigins {
        &self.inner.origins
    }

    pub(crate) fn public_throttle(&self) -> &Throttle {
        &self.inner.public_throttle
    }

    pub(crate) fn exclusive_locks(&self) -> &ExclusiveLocks {
        &self.inner.exclusive
    }

    /// Whether the request's user may change its customer's billing, as the resolver says.
    pub(crate) fn may_manage_billing(&self, request: &actix_web::HttpRequest) -> bool {
        self.inner
            .resolver
            .as_ref()
            .is_none_or(|resolver| resolver.may_manage_billing(request))
    }

    /// The `/atlas-api` scope the Atlas React SDK calls: mount it on the `App`
    /// (`App::new().service(atlas.scope())`). See [`crate::scope`] for its routes.
    pub fn scope(&self) -> actix_web::Scope {
        crate::scope::atlas_scope(self.clone())
    }

    /// Notes features the frontend checks, for the platform's dashboard (sent debounced).
    ///
    /// The ids come from callers the app does not control (the scope's `features/register`
    /// relays the browser's), so their number is bounded: past 1,000 ids in a process's life,
    /// only ids of the pricing model's features are still taken.
    pub fn register_features<I, S>(&self, features: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let features: Vec<S> = features.into_iter().collect();
        let model = self.inner.pricing_model.get_stale(&(), Duration::MAX);
        let in_model = |slug: &str| {
            model
                .as_ref()
                .is_some_and(|model| model.entitlements.iter().any(|e| e.slug == slug))
        };
        self.inner.registrations.register_requested(
            features.iter().map(AsRef::as_ref).filter(|f| !f.is_empty()),
            in_model,
        );
    }

    /// Number of usage events queued and not yet accepted by the platform.
    pub fn queued_events(&self) -> usize {
        self.inner.events.len()
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Atlas> {
    weak.upgrade().map(|inner| Atlas { inner })
}

/// Backoff of background retries: 1 s doubling to at most 60 s, with full jitter.
fn retry_delay(failures: u32) -> Duration {
    let ceiling = Duration::from_secs(1)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(60));
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn check_id(what: &str, id: &str) -> Result<(), AtlasError> {
    if id.is_empty() {
        Err(AtlasError::InvalidInput(format!("the {what} is empty")))
    } else {
        Ok(())
    }
}

fn paginate<T: Clone>(items: &[T], page: Option<u32>, page_size: Option<u32>) -> Page<T> {
    let page = page.filter(|p| *p > 0).unwrap_or(1);
    let page_size = page_size.filter(|s| *s > 0).unwrap_or(10);
    let start = (page as usize - 1).saturating_mul(page_size as usize);
    Page {
        results: items
            .iter()
            .skip(start)
            .take(page_size as usize)
            .cloned()
            .collect(),
        count: items.len() as u64,
        pages: (items.len() as u64).div_ceil(u64::from(page_size)),
        current_page: u64::from(page),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paginates_locally() {
        let items: Vec<u32> = (1..=23).collect();
        let page = paginate(&items, Some(3), Some(10));
        assert_eq!(page.results, [21, 22, 23]);
        assert_eq!((page.count, page.pages, page.current_page), (23, 3, 3));
        let default = paginate(&items, None, Some(0));
        assert_eq!(default.results.len(), 10);
        assert_eq!(default.current_page, 1);
        assert!(paginate(&items, Some(9), None).results.is_empty());
    }

    #[test]
    fn background_retries_back_off_to_a_minute() {
        assert!(retry_delay(1) <= Duration::from_secs(1));
        assert!(retry_delay(1) >= Duration::from_millis(500));
        assert!(retry_delay(30) <= Duration::from_secs(60));
        assert!(retry_delay(30) >= Duration::from_secs(30));
    }
}
