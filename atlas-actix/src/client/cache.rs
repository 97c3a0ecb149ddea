//! In-memory caches of platform data: bounded, with a TTL, request coalescing, and
//! invalidation that beats an in-flight fetch.
//!
//! Storage is a [`quick_cache`] (bounded, concurrent, sharded; evicts with S3-FIFO). The
//! in-flight fetches live beside it in a small map, because quick_cache's placeholder guards
//! cannot express "an invalidation arrived while this fetch was running, so do not store its
//! result": here an invalidation removes the fetch from the map, and a fetch stores its
//! result only while it is still the one registered for its key. Callers that were already
//! waiting get that result (they asked before the invalidation); later callers fetch anew.
//!
//! A pushed invalidation may instead *revalidate* (RFC 5861's stale-while-revalidate, bounded):
//! the first caller after it fetches and waits, as after any invalidation, and callers that
//! come while that fetch runs, within a grace, get the previous value instead of queueing
//! behind the platform's round trip.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::client::telemetry::CacheCounters;
use crate::error::AtlasError;

type Fetch<V> = Shared<BoxFuture<'static, Result<Arc<V>, AtlasError>>>;

struct Slot<V> {
    value: Arc<V>,
    fetched_at: Instant,
    invalidated: bool,
    /// Set by a revalidation: until then, callers that come while the refetch runs may have
    /// this value.
    serve_until: Option<Instant>,
    /// Computed once at insertion: quick_cache weighs entries while it evicts.
    weight: u64,
}

impl<V> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            fetched_at: self.fetched_at,
            invalidated: self.invalidated,
            serve_until: self.serve_until,
            weight: self.weight,
        }
    }
}

#[derive(Clone)]
struct SlotWeight;

impl<K, V> quick_cache::Weighter<K, Slot<V>> for SlotWeight {
    fn weight(&self, _: &K, slot: &Slot<V>) -> u64 {
        slot.weight
    }
}

/// How entries are weighed: by the bytes `weigh` says a value holds, and never below
/// `floor`, so a cache bounded at `floor × entries` bytes also holds at most `entries`.
struct Weighing<V> {
    floor: u64,
    weigh: fn(&V) -> u64,
}

impl<V> Weighing<V> {
    fn of(&self, value: &V) -> u64 {
        (self.weigh)(value).max(self.floor)
    }
}

struct Flight<V> {
    id: u64,
    fetch: Fetch<V>,
}

struct Inner<K, V> {
    ttl: Duration,
    counters: CacheCounters,
    weighing: Weighing<V>,
    entries: quick_cache::sync::Cache<K, Slot<V>, SlotWeight>,
    flights: Mutex<HashMap<K, Flight<V>>>,
    next_flight: AtomicU64,
}

