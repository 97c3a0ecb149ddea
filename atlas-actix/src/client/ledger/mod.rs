//! The ledger of pending usage: per customer and quota feature, the units this process has
//! taken on that the platform's figure does not count yet, so that every check counts them.
//!
//! The platform enforces a maximum (or a credit balance) only once it has aggregated the usage
//! events sent to it and the customer is fetched again; until then its figure lags. An entry is
//! either *held* (a check let a request through for it, its usage not reported yet) or
//! *reported* (its event is queued, spooled or sent). A check allows only what fits once the
//! entries are added to the platform's figure, and takes its hold in the same step, under one
//! lock, so concurrent requests cannot all pass one check.
//!
//! When an entry leaves:
//! - a hold is released when its request fails or is dropped, and expires after the hold TTL
//!   (a crashed request does not hold quota forever);
//! - a reported entry leaves as soon as a customer answer shows the platform's figure grew by
//!   it: growth is matched to reported entries oldest first, so no unit is counted twice for
//!   longer than it takes the platform to count it and this process to fetch the customer
//!   again (the push after aggregation, or the cache TTL);
//! - at the latest, `metering_lag` after the platform accepted its event (a figure that never
//!   shows it: a new period, a plan change), and at once when the platform refused it.
//!
//! The highest figure seen stays the floor of later checks for `metering_lag` after it was
//! set, so a request that read the customer before a refresh cannot count the matched units as
//! neither pending nor counted. A lower figure after that is the platform's own (a new
//! period, usage reset): it becomes the floor, or a customer checked without pause would stay
//! at the last period's usage for good.

mod accounts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::entitlements::quota::Metered;
use crate::models::UsageEvent;
use accounts::{accounts_of, Account, Customers, Held, Owner, Reported};

/// How often the ledger forgets the accounts of customers no longer checked.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Ledger {
    hold_ttl: Duration,
    metering_lag: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// By customer, then feature: a check hashes its customer once (hashbrown's `entry_ref`:
    /// one look-up, no key allocated for a customer already known) and composes no key, so no
    /// two customers' or features' accounts can meet whatever characters their ids hold.
    customers: Customers,
    /// Reported entries by their event's idempotency key: which account holds each. An entry
    /// leaving its account leaves this index in the same step.
    by_event: HashMap<Arc<str>, Owner>,
    next_id: u64,
    /// When the next sweep is due: a check compares instants, where a duration since the
    /// last sweep cost it a subtraction of timespecs.
    sweep_at: Instant,
}

/// One quota feature of a check: its id and the platform's figure for it.
pub(crate) trait Figure {
    fn feature(&self) -> &str;
    /// As [`Metered::figure`] reads it.
    fn figure(&self) -> f64;
}

impl Figure for Metered<'_> {
    fn feature(&self) -> &str {
        self.feature
    }

    fn figure(&self) -> f64 {
        self.figure
    }
}

/// The ledger's tests name figures by hand.
#[cfg(test)]
impl Figure for (&str, f64) {
    fn feature(&self) -> &str {
        self.0
    }

    fn figure(&self) -> f64 {
        self.1
    }
}

