//! The client's life: start (the I/O thread, initialisation, background work), readiness,
//! re-initialisation when the platform asks, and shutdown.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::client::cache::Cache;
use crate::client::events::spool::Spool;
use crate::client::events::EventQueue;
use crate::client::fleet::{FleetKey, FleetTier};
use crate::client::hooks::Hooks;
use crate::client::limits::Limits;
use crate::client::pending::PendingUsage;
use crate::client::platform::api::PlatformApi;
use crate::client::platform::push;
use crate::client::platform::transport::{ApiKey, Transport, TransportConfig};
use crate::client::registration::Registrations;
use crate::client::retry::{repeat, Round, BACKGROUND_RETRY};
use crate::client::settings::ClientConfig;
use crate::client::telemetry::{self, CheckCounters};
use crate::client::usage::SDK_LIBRARY;
use crate::client::{upgrade, AtlasClient, InitState, Initialisation, Inner, PushLink, Status};
use crate::entitlements::findings::{findings, Finding};
use crate::entitlements::named_in_code;
use crate::error::{AtlasError, BuildError};
use crate::models::{Merchant, PricingModel};

impl AtlasClient {
    pub(crate) fn start(
        config: ClientConfig,
        api_key: ApiKey,
        base_url: String,
        tls: Arc<rustls::ClientConfig>,
        fleet: FleetTier,
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
            timeout: config.timeout,
            backoff: config.backoff,
            tls,
        })?;
        let (link_state, link) = watch::channel(if config.push_invalidation {
            PushLink::Connecting
        } else {
            PushLink::Disconnected {
                reason: "push invalidation is turned off".to_owned(),
            }
        });
        let capacity = config.cache_capacity;
        telemetry::describe();
        let spool = config
            .spool
            .as_deref()
            .map(|dir| {
                Spool::open(dir, config.spool_shared_dir).map_err(|source| BuildError::Spool {
                    path: dir.to_owned(),
                    source,
                })
            })
            .transpose()?;
        let tiers = tiers(config.spool.as_deref(), &fleet);
        let hooks = Hooks::new(config.hooks);
        let fleet = Arc::new(fleet);
        let inner = Arc::new(Inner {
            base_url,
            tiers,
            hooks: hooks.clone(),
            api: Arc::new(PlatformApi::new(transport)),
            allow_unknown_limits: config.allow_unknown_limits,
            limits: Limits::new(config.limits, config.limit_timeout),
            customers: Cache::weighed(
                "customer",
                config.customer_ttl,
                capacity,
                config.cache_max_bytes,
                |customer| customer.footprint() as u64,
            ),
            push_revalidation: config.push_revalidation,
            pricing_model: Cache::new("pricing_model", config.pricing_model_ttl, 1),
            invoices: Cache::new("invoices", config.invoice_ttl, capacity),
            line_items: Cache::new("line_items", config.invoice_ttl, capacity),
            credit_usage: Cache::new("credit_usage", config.credit_usage_ttl, capacity),
            subscriptions: Cache::new("subscription", config.subscription_ttl, capacity),
            events: EventQueue::new(
                config.events_queue_capacity,
                config.events_flush_at,
                config.events_flush_interval,
                spool,
                hooks,
            ),
            pending: Arc::new(PendingUsage::new(
                config.hold_ttl,
                config.metering_lag,
                &fleet,
            )),
            fleet,
            registrations: Registrations::new(config.registration_debounce),
            init: watch::Sender::new(InitState::Pending),
            sdk_versions: Mutex::new(HashSet::new()),
            shutdown_timeout: config.shutdown_timeout,
            link,
            outage: config.outage,
            ready: AtomicBool::new(false),
            strict: config.strict,
            push_enabled: config.push_invalidation,
            last_probe: AtomicU64::new(0),
            checks: CheckCounters::default(),
            findings: RwLock::new(Arc::new(Vec::new())),
            reported: Mutex::new(HashSet::new()),
            validated: AtomicU64::new(u64::MAX),
        });
        let client = Self { inner };
        client.spawn_initialisation(Initialisation::First);
        if config.push_invalidation {
            let weak = Arc::downgrade(&client.inner);
            client
                .transport()
                .spawn(move || push::run(weak, link_config, link_state));
        }
        client.spawn_when_due(
            client.inner.events.wake(),
            |inner| inner.events.due_at(),
            |client| async move { client.flush().await },
        );
        #[cfg(feature = "redis")]
        client.spawn_fleet(config.events_flush_interval);
        client.spawn_when_due(
            client.inner.registrations.wake(),
            |inner| inner.registrations.due_at(),
            |client| async move { client.send_registrations().await },
        );
        Ok(client)
    }

    pub(super) fn transport(&self) -> &Transport {
        self.inner.api.transport()
    }

    /// Initialises in the background: the merchant check, then the pricing model. A refused
    /// key is final; any other failure is retried with backoff until it succeeds, and, the
    /// first time, reported to calls meanwhile (later, the last status stays in force).
    pub(super) fn spawn_initialisation(&self, which: Initialisation) {
        let weak = Arc::downgrade(&self.inner);
        self.transport().spawn(move || async move {
            let weak = &weak;
            repeat("Atlas initialisation", BACKGROUND_RETRY, move |_| async move {
                let Some(atlas) = upgrade(weak) else {
                    return Round::Done;
                };
                match atlas.initialise().await {
                    Ok(status) => {
                        atlas.inner.set_init(InitState::Ready(Arc::new(status)));
                        if which == Initialisation::First {
                            atlas.report_sdk_version(SDK_LIBRARY, env!("CARGO_PKG_VERSION"));
                        }
                        Round::Done
                    }
                    Err(err @ AtlasError::Misconfigured(_)) => {
                        tracing::error!(%err, "strict mode: the app and the Atlas pricing model disagree; every call will fail until they agree");
                        atlas.inner.set_init(InitState::Failed(err));
                        Round::Done
                    }
                    Err(AtlasError::InvalidApiKey) => {
                        tracing::error!("the Atlas platform refused the API key; every call will fail until ATLAS_API_KEY is fixed");
                        atlas.inner.set_init(InitState::Failed(AtlasError::InvalidApiKey));
                        Round::Done
                    }
                    Err(err) => {
                        let reason = err.to_string();
                        if which == Initialisation::First {
                            atlas.inner.set_init(InitState::Failed(err));
                        }
                        Round::Failed(reason)
                    }
                }
            })
            .await;
        });
    }

    pub(super) async fn initialise(&self) -> Result<Status, AtlasError> {
        let (merchant, model) = match self.fetch_merchant_and_model().await {
            Ok(fetched) => fetched,
            Err(err) if err.is_outage() => self.last_known_merchant(err).await?,
            Err(err) => return Err(err),
        };
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
        let findings = self.validate(&model);
        if self.inner.strict && !findings.is_empty() {
            let problems: Vec<&str> = findings.iter().map(|f| f.problem.as_str()).collect();
            return Err(AtlasError::Misconfigured(problems.join("; ")));
        }
        tracing::info!(
            platform = %self.inner.base_url,
            mode = %merchant.mode,
            outage_policy = %self.inner.outage.summary(),
            tiers = %self.inner.tiers,
            findings = findings.len(),
            "Atlas client initialised"
        );
        Ok(Status {
            merchant,
            unconfigured_limits,
            findings,
        })
    }

    async fn fetch_merchant_and_model(&self) -> Result<(Merchant, Arc<PricingModel>), AtlasError> {
        let api = &self.inner.api;
        let merchant = self
            .inner
            .fleet
            .read_through(
                FleetKey::merchant("merchant", ""),
                self.inner.pricing_model.ttl(),
                || api.merchant(),
            )
            .await?;
        Ok((merchant, self.fetch_pricing_model().await?))
    }

    /// While the platform cannot answer, under a policy that serves stale data: the merchant
    /// and pricing model another instance of the fleet fetched last, so an instance started
    /// during an outage can decide from what the fleet knows. Else the outage.
    async fn last_known_merchant(
        &self,
        outage: AtlasError,
    ) -> Result<(Merchant, Arc<PricingModel>), AtlasError> {
        let Some(max_age) = self.inner.outage.longest_stale() else {
            return Err(outage);
        };
        let shared = &self.inner.fleet;
        let merchant = shared
            .read_stale(FleetKey::merchant("merchant", ""), max_age)
            .await;
        let model = shared
            .read_stale(FleetKey::merchant("pricing_model", ""), max_age)
            .await;
        match (merchant, model) {
            (Some(merchant), Some(model)) => {
                tracing::warn!(%outage, "Atlas unavailable: starting from the merchant and pricing model the fleet fetched last");
                Ok((merchant, Arc::new(model)))
            }
            _ => Err(outage),
        }
    }

    /// Checks the features the code names against `model`; each new finding is logged once.
    pub(super) fn validate(&self, model: &PricingModel) -> Vec<Finding> {
        let generation = named_in_code::generation();
        let limits = self.inner.limits.features();
        let found = findings(model, &named_in_code::named(), &limits);
        {
            let mut reported = self
                .inner
                .reported
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for finding in found.iter().filter(|f| reported.insert((*f).clone())) {
                tracing::warn!(feature = ?finding.feature, site = %finding.site, "{}", finding.problem);
            }
        }
        *self
            .inner
            .findings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(found.clone());
        self.inner.validated.store(generation, Ordering::Release);
        found
    }

    /// Checks again when the app named features since the last check (middleware built after
    /// the pricing model loaded). Two atomic loads when nothing changed: cheap enough for
    /// every guarded request.
    pub(crate) fn revalidate_if_needed(&self) {
        if named_in_code::generation() == self.inner.validated.load(Ordering::Acquire) {
            return;
        }
        if let Some(model) = self.inner.pricing_model.latest(&()) {
            self.validate(&model);
        }
    }

    /// The mistakes found between the code and the pricing model: feature ids it lacks (with
    /// the nearest it has), limit callbacks for unlimited features, usage reported for
    /// features no plan meters. Each is also logged once, at warn.
    pub fn findings(&self) -> Arc<Vec<Finding>> {
        Arc::clone(
            &self
                .inner
                .findings
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Runs `work` on the I/O thread whenever `due` says it is time, woken by `wake`; after a
    /// failure it waits with backoff before trying again.
    pub(super) fn spawn_when_due<D, W, Fut>(&self, wake: Arc<Notify>, due: D, work: W)
    where
        D: Fn(&Inner) -> Option<Instant> + Send + 'static,
        W: Fn(AtlasClient) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), AtlasError>>,
    {
        let weak = Arc::downgrade(&self.inner);
        self.transport().spawn(move || async move {
            let (weak, wake, due, work) = (&weak, &wake, &due, &work);
            repeat(
                "Atlas background work",
                BACKGROUND_RETRY,
                move |_| async move {
                    let next = match weak.upgrade() {
                        Some(inner) => due(&inner),
                        None => return Round::Done,
                    };
                    match next {
                        None => wake.notified().await,
                        Some(at) if at > Instant::now() => {
                            let _ = tokio::time::timeout_at(at.into(), wake.notified()).await;
                        }
                        Some(_) => {
                            let Some(atlas) = upgrade(weak) else {
                                return Round::Done;
                            };
                            return match work(atlas).await {
                                Ok(()) => Round::Again(Duration::ZERO),
                                Err(AtlasError::Shutdown) => Round::Done,
                                Err(err) => Round::Failed(err.to_string()),
                            };
                        }
                    }
                    Round::Again(Duration::ZERO)
                },
            )
            .await;
        });
    }

    /// Connects the Redis tier, then drains the fleet's event stream every `interval`.
    #[cfg(feature = "redis")]
    fn spawn_fleet(&self, interval: Duration) {
        use crate::client::fleet::redis;

        let Some(fleet) = self.inner.fleet.redis.clone() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        self.transport().spawn(move || async move {
            fleet.connect().await;
            let (weak, fleet) = (&weak, &fleet);
            repeat(
                "sending the Redis stream's usage events",
                BACKGROUND_RETRY,
                move |_| async move {
                    let Some(atlas) = upgrade(weak) else {
                        return Round::Done;
                    };
                    // A Redis restarted empty has lost the group: made again (or found) each round.
                    fleet.events.prepare(fleet).await;
                    let round = match atlas
                        .inner
                        .fleet
                        .drain(&atlas.inner.api, &atlas.inner.hooks, 20)
                        .await
                    {
                        // Full batches: more are waiting, go on at once.
                        Ok(sent) if sent >= 20 * redis::stream::BATCH => {
                            Round::Again(Duration::ZERO)
                        }
                        Ok(_) => Round::Again(interval),
                        Err(err) => Round::Failed(err.to_string()),
                    };
                    if let Some(unsent) = fleet.events.len(fleet).await {
                        telemetry::events_stream_pending(unsent);
                    }
                    round
                },
            )
            .await;
        });
    }

    /// Initialises again, as the platform asks with `invalidateMerchant`: the pricing model is
    /// refetched and the status replaced once the platform answers.
    pub(crate) fn reinitialise(&self) {
        self.invalidate_plans();
        self.spawn_initialisation(Initialisation::Again);
    }

    /// Waits for initialisation, without a lock once it succeeded.
    pub(super) async fn ensure_ready(&self) -> Result<(), AtlasError> {
        if self.inner.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        // Boxed: the wait is rare, and inline it would grow every check's future.
        Box::pin(self.status()).await.map(drop)
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
        self.inner.fleet.leave().await;
        self.inner.set_init(InitState::Failed(AtlasError::Shutdown));
        self.transport().stop();
        flushed
    }
}

/// The tiers in use besides memory, for the start-up line: `spool <dir>`, `redis <address>`.
fn tiers(spool: Option<&std::path::Path>, fleet: &FleetTier) -> String {
    let tiers: Vec<String> = spool
        .map(|dir| format!("spool {}", dir.display()))
        .into_iter()
        .chain(fleet.describe())
        .collect();
    if tiers.is_empty() {
        "memory only".to_owned()
    } else {
        tiers.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn background_retries_back_off_to_a_minute() {
        assert!(BACKGROUND_RETRY.delay(0) <= Duration::from_secs(1));
        assert!(BACKGROUND_RETRY.delay(0) >= Duration::from_millis(500));
        assert!(BACKGROUND_RETRY.delay(29) <= Duration::from_secs(60));
        assert!(BACKGROUND_RETRY.delay(29) >= Duration::from_secs(30));
    }
}
