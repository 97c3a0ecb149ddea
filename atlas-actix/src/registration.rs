//! Feature registration: the platform learns which features the code checks, so its
//! dashboard can show them. Slugs are collected and sent together a while after the last new
//! one (debounced); a slug is sent once per client, and again only if sending failed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Default)]
struct Pending {
    slugs: Vec<String>,
    last_new: Option<Instant>,
}

pub(crate) struct Registrations {
    seen: RwLock<HashSet<String>>,
    pending: Mutex<Pending>,
    debounce: Duration,
    wake: Arc<Notify>,
}

impl Registrations {
    pub(crate) fn new(debounce: Duration) -> Self {
        Self {
            seen: RwLock::new(HashSet::new()),
            pending: Mutex::new(Pending::default()),
            debounce,
            wake: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Notes checked slugs; those never seen are sent at the next debounced registration.
    pub(crate) fn register<'a>(&self, slugs: impl IntoIterator<Item = &'a str> + Clone) {
        // Checks run on every guarded request: the usual case, nothing new, takes a read lock.
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        if slugs.clone().into_iter().all(|slug| seen.contains(slug)) {
            return;
        }
        drop(seen);
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<String> = slugs
            .into_iter()
            .filter(|slug| seen.insert((*slug).to_owned()))
            .map(str::to_owned)
            .collect();
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
}
