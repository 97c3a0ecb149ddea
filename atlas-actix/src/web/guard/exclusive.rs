//! Exclusive guards: the check of a limited feature and the handler that uses it, as one step
//! per customer and feature in this process.
//!
//! A limit check reads the customer's usage (the app's `limit!` callback) and the handler then
//! adds to it. Two requests checked at once both see room for one more and both add: 200
//! concurrent "add a seat" requests against a limit of 10 end above 10. An exclusive guard
//! holds a lock, one per customer and feature set, from before the check until the handler
//! has answered, so the next request's check counts what the previous one added. Requests of
//! other customers, and other features, do not wait.
//!
//! With the Redis tier (`AtlasBuilder::redis_url`), the lock is the fleet's: once a request
//! holds its process's lock, it takes the customer and features' lock in Redis (see
//! `client::fleet::redis::lock` for the lease and its renewal), within the same wait. Redis
//! unavailable, the process's lock is all there is (the tier logs it): a fleet of N may then
//! run N such handlers of one customer at once. An app that needs a guarantee no lease can
//! give holds the limit in its database too: insert and count in one transaction, or a
//! constraint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::client::fleet::{FleetLock, FleetTier};
use crate::client::keys;

/// The locks, by key; an entry lives while someone holds or waits for it.
#[derive(Debug)]
pub(crate) struct ExclusiveLocks {
    /// The longest a request waits for a lock.
    wait: std::time::Duration,
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

/// A held lock; dropping it lets the next request of the same customer and features in.
#[derive(Debug)]
pub(crate) struct Lease {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
    /// The fleet's lock, taken once the process's is: released first.
    fleet: Option<FleetLock>,
}

impl ExclusiveLocks {
    pub(crate) fn new(wait: std::time::Duration) -> Self {
        Self {
            wait,
            locks: Arc::default(),
        }
    }

    /// Waits for the lock of `customer` and `features`, in this process and then in the fleet,
    /// at most the configured wait in all; `None` when another request held it all that time.
    pub(crate) async fn acquire(
        &self,
        fleet: &FleetTier,
        customer: &str,
        features: &[&str],
    ) -> Option<Lease> {
        let started = std::time::Instant::now();
        let mut lease = self.acquire_here(customer, features).await?;
        let parts: Vec<&str> = std::iter::once(customer)
            .chain(features.iter().copied())
            .collect();
        let left = self.wait.saturating_sub(started.elapsed());
        lease.fleet = Some(fleet.lock(&parts, left).await?);
        Some(lease)
    }

    /// The process's lock alone.
    async fn acquire_here(&self, customer: &str, features: &[&str]) -> Option<Lease> {
        let parts: Vec<&str> = std::iter::once(customer)
            .chain(features.iter().copied())
            .collect();
        let key = keys::compose(&parts);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let guard = tokio::time::timeout(self.wait, lock.lock_owned()).await;
        let lease = Lease {
            key,
            guard: guard.ok(),
            locks: Arc::clone(&self.locks),
            fleet: None,
        };
        // Dropped without the lock, the lease still forgets the entry if nobody else has it.
        lease.guard.is_some().then_some(lease)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.fleet = None;
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Nobody else holds or waits for it (the map's handle is the last): forget it, so
        // the map stays as small as the requests under way.
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[actix_rt::test]
    async fn one_holder_per_key_and_no_entry_left_behind() {
        let locks = Arc::new(ExclusiveLocks::new(Duration::from_secs(30)));
        let inside = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (locks, inside, most) =
                    (Arc::clone(&locks), Arc::clone(&inside), Arc::clone(&most));
                actix_rt::spawn(async move {
                    let _lease = locks
                        .acquire_here("org_1", &["seats"])
                        .await
                        .expect("the lock");
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        let other = locks
            .acquire_here("org_2", &["seats"])
            .await
            .expect("the lock");
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(locks.len(), 1, "only org_2's lease is left");
        drop(other);
        assert_eq!(locks.len(), 0);
    }

    #[actix_rt::test]
    async fn the_wait_for_a_held_lock_is_bounded() {
        let locks = ExclusiveLocks::new(Duration::from_millis(50));
        let held = locks.acquire_here("org_1", &["seats"]).await.expect("free");
        assert!(
            locks.acquire_here("org_1", &["seats"]).await.is_none(),
            "held past the wait"
        );
        assert!(
            locks.acquire_here("org_2", &["seats"]).await.is_some(),
            "others are free"
        );
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0, "no entry left by the one that gave up");
        assert!(locks.acquire_here("org_1", &["seats"]).await.is_some());
    }
}
