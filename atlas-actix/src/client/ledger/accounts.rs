//! The ledger's accounts: per customer, one per quota feature, each with its held and
//! reported entries and the highest figure seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::hash_map::EntryRef;

/// foldhash, seeded at random per process, as actix-http hashes header names: customer ids
/// come from requests, but only from customers checked for a quota (authenticated), and
/// SipHash was a twentieth of a quota check.
pub(super) type Customers = hashbrown::HashMap<Arc<str>, Accounts, foldhash::fast::RandomState>;

/// One customer's accounts, one per quota feature (a handful: a linear search).
#[derive(Debug)]
pub(super) struct Accounts {
    /// The customer's id, shared with the map's key, for [`Owner`]s.
    pub(super) customer: Arc<str>,
    pub(super) accounts: Vec<Account>,
}

/// The account holding a reported entry.
#[derive(Debug)]
pub(super) struct Owner {
    pub(super) customer: Arc<str>,
    pub(super) feature: Arc<str>,
    pub(super) id: u64,
}

/// `customer`'s accounts, made empty when there are none.
pub(super) fn accounts_of<'s>(customers: &'s mut Customers, customer: &str) -> &'s mut Accounts {
    match customers.entry_ref(customer) {
        EntryRef::Occupied(entry) => entry.into_mut(),
        EntryRef::Vacant(entry) => {
            let customer: Arc<str> = Arc::from(customer);
            let accounts = Accounts {
                customer: Arc::clone(&customer),
                accounts: Vec::new(),
            };
            entry.insert_entry_with_key(customer, accounts).into_mut()
        }
    }
}

impl Accounts {
    /// The account of `feature`, opened by `open` when there is none.
    pub(super) fn account(
        &mut self,
        feature: &str,
        open: impl FnOnce(Arc<str>) -> Account,
    ) -> &mut Account {
        let at = match self
            .accounts
            .iter()
            .position(|account| *account.feature == *feature)
        {
            Some(at) => at,
            None => {
                self.accounts.push(open(Arc::from(feature)));
                self.accounts.len() - 1
            }
        };
        &mut self.accounts[at]
    }

    pub(super) fn find(&mut self, feature: &str) -> Option<&mut Account> {
        self.accounts
            .iter_mut()
            .find(|account| *account.feature == *feature)
    }
}

/// One customer's pending usage of one feature. Every operation a request makes on it is
/// O(log n) in its entries (a check at tens of thousands of pending events stays cheap); the
/// O(n) pass that expires entries runs only once the earliest deadline has passed.
#[derive(Debug)]
pub(super) struct Account {
    pub(super) feature: Arc<str>,
    /// The highest platform figure seen (usage, or credits spent); none yet for an account
    /// opened by a report.
    high: Option<f64>,
    /// When `high` was last set: a lower figure is taken as a stale read until `metering_lag`
    /// after it.
    high_at: Instant,
    /// By id, so by the time of their check: expiry in order.
    pub(super) held: BTreeMap<u64, Held>,
    /// By id: the oldest is matched first when the platform's figure grows.
    pub(super) reported: BTreeMap<u64, Reported>,
    /// The units of `held` and `reported`, kept as they change (set to zero when both are
    /// empty, so rounding never accumulates).
    pub(super) pending: f64,
    /// No entry expires before it.
    next_deadline: Option<Instant>,
    pub(super) touched: Instant,
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) units: f64,
    pub(super) expires: Instant,
}

#[derive(Debug)]
pub(super) struct Reported {
    pub(super) units: f64,
    pub(super) key: Arc<str>,
    pub(super) accepted: Option<Instant>,
}

impl Account {
    pub(super) fn new(feature: Arc<str>, high: Option<f64>, now: Instant) -> Self {
        Self {
            feature,
            high,
            high_at: now,
            held: BTreeMap::new(),
            reported: BTreeMap::new(),
            pending: 0.0,
            next_deadline: None,
            touched: now,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.reported.is_empty()
    }

    pub(super) fn deadline(&mut self, at: Instant) {
        if self.next_deadline.is_none_or(|next| at < next) {
            self.next_deadline = Some(at);
        }
    }

    fn settle_pending(&mut self, units: f64) {
        self.pending -= units;
        if self.is_empty() {
            self.pending = 0.0;
        }
    }

    pub(super) fn release(&mut self, id: u64) {
        if let Some(held) = self.held.remove(&id) {
            self.settle_pending(held.units);
        }
    }

    pub(super) fn forget_reported(&mut self, id: u64) {
        if let Some(entry) = self.reported.remove(&id) {
            self.settle_pending(entry.units);
        }
    }

    /// Drops expired holds and reported entries past the lag, once a deadline has passed.
    pub(super) fn expire(
        &mut self,
        now: Instant,
        lag: Duration,
        by_event: &mut HashMap<Arc<str>, Owner>,
    ) {
        if self.next_deadline.is_none_or(|next| next > now) {
            return;
        }
        self.held.retain(|_, held| held.expires > now);
        self.reported.retain(|_, entry| {
            let live = entry
                .accepted
                .is_none_or(|accepted| now.duration_since(accepted) < lag);
            if !live {
                by_event.remove(&entry.key);
            }
            live
        });
        let holds = self.held.values().map(|held| held.expires);
        let lags = self
            .reported
            .values()
            .filter_map(|entry| Some(entry.accepted? + lag));
        self.next_deadline = holds.chain(lags).min();
        // Recounted exactly, so the running sum's rounding never outlives a pass.
        self.pending = self.held.values().map(|held| held.units).sum::<f64>()
            + self.reported.values().map(|entry| entry.units).sum::<f64>();
    }

    /// Matches the figure's growth to reported entries, oldest first, and answers the units
    /// to add to `figure`.
    pub(super) fn reconcile(
        &mut self,
        figure: f64,
        now: Instant,
        lag: Duration,
        by_event: &mut HashMap<Arc<str>, Owner>,
    ) -> f64 {
        let high = *self.high.get_or_insert(figure);
        if figure < high && now.duration_since(self.high_at) >= lag {
            self.high = Some(figure);
            self.high_at = now;
        }
        if figure > high {
            let mut grown = figure - high;
            self.high = Some(figure);
            self.high_at = now;
            while grown > 0.0 {
                let Some(mut oldest) = self.reported.first_entry() else {
                    break;
                };
                let counted = grown.min(oldest.get().units);
                grown -= counted;
                if counted >= oldest.get().units {
                    let entry = oldest.remove();
                    by_event.remove(&entry.key);
                    self.settle_pending(entry.units);
                } else {
                    oldest.get_mut().units -= counted;
                    self.settle_pending(counted);
                }
            }
        }
        (self.high.unwrap_or(figure) - figure) + self.pending
    }
}
