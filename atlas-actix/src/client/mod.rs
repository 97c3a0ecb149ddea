//! The Atlas platform client: every call of the official SDK, over the platform API, with
//! caches, limits and usage events. It knows nothing of Actix Web: its I/O runs on a thread of
//! its own (awc on an actix runtime there), and the web layer above it (`atlas.rs`, the scope,
//! the guards) turns requests into its calls.
//!
//! One file per concern: `lifecycle` (start, initialisation, shutdown), `checks`
//! (entitlements), `billing`, `usage` (events, registrations, SDK versions); below them `api`
//! (one method per platform endpoint), `transport` (the I/O thread), `push` (invalidations),
//! `backoff` and `config`.

mod billing;
pub(crate) mod cache;
mod checks;
pub(crate) mod decision_log;
mod environment;
pub(crate) mod events;
pub(crate) mod fleet;
pub(crate) mod hooks;
pub(crate) mod keys;
pub(crate) mod ledger;
mod lifecycle;
pub(crate) mod limits;
pub(crate) mod outage;
pub(crate) mod pending;
pub(crate) mod platform;
pub(crate) mod registration;
pub(crate) mod reservation;
pub(crate) mod retry;
pub(crate) mod settings;
mod sources;
pub(crate) mod telemetry;
mod unavailable;
mod usage;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

pub use self::platform::api::Pagination;
use self::platform::api::PlatformApi;
use crate::client::cache::Cache;
use crate::client::events::EventQueue;
use crate::client::hooks::Provenance;
use crate::client::limits::Limits;
use crate::client::outage::OutagePolicies;
use crate::client::registration::Registrations;
use crate::client::telemetry::CheckCounters;
use crate::entitlements::findings::Finding;
use crate::entitlements::reasons::DenialReason;
use crate::entitlements::LimitOutcome;
use crate::error::AtlasError;
use crate::models::{
    CreditUsage, Customer, Invoice, InvoiceLineItem, Merchant, PricingModel, Subscription,
};

/// The client of the Atlas platform, with no web framework in it: usable from any async
/// runtime. Cheap to clone: clones share caches, queues and the connection. The web layer's
/// [`Atlas`](crate::Atlas) holds one and dereferences to it, so its methods are called on an
/// `Atlas` directly.
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
pub struct AtlasClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AtlasClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtlasClient")
            .field("platform", &self.inner.base_url)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// The state of the push link through which the platform invalidates cached data, as
/// [`AtlasClient::push_link`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushLink {
    /// Connecting, for the first time or again.
    Connecting,
    /// Connected: invalidations arrive as they happen.
    Connected,
    /// Down; reconnecting after a backoff. Until it is back, cache TTLs bound staleness.
    Disconnected {
        /// Why it went down.
        reason: String,
    },
    /// The platform refused the API key; retried rarely.
    Refused,
}

/// What initialisation learnt: the merchant, and the limited features the app registered no
/// limit callback for. `/atlas-api/status` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Status {
    /// The merchant the API key belongs to.
    #[serde(flatten)]
    pub merchant: Merchant,
    /// Limit-based features without a limit callback: denied unless `allow_unknown_limits`.
    pub unconfigured_limits: Vec<String>,
    /// Mistakes between the code and the pricing model when it loaded (see
    /// [`AtlasClient::findings`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// The answer of [`AtlasClient::allowed`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Allowed {
    /// Whether every feature checked is allowed.
    pub ok: bool,
    /// Each feature checked, and whether it is allowed.
    pub features: BTreeMap<String, bool>,
    /// Why each denied feature is denied, one reason each, in the order checked; empty when
    /// every feature is allowed.
    pub reasons: Vec<DenialReason>,
    /// Where the data decided from came from: fetched now, cached (how old), the fleet's
    /// tier, stale during an outage, or the fail-open policy. Not serialised: the JSON stays
    /// the official client's shape.
    #[serde(skip)]
    pub provenance: Provenance,
    /// What the app's limit callbacks answered, for the limited features checked (not
    /// serialised).
    #[serde(skip)]
    pub limits: Vec<(String, LimitOutcome)>,
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum CancelType {
    /// The subscription in force; the merchant's default plan, if any, follows it.
    Active,
    /// A subscription that has not started; the one in force then runs on.
    Upcoming,
}

