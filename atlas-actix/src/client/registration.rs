//! Feature registration: the platform learns which features the code checks, so its
//! dashboard can show them. Slugs are collected and sent together a while after the last new
//! one (debounced); a slug is sent once per client, and again only if sending failed.
//!
//! Slugs the app's own checks name are few and always taken. Slugs the frontend relays
//! through the scope come from anyone: past [`MAX_REQUESTED`] of them, only the pricing
//! model's features are taken, so memory stays bounded and real features are never dropped.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::client::telemetry::per_thread::PerOwner;

/// The most slugs taken from callers, outside the pricing model, in a client's life.
pub(crate) const MAX_REQUESTED: usize = 1_000;

#[derive(Default)]
struct Pending {
    slugs: Vec<String>,
    last_new: Option<Instant>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Each thread's copy of the slugs seen, by client: the check of every guarded request
    /// finds its slugs without touching a lock the workers share. `seen` only grows, so a
    /// copy is never wrong, only incomplete.
    static SEEN_HERE: RefCell<PerOwner<()>> = RefCell::new(PerOwner::default());
}

pub(crate) struct Registrations {
    id: u64,
    seen: RwLock<HashSet<String>>,
    /// How many seen slugs came from callers and were not the pricing model's.
    requested: AtomicUsize,
    pending: Mutex<Pending>,
    debounce: Duration,
    wake: Arc<Notify>,
}

impl Registrations {
    pub(crate) fn new(debounce: Duration) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            seen: RwLock::new(HashSet::new()),
            requested: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            debounce,
            wake: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Notes slugs the app's checks name; those never seen are sent at the next debounced
    /// registration.
    pub(crate) fn register<'a>(&self, slugs: impl IntoIterator<Item = &'a str> + Clone) {
        self.add(slugs, |_| true);
    }

    /// Notes slugs a caller sent: taken while fewer than [`MAX_REQUESTED`] came from callers,
    /// and always when `in_model` says the pricing model has the feature.
    pub(crate) fn register_requested<'a>(
        &self,
        slugs: impl IntoIterator<Item = &'a str> + Clone,
        in_model: impl Fn(&str) -> bool,
    ) {
        self.add(slugs, |slug| {
            if in_model(slug) {
                return true;
            }
            let taken = self
                .requested
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < MAX_REQUESTED).then_some(n + 1)
                })
                .is_ok();
            if !taken {
                tracing::debug!(feature = ?slug, "feature registration ignored: too many unknown features registered");
            }
            taken
        });
    }

    fn add<'a>(
        &self,
        slugs: impl IntoIterator<Item = &'a str> + Clone,
        admit: impl Fn(&str) -> bool,
    ) {
        let seen_here = SEEN_HERE.with(|seen| {
            seen.borrow().get(self.id).is_some_and(|seen| {
                slugs
                    .clone()
                    .into_iter()
                    .all(|slug| seen.contains_key(slug))
            })
        });
        if seen_here {
            return;
        }
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        if slugs.clone().into_iter().all(|slug| seen.contains(slug)) {
            drop(seen);
            SEEN_HERE.with(|seen| {
                let mut seen = seen.borrow_mut();
                let here = seen.entry(self.id);
                here.extend(slugs.into_iter().map(|slug| (slug.to_owned(), ())));
            });
            return;
        }
        drop(seen);
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        let mut new = Vec::new();
        for slug in slugs {
            if !seen.contains(slug) && admit(slug) {
                seen.insert(slug.to_owned());
                new.push(slug.to_owned());
            }
        }
        drop(seen);
        if !new.is_empty() {
            self.put_back(new);
        }
    }

    /// When the pending slugs are due: the debounce delay after the last new one.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .last_new
            .filter(|_| !pending.slugs.is_empty())
            .map(|last| last + self.debounce)
    }

    /// The pending slugs, to send now.
    pub(crate) fn take(&self) -> Vec<String> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.last_new = None;
        std::mem::take(&mut pending.slugs)
    }

    /// Slugs to send later: new ones, or those whose sending failed.
    pub(crate) fn put_back(&self, slugs: Vec<String>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.slugs.extend(slugs);
        pending.last_new = Some(Instant::now());
        drop(pending);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slug_is_pending_once_until_sent() {
        let registrations = Registrations::new(Duration::from_secs(3));
        assert!(registrations.due_at().is_none());
        registrations.register(["a", "b"]);
        registrations.register(["b", "c", "a"]);
        let due = registrations.due_at().unwrap();
        assert!(due > Instant::now() + Duration::from_secs(2));
        assert_eq!(registrations.take(), ["a", "b", "c"]);
        assert!(registrations.due_at().is_none());
        registrations.register(["a"]);
        assert!(registrations.due_at().is_none(), "already sent");
        registrations.put_back(vec!["a".into()]);
        assert_eq!(registrations.take(), ["a"]);
    }

    #[test]
    fn requested_slugs_are_bounded_but_model_features_always_taken() {
        let registrations = Registrations::new(Duration::ZERO);
        let many: Vec<String> = (0..MAX_REQUESTED + 500)
            .map(|i| format!("junk-{i}"))
            .collect();
        registrations.register_requested(many.iter().map(String::as_str), |_| false);
        registrations.register_requested(["seats", "junk-late"], |slug| slug == "seats");
        let taken = registrations.take();
        assert_eq!(taken.len(), MAX_REQUESTED + 1);
        assert!(taken.contains(&"seats".to_owned()));
        assert!(!taken.contains(&"junk-late".to_owned()));
        registrations.register(["app-feature"]);
        assert_eq!(
            registrations.take(),
            ["app-feature"],
            "the app's own checks are never capped"
        );
    }
}