impl Ledger {
    pub(crate) fn new(hold_ttl: Duration, metering_lag: Duration) -> Self {
        Self {
            hold_ttl,
            metering_lag,
            state: Mutex::new(State {
                customers: Customers::default(),
                by_event: HashMap::new(),
                next_id: 0,
                sweep_at: Instant::now() + SWEEP_EVERY,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The units to add to each figure: pending entries, and how far the figure is below the
    /// highest one seen. `decide` answers from them, under the ledger's lock; when it allows
    /// and `hold` is given, `hold` units of each feature are held in the same step. Returns
    /// `decide`'s answer and the ids of the holds taken, in the order of `figures`. `now` is
    /// the caller's reading of the clock: a check reads it once.
    pub(crate) fn decide<T>(
        &self,
        customer: &str,
        figures: &[impl Figure],
        hold: Option<f64>,
        now: Instant,
        decide: impl FnOnce(&[(&str, f64)]) -> (T, bool),
    ) -> (T, Vec<u64>) {
        let mut state = self.state();
        let state = &mut *state;
        self.sweep(state, now);
        let lag = self.metering_lag;
        let accounts = accounts_of(&mut state.customers, customer);
        // Pushed in place: collected, the vector was moved after it was written, and the
        // move's wide loads stalled on the narrow stores just made (a quarter of this
        // function's samples, `perf annotate`).
        let mut extra: SmallVec<[(&str, f64); 4]> = SmallVec::new();
        for quota in figures {
            let (feature, figure) = (quota.feature(), quota.figure());
            let open = |feature| Account::new(feature, Some(figure), now);
            let account = accounts.account(feature, open);
            account.touched = now;
            account.expire(now, lag, &mut state.by_event);
            let units = account.reconcile(figure, now, lag, &mut state.by_event);
            extra.push((feature, units));
        }
        let (answer, allowed) = decide(&extra);
        let mut held = Vec::new();
        if let Some(units) = hold.filter(|_| allowed) {
            let expires = now + self.hold_ttl;
            for quota in figures {
                state.next_id += 1;
                let id = state.next_id;
                let open = |feature| Account::new(feature, Some(quota.figure()), now);
                let account = accounts.account(quota.feature(), open);
                account.held.insert(id, Held { units, expires });
                account.pending += units;
                account.deadline(expires);
                held.push(id);
            }
        }
        (answer, held)
    }

    /// A hold's usage is reported: its entry now counts the event's units until the platform
    /// does. Without the hold (released, expired), the entry is made. An event whose
    /// idempotency key is pending already adds nothing: the platform counts it once.
    pub(crate) fn report(
        &self,
        customer: &str,
        feature: &str,
        id: Option<u64>,
        event: &UsageEvent,
    ) {
        let now = Instant::now();
        let mut state = self.state();
        let state = &mut *state;
        let id = id.unwrap_or_else(|| {
            state.next_id += 1;
            state.next_id
        });
        let accounts = accounts_of(&mut state.customers, customer);
        let owner = Arc::clone(&accounts.customer);
        let account = accounts.account(feature, |feature| Account::new(feature, None, now));
        account.touched = now;
        account.release(id);
        if state.by_event.contains_key(event.idempotency_key.as_str()) {
            return;
        }
        let units = event.data.quantity;
        let key: Arc<str> = Arc::from(event.idempotency_key.as_str());
        account.reported.insert(
            id,
            Reported {
                units,
                key: Arc::clone(&key),
                accepted: None,
            },
        );
        account.pending += units;
        let owner = Owner {
            customer: owner,
            feature: Arc::clone(&account.feature),
            id,
        };
        state.by_event.insert(key, owner);
    }

    /// Releases holds whose request failed or ended without reporting.
    pub(crate) fn release(&self, customer: &str, features: &[(&str, u64)]) {
        let mut state = self.state();
        let Some(accounts) = state.customers.get_mut(customer) else {
            return;
        };
        for (feature, id) in features {
            if let Some(account) = accounts.find(feature) {
                account.release(*id);
            }
        }
    }

    /// Events the platform accepted: their `metering_lag` starts.
    pub(crate) fn accepted(&self, events: &[UsageEvent]) {
        self.settled(events, true);
    }

    /// Events the platform refused (or that could not be queued): they will never count, so
    /// they stop counting here.
    pub(crate) fn refused(&self, events: &[UsageEvent]) {
        self.settled(events, false);
    }

    fn settled(&self, events: &[UsageEvent], accepted: bool) {
        let mut state = self.state();
        let state = &mut *state;
        if state.by_event.is_empty() {
            return;
        }
        let now = Instant::now();
        let lag = self.metering_lag;
        for event in events {
            let key = event.idempotency_key.as_str();
            let Some(Owner {
                customer,
                feature,
                id,
            }) = state.by_event.get(key)
            else {
                continue;
            };
            let account = state
                .customers
                .get_mut(&**customer)
                .and_then(|accounts| accounts.find(feature));
            let Some(account) = account else {
                state.by_event.remove(key);
                continue;
            };
            if accepted {
                if let Some(entry) = account.reported.get_mut(id) {
                    entry.accepted.get_or_insert(now);
                    account.deadline(now + lag);
                }
            } else {
                let id = *id;
                account.forget_reported(id);
                state.by_event.remove(key);
            }
        }
    }

    /// Forgets the accounts of customers not checked for a while whose entries are gone.
    fn sweep(&self, state: &mut State, now: Instant) {
        if now < state.sweep_at {
            return;
        }
        state.sweep_at = now + SWEEP_EVERY;
        let lag = self.metering_lag;
        let by_event = &mut state.by_event;
        state.customers.retain(|_, customer| {
            customer.accounts.retain_mut(|account| {
                account.expire(now, lag, by_event);
                !account.is_empty() || now.duration_since(account.touched) < lag
            });
            !customer.accounts.is_empty()
        });
    }

    /// The units pending per customer and feature, for tests.
    #[cfg(test)]
    fn pending(&self, customer: &str, feature: &str) -> f64 {
        self.state()
            .customers
            .get_mut(customer)
            .and_then(|accounts| accounts.find(feature))
            .map_or(0.0, |account| account.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::EventData;

    fn event(key: &str, units: f64) -> UsageEvent {
        UsageEvent {
            customer_id: "cus".into(),
            event_name: "ent".into(),
            generated_at: crate::models::now_iso(),
            idempotency_key: key.into(),
            data: EventData {
                quantity: units,
                extra: Default::default(),
            },
            extra: Default::default(),
        }
    }

    /// Whether `units` more fit under `max` with the platform at `figure`; held when they do.
    fn check(ledger: &Ledger, figure: f64, units: f64, max: f64) -> Option<u64> {
        let (_, held) = ledger.decide(
            "c",
            &[("f", figure)],
            Some(units),
            Instant::now(),
            |extra| ((), figure + extra[0].1 + units <= max),
        );
        held.first().copied()
    }

    #[test]
    fn holds_count_until_released_and_one_check_cannot_be_passed_twice() {
        let ledger = Ledger::new(Duration::from_secs(300), Duration::from_secs(60));
        let held: Vec<u64> = (0..20)
            .filter_map(|_| check(&ledger, 90.0, 1.0, 100.0))
            .collect();
        assert_eq!(held.len(), 10);
        ledger.release("c", &[("f", held[0])]);
        assert_eq!(ledger.pending("c", "f"), 9.0);
        assert!(check(&ledger, 90.0, 1.0, 100.0).is_some());
        assert!(check(&ledger, 90.0, 1.0, 100.0).is_none());
    }

    #[test]
    fn growth_of_the_figure_is_matched_to_reported_entries_once() {
        let ledger = Ledger::new(Duration::from_secs(300), Duration::from_secs(60));
        for i in 0..4 {
            let id = check(&ledger, 0.0, 10.0, 100.0).unwrap();
            ledger.report("c", "f", Some(id), &event(&format!("k{i}"), 4.0));
        }
        assert_eq!(ledger.pending("c", "f"), 16.0);
        // The platform counted two events: 8 more, and the ledger stops counting them.
        let (extra, _) = ledger.decide("c", &[("f", 8.0)], None, Instant::now(), |extra| {
            (extra[0].1, true)
        });
        assert_eq!(extra, 8.0);
        // A request that read the customer before the refresh still sees 16 in all.
        let (extra, _) = ledger.decide("c", &[("f", 0.0)], None, Instant::now(), |extra| {
            (extra[0].1, true)
        });
        assert_eq!(extra, 16.0);
        let (extra, _) = ledger.decide("c", &[("f", 16.0)], None, Instant::now(), |extra| {
            (extra[0].1, true)
        });
        assert_eq!(extra, 0.0);
        assert_eq!(ledger.pending("c", "f"), 0.0);
    }

    #[test]
    fn refused_events_stop_counting_and_accepted_ones_leave_after_the_lag() {
        let ledger = Ledger::new(Duration::from_secs(300), Duration::ZERO);
        for key in ["a", "b"] {
            let id = check(&ledger, 0.0, 1.0, 100.0).unwrap();
            ledger.report("c", "f", Some(id), &event(key, 1.0));
        }
        ledger.refused(&[event("a", 1.0)]);
        assert_eq!(ledger.pending("c", "f"), 1.0);
        ledger.accepted(&[event("b", 1.0)]);
        let (extra, _) = ledger.decide("c", &[("f", 0.0)], None, Instant::now(), |extra| {
            (extra[0].1, true)
        });
        assert_eq!(
            extra, 0.0,
            "past the lag, an accepted event is taken as counted"
        );
    }

    #[test]
    fn an_idempotency_key_already_pending_counts_once() {
        let ledger = Ledger::new(Duration::from_secs(300), Duration::from_secs(60));
        for _ in 0..3 {
            let id = check(&ledger, 0.0, 5.0, 100.0).unwrap();
            ledger.report("c", "f", Some(id), &event("retried", 5.0));
        }
        assert_eq!(ledger.pending("c", "f"), 5.0, "the platform stores it once");
        let (extra, _) = ledger.decide("c", &[("f", 5.0)], None, Instant::now(), |extra| {
            (extra[0].1, true)
        });
        assert_eq!(extra, 0.0);
    }

    #[test]
    fn a_lower_figure_past_the_lag_is_a_new_period_not_a_stale_read() {
        let lag = Duration::from_millis(30);
        let ledger = Ledger::new(Duration::from_secs(300), lag);
        let extra = |figure: f64| {
            ledger
                .decide("c", &[("f", figure)], None, Instant::now(), |extra| {
                    (extra[0].1, true)
                })
                .0
        };
        assert_eq!(extra(100.0), 0.0);
        assert_eq!(extra(0.0), 100.0, "within the lag: a read from before 100");
        std::thread::sleep(lag * 2);
        assert_eq!(extra(0.0), 0.0, "past it: the platform's usage was reset");
        assert_eq!(extra(0.0), 0.0);
        assert!(check(&ledger, 0.0, 100.0, 100.0).is_some());
    }

    #[test]
    fn ids_that_would_join_alike_keep_their_own_accounts() {
        let ledger = Ledger::new(Duration::from_secs(300), Duration::from_secs(60));
        let held = |customer: &str, feature: &str| {
            let (_, held) = ledger.decide(
                customer,
                &[(feature, 0.0)],
                Some(1.0),
                Instant::now(),
                |extra| ((), extra[0].1 + 1.0 <= 1.0),
            );
            !held.is_empty()
        };
        assert!(held("a", "b:c"));
        assert!(held("a:b", "c"), "another customer's quota");
        assert!(held("a", "b"), "another feature");
        assert!(!held("a", "b:c"), "the first account is full");
        assert_eq!(ledger.pending("a", "b:c"), 1.0);
        assert_eq!(ledger.pending("a:b", "c"), 1.0);
    }

    #[test]
    fn holds_expire() {
        let ledger = Ledger::new(Duration::ZERO, Duration::from_secs(60));
        assert!(check(&ledger, 0.0, 100.0, 100.0).is_some());
        assert!(
            check(&ledger, 0.0, 100.0, 100.0).is_some(),
            "the first hold expired"
        );
    }
}
