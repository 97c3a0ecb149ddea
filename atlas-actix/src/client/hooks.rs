//! Hooks around checks and usage: the app's code called for every decision and every usage
//! event, synchronously (keep them cheap; hand work to a thread, as the decision log does). A
//! hook that panics is caught and logged, and the answer is the same as without it. With no
//! hook registered, a check pays one branch.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::entitlements::reasons::DenialReason;
use crate::entitlements::LimitOutcome;
use crate::models::UsageEvent;

/// Where the data a decision was made from came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(
    tag = "source",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Provenance {
    /// Fetched from the platform for this check (or by a concurrent check it waited for).
    Fetched,
    /// Fetched by another instance of the fleet and read from the Redis tier.
    Fleet,
    /// From this process's cache, fetched `age_ms` milliseconds before.
    Cached {
        /// How old the customer's data was.
        age_ms: u64,
    },
    /// The platform pushed a change and a refetch was running: the data from before the push,
    /// fetched `age_ms` milliseconds before, served within
    /// [`AtlasBuilder::push_revalidation`](crate::AtlasBuilder::push_revalidation).
    Revalidating {
        /// How old the customer's data was.
        age_ms: u64,
    },
    /// The platform could not answer: the last known data, served by
    /// [`OutagePolicy::ServeStale`](crate::OutagePolicy::ServeStale).
    Stale {
        /// How old it was (`None` when another instance of the fleet had fetched it).
        age_ms: Option<u64>,
    },
    /// The platform could not answer: allowed by
    /// [`OutagePolicy::FailOpen`](crate::OutagePolicy::FailOpen), from no data.
    FailOpen,
}

impl Provenance {
    /// OpenTelemetry's `feature_flag.result.reason` for it.
    pub fn otel_reason(&self) -> &'static str {
        match self {
            Self::Fetched | Self::Fleet => "targeting_match",
            Self::Cached { .. } => "cached",
            Self::Stale { .. } | Self::Revalidating { .. } => "stale",
            Self::FailOpen => "default",
        }
    }
}

/// Who asked for a check: a guard (its route, the request's id, shadow mode) or a direct
/// call (all empty).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CheckOrigin<'a> {
    pub(crate) shadow: bool,
    pub(crate) route: Option<&'a str>,
    pub(crate) request_id: Option<&'a str>,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum CheckDecision {
    /// Every feature is allowed.
    Allowed,
    /// At least one feature is denied (see the reasons).
    Denied,
    /// The platform could not answer and the outage policy failed closed, or the check
    /// failed (see `error`).
    Unavailable,
}

impl CheckDecision {
    /// Its name in the decision log: `allowed`, `denied`, `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One entitlement check, as a hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct CheckRecord<'a> {
    /// The customer (the id the app's resolver returned).
    pub customer: &'a str,
    /// The features checked together.
    pub features: &'a [&'a str],
    /// Units asked for at once.
    pub quantity: f64,
    /// What was decided.
    pub decision: CheckDecision,
    /// Whether each feature is allowed, in the order checked (empty when unavailable).
    pub allowed: &'a [bool],
    /// Why each denied feature is denied.
    pub reasons: &'a [DenialReason],
    /// Where the data came from (`None` when unavailable).
    pub provenance: Option<Provenance>,
    /// What the app's limit callback answered, for each limited feature checked.
    pub limits: &'a [(String, LimitOutcome)],
    /// The error, when unavailable (`error.type` in OpenTelemetry's terms).
    pub error: Option<&'a str>,
    /// How long the check took.
    pub latency: Duration,
    /// Where the check was made: a guard's route (`GET /api/reports`), or `None` for a direct
    /// call.
    pub route: Option<&'a str>,
    /// The request's `X-Request-Id`, when a guard made the check and the request had one.
    pub request_id: Option<&'a str>,
    /// Whether a shadow guard made it (a denial let the request through).
    pub shadow: bool,
}

/// What happened to a usage event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UsageStage {
    /// Queued in this process (and written to the spool, when there is one).
    Queued,
    /// Put in the fleet's Redis stream.
    Streamed,
    /// Accepted by the platform.
    Sent,
    /// Refused by the platform for good, and set aside (the dead-letter file, the log).
    Refused {
        /// The platform's status.
        status: u16,
        /// Its reason.
        reason: String,
    },
    /// Not recorded: the work was served without it (`UnrecordableUsage::Serve`), or it
    /// could not be queued.
    Dropped {
        /// Why.
        why: String,
    },
}

impl UsageStage {
    /// Its name in the decision log: `queued`, `streamed`, `sent`, `refused`, `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Streamed => "streamed",
            Self::Sent => "sent",
            Self::Refused { .. } => "refused",
            Self::Dropped { .. } => "dropped",
        }
    }
}

/// One usage event at one stage, as a hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct UsageRecord<'a> {
    /// The event, as the platform takes it (the customer's and the feature's internal ids).
    pub event: &'a UsageEvent,
    /// What happened to it.
    pub stage: UsageStage,
}

/// Code the app runs at every check and every usage event (register it with
/// [`AtlasBuilder::hook`](crate::AtlasBuilder::hook)). Called synchronously on the request's
/// thread: keep it cheap, and hand slow work to a thread of its own. A panic is caught and
/// logged; the request's answer does not change.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use atlas_actix::{AtlasHook, CheckDecision, CheckRecord};
///
/// #[derive(Default)]
/// struct DenialCounter(AtomicU64);
///
/// impl AtlasHook for DenialCounter {
///     fn on_check(&self, check: &CheckRecord<'_>) {
///         if check.decision == CheckDecision::Denied {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let builder = atlas_actix::Atlas::builder().hook(DenialCounter::default());
/// ```
pub trait AtlasHook: Send + Sync + 'static {
    /// After every entitlement check.
    fn on_check(&self, check: &CheckRecord<'_>) {
        let _ = check;
    }

    /// At every stage of every usage event.
    fn on_usage(&self, usage: &UsageRecord<'_>) {
        let _ = usage;
    }
}

/// The hooks registered, called in order.
#[derive(Clone, Default)]
pub(crate) struct Hooks(Arc<[Arc<dyn AtlasHook>]>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hooks({})", self.0.len())
    }
}

impl Hooks {
    pub(crate) fn new(hooks: Vec<Arc<dyn AtlasHook>>) -> Self {
        Self(hooks.into())
    }

    /// Whether any hook is registered: what the hot path looks at first.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn check(&self, check: &CheckRecord<'_>) {
        for hook in self.0.iter() {
            guarded("on_check", || hook.on_check(check));
        }
    }

    /// Each event at `stage`.
    pub(crate) fn usage(&self, events: &[UsageEvent], stage: impl Fn() -> UsageStage) {
        if self.is_empty() {
            return;
        }
        for event in events {
            let record = UsageRecord {
                event,
                stage: stage(),
            };
            for hook in self.0.iter() {
                guarded("on_usage", || hook.on_usage(&record));
            }
        }
    }
}

fn guarded(which: &'static str, call: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(call)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(hook = which, panic = %message, "an Atlas hook panicked; the answer is unchanged");
    }
}
