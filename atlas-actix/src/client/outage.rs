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

/// How long [`OutagePolicy::ServeStale`] serves the last known entitlements when read from a
/// name without an age (`serve-stale`): an hour.
pub const DEFAULT_STALE_AGE: Duration = Duration::from_secs(3600);

/// Reads a policy from configuration: `fail-closed`, `fail-open`, `serve-stale` (for
/// [`DEFAULT_STALE_AGE`]) or `serve-stale:<seconds>`.
///
/// ```
/// use atlas_actix::OutagePolicy;
/// use std::time::Duration;
///
/// assert_eq!("fail-open".parse(), Ok(OutagePolicy::FailOpen));
/// assert_eq!(
///     "serve-stale:600".parse(),
///     Ok(OutagePolicy::ServeStale { max_age: Duration::from_secs(600) })
/// );
/// assert!("fail-close".parse::<OutagePolicy>().is_err());
/// ```
/// Text that names no [`OutagePolicy`] (its `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseOutagePolicyError {
    /// Not one of the policies' names.
    #[error("unknown outage policy {0:?}: use fail-closed, serve-stale, serve-stale:<seconds> or fail-open")]
    Unknown(String),
    /// `serve-stale:` with something other than a number of seconds above zero.
    #[error("not a number of seconds above zero: {0:?}")]
    BadMaxAge(String),
}

impl std::str::FromStr for OutagePolicy {
    type Err = ParseOutagePolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().split_once(':') {
            None if text.trim() == "fail-closed" => Ok(Self::FailClosed),
            None if text.trim() == "fail-open" => Ok(Self::FailOpen),
            None if text.trim() == "serve-stale" => Ok(Self::ServeStale {
                max_age: DEFAULT_STALE_AGE,
            }),
            Some(("serve-stale", seconds)) => seconds
                .parse::<u64>()
                .ok()
                .filter(|seconds| *seconds > 0)
                .map(|seconds| Self::ServeStale {
                    max_age: Duration::from_secs(seconds),
                })
                .ok_or_else(|| ParseOutagePolicyError::BadMaxAge(seconds.to_owned())),
            _ => Err(ParseOutagePolicyError::Unknown(text.to_owned())),
        }
    }
}

/// The policy's name as [`FromStr`](std::str::FromStr) reads it: `fail-closed`,
/// `serve-stale:<seconds>`, `fail-open`.
impl std::fmt::Display for OutagePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FailClosed => f.write_str("fail-closed"),
            Self::ServeStale { max_age } => write!(f, "serve-stale:{}", max_age.as_secs()),
            Self::FailOpen => f.write_str("fail-open"),
        }
    }
}

/// The policy in force for each feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutagePolicies {
    pub(crate) default: OutagePolicy,
    pub(crate) per_feature: HashMap<String, OutagePolicy>,
}

impl OutagePolicies {
    /// The longest any policy serves stale data, if one does.
    pub(crate) fn longest_stale(&self) -> Option<std::time::Duration> {
        std::iter::once(&self.default)
            .chain(self.per_feature.values())
            .filter_map(|policy| match policy {
                OutagePolicy::ServeStale { max_age } => Some(*max_age),
                _ => None,
            })
            .max()
    }

    /// The default, and how many features have their own: for the start-up line.
    pub(crate) fn summary(&self) -> String {
        match self.per_feature.len() {
            0 => self.default.to_string(),
            n => format!("{} ({n} features with their own)", self.default),
        }
    }

    pub(crate) fn of(&self, feature: &str) -> OutagePolicy {
        self.per_feature
            .get(feature)
            .copied()
            .unwrap_or(self.default)
    }
}
