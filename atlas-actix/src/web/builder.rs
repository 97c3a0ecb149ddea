//! Building a client: every option, its default, and where the environment fills in.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};

use crate::auth::UserResolver;
use crate::client::hooks::AtlasHook;
use crate::client::limits::{IntoUsage, LimitCallback};
use crate::client::outage::OutagePolicy;
use crate::client::retry::Backoff;
use crate::client::settings::ClientConfig;
use crate::web::csrf::AllowedOrigins;
use crate::web::guard::denial::Denial;
use crate::web::guard::unrecordable::UnrecordableUsage;

/// Configures and builds an [`Atlas`](crate::Atlas); made by [`Atlas::builder`](crate::Atlas::builder).
///
/// ```no_run
/// use std::time::Duration;
/// use atlas_actix::Atlas;
///
/// let atlas = Atlas::builder()
///     // Without this, the ATLAS_API_KEY environment variable.
///     .api_key("sk_test_...")
///     .timeout(Duration::from_secs(5))
///     .limit("seats", |customer: String| async move {
///         // Count the customer's seats in the app's own store.
///         Ok::<_, std::io::Error>(3)
///     })
///     .build()?;
/// # Ok::<(), atlas_actix::BuildError>(())
/// ```
#[must_use = "a builder does nothing until `.build()`"]
pub struct AtlasBuilder {
    pub(crate) client: ClientConfig,
    pub(crate) resolver: Option<Arc<dyn UserResolver>>,
    pub(crate) deny: Option<DenyHandler>,
    pub(crate) body_limit: usize,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) public_rate_limit: (u32, Duration),
    pub(crate) exclusive_wait: Duration,
    pub(crate) unrecordable_usage: UnrecordableUsage,
    pub(crate) idempotency_ttl: Duration,
}

/// How long an exclusive guard waits for its lock by default.
pub(crate) const DEFAULT_EXCLUSIVE_WAIT: Duration = Duration::from_secs(5);

/// A custom answer to a guard's denial.
pub(crate) type DenyHandler = Arc<dyn Fn(&HttpRequest, &Denial) -> HttpResponse + Send + Sync>;

