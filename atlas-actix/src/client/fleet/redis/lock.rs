//! Fleet-wide locks for exclusive guards: `SET NX PX` with a random token, renewed while the
//! lease lives, released by a script that checks the token (a lease that expired and was taken
//! by another instance is never released by the first).
//!
//! A lease lasts [`LEASE`] and is renewed every third of it, so a live holder keeps it however
//! long its handler runs, and a dead one's lock is free at most [`LEASE`] after its last
//! renewal. What it cannot guarantee: a holder cut off from Redis (or paused) for longer than
//! the lease loses it while its handler may still run; it logs that it did.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use super::RedisTier;
use crate::client::keys;

/// How long a lease lasts without renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// How often a waiting request tries again: short, as a lock is held for one handler.
const POLL_EVERY: Duration = Duration::from_millis(3);

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW));
static UNLOCK_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(super::UNLOCK));

/// What waiting for a fleet lock came to.
#[derive(Debug)]
pub(crate) enum Locked {
    Held(FleetLease),
    /// Another instance held it for the whole wait.
    Busy,
    /// Redis could not be asked: the caller holds the lock in its process alone.
    Unavailable,
}

/// A fleet lock held: renewed until dropped, then released.
#[derive(Debug)]
pub(crate) struct FleetLease {
    tier: Arc<RedisTier>,
    key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl RedisTier {
    /// Waits at most `wait` for the fleet's lock of `parts`.
    pub(crate) async fn lock(self: &Arc<Self>, parts: &[&str], wait: Duration) -> Locked {
        let key = format!("{}:lock:exclusive:{}", self.namespace, keys::compose(parts));
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + wait;
        loop {
            let taken = self
                .run(|mut connection| {
                    let (key, token) = (key.clone(), token.clone());
                    async move {
                        redis::cmd("SET")
                            .arg(key)
                            .arg(token)
                            .arg("NX")
                            .arg("PX")
                            .arg(LEASE.as_millis() as u64)
                            .query_async::<Option<String>>(&mut connection)
                            .await
                    }
                })
                .await;
            match taken {
                None => return Locked::Unavailable,
                Some(Some(_)) => break,
                Some(None) if Instant::now() >= deadline => return Locked::Busy,
                Some(None) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
        let renewal = tokio::spawn(renew(Arc::clone(self), key.clone(), token.clone()));
        Locked::Held(FleetLease {
            tier: Arc::clone(self),
            key,
            token,
            renewal,
        })
    }
}

async fn renew(tier: Arc<RedisTier>, key: String, token: String) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let renewed = tier
            .run(|mut connection| {
                let (key, token) = (key.clone(), token.clone());
                async move {
                    RENEW_SCRIPT
                        .key(key)
                        .arg(token)
                        .arg(LEASE.as_millis() as u64)
                        .invoke_async::<i64>(&mut connection)
                        .await
                }
            })
            .await;
        match renewed {
            Some(1) => {}
            Some(_) => {
                tracing::warn!("an exclusive guard's fleet lock expired while its handler ran (Redis unreachable or the process paused for longer than the lease): another instance may run the same customer's handler at once");
                return;
            }
            // Redis unavailable for now: the next renewal may still be in time.
            None => {}
        }
    }
}

impl FleetLease {
    /// Whether the lease is still this instance's: its renewal has not given up.
    pub(crate) fn is_live(&self) -> bool {
        !self.renewal.is_finished()
    }
}

impl FleetLease {
    /// Releases the lock; the handle ends once Redis has (or the attempt failed). `None`
    /// outside a runtime (a process ending): the lease then expires by itself.
    pub(crate) fn release(mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.unlock()
    }

    fn unlock(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.renewal.abort();
        if self.key.is_empty() {
            return None;
        }
        let (tier, key, token) = (
            Arc::clone(&self.tier),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move {
            tier.run(|mut connection| async move {
                UNLOCK_SCRIPT
                    .key(key)
                    .arg(token)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await;
        }))
    }
}

impl Drop for FleetLease {
    fn drop(&mut self) {
        self.unlock();
    }
}
