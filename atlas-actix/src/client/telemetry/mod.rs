//! What the SDK tells an operator: metrics through the `metrics` facade (the app picks the
//! exporter; the quickstart serves Prometheus text at `/metrics`). Labels stay bounded: a
//! feature id from the code, an operation name, a status; never a customer, a user or a path.
//!
//! A recorder must be installed before the client is built: the caches bind their counters
//! once, at construction.
//!
//! The counters every request moves (checks, cache look-ups) are [`HotCounters`]: each thread
//! adds to its own cache line, and the sums are handed to the recorder every second and on
//! [`publish`]. A counter that every worker adds to directly bounces its cache line between
//! the cores on each request, which measurably slowed a guarded route that does little else.

pub(crate) mod health;
pub(crate) mod otel;
pub(crate) mod per_thread;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram, Counter, Gauge};

use crate::client::telemetry::per_thread::PerOwner;

pub(crate) const CHECKS: &str = "atlas_checks_total";
pub(crate) const CACHE_REQUESTS: &str = "atlas_cache_requests_total";
pub(crate) const PLATFORM_REQUESTS: &str = "atlas_platform_requests_total";
pub(crate) const PLATFORM_DURATION: &str = "atlas_platform_request_duration_seconds";
pub(crate) const EVENTS_QUEUED: &str = "atlas_events_queued";
pub(crate) const EVENTS_SENT: &str = "atlas_events_sent_total";
pub(crate) const EVENTS_FAILED: &str = "atlas_events_failed_total";
pub(crate) const EVENTS_SPOOLED: &str = "atlas_events_spooled";
pub(crate) const EVENTS_STREAM_PENDING: &str = "atlas_events_stream_pending";
pub(crate) const EVENTS_SET_ASIDE: &str = "atlas_events_set_aside_total";
pub(crate) const EVENTS_UNSPOOLED: &str = "atlas_events_unspooled_total";
pub(crate) const USAGE_UNRECORDED: &str = "atlas_usage_unrecorded_total";
pub(crate) const PUSH_CONNECTED: &str = "atlas_push_connected";
pub(crate) const LAST_PLATFORM_SUCCESS: &str = "atlas_last_platform_success_timestamp_seconds";
pub(crate) const OUTAGE_DECISIONS: &str = "atlas_outage_decisions_total";
pub(crate) const CLERK_REFUSALS: &str = "atlas_clerk_refusals_total";
pub(crate) const DECISION_LOG_DROPPED: &str = "atlas_decision_log_dropped_total";

/// Describes every series to the recorder, with its unit.
pub(crate) fn describe() {
    metrics::describe_counter!(
        CHECKS,
        "entitlement checks by feature and result (allowed, denied, unavailable)"
    );
    metrics::describe_counter!(
        CACHE_REQUESTS,
        "cache look-ups by cache and result (hit, miss, stale)"
    );
    metrics::describe_counter!(
        PLATFORM_REQUESTS,
        "Atlas platform requests by operation and status"
    );
    metrics::describe_histogram!(
        PLATFORM_DURATION,
        metrics::Unit::Seconds,
        "Atlas platform request duration, retries included"
    );
    metrics::describe_gauge!(
        EVENTS_QUEUED,
        "usage events queued, not yet accepted by the platform"
    );
    metrics::describe_counter!(EVENTS_SENT, "usage events the platform accepted");
    metrics::describe_counter!(
        EVENTS_FAILED,
        "usage events in sends that failed (kept and retried)"
    );
    metrics::describe_counter!(
        EVENTS_SET_ASIDE,
        "usage events the platform refused one by one, set aside in the dead-letter file and the log"
    );
    metrics::describe_counter!(
        EVENTS_UNSPOOLED,
        "usage events the spool could not write (disk full, I/O error), kept in memory and sent"
    );
    metrics::describe_counter!(
        USAGE_UNRECORDED,
        "guarded requests served without their usage recorded (UnrecordableUsage::Serve)"
    );
    metrics::describe_gauge!(
        EVENTS_SPOOLED,
        "usage events in the durable spool, not yet accepted"
    );
    metrics::describe_gauge!(
        EVENTS_STREAM_PENDING,
        "usage events in the fleet's Redis stream, not yet accepted (with redis_url)"
    );
    metrics::describe_gauge!(
        PUSH_CONNECTED,
        "1 while the push invalidation link is connected"
    );
    metrics::describe_gauge!(
        LAST_PLATFORM_SUCCESS,
        metrics::Unit::Seconds,
        "when the platform last answered, in seconds since the epoch"
    );
    metrics::describe_counter!(
        OUTAGE_DECISIONS,
        "checks decided by an outage policy, by policy and decision"
    );
    metrics::describe_counter!(
        DECISION_LOG_DROPPED,
        "decision log lines dropped because its writer could not keep up"
    );
    metrics::describe_counter!(
        CLERK_REFUSALS,
        "Clerk session tokens refused, by cause (expired, bad_signature, unknown_key, ...)"
    );
}

