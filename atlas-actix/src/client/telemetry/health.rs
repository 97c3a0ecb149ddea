//! The client's health: what a readiness probe and a dashboard need to know.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::client::outage::OutagePolicy;
use crate::client::telemetry::{self, now_seconds};
use crate::client::{AtlasClient, PushLink};

/// Without an answer from the platform for this long, a health check asks it.
const PROBE_AFTER: f64 = 10.0;
/// The least time between two probes.
const PROBE_INTERVAL: f64 = 2.0;
/// The longest a health check waits for that probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The push link in a [`Health`] report (serialised in lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LinkHealth {
    /// Invalidations arrive as they happen.
    Connected,
    /// Connecting, for the first time or again.
    Connecting,
    /// Down, reconnecting; cache TTLs bound staleness meanwhile.
    Disconnected,
    /// The platform refused the API key.
    Refused,
    /// Push invalidation is turned off.
    Off,
}

impl LinkHealth {
    /// Whether the link is as it should be: connected, or off on purpose.
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Connected | Self::Off)
    }
}

impl std::fmt::Display for LinkHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Disconnected => "disconnected",
            Self::Refused => "refused",
            Self::Off => "off",
        })
    }
}

impl std::fmt::Display for TierHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Down => "down",
        })
    }
}

/// The Redis tier in a [`Health`] report (serialised in lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TierHealth {
    /// Answering: the fleet shares its cache and events.
    Up,
    /// Skipped until it answers again; not a reason to be unready, since checks and events go
    /// on without it.
    Down,
}

/// The client's health ([`AtlasClient::health`]), as `/readyz` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Health {
    /// Whether checks can be answered: initialised, and the platform answering or the default
    /// outage policy able to decide without it.
    pub ready: bool,
    /// Whether initialisation (merchant check, pricing model) succeeded.
    pub initialised: bool,
    /// Whether the platform answered its last request (and, with push invalidation on, the
    /// push link is connected).
    pub platform_reachable: bool,
    /// When the platform last answered, in seconds since the epoch.
    pub last_platform_success: Option<f64>,
    /// When a platform request last failed, in seconds since the epoch.
    pub last_platform_failure: Option<f64>,
    /// The push link.
    pub push_link: LinkHealth,
    /// Usage events queued in this instance, not yet accepted by the platform.
    pub event_backlog: usize,
    /// Whether usage events can be made durable: `false` while the spool cannot write (a
    /// full disk). Events are then kept in memory and sent, and the instance is not ready.
    pub usage_durable: bool,
    /// The Redis tier, `None` without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<TierHealth>,
    /// What is not working, in words; empty when all is.
    pub failing: Vec<String>,
}

impl AtlasClient {
    /// Hands the latest counts of checks and cache look-ups to the `metrics` recorder.
    ///
    /// Those counters are kept per thread, so that requests on different cores never write
    /// the same memory, and reach the recorder every second on their own. Call this just
    /// before rendering (in the `/metrics` handler) for counts exact to the last request.
    ///
    /// ```no_run
    /// # fn demo(atlas: atlas_actix::Atlas, render: impl Fn() -> String) -> String {
    /// atlas.publish_metrics();
    /// render() // the exporter's text: `PrometheusHandle::render`, say
    /// # }
    /// ```
    pub fn publish_metrics(&self) {
        telemetry::publish();
    }

    /// The client's health. When the platform has not answered for 10 s, or its last request
    /// failed, it is asked (the merchant endpoint, at most 3 s, at most once every 2 s), so a
    /// probe every few seconds notices an outage with no traffic, and the return.
    pub async fn health(&self) -> Health {
        let answer_times = self.inner.api.answer_times();
        let (success, failure) = answer_times.last();
        let now = now_seconds();
        let stale = success.is_none_or(|at| now - at > PROBE_AFTER);
        let failed_last = failure.is_some_and(|failed| success.is_none_or(|at| failed > at));
        // At most one probe every 2 s, however often the probe endpoint is called: anonymous
        // requests must not become platform requests one for one.
        let last_probe = f64::from_bits(self.inner.last_probe.load(Ordering::Relaxed));
        if (stale || failed_last) && now - last_probe >= PROBE_INTERVAL {
            self.inner
                .last_probe
                .store(now.to_bits(), Ordering::Relaxed);
            // Its answer, or its failure, is recorded by the platform API itself.
            let _ = tokio::time::timeout(PROBE_TIMEOUT, self.inner.api.merchant()).await;
        }
        let (success, failure) = answer_times.last();
        let answered = success.is_some_and(|at| failure.is_none_or(|failed| at >= failed));
        let link = self.push_link();
        let push_link = if !self.inner.push_enabled {
            LinkHealth::Off
        } else {
            match link {
                PushLink::Connected => LinkHealth::Connected,
                PushLink::Connecting => LinkHealth::Connecting,
                PushLink::Disconnected { .. } => LinkHealth::Disconnected,
                PushLink::Refused => LinkHealth::Refused,
            }
        };
        let platform_reachable = answered && push_link.is_healthy();
        let initialised = self.inner.ready.load(Ordering::Acquire);
        let mut failing = Vec::new();
        if !initialised {
            failing.push("the client is not initialised".to_owned());
        }
        if !answered {
            failing.push("the Atlas platform does not answer".to_owned());
        }
        if !push_link.is_healthy() {
            failing.push(format!("the push link is {push_link}"));
        }
        let spool_fault = self.inner.events.spool_fault();
        if let Some(fault) = &spool_fault {
            failing.push(format!(
                "the event spool cannot write usage events: {fault}"
            ));
        }
        let policy_serves = self.inner.outage.default != OutagePolicy::FailClosed;
        Health {
            ready: initialised && (platform_reachable || policy_serves) && spool_fault.is_none(),
            usage_durable: spool_fault.is_none(),
            initialised,
            platform_reachable,
            last_platform_success: success,
            last_platform_failure: failure,
            push_link,
            event_backlog: self.inner.events.len(),
            redis: self.inner.fleet.state(),
            failing,
        }
    }
}