/// A request to subscribe a customer to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a request does nothing until passed to `subscribe`"]
pub struct SubscribeRequest {
    /// How often the plan is paid.
    pub billing_cadence: BillingCadence,
    /// Where the checkout sends the customer afterwards.
    pub success_url: String,
    /// The customer's email, for the checkout.
    pub email: Option<String>,
    /// The customer's name, for the checkout.
    pub name: Option<String>,
    /// Whose change it is: the customer's (the default, refused when a subscription locks
    /// changes) or the app's own.
    pub changes: ChangeOptions,
}

impl SubscribeRequest {
    /// A subscription paid every `billing_cadence`, the checkout sending the customer to
    /// `success_url` afterwards; the customer's own change.
    pub fn new(billing_cadence: BillingCadence, success_url: impl Into<String>) -> Self {
        Self {
            billing_cadence,
            success_url: success_url.into(),
            email: None,
            name: None,
            changes: ChangeOptions::default(),
        }
    }

    /// With the customer's email, for the checkout.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With the customer's name, for the checkout.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whose change it is (see [`ChangeOptions`]).
    pub fn changes(mut self, changes: ChangeOptions) -> Self {
        self.changes = changes;
        self
    }
}

/// Options of a subscription change. A customer whose subscription locks changes
/// (`allowCustomerChanges` not `true`) cannot subscribe, cancel or renew; the app itself, from a
/// back office, can, as the official client's `ignoreAllowSubscriptionChanges` allows. The
/// Atlas scope never sets it: its requests are the customer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeOptions {
    /// Make the change even when a subscription locks changes by the customer.
    pub ignore_allow_subscription_changes: bool,
}

impl ChangeOptions {
    /// The customer's own change: refused when a subscription locks changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The app's change, made even when a subscription locks changes by the customer.
    #[must_use]
    pub fn ignore_allow_subscription_changes(mut self, ignore: bool) -> Self {
        self.ignore_allow_subscription_changes = ignore;
        self
    }
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
    /// The app's hooks, called at every check and usage event.
    hooks: hooks::Hooks,
    /// Where usage and shared state go besides memory (spool, Redis), for the start-up line.
    tiers: String,
    api: Arc<PlatformApi>,
    allow_unknown_limits: bool,
    limits: Limits,
    customers: Cache<String, Customer>,
    /// How long after a pushed change of a customer its previous data may answer the checks
    /// that come while the first one refetches it.
    push_revalidation: Duration,
    pricing_model: Cache<(), PricingModel>,
    invoices: Cache<String, Vec<Invoice>>,
    line_items: Cache<(String, String), Vec<InvoiceLineItem>>,
    credit_usage: Cache<(String, String), CreditUsage>,
    subscriptions: Cache<String, Subscription>,
    events: EventQueue,
    /// What the fleet's instances share (the Redis tier), if anything.
    fleet: Arc<fleet::FleetTier>,
    /// Usage taken on that the platform's figures do not count yet.
    pending: Arc<pending::PendingUsage>,
    registrations: Registrations,
    init: watch::Sender<InitState>,
    sdk_versions: Mutex<HashSet<(String, String)>>,
    shutdown_timeout: Duration,
    link: watch::Receiver<PushLink>,
    outage: OutagePolicies,
    /// Whether initialisation succeeded: what every check looks at, without a lock.
    ready: AtomicBool,
    /// Refuse to start while the code and the pricing model disagree.
    strict: bool,
    /// Whether the push link was asked for.
    push_enabled: bool,
    /// When health last probed the platform (seconds since the epoch, as `f64` bits).
    last_probe: AtomicU64,
    checks: CheckCounters,
    findings: RwLock<Arc<Vec<Finding>>>,
    /// Findings already logged, so each is logged once.
    reported: Mutex<HashSet<Finding>>,
    /// The name generation last validated.
    validated: AtomicU64,
}

impl Inner {
    fn set_init(&self, state: InitState) {
        self.ready
            .store(matches!(state, InitState::Ready(_)), Ordering::Release);
        self.init.send_replace(state);
    }
}