/// What a check of one feature answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckResult {
    Allowed,
    Denied,
    /// Denied, by a shadow guard that let the request through.
    ShadowDenied,
    Unavailable,
}

/// Thread slots of the hot counters: more than the workers of a small machine, so threads
/// rarely share a slot (sharing is correct, only slower).
const SLOTS: usize = 16;
/// How often the hot counters' sums reach the recorder without a [`publish`].
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot; `usize::MAX` until its first count (a `const` initialiser makes
    /// each access a plain load, with no lazy set-up to check).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn slot() -> usize {
    SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS);
        }
        slot.get()
    })
}

/// One thread slot of `N` counters, alone on its cache lines.
#[repr(align(128))]
struct Slot<const N: usize>([AtomicU64; N]);

struct Hot<const N: usize> {
    slots: [Slot<N>; SLOTS],
    published: [Counter; N],
}

impl<const N: usize> Hot<N> {
    fn publish(&self) {
        for (index, counter) in self.published.iter().enumerate() {
            let sum = self
                .slots
                .iter()
                .map(|slot| slot.0[index].load(Ordering::Relaxed))
                .sum();
            counter.absolute(sum);
        }
    }
}

trait Publish: Send + Sync {
    fn publish(&self);
}

impl<const N: usize> Publish for Hot<N> {
    fn publish(&self) {
        Hot::publish(self);
    }
}

static HOT: Mutex<Vec<Weak<dyn Publish>>> = Mutex::new(Vec::new());

/// Hands every hot counter's sum to the recorder; dropped counters are forgotten.
pub(crate) fn publish() {
    HOT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|hot| match hot.upgrade() {
            Some(hot) => {
                hot.publish();
                true
            }
            None => false,
        });
}

/// `N` counters the hot path adds to, each thread in its own slot.
pub(crate) struct HotCounters<const N: usize>(Arc<Hot<N>>);

impl<const N: usize> HotCounters<N> {
    fn new(published: [Counter; N]) -> Self {
        let hot = Arc::new(Hot {
            slots: std::array::from_fn(|_| Slot(std::array::from_fn(|_| AtomicU64::new(0)))),
            published,
        });
        let weak: Weak<dyn Publish> = Arc::downgrade(&hot) as Weak<Hot<N>>;
        HOT.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(weak);
        static PUBLISHER: Once = Once::new();
        PUBLISHER.call_once(|| {
            let started = std::thread::Builder::new()
                .name("atlas-metrics".into())
                .spawn(|| loop {
                    std::thread::sleep(PUBLISH_EVERY);
                    publish();
                });
            if let Err(err) = started {
                tracing::warn!(%err, "metrics are published only on demand: no thread for it");
            }
        });
        Self(hot)
    }