/// A cache of `V` by `K`; cloning it gives another handle to the same cache.
pub(crate) struct Cache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A cache named `name` (its metrics label) holding at most `capacity` entries, each
    /// fresh for `ttl`.
    pub(crate) fn new(name: &'static str, ttl: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self::weighed(name, ttl, capacity, capacity as u64, |_| 0)
    }

    /// A cache as [`new`](Self::new) makes, also bounded at about `max_bytes`, as `weigh`
    /// estimates the bytes each value holds.
    pub(crate) fn weighed(
        name: &'static str,
        ttl: Duration,
        capacity: usize,
        max_bytes: u64,
        weigh: fn(&V) -> u64,
    ) -> Self {
        let capacity = capacity.max(1);
        let max_bytes = max_bytes.max(capacity as u64);
        Self {
            inner: Arc::new(Inner {
                ttl,
                counters: CacheCounters::new(name),
                weighing: Weighing {
                    floor: max_bytes / capacity as u64,
                    weigh,
                },
                entries: quick_cache::sync::Cache::with_weighter(capacity, max_bytes, SlotWeight),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
            }),
        }
    }

    /// How long a value stays fresh.
    pub(crate) fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The value, if cached, not invalidated and younger than the TTL. Takes a borrowed key
    /// (a `&str` for a `String` key): the hot path allocates nothing.
    pub(crate) fn get_fresh<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.get_fresh_aged(key, Instant::now())
            .map(|(value, _)| value)
    }

    /// [`get_fresh`](Self::get_fresh) at `now`, with how long before it the value was
    /// fetched: a check reads the clock once for its customer, its pricing model and its
    /// ledger. A value that landed after `now` is of age zero.
    pub(crate) fn get_fresh_aged<Q>(&self, key: &Q, now: Instant) -> Option<(Arc<V>, Duration)>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let slot = self.inner.entries.get(key)?;
        let age = now.saturating_duration_since(slot.fetched_at);
        let fresh = !slot.invalidated && age < self.inner.ttl;
        if fresh {
            self.inner.counters.hit();
        }
        fresh.then_some((slot.value, age))
    }

    /// The previous value of an entry being [`revalidate`](Self::revalidate)d, with its age:
    /// within the grace, while another caller's refetch runs (counted as `revalidating`).
    /// `None` sends the caller to [`get_or_fetch`](Self::get_or_fetch), which waits.
    pub(crate) fn get_revalidating<Q>(&self, key: &Q) -> Option<(Arc<V>, Duration)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.inner.entries.peek(key)?;
        let within = slot.serve_until.is_some_and(|until| Instant::now() < until);
        if !within || !self.inner.flights().contains_key(key) {
            return None;
        }
        self.inner.counters.revalidating();
        Some((slot.value, slot.fetched_at.elapsed()))
    }

    /// The last value fetched, however old or invalidated, without counting a look-up: for
    /// the client's own bookkeeping (which features the pricing model has), not for serving.
    pub(crate) fn latest(&self, key: &K) -> Option<Arc<V>> {
        self.inner.entries.peek(key).map(|slot| slot.value)
    }

    /// The last value fetched, however old or invalidated, if it is younger than `max_age`:
    /// what a stale-if-error policy may serve while the platform is down (counted as `stale`).
    pub(crate) fn get_stale(&self, key: &K, max_age: Duration) -> Option<Arc<V>> {
        self.get_stale_aged(key, max_age).map(|(value, _)| value)
    }

    /// [`get_stale`](Self::get_stale), with how long ago the value was fetched.
    pub(crate) fn get_stale_aged(&self, key: &K, max_age: Duration) -> Option<(Arc<V>, Duration)> {
        let slot = self.inner.entries.peek(key)?;
        let age = slot.fetched_at.elapsed();
        let young = age < max_age;
        if young {
            self.inner.counters.stale();
        }
        young.then_some((slot.value, age))
    }

    /// The fresh value, or the result of `fetch`, shared with every concurrent caller for the
    /// same key: one upstream call however many ask at once. A failed fetch stores nothing.
    pub(crate) async fn get_or_fetch<F, Fut>(&self, key: K, fetch: F) -> Result<Arc<V>, AtlasError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, AtlasError>> + Send + 'static,
    {
        if let Some(value) = self.get_fresh(&key) {
            return Ok(value);
        }
        let fetch = {
            let mut flights = self.inner.flights();
            // A fetch may have landed between the look-up above and taking the lock.
            if let Some(value) = self.get_fresh(&key) {
                return Ok(value);
            }
            self.inner.counters.miss();
            match flights.get(&key) {
                Some(flight) => flight.fetch.clone(),
                None => {
                    let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
                    let inner = Arc::clone(&self.inner);
                    let landing_key = key.clone();
                    let upstream = fetch();
                    let shared = async move {
                        let result = upstream.await.map(Arc::new);
                        inner.land(&landing_key, id, &result);
                        result
                    }
                    .boxed()
                    .shared();
                    flights.insert(
                        key,
                        Flight {
                            id,
                            fetch: shared.clone(),
                        },
                    );
                    shared
                }
            }
        };
        fetch.await
    }

    /// Marks the entry stale and disowns a fetch in flight, so neither is served as fresh.
    pub(crate) fn invalidate(&self, key: &K) {
        let mut flights = self.inner.flights();
        flights.remove(key);
        self.inner.mark_invalidated(key, None);
    }

    /// Invalidates the entry as [`invalidate`](Self::invalidate) does, except that for
    /// `grace`, callers that come while another caller's refetch runs get the previous value
    /// from [`get_revalidating`](Self::get_revalidating).
    pub(crate) fn revalidate(&self, key: &K, grace: Duration) {
        let mut flights = self.inner.flights();
        flights.remove(key);
        self.inner.mark_invalidated(key, Some(grace));
    }

    /// [`invalidate`](Self::invalidate)s every entry whose key matches.
    pub(crate) fn invalidate_where(&self, matches: impl Fn(&K) -> bool) {
        let mut flights = self.inner.flights();
        flights.retain(|key, _| !matches(key));
        let keys: Vec<K> = self
            .inner
            .entries
            .iter()
            .filter_map(|(key, _)| matches(&key).then_some(key))
            .collect();
        for key in keys {
            self.inner.mark_invalidated(&key, None);
        }
    }

    /// Invalidates every entry.
    pub(crate) fn invalidate_all(&self) {
        self.invalidate_where(|_| true);
    }

    /// Number of entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.entries.len()
    }
}