impl AtlasClient {
    /// The hooks registered, for the web layer's usage reports.
    pub(crate) fn hooks(&self) -> &hooks::Hooks {
        &self.inner.hooks
    }

    /// The customer as the platform has it now, if it has one: never created, never cached
    /// (what an operator looks up).
    #[cfg(feature = "cli")]
    pub(crate) async fn find_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<Customer>, AtlasError> {
        check_id("customer id", customer_id)?;
        self.ensure_ready().await?;
        self.inner.api.customer(customer_id).await
    }

    /// What the fleet's instances share, for the web layer's exclusive guards.
    pub(crate) fn fleet(&self) -> &fleet::FleetTier {
        &self.inner.fleet
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<AtlasClient> {
    weak.upgrade().map(|inner| AtlasClient { inner })
}

/// The longest id taken (customer, invoice, subscription, credit unit ids): far above any
/// real one, low enough that an id in a URL path, a cache key or a Redis key stays small.
pub(crate) const MAX_ID_BYTES: usize = 256;

/// An id the client may use: 1 to [`MAX_ID_BYTES`] bytes (any characters: ids are encoded
/// wherever they go).
fn check_id(what: &str, id: &str) -> Result<(), AtlasError> {
    if id.is_empty() {
        Err(AtlasError::InvalidInput(format!("the {what} is empty")))
    } else if id.len() > MAX_ID_BYTES {
        Err(AtlasError::InvalidInput(format!(
            "the {what} is over {MAX_ID_BYTES} bytes"
        )))
    } else {
        Ok(())
    }
}

/// How a usage report is made ([`AtlasClient::enqueue_with`]).
///
/// A background job that may be retried reports with its own idempotency key, so a retry
/// bills once, and with the time the work happened rather than when it is reported:
///
#[cfg_attr(feature = "emulator", doc = "```")]
#[cfg_attr(not(feature = "emulator"), doc = "```ignore")]
/// use atlas_actix::emulator::{AtlasData, Emulator};
/// use atlas_actix::{Atlas, UsageOptions};
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let platform = Emulator::start(AtlasData::sample())?;
/// let atlas = Atlas::builder().base_url(platform.url()).api_key(platform.api_key()).build()?;
/// let finished = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
/// for _attempt in 0..3 {
///     let usage = UsageOptions::new()
///         .quantity(1200.0)
///         .idempotency_key("summarise-job-7f3a")
///         .at(finished);
///     atlas.enqueue_with("user_erin", ["ai-tokens"], usage).await?;
/// }
/// atlas.flush().await?;
/// let billed = platform.usage();
/// assert_eq!(billed.len(), 1, "three reports, one key: billed once");
/// assert_eq!((billed[0].feature.as_str(), billed[0].quantity), ("ai-tokens", 1200.0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "options do nothing until passed to `enqueue_with`"]
pub struct UsageOptions {
    quantity: f64,
    idempotency_key: Option<String>,
    at: Option<OffsetDateTime>,
}

impl Default for UsageOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageOptions {
    /// One unit, a fresh idempotency key, now.
    pub fn new() -> Self {
        Self {
            quantity: 1.0,
            idempotency_key: None,
            at: None,
        }
    }

    /// How much was used: finite and above zero.
    pub fn quantity(mut self, quantity: f64) -> Self {
        self.quantity = quantity;
        self
    }

    /// The caller's idempotency key (at most 255 characters): reporting again with the same key
    /// (a retried job) bills once.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// When the usage happened (default: when it is queued).
    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = Some(at);
        self
    }

    fn check(&self) -> Result<(), AtlasError> {
        if !self.quantity.is_finite() || self.quantity <= 0.0 {
            return Err(AtlasError::InvalidInput(
                "quantity must be a positive number".to_owned(),
            ));
        }
        check_idempotency_key(self.idempotency_key.as_deref())
    }
}

/// A caller's idempotency key: 1 to 255 characters, as the platform takes them.
pub(crate) fn check_idempotency_key(key: Option<&str>) -> Result<(), AtlasError> {
    match key {
        Some(key) if key.is_empty() || key.len() > 255 => Err(AtlasError::InvalidInput(
            "the idempotency key must be 1 to 255 characters".to_owned(),
        )),
        _ => Ok(()),
    }
}
