//! Lookups of things that do not exist, bounded per customer. The scope's reads by id (an
//! invoice's line items, a credit unit's usage, a subscription) take ids from the caller; for
//! each new id the cache misses and the platform is asked, so a customer inventing ids could
//! turn every request into a platform call made with the merchant's key. Here an id the
//! platform did not know is remembered as absent for 30 s (answered without a call), and each
//! customer may look up at most 30 absent things a minute; past that, 429 until the minute
//! ends. Memory stays bounded: both are bounded caches, keyed by short length-prefixed keys
//! (ids are at most 256 bytes).

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::keys;
use crate::web::error_response::RequestError;
use crate::web::throttle::Throttle;

/// How long an absent id is answered without asking the platform.
const ABSENT_FOR: Duration = Duration::from_secs(30);
/// The most absences remembered at once.
const REMEMBERED: usize = 10_000;
/// The absent things a customer may look up per [`MISS_PERIOD`].
const MISSES: u32 = 30;
const MISS_PERIOD: Duration = Duration::from_secs(60);

/// The absences remembered, and each customer's allowance of them.
pub(crate) struct AbsentLookups {
    absent: quick_cache::sync::Cache<String, Instant>,
    misses: Throttle,
}

impl std::fmt::Debug for AbsentLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsentLookups")
            .field("remembered", &self.absent.len())
            .finish_non_exhaustive()
    }
}

impl Default for AbsentLookups {
    fn default() -> Self {
        Self {
            absent: quick_cache::sync::Cache::new(REMEMBERED),
            misses: Throttle::new(MISSES, MISS_PERIOD),
        }
    }
}

impl AbsentLookups {
    /// Looks `kind` `id` up for `customer` with `fetch`, unless it is known to be absent
    /// (then `absent()` answers) or the customer is out of allowance (429). An answer
    /// `is_absent` says is an absence is remembered and counted.
    pub(crate) async fn lookup<T, Fut>(
        &self,
        customer: &str,
        kind: &str,
        id: &str,
        fetch: impl FnOnce() -> Fut,
        is_absent: impl Fn(&Result<T, RequestError>) -> bool,
        absent: impl Fn() -> Result<T, RequestError>,
    ) -> Result<T, RequestError>
    where
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let key = keys::compose(&[customer, kind, id]);
        if self
            .absent
            .get(&key)
            .is_some_and(|since| since.elapsed() < ABSENT_FOR)
        {
            return absent();
        }
        self.misses.exhausted(customer)?;
        let answer = fetch().await;
        if is_absent(&answer) {
            self.absent.insert(key, Instant::now());
            if let Err(refused) = self.misses.admit(customer) {
                tracing::warn!(customer = ?customer, kind, "a customer looked up more things that do not exist than it may: 429 for the rest of the minute");
                return Err(refused);
            }
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[actix_rt::test]
    async fn absences_are_remembered_and_bounded_per_customer() {
        let lookups = AbsentLookups::default();
        let calls = Cell::new(0);
        let fetch = || {
            calls.set(calls.get() + 1);
            async { Ok::<Vec<u8>, RequestError>(Vec::new()) }
        };
        let absent =
            |answer: &Result<Vec<u8>, RequestError>| answer.as_ref().is_ok_and(Vec::is_empty);
        let empty = || Ok(Vec::new());
        for _ in 0..5 {
            let answer = lookups
                .lookup("mallory", "line_items", "in_1", fetch, absent, empty)
                .await;
            assert_eq!(answer.unwrap(), Vec::<u8>::new());
        }
        assert_eq!(calls.get(), 1, "known absent: asked once");
        let mut refused = 0;
        for i in 0..100 {
            let id = format!("in_new_{i}");
            if lookups
                .lookup("mallory", "line_items", &id, fetch, absent, empty)
                .await
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(
            calls.get() <= 1 + MISSES as usize,
            "{} platform calls",
            calls.get()
        );
        assert!(refused >= 100 - MISSES as usize, "{refused}");
        let other = lookups
            .lookup("alice", "line_items", "in_1", fetch, absent, empty)
            .await;
        assert!(other.is_ok(), "another customer is not held back");
    }
}
