//! The client's options, their defaults, and where the environment fills in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::environment::warn_unknown_variables;
#[cfg(feature = "redis")]
use crate::client::fleet::redis::RedisTier;
use crate::client::fleet::FleetTier;
use crate::client::hooks::AtlasHook;
use crate::client::limits::LimitCallback;
use crate::client::outage::OutagePolicies;
use crate::client::platform::transport::{tls_config, ApiKey};
use crate::client::retry::Backoff;
use crate::client::AtlasClient;
use crate::error::BuildError;

/// The public Atlas platform.
pub const DEFAULT_PLATFORM_URL: &str = "https://platform.runonatlas.com";

/// What an [`AtlasClient`] is built from; `AtlasBuilder`'s client half.
pub(crate) struct ClientConfig {
    pub(crate) api_key: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) customer_ttl: Duration,
    pub(crate) push_revalidation: Duration,
    pub(crate) invoice_ttl: Duration,
    pub(crate) credit_usage_ttl: Duration,
    pub(crate) pricing_model_ttl: Duration,
    pub(crate) subscription_ttl: Duration,
    pub(crate) cache_capacity: usize,
    pub(crate) cache_max_bytes: u64,
    pub(crate) allow_unknown_limits: bool,
    pub(crate) limits: HashMap<String, LimitCallback>,
    pub(crate) limit_timeout: Duration,
    pub(crate) events_flush_interval: Duration,
    pub(crate) events_flush_at: usize,
    pub(crate) events_queue_capacity: usize,
    pub(crate) registration_debounce: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) root_certificates: Vec<Vec<u8>>,
    pub(crate) push_invalidation: bool,
    pub(crate) outage: OutagePolicies,
    pub(crate) spool: Option<PathBuf>,
    pub(crate) spool_shared_dir: bool,
    pub(crate) strict: bool,
    pub(crate) hold_ttl: Duration,
    pub(crate) metering_lag: Duration,
    /// The app's own `ATLAS_*` variables, which the start-up check does not report.
    pub(crate) app_variables: Vec<String>,
    /// Called at every check and usage event.
    pub(crate) hooks: Vec<std::sync::Arc<dyn AtlasHook>>,
    #[cfg(feature = "redis")]
    pub(crate) redis_url: Option<String>,
    #[cfg(feature = "redis")]
    pub(crate) redis_reclaim_after: Duration,
}

/// How long a hold on quota (a reservation, or a guard's `usage`) lasts when its request
/// neither reports nor releases it: 5 minutes.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(5 * 60);

/// How long after the platform pushes that a customer changed its previous data may still
/// answer the checks that come while the first check after the push refetches it: 1 s.
pub const DEFAULT_PUSH_REVALIDATION: Duration = Duration::from_secs(1);

/// How long after the platform accepted a usage event it is taken as counted in the
/// platform's figures, at the latest, when no customer answer has shown it: 60 s.
pub const DEFAULT_METERING_LAG: Duration = Duration::from_secs(60);

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: None,
            timeout: Duration::from_secs(10),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            customer_ttl: Duration::from_secs(10),
            push_revalidation: DEFAULT_PUSH_REVALIDATION,
            invoice_ttl: Duration::from_secs(10),
            credit_usage_ttl: Duration::from_secs(10),
            pricing_model_ttl: Duration::from_secs(5 * 60),
            subscription_ttl: Duration::from_secs(5 * 60),
            cache_capacity: 100_000,
            cache_max_bytes: 256 << 20,
            allow_unknown_limits: false,
            limits: HashMap::new(),
            limit_timeout: Duration::from_secs(5),
            events_flush_interval: Duration::from_secs(3),
            events_flush_at: 20,
            events_queue_capacity: 100_000,
            registration_debounce: Duration::from_secs(3),
            shutdown_timeout: Duration::from_secs(10),
            root_certificates: Vec::new(),
            push_invalidation: true,
            outage: OutagePolicies::default(),
            spool: None,
            spool_shared_dir: false,
            strict: false,
            hold_ttl: DEFAULT_HOLD_TTL,
            metering_lag: DEFAULT_METERING_LAG,
            app_variables: Vec::new(),
            hooks: Vec::new(),
            #[cfg(feature = "redis")]
            redis_url: None,
            #[cfg(feature = "redis")]
            redis_reclaim_after: Duration::from_secs(10),
        }
    }
}

/// The environment variable's value, an empty one counting as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl ClientConfig {
    /// Checks the options, fills in the environment, and starts the client.
    pub(crate) fn start(self) -> Result<AtlasClient, BuildError> {
        warn_unknown_variables(&self.app_variables);
        let api_key = self
            .api_key
            .clone()
            .filter(|key| !key.is_empty())
            .or_else(|| env("ATLAS_API_KEY"))
            .ok_or(BuildError::MissingApiKey)?;
        let base_url = self
            .base_url
            .clone()
            .or_else(|| env("ATLAS_HOST"))
            .unwrap_or_else(|| DEFAULT_PLATFORM_URL.to_owned());
        let base_url = check_url(&base_url)?;
        if self.timeout.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "timeout",
                reason: "must be above zero".to_owned(),
            });
        }
        if self.hold_ttl.is_zero() {
            return Err(BuildError::InvalidOption {
                option: "hold_ttl",
                reason: "must be above zero".to_owned(),
            });
        }
        if self.events_queue_capacity == 0 {
            return Err(BuildError::InvalidOption {
                option: "events_queue_capacity",
                reason: "must be above zero".to_owned(),
            });
        }
        let tls = tls_config(&self.root_certificates)?;
        let fleet = self.fleet_tier(&base_url, &api_key)?;
        AtlasClient::start(self, ApiKey::new(api_key), base_url, tls, fleet)
    }

    /// The fleet tier, when a Redis URL is set.
    #[cfg(feature = "redis")]
    fn fleet_tier(&self, base_url: &str, api_key: &str) -> Result<FleetTier, BuildError> {
        let Some(url) = &self.redis_url else {
            return Ok(FleetTier::default());
        };
        // Kept after the platform's answers, for stale-if-error: as long as a policy serves
        // stale data, else an hour.
        let stale_for = self
            .outage
            .longest_stale()
            .unwrap_or(Duration::from_secs(3600));
        let fleet = RedisTier::new(url, base_url, api_key, stale_for, self.redis_reclaim_after)
            .map_err(|reason| BuildError::InvalidOption {
                option: "redis_url",
                reason,
            })?;
        Ok(FleetTier {
            redis: Some(std::sync::Arc::new(fleet)),
        })
    }

    #[cfg(not(feature = "redis"))]
    fn fleet_tier(&self, _base_url: &str, _api_key: &str) -> Result<FleetTier, BuildError> {
        Ok(FleetTier::default())
    }
}

/// Checks that the URL is absolute http(s) with a host and no query, and strips a trailing
/// slash.
fn check_url(url: &str) -> Result<String, BuildError> {
    let invalid = |reason: &str| BuildError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: awc::http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("it must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert_eq!(
            check_url("https://platform.runonatlas.com/").unwrap(),
            "https://platform.runonatlas.com"
        );
        assert_eq!(
            check_url("http://127.0.0.1:4010").unwrap(),
            "http://127.0.0.1:4010"
        );
        for bad in [
            "platform.runonatlas.com",
            "ftp://x",
            "http://",
            "https://x?y=1",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
