//! What the instances of a fleet share: the Redis tier when the `redis` feature is on and a
//! URL is set ([`fleet`](crate::client::fleet)), else nothing, and each call does what a lone instance
//! does (fetch from the platform, queue events locally). The rest of the client calls these
//! methods and never asks which.

#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::hooks::Hooks;
use crate::client::platform::api::PlatformApi;
use crate::client::telemetry::health::TierHealth;
use crate::error::AtlasError;
use crate::models::UsageEvent;

/// A platform read's place in the shared tier.
// Without the `redis` feature there is no tier to place reads in: callers still name them.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) enum FleetKey {
    /// Data about one customer: invalidated with the customer.
    Customer {
        customer_id: String,
        kind: &'static str,
        id: String,
    },
    /// Merchant-wide data (the merchant, the pricing model, subscriptions).
    Merchant { kind: &'static str, id: String },
}

impl FleetKey {
    pub(crate) fn customer(customer_id: &str, kind: &'static str, id: &str) -> Self {
        Self::Customer {
            customer_id: customer_id.to_owned(),
            kind,
            id: id.to_owned(),
        }
    }

    pub(crate) fn merchant(kind: &'static str, id: &str) -> Self {
        Self::Merchant {
            kind,
            id: id.to_owned(),
        }
    }
}

/// An exclusive guard's hold on the fleet: the Redis lock, or none (no tier, or Redis
/// unavailable: the guard's lock in its process is all there is).
#[derive(Debug)]
pub(crate) enum FleetLock {
    Alone,
    #[cfg(feature = "redis")]
    /// Kept until the guard's handler answered: dropping it releases the lock.
    Held {
        lease: redis::lock::FleetLease,
    },
}

impl FleetLock {
    /// Gives the lock back; the handle ends once the fleet has it back.
    pub(crate) fn release(self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Self::Alone => None,
            #[cfg(feature = "redis")]
            Self::Held { lease } => lease.release(),
        }
    }

    /// Whether it still holds the fleet's lock (its lease was renewed in time).
    pub(crate) fn is_live(&self) -> bool {
        match self {
            Self::Alone => false,
            #[cfg(feature = "redis")]
            Self::Held { lease } => lease.is_live(),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct FleetTier {
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<std::sync::Arc<redis::RedisTier>>,
}

impl FleetTier {
    #[cfg(feature = "redis")]
    fn tier_key(fleet: &redis::RedisTier, key: &FleetKey) -> redis::RedisKey {
        match key {
            FleetKey::Customer {
                customer_id,
                kind,
                id,
            } => fleet.customer_key(customer_id, kind, id),
            FleetKey::Merchant { kind, id } => fleet.merchant_key(kind, id),
        }
    }

    /// `fetch`, or a fresh value another instance fetched.
    pub(crate) async fn read_through<T, F, Fut>(
        &self,
        key: FleetKey,
        ttl: Duration,
        fetch: F,
    ) -> Result<T, AtlasError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AtlasError>>,
    {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return fleet
                .read_through(Self::tier_key(fleet, &key), ttl, fetch)
                .await;
        }
        let _ = (key, ttl);
        fetch().await
    }

    /// The last value any instance fetched, if younger than `max_age`.
    pub(crate) async fn read_stale<T: DeserializeOwned>(
        &self,
        key: FleetKey,
        max_age: Duration,
    ) -> Option<T> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return fleet
                .read_stale(&Self::tier_key(fleet, &key), max_age)
                .await;
        }
        let _ = (key, max_age);
        None
    }

    pub(crate) async fn invalidate_customer(&self, customer_id: &str) {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            fleet.invalidate_customer(customer_id).await;
        }
        let _ = customer_id;
    }

    pub(crate) async fn invalidate_merchant(&self) {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            fleet.invalidate_merchant().await;
        }
    }

    /// Puts the events in the shared queue; `false` when there is none, or it is unavailable
    /// (then they go to the local queue).
    pub(crate) async fn append_events(&self, events: &[UsageEvent]) -> bool {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return fleet.events.append(fleet, events).await;
        }
        let _ = events;
        false
    }

    /// Sends events from the shared queue to the platform until it is empty (or `rounds`
    /// batches went); the number sent.
    pub(crate) async fn drain(
        &self,
        api: &PlatformApi,
        hooks: &Hooks,
        rounds: usize,
    ) -> Result<usize, AtlasError> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            let mut sent = 0;
            for _ in 0..rounds {
                match fleet.events.drain_once(fleet, api, hooks).await? {
                    0 => break,
                    batch => sent += batch,
                }
            }
            return Ok(sent);
        }
        let _ = (api, hooks, rounds);
        Ok(0)
    }

    /// Whether a shared tier (Redis) is configured.
    pub(crate) fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        if self.redis.is_some() {
            return true;
        }
        false
    }

    /// Where the fleet's shared state lives, for logs (`redis 127.0.0.1:6379`, never the
    /// URL's credentials), if anywhere.
    pub(crate) fn describe(&self) -> Option<String> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return Some(format!("redis {}", fleet.address()));
        }
        None
    }

    /// Leaves the shared queue's group at shutdown (kept while this instance still holds
    /// entries, which another instance then reclaims).
    pub(crate) async fn leave(&self) {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            fleet.events.leave(fleet).await;
        }
    }

    /// Waits at most `wait` for the fleet's lock of `parts`; `None` when another instance
    /// held it all that time.
    pub(crate) async fn lock(&self, parts: &[&str], wait: Duration) -> Option<FleetLock> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return match fleet.lock(parts, wait).await {
                redis::lock::Locked::Held(lease) => Some(FleetLock::Held { lease }),
                redis::lock::Locked::Busy => None,
                redis::lock::Locked::Unavailable => Some(FleetLock::Alone),
            };
        }
        let _ = (parts, wait);
        Some(FleetLock::Alone)
    }

    /// The tier's state for health: `None` without one.
    pub(crate) fn state(&self) -> Option<TierHealth> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.redis {
            return Some(if fleet.is_up() {
                TierHealth::Up
            } else {
                TierHealth::Down
            });
        }
        None
    }
}