impl<K, V> Inner<K, V>
where
    K: Eq + Hash + Clone,
{
    fn flights(&self) -> MutexGuard<'_, HashMap<K, Flight<V>>> {
        // The map is consistent between statements: a panic elsewhere cannot leave it half-done.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a fetch's result if the fetch is still the one registered for its key. The
    /// flights lock is held while storing, so an invalidation cannot slip in between.
    fn land(&self, key: &K, id: u64, result: &Result<Arc<V>, AtlasError>) {
        let mut flights = self.flights();
        if flights.get(key).is_none_or(|flight| flight.id != id) {
            return;
        }
        flights.remove(key);
        if let Ok(value) = result {
            self.entries.insert(
                key.clone(),
                Slot {
                    weight: self.weighing.of(value),
                    value: Arc::clone(value),
                    fetched_at: Instant::now(),
                    invalidated: false,
                    serve_until: None,
                },
            );
        }
    }

    /// Marks the entry stale; with a `grace`, it may answer callers during a refetch until the
    /// grace ends (see [`Cache::revalidate`]).
    fn mark_invalidated(&self, key: &K, grace: Option<Duration>) {
        if let Some(mut slot) = self.entries.peek(key) {
            // A revalidation during a grace does not extend it: a stream of pushes must not
            // keep the value from before the first one in service. `serve_until` is only ever
            // set on an invalidated slot (a fetch that lands clears it).
            slot.serve_until = match (grace, slot.serve_until) {
                (Some(_), Some(earlier)) => Some(earlier),
                (Some(grace), None) => Instant::now().checked_add(grace),
                (None, _) => None,
            };
            slot.invalidated = true;
            self.entries.insert(key.clone(), slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    fn counting_fetch(
        calls: &Arc<AtomicUsize>,
        value: u32,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<u32, AtlasError>> {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(value) }.boxed()
        }
    }

    #[actix_rt::test]
    async fn serves_fresh_values_and_refetches_after_the_ttl() {
        let cache = Cache::new("test", Duration::from_millis(50), 10);
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            *cache
                .get_or_fetch("a", counting_fetch(&calls, 1))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            *cache
                .get_or_fetch("a", counting_fetch(&calls, 2))
                .await
                .unwrap(),
            1
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        actix_rt::time::sleep(Duration::from_millis(60)).await;
        assert!(cache.get_fresh(&"a").is_none());
        assert_eq!(
            *cache
                .get_or_fetch("a", counting_fetch(&calls, 2))
                .await
                .unwrap(),
            2
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[actix_rt::test]
    async fn freshness_is_read_at_the_callers_clock() {
        let cache = Cache::new("test", Duration::from_secs(60), 10);
        let before = Instant::now();
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_fetch("a", counting_fetch(&calls, 1))
            .await
            .unwrap();
        let (value, age) = cache.get_fresh_aged(&"a", before).unwrap();
        assert_eq!(
            (*value, age),
            (1, Duration::ZERO),
            "fetched after the reading"
        );
        let later = Instant::now() + Duration::from_secs(61);
        assert!(
            cache.get_fresh_aged(&"a", later).is_none(),
            "past the TTL then"
        );
        assert!(cache.get_fresh(&"a").is_some());
    }

    #[actix_rt::test]
    async fn bounded_in_bytes_as_well_as_entries() {
        let cache: Cache<u32, String> =
            Cache::weighed("test", Duration::from_secs(60), 1000, 100_000, |value| {
                value.len() as u64
            });
        for key in 0..1000 {
            let big = "x".repeat(10_000);
            cache
                .get_or_fetch(key, move || async move { Ok(big) }.boxed())
                .await
                .unwrap();
        }
        // 100 kB hold ten values of 10 kB, not the thousand entries the count allows.
        assert!(cache.len() <= 10, "{} entries", cache.len());
        assert!(cache.len() >= 1);
        let small: Cache<u32, String> =
            Cache::weighed("test", Duration::from_secs(60), 50, 100_000, |value| {
                value.len() as u64
            });
        for key in 0..1000 {
            small
                .get_or_fetch(key, move || async move { Ok(String::new()) }.boxed())
                .await
                .unwrap();
        }
        // Tiny values: the entry bound holds.
        assert!(small.len() <= 50, "{} entries", small.len());
    }

    #[actix_rt::test]
    async fn concurrent_misses_share_one_fetch() {
        let cache: Cache<&str, u32> = Cache::new("test", Duration::from_secs(60), 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let released = released.shared();
        let mut waiters = Vec::new();
        for _ in 0..100 {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let released = released.clone();
            waiters.push(actix_rt::spawn(async move {
                cache
                    .get_or_fetch("a", move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = released.await;
                            Ok(7)
                        }
                    })
                    .await
            }));
        }
        actix_rt::task::yield_now().await;
        release.send(()).unwrap();
        for waiter in waiters {
            assert_eq!(*waiter.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn an_invalidation_during_a_fetch_wins() {
        let cache: Cache<&str, u32> = Cache::new("test", Duration::from_secs(60), 10);
        let (release, released) = oneshot::channel::<()>();
        let slow = {
            let cache = cache.clone();
            actix_rt::spawn(async move {
                cache
                    .get_or_fetch("a", move || async move {
                        let _ = released.await;
                        Ok(1)
                    })
                    .await
            })
        };
        actix_rt::task::yield_now().await;
        cache.invalidate(&"a");
        release.send(()).unwrap();
        assert_eq!(
            *slow.await.unwrap().unwrap(),
            1,
            "the waiter gets what it asked for"
        );
        assert!(
            cache.get_fresh(&"a").is_none(),
            "but it is not stored as fresh"
        );
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            *cache
                .get_or_fetch("a", counting_fetch(&calls, 2))
                .await
                .unwrap(),
            2
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A refetch of `a` that answers `value` once released, started on its own task.
    fn held_refetch(
        cache: &Cache<String, u32>,
        value: u32,
    ) -> (
        oneshot::Sender<()>,
        actix_rt::task::JoinHandle<Result<Arc<u32>, AtlasError>>,
    ) {
        let (release, released) = oneshot::channel::<()>();
        let cache = cache.clone();
        let refetch = actix_rt::spawn(async move {
            cache
                .get_or_fetch("a".to_owned(), move || async move {
                    let _ = released.await;
                    Ok(value)
                })
                .await
        });
        (release, refetch)
    }

    #[actix_rt::test]
    async fn a_revalidation_answers_callers_from_before_it_only_while_the_refetch_runs() {
        let cache: Cache<String, u32> = Cache::new("test", Duration::from_secs(60), 10);
        let key = "a".to_owned();
        cache
            .get_or_fetch(key.clone(), || async { Ok(1) })
            .await
            .unwrap();
        cache.revalidate(&key, Duration::from_secs(60));
        assert!(
            cache.get_revalidating("a").is_none(),
            "no refetch runs: the first caller must fetch and wait"
        );
        let (release, first) = held_refetch(&cache, 2);
        actix_rt::task::yield_now().await;
        let (previous, _) = cache.get_revalidating("a").expect("the refetch runs");
        assert_eq!(*previous, 1);
        release.send(()).unwrap();
        assert_eq!(*first.await.unwrap().unwrap(), 2, "the first caller waited");
        assert_eq!(*cache.get_fresh("a").unwrap(), 2);
        assert!(cache.get_revalidating("a").is_none(), "fresh again");

        // A second push does not extend the grace of the first.
        cache.revalidate(&key, Duration::from_millis(50));
        cache.revalidate(&key, Duration::from_secs(60));
        let (release, refetch) = held_refetch(&cache, 2);
        actix_rt::task::yield_now().await;
        assert!(cache.get_revalidating("a").is_some());
        actix_rt::time::sleep(Duration::from_millis(60)).await;
        assert!(
            cache.get_revalidating("a").is_none(),
            "the first grace ended"
        );
        release.send(()).unwrap();
        refetch.await.unwrap().unwrap();

        // Past the grace, or after a plain invalidation, every caller waits.
        for strict in [false, true] {
            if strict {
                cache.revalidate(&key, Duration::from_secs(60));
                cache.invalidate(&key);
            } else {
                cache.revalidate(&key, Duration::ZERO);
            }
            let (release, refetch) = held_refetch(&cache, 3);
            actix_rt::task::yield_now().await;
            assert!(cache.get_revalidating("a").is_none(), "strict: {strict}");
            release.send(()).unwrap();
            refetch.await.unwrap().unwrap();
        }
    }

    #[actix_rt::test]
    async fn failures_are_not_cached_and_invalidation_marks_entries() {
        let cache: Cache<String, u32> = Cache::new("test", Duration::from_secs(60), 10);
        let failed = cache
            .get_or_fetch("a".to_owned(), || async {
                Err(AtlasError::unavailable("down"))
            })
            .await;
        assert!(failed.is_err());
        let calls = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_fetch("a".to_owned(), counting_fetch(&calls, 1))
            .await
            .unwrap();
        cache
            .get_or_fetch("b".to_owned(), counting_fetch(&calls, 1))
            .await
            .unwrap();
        cache.invalidate_where(|key| key == "a");
        assert!(cache.get_fresh(&"a".to_owned()).is_none());
        assert!(cache.get_fresh(&"b".to_owned()).is_some());
        assert!(
            cache
                .get_stale(&"a".to_owned(), Duration::from_secs(60))
                .is_some(),
            "kept for stale-if-error"
        );
        cache.invalidate_all();
        assert!(cache.get_fresh(&"b".to_owned()).is_none());
    }

    #[actix_rt::test]
    async fn capacity_bounds_the_entries() {
        let cache: Cache<u32, u32> = Cache::new("test", Duration::from_secs(60), 100);
        for key in 0..10_000 {
            cache
                .get_or_fetch(key, move || async move { Ok(key) })
                .await
                .unwrap();
        }
        assert!(cache.len() <= 200, "{} entries", cache.len());
    }
}
