//! What an entitlement check does while the platform is down, unreachable, too slow or
//! answering garbage: a documented, configurable choice, globally and per feature.

use std::collections::HashMap;
use std::time::Duration;

/// How an entitlement check decides when the platform cannot answer.
///
/// Every decision taken under a policy is logged (`warn`), with the customer, the feature and
/// the platform's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutagePolicy {
    /// Refuse: guarded routes answer 503. The default, the safe choice for what is paid for.
    #[default]
    FailClosed,
    /// Serve the last entitlements fetched (stale-if-error) when they are younger than
    /// `max_age`; fail closed without them.
    ServeStale {
        /// How old the last known entitlements may be.
        max_age: Duration,
    },
    /// Allow: the feature stays usable while Atlas is down.
    FailOpen,
}

/// The policy in force for each feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutagePolicies {
    pub(crate) default: OutagePolicy,
    pub(crate) per_feature: HashMap<String, OutagePolicy>,
}

impl OutagePolicies {
    pub(crate) fn of(&self, feature: &str) -> OutagePolicy {
        self.per_feature
            .get(feature)
            .copied()
            .unwrap_or(self.default)
    }
}
