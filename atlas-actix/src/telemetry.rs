//! What the SDK tells an operator: metrics through the `metrics` facade (the app picks the
//! exporter; the quickstart serves Prometheus text at `/metrics`). Labels stay bounded: a
//! feature id from the code, an operation name, a status; never a customer, a user or a path.
//!
//! A recorder must be installed before the client is built: the caches bind their counters
//! once, at construction, so a check costs an atomic add, not a registry look-up.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram, Counter};

pub(crate) const CHECKS: &str = "atlas_checks_total";
pub(crate) const CACHE_REQUESTS: &str = "atlas_cache_requests_total";
pub(crate) const PLATFORM_REQUESTS: &str = "atlas_platform_requests_total";
pub(crate) const PLATFORM_DURATION: &str = "atlas_platform_request_duration_seconds";
pub(crate) const EVENTS_QUEUED: &str = "atlas_events_queued";
pub(crate) const EVENTS_SENT: &str = "atlas_events_sent_total";
pub(crate) const EVENTS_FAILED: &str = "atlas_events_failed_total";
pub(crate) const EVENTS_SPOOLED: &str = "atlas_events_spooled";
pub(crate) const PUSH_CONNECTED: &str = "atlas_push_connected";
pub(crate) const LAST_PLATFORM_SUCCESS: &str = "atlas_last_platform_success_timestamp_seconds";
pub(crate) const OUTAGE_DECISIONS: &str = "atlas_outage_decisions_total";

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
    metrics::describe_gauge!(
        EVENTS_SPOOLED,
        "usage events in the durable spool, not yet accepted"
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

/// The most features whose check counters are kept bound; checks of others (ids an app makes
/// up at run time) look their counter up each time.
const BOUND_FEATURES: usize = 1_000;

/// The check counters of each feature, bound at its first check: a check then costs a map
/// look-up and an atomic add, not a label allocation and a registry look-up.
#[derive(Default)]
pub(crate) struct CheckCounters(RwLock<HashMap<String, Arc<[Counter; 4]>>>);

impl CheckCounters {
    pub(crate) fn record(&self, feature: &str, result: CheckResult) {
        let index = result as usize;
        if let Some(counters) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(feature)
        {
            counters[index].increment(1);
            return;
        }
        let counters = Arc::new(check_counters(feature));
        counters[index].increment(1);
        let mut bound = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if bound.len() < BOUND_FEATURES {
            bound.entry(feature.to_owned()).or_insert(counters);
        }
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

/// The counters of one cache, bound once.
#[derive(Clone)]
pub(crate) struct CacheCounters {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) stale: Counter,
}

impl CacheCounters {
    pub(crate) fn new(cache: &'static str) -> Self {
        Self {
            hit: counter!(CACHE_REQUESTS, "cache" => cache, "result" => "hit"),
            miss: counter!(CACHE_REQUESTS, "cache" => cache, "result" => "miss"),
            stale: counter!(CACHE_REQUESTS, "cache" => cache, "result" => "stale"),
        }
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

pub(crate) fn events_queued(queued: usize, spooled: bool) {
    gauge!(EVENTS_QUEUED).set(queued as f64);
    if spooled {
        gauge!(EVENTS_SPOOLED).set(queued as f64);
    }
}

pub(crate) fn events_sent(count: usize) {
    counter!(EVENTS_SENT).increment(count as u64);
}

pub(crate) fn events_failed(count: usize) {
    counter!(EVENTS_FAILED).increment(count as u64);
}

pub(crate) fn push_connected(connected: bool) {
    gauge!(PUSH_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

pub(crate) fn outage_decision(policy: &'static str, decision: &'static str) {
    counter!(OUTAGE_DECISIONS, "policy" => policy, "decision" => decision).increment(1);
}