    /// Adds one to counter `index`.
    pub(crate) fn increment(&self, index: usize) {
        self.0.slots[slot()].0[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// The most features whose check counters are kept bound; checks of others (ids an app makes
/// up at run time) look their counter up each time.
const BOUND_FEATURES: usize = 1_000;

static NEXT_CHECK_COUNTERS: AtomicU64 = AtomicU64::new(0);

type FeatureCounters = Arc<HotCounters<4>>;

thread_local! {
    /// Each thread's copy of the bound counters, by client and feature: a check finds its
    /// counters without taking a lock every worker shares.
    static BOUND: RefCell<PerOwner<FeatureCounters>> = RefCell::new(PerOwner::default());
}

/// The check counters of each feature, bound at its first check.
pub(crate) struct CheckCounters {
    id: u64,
    bound: Mutex<HashMap<String, FeatureCounters>>,
}

impl Default for CheckCounters {
    fn default() -> Self {
        Self {
            id: NEXT_CHECK_COUNTERS.fetch_add(1, Ordering::Relaxed),
            bound: Mutex::default(),
        }
    }
}

impl CheckCounters {
    pub(crate) fn record(&self, feature: &str, result: CheckResult) {
        let index = result as usize;
        let counted = BOUND.with(|bound| {
            let bound = bound.borrow();
            let counters = bound
                .get(self.id)
                .and_then(|features| features.get(feature));
            counters.map(|counters| counters.increment(index)).is_some()
        });
        if counted {
            return;
        }
        let counters = {
            let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
            match bound.get(feature) {
                Some(counters) => Some(Arc::clone(counters)),
                None if bound.len() < BOUND_FEATURES => {
                    let counters = Arc::new(HotCounters::new(check_counters(feature)));
                    bound.insert(feature.to_owned(), Arc::clone(&counters));
                    Some(counters)
                }
                None => None,
            }
        };
        let Some(counters) = counters else {
            check_counters(feature)[index].increment(1);
            return;
        };
        counters.increment(index);
        BOUND.with(|bound| {
            bound
                .borrow_mut()
                .entry(self.id)
                .insert(feature.to_owned(), counters);
        });
    }
}

fn check_counters(feature: &str) -> [Counter; 4] {
    let with = |result: &'static str| counter!(CHECKS, "feature" => feature.to_owned(), "result" => result);
    [
        with("allowed"),
        with("denied"),
        counter!(CHECKS, "feature" => feature.to_owned(), "result" => "denied", "shadow" => "true"),
        with("unavailable"),
    ]
}

/// The look-up counters of one cache: hit, miss, stale, revalidating.
pub(crate) struct CacheCounters(HotCounters<4>);

impl CacheCounters {
    pub(crate) fn new(cache: &'static str) -> Self {
        Self(HotCounters::new([
            counter!(CACHE_REQUESTS, "cache" => cache, "result" => "hit"),
            counter!(CACHE_REQUESTS, "cache" => cache, "result" => "miss"),
            counter!(CACHE_REQUESTS, "cache" => cache, "result" => "stale"),
            counter!(CACHE_REQUESTS, "cache" => cache, "result" => "revalidating"),
        ]))
    }

    pub(crate) fn hit(&self) {
        self.0.increment(0);
    }

    pub(crate) fn miss(&self) {
        self.0.increment(1);
    }

    pub(crate) fn stale(&self) {
        self.0.increment(2);
    }

    pub(crate) fn revalidating(&self) {
        self.0.increment(3);
    }
}

/// One platform request, its retries included: `status` is the HTTP status, or `timeout`,
/// `unreachable`.
pub(crate) fn platform_request(operation: &'static str, status: String, took: Duration) {
    counter!(PLATFORM_REQUESTS, "operation" => operation, "status" => status).increment(1);
    histogram!(PLATFORM_DURATION, "operation" => operation).record(took.as_secs_f64());
}

/// Seconds since the epoch, now.
pub(crate) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

pub(crate) fn platform_answered(at: f64) {
    gauge!(LAST_PLATFORM_SUCCESS).set(at);
}

/// The event queue's gauges, bound once: they move on every usage-reporting request.
pub(crate) struct QueueGauges {
    queued: Gauge,
    spooled: Option<Gauge>,
}

impl QueueGauges {
    pub(crate) fn new(spooled: bool) -> Self {
        Self {
            queued: gauge!(EVENTS_QUEUED),
            spooled: spooled.then(|| gauge!(EVENTS_SPOOLED)),
        }
    }

    pub(crate) fn set(&self, queued: usize) {
        self.queued.set(queued as f64);
        if let Some(spooled) = &self.spooled {
            spooled.set(queued as f64);
        }
    }
}

/// Events in the fleet's Redis stream, not yet accepted: the fleet's backlog, apart from
/// each instance's spool.
#[cfg(feature = "redis")]
pub(crate) fn events_stream_pending(count: usize) {
    gauge!(EVENTS_STREAM_PENDING).set(count as f64);
}

pub(crate) fn events_sent(count: usize) {
    counter!(EVENTS_SENT).increment(count as u64);
}

pub(crate) fn events_failed(count: usize) {
    counter!(EVENTS_FAILED).increment(count as u64);
}

pub(crate) fn events_set_aside(count: usize) {
    counter!(EVENTS_SET_ASIDE).increment(count as u64);
}

pub(crate) fn events_unspooled(count: usize) {
    counter!(EVENTS_UNSPOOLED).increment(count as u64);
}

#[cfg(feature = "clerk")]
pub(crate) fn clerk_refusal(cause: &'static str) {
    counter!(CLERK_REFUSALS, "cause" => cause).increment(1);
}

pub(crate) fn decision_log_dropped() {
    counter!(DECISION_LOG_DROPPED).increment(1);
}

pub(crate) fn usage_unrecorded() {
    counter!(USAGE_UNRECORDED).increment(1);
}

pub(crate) fn push_connected(connected: bool) {
    gauge!(PUSH_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

pub(crate) fn outage_decision(policy: &'static str, decision: &'static str) {
    counter!(OUTAGE_DECISIONS, "policy" => policy, "decision" => decision).increment(1);
}