impl std::fmt::Debug for AtlasBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut limits: Vec<&String> = self.client.limits.keys().collect();
        limits.sort();
        f.debug_struct("AtlasBuilder")
            .field("api_key", &self.client.api_key.as_ref().map(|_| "***"))
            .field("base_url", &self.client.base_url)
            .field("timeout", &self.client.timeout)
            .field("customer_ttl", &self.client.customer_ttl)
            .field("cache_capacity", &self.client.cache_capacity)
            .field("cache_max_bytes", &self.client.cache_max_bytes)
            .field("allow_unknown_limits", &self.client.allow_unknown_limits)
            .field("limits", &limits)
            .field("events_flush_interval", &self.client.events_flush_interval)
            .field("events_flush_at", &self.client.events_flush_at)
            .field("events_queue_capacity", &self.client.events_queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for AtlasBuilder {
    fn default() -> Self {
        Self {
            client: ClientConfig::default(),
            resolver: None,
            deny: None,
            body_limit: 64 * 1024,
            exclusive_wait: DEFAULT_EXCLUSIVE_WAIT,
            unrecordable_usage: UnrecordableUsage::default(),
            idempotency_ttl: Duration::from_secs(600),
            allowed_origins: AllowedOrigins::default(),
            public_rate_limit: (30, Duration::from_secs(60)),
        }
    }
}

impl AtlasBuilder {
    /// The platform API key. Default: the `ATLAS_API_KEY` environment variable.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.client.api_key = Some(key.into());
        self
    }

    /// Code run at every entitlement check and usage event (see [`AtlasHook`]); hooks run in
    /// the order registered. [`DecisionLog`](crate::DecisionLog) is one.
    pub fn hook(mut self, hook: impl AtlasHook) -> Self {
        self.client.hooks.push(Arc::new(hook));
        self
    }

    /// The `ATLAS_*` environment variables your app reads itself. At build, the client warns
    /// about every other `ATLAS_*` variable set in the environment, naming the one it most
    /// likely meant (`ATLAS_URL`: did you mean `ATLAS_HOST`?), since a misspelt variable is
    /// otherwise ignored without a word. The SDK's own are `ATLAS_API_KEY` and `ATLAS_HOST`.
    ///
    /// ```
    /// let builder = atlas_actix::Atlas::builder()
    ///     .app_variables(["ATLAS_REDIS_URL", "ATLAS_OUTAGE_POLICY"]);
    /// ```
    pub fn app_variables<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client
            .app_variables
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// The platform's base URL, such as an emulator's. Default: the `ATLAS_HOST` environment
    /// variable, else [`DEFAULT_PLATFORM_URL`](crate::DEFAULT_PLATFORM_URL).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.client.base_url = Some(url.into());
        self
    }

    /// The longest a platform call may take, its retries included (default 10 s). A call that
    /// runs out answers [`AtlasError::Unavailable`](crate::AtlasError::Unavailable).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client.timeout = timeout;
        self
    }

    /// The backoff between retries of a failed call (default: from 100 ms, doubling, at most
    /// 5 s, with full jitter).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.client.backoff = Backoff::new(base, max);
        self
    }

    /// How long customer details stay fresh (default 10 s). Push invalidations and the
    /// client's own subscription changes refresh them sooner.
    pub fn customer_ttl(mut self, ttl: Duration) -> Self {
        self.client.customer_ttl = ttl;
        self
    }

    /// How long the customer's data from before a pushed change may answer checks while the
    /// platform is asked again (default 1 s,
    /// [`DEFAULT_PUSH_REVALIDATION`](crate::DEFAULT_PUSH_REVALIDATION); zero turns it off).
    ///
    /// When the platform pushes that a customer changed (their usage was counted, their plan
    /// changed), the first check after the push refetches the customer and waits for it, as
    /// the official SDK's every check does. Checks of that customer that come while that fetch
    /// runs are answered from the data before the push, within this grace, instead of queueing
    /// behind the platform's round trip: under a customer's steady load each metering push
    /// otherwise stalls every request in flight for that customer (on the quickstart's usage
    /// route at 64 connections against the metering emulator, p99 fell from 10–13 ms to
    /// 7–8 ms; BENCHMARKS.md). A push during the grace does not extend it. Pending usage
    /// still counts (the quota ledger
    /// holds it), and a change the app makes itself (a checkout it completed,
    /// [`AtlasClient::invalidate_customer`](crate::AtlasClient::invalidate_customer)) is
    /// never served from before. Decisions made this way have
    /// [`Provenance::Revalidating`](crate::Provenance::Revalidating).
    pub fn push_revalidation(mut self, grace: Duration) -> Self {
        self.client.push_revalidation = grace;
        self
    }

    /// How long invoices and their line items stay fresh (default 10 s).
    pub fn invoice_ttl(mut self, ttl: Duration) -> Self {
        self.client.invoice_ttl = ttl;
        self
    }

    /// How long credit usage stays fresh (default 10 s).
    pub fn credit_usage_ttl(mut self, ttl: Duration) -> Self {
        self.client.credit_usage_ttl = ttl;
        self
    }

    /// How long the pricing model stays fresh (default 5 min).
    pub fn pricing_model_ttl(mut self, ttl: Duration) -> Self {
        self.client.pricing_model_ttl = ttl;
        self
    }

    /// How long subscriptions stay fresh (default 5 min).
    pub fn subscription_ttl(mut self, ttl: Duration) -> Self {
        self.client.subscription_ttl = ttl;
        self
    }

    /// The most entries each cache holds (default 100,000), so any number of distinct
    /// customers uses bounded memory; beyond it the least useful entries are evicted.
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.client.cache_capacity = entries;
        self
    }

    /// The most memory the customer cache takes, in bytes (default 256 MiB), as estimated
    /// from each customer's fields: a merchant whose customers carry many subscriptions or
    /// balances stays within it whatever their number. The cache also holds at most
    /// [`cache_capacity`](Self::cache_capacity) customers.
    pub fn cache_max_bytes(mut self, bytes: u64) -> Self {
        self.client.cache_max_bytes = bytes;
        self
    }

    /// Whether a limited feature is allowed when its limit cannot be counted: no callback is
    /// registered, or the callback failed or timed out (default `false`: denied).
    pub fn allow_unknown_limits(mut self, allow: bool) -> Self {
        self.client.allow_unknown_limits = allow;
        self
    }

    /// Registers the usage callback of a limited feature: given the customer id the check was
    /// made for, it counts what the customer uses in the app's own store (seats, projects,
    /// ...), and Atlas allows the feature while the count is below the plan's limit.
    ///
    /// The callback may return any number type, or a `Result` of one with any error; a failing
    /// callback is logged and falls back to
    /// [`allow_unknown_limits`](Self::allow_unknown_limits). It can use application state by
    /// capturing it (a database pool is cheap to clone). The [`limit!`](crate::limit) macro
    /// writes the same with the feature id checked at compile time (its form; with a
    /// pricing-model snapshot, that the feature exists and has a limit).
    ///
    /// ```no_run
    /// # #[derive(Clone)] struct Pool;
    /// # impl Pool { async fn count_seats(&self, _: &str) -> Result<i64, std::io::Error> { Ok(1) } }
    /// # let pool = Pool;
    /// let atlas = atlas_actix::Atlas::builder()
    ///     .limit("seats", move |customer: String| {
    ///         let pool = pool.clone();
    ///         async move { pool.count_seats(&customer).await }
    ///     })
    ///     .build()?;
    /// # Ok::<(), atlas_actix::BuildError>(())
    /// ```
    pub fn limit<F, Fut>(self, feature: impl Into<String>, callback: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoUsage,
    {
        self.with_limit(feature.into(), LimitCallback::new(callback))
    }

    pub(crate) fn with_limit(mut self, feature: String, callback: LimitCallback) -> Self {
        self.client.limits.insert(feature, callback);
        self
    }

    /// The longest a limit callback may take before it counts as failed (default 5 s).
    pub fn limit_timeout(mut self, timeout: Duration) -> Self {
        self.client.limit_timeout = timeout;
        self
    }

    /// How long usage events wait before they are sent, counted from the first one queued
    /// (default 3 s). Zero sends at each [`enqueue`](crate::AtlasClient::enqueue).
    pub fn events_flush_interval(mut self, interval: Duration) -> Self {
        self.client.events_flush_interval = interval;
        self
    }

    /// How long a hold on quota lasts when its request neither reports nor releases it: a
    /// [`Reservation`](crate::Reservation) not committed, or a guard with `usage` whose
    /// handler never answers (default 5 minutes, [`DEFAULT_HOLD_TTL`](crate::DEFAULT_HOLD_TTL)).
    /// A crashed request's hold stops counting against the customer's quota after it.
    pub fn hold_ttl(mut self, ttl: Duration) -> Self {
        self.client.hold_ttl = ttl;
        self
    }

    /// The longest a usage event the platform accepted keeps counting as pending when no
    /// customer answer has shown the platform counting it (default 60 s,
    /// [`DEFAULT_METERING_LAG`](crate::DEFAULT_METERING_LAG)). It bounds a double count
    /// (a figure that never shows the event: a new period, a plan change) and must exceed the
    /// platform's aggregation delay: past it, an event the platform has still not counted is
    /// no longer held against the quota. See the README's "Quotas that hold".
    pub fn metering_lag(mut self, lag: Duration) -> Self {
        self.client.metering_lag = lag;
        self
    }

    /// How many queued usage events trigger a send at once (default 20).
    pub fn events_flush_at(mut self, events: usize) -> Self {
        self.client.events_flush_at = events;
        self
    }

    /// The most usage events held while the platform is unreachable (default 100,000); past
    /// it, [`enqueue`](crate::AtlasClient::enqueue) answers
    /// [`AtlasError::QueueFull`](crate::AtlasError::QueueFull) rather than drop anything.
    pub fn events_queue_capacity(mut self, events: usize) -> Self {
        self.client.events_queue_capacity = events;
        self
    }

    /// How long feature registrations wait for more checked features before they are sent
    /// together (default 3 s).
    pub fn registration_debounce(mut self, delay: Duration) -> Self {
        self.client.registration_debounce = delay;
        self
    }

    /// Keeps queued usage events in a durable spool in this directory: each is on disk before
    /// [`enqueue`](crate::AtlasClient::enqueue) returns, and after a crash or restart the events not yet
    /// accepted are sent again with their original idempotency keys (the platform counts each
    /// once). Use one directory per process: the spool locks it, and a second process
    /// pointed at it is refused by [`build`](Self::build). The directory is created `0700`
    /// and its files `0600`, opened without following symbolic links; one that another user
    /// owns or others may write to is refused (whoever can write there can bill usage), unless
    /// [`event_spool_shared_dir`](Self::event_spool_shared_dir) allows it.
    pub fn event_spool(mut self, directory: impl Into<std::path::PathBuf>) -> Self {
        self.client.spool = Some(directory.into());
        self
    }

    /// Uses the event spool's directory even when another user owns it or others may write to
    /// it (default: refused). Only for a directory whose other writers you trust.
    pub fn event_spool_shared_dir(mut self, allow: bool) -> Self {
        self.client.spool_shared_dir = allow;
        self
    }

    /// Shares a Redis tier with the other instances of the app (feature `redis`): a cache under
    /// each instance's own, so a customer is fetched from the platform once for the fleet and
    /// an instance started during an outage still has the last known data; and a durable
    /// queue of usage events every instance drains, so an instance that dies loses none; and
    /// limits that hold for the fleet: `exclusive` guards take a lock in Redis, and quota
    /// features' pending usage and reservations are one ledger for every instance. Redis
    /// faults never fail a request: the tier is skipped until Redis answers again (each
    /// instance then holds limits alone). A URL that does not parse is refused by
    /// [`build`](Self::build).
    ///
    /// ```
    /// let builder = atlas_actix::Atlas::builder().redis_url("redis://127.0.0.1:6379/0");
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.client.redis_url = Some(url.into());
        self
    }

    /// How long a usage event read from the Redis stream by an instance may stay unsent before
    /// another instance takes it over (default 10 s): the time to notice a dead instance.
    #[cfg(feature = "redis")]
    pub fn redis_reclaim_after(mut self, idle: Duration) -> Self {
        self.client.redis_reclaim_after = idle;
        self
    }

    /// The longest [`shutdown`](crate::AtlasClient::shutdown) waits for queued events to be sent
    /// (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.client.shutdown_timeout = timeout;
        self
    }

    /// How the Atlas scope and the guards tell who the user of a request is: a function from
    /// the request to the Atlas customer id (a user id, or an organisation id so every member
    /// shares its plan), or `ClerkAuth`. Without one, the scope's user
    /// routes and the guards answer 500 and log that it is missing.
    pub fn user_resolver(mut self, resolver: impl UserResolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// A custom answer when a guard refuses a request (no user: [`Denial::Unauthenticated`];
    /// plan without the feature: [`Denial::NotEntitled`]), such as a redirect to the pricing
    /// page. Default: [`Denial::default_response`], JSON.
    ///
    /// ```
    /// use actix_web::{http::header, HttpResponse};
    /// use atlas_actix::{Atlas, Denial};
    ///
    /// let builder = Atlas::builder().deny_with(|_request, denial| match denial {
    ///     Denial::NotEntitled { .. } => HttpResponse::SeeOther()
    ///         .insert_header((header::LOCATION, "/pricing"))
    ///         .finish(),
    ///     other => other.default_response(),
    /// });
    /// ```
    pub fn deny_with<F>(mut self, answer: F) -> Self
    where
        F: Fn(&HttpRequest, &Denial) -> HttpResponse + Send + Sync + 'static,
    {
        self.deny = Some(Arc::new(answer));
        self
    }

    /// The longest an `exclusive` guard waits for the lock another request of the same
    /// customer and features holds (default 5 s); past it, the request answers 503 with
    /// `Retry-After: 1` and does nothing. The lock is held while the handler runs, its
    /// extractors (the body) included: a client trickling its body cannot hold the customer's
    /// other requests longer than this. With the Redis tier the wait covers the fleet's lock
    /// too.
    pub fn exclusive_wait(mut self, wait: Duration) -> Self {
        self.exclusive_wait = wait;
        self
    }

    /// What a guard that reports usage does when the usage cannot be recorded: no customer
    /// data to build its events from (the platform down and nothing known of the customer,
    /// under a fail-open policy), or a full event queue. By default
    /// ([`UnrecordableUsage::Refuse`]) the request answers 503 with `Retry-After` before the
    /// handler runs, so no work goes unbilled; [`UnrecordableUsage::Serve`] runs it anyway,
    /// logging and counting (`atlas_usage_unrecorded_total`) each request.
    ///
    /// A full disk under the spool is not such a case: the events are kept in memory and
    /// sent, and readiness fails until the spool writes again.
    pub fn unrecordable_usage(mut self, choice: UnrecordableUsage) -> Self {
        self.unrecordable_usage = choice;
        self
    }

    /// How long this process remembers a request's `Idempotency-Key` (default 10 minutes),
    /// for guards that report usage. Within it, the same request again (method, path and
    /// query, body) gets the first answer (with `Idempotent-Replayed: true`) or, while the
    /// first runs, 409 with `Retry-After`; another request with the key answers 422. Either
    /// way nothing runs or is billed again. After it, a repeat runs again and its usage is
    /// still billed once, by the event's idempotency key.
    ///
    /// The body of such a request is read before the check (at most 2 MiB, within 10 s) to
    /// bind the key to it.
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// The largest request body the Atlas scope reads (default 64 KiB); larger ones answer
    /// 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The origins (`https://app.example.com`) of the app's frontend, besides the app's own.
    /// A state-changing request authenticated by a cookie (the Atlas scope's `POST` routes, a
    /// guard that reports usage) must come from one of them, or it is refused with 403: a page
    /// on another site can make a browser send such a request with the user's cookies
    /// (cross-site request forgery). Requests with a bearer token are not affected. Give the
    /// same origins as the CORS layer.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allowed_origins = AllowedOrigins::new(origins);
        self
    }

    /// How many requests each caller (the user, else the client address) may make to the
    /// scope's routes that need no user, `features/register` and `sdk-version`, per `period`
    /// (default 30 a minute); more answer 429.
    pub fn public_rate_limit(mut self, requests: u32, period: Duration) -> Self {
        self.public_rate_limit = (requests, period);
        self
    }

    /// Strict mode, for CI: when the pricing model loads and the code names a feature it does
    /// not have, registers a limit callback for a feature no plan limits, or reports usage of
    /// one no plan meters (see [`AtlasClient::findings`](crate::AtlasClient::findings)), the
    /// client fails instead of warning: [`status`](crate::AtlasClient::status) and every call
    /// answer [`AtlasError::Misconfigured`](crate::AtlasError::Misconfigured). Default: off
    /// (each finding is logged once, at warn).
    pub fn strict(mut self, strict: bool) -> Self {
        self.client.strict = strict;
        self
    }

    /// What entitlement checks do while the platform cannot answer (default
    /// [`OutagePolicy::FailClosed`]: guarded routes answer 503).
    ///
    /// ```
    /// use std::time::Duration;
    /// use atlas_actix::{Atlas, OutagePolicy};
    ///
    /// let builder = Atlas::builder()
    ///     .outage_policy(OutagePolicy::ServeStale { max_age: Duration::from_secs(3600) })
    ///     .feature_outage_policy("status-page", OutagePolicy::FailOpen);
    /// ```
    pub fn outage_policy(mut self, policy: OutagePolicy) -> Self {
        self.client.outage.default = policy;
        self
    }

    /// The outage policy of one feature, instead of the default one.
    pub fn feature_outage_policy(
        mut self,
        feature: impl Into<String>,
        policy: OutagePolicy,
    ) -> Self {
        self.client
            .outage
            .per_feature
            .insert(feature.into(), policy);
        self
    }

    /// Whether to keep the socket.io link through which the platform pushes invalidations, so
    /// a change (an upgrade, a plan edited in the dashboard) shows on the next request
    /// (default `true`). Without it, cache TTLs alone bound staleness.
    pub fn push_invalidation(mut self, enabled: bool) -> Self {
        self.client.push_invalidation = enabled;
        self
    }

    /// Trusts this certificate authority (DER) besides the public roots, for a platform behind
    /// a private CA, or a local one in tests.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.client.root_certificates.push(der.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BuildError;

    #[test]
    fn debug_hides_the_key() {
        let builder = AtlasBuilder::default().api_key("sk_live_very_secret");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("very_secret"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn options_are_checked() {
        let zero = AtlasBuilder::default()
            .api_key("k")
            .timeout(Duration::ZERO)
            .build();
        assert!(matches!(
            zero,
            Err(BuildError::InvalidOption {
                option: "timeout",
                ..
            })
        ));
        let url = AtlasBuilder::default()
            .api_key("k")
            .base_url("nope")
            .build();
        assert!(matches!(url, Err(BuildError::InvalidUrl { .. })));
    }
}
