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
//! run N such handlers of one customer at once. A request that ends while others of its
//! process wait for the same lock hands them the fleet's lease rather than a round trip to
//! Redis each (a customer's requests to one instance would otherwise queue behind Redis), at
//! most [`HANDOVERS`] times in a row, so that other instances get their turn. An app that needs a guarantee no lease can
//! give holds the limit in its database too: insert and count in one transaction, or a
//! constraint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::client::fleet::{FleetLock, FleetTier};
use crate::client::keys;

/// How many requests of one process in a row may use a fleet lease without giving it back.
const HANDOVERS: u32 = 16;

type Locks = Arc<Mutex<HashMap<String, Arc<AsyncMutex<Slot>>>>>;

/// The locks, by key; an entry lives while someone holds or waits for it.
#[derive(Debug)]
pub(crate) struct ExclusiveLocks {
    /// The longest a request waits for a lock.
    wait: std::time::Duration,
    locks: Locks,
}

/// What the process's lock of a key guards: the fleet's lease, while handed from request to
/// request.
#[derive(Debug, Default)]
struct Slot {
    fleet: Option<FleetLock>,
    handed: u32,
    /// A lease given back after its handovers: the next request waits until Redis has it, so
    /// its own attempt is not refused by the lease it follows.
    releasing: Option<tokio::task::JoinHandle<()>>,
}

/// A held lock; dropping it lets the next request of the same customer and features in.
#[derive(Debug)]
pub(crate) struct Lease {
    key: String,
    guard: Option<OwnedMutexGuard<Slot>>,
    locks: Locks,
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
        let slot = lease.guard.as_mut()?;
        if slot.fleet.as_ref().is_some_and(FleetLock::is_live) {
            return Some(lease);
        }
        slot.fleet = None;
        slot.handed = 0;
        if let Some(released) = slot.releasing.take() {
            let _ = released.await;
        }
        let parts: Vec<&str> = std::iter::once(customer)
            .chain(features.iter().copied())
            .collect();
        let left = self.wait.saturating_sub(started.elapsed());
        slot.fleet = Some(fleet.lock(&parts, left).await?);
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
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut slot) = self.guard.take() {
            // The map's handle and this guard's, and one more per request waiting.
            let waiting = locks
                .get(&self.key)
                .is_some_and(|lock| Arc::strong_count(lock) > 2);
            if waiting && slot.handed < HANDOVERS {
                slot.handed += 1;
            } else {
                slot.releasing = slot.fleet.take().and_then(FleetLock::release);
            }
        }
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
