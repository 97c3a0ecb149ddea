//! Pending usage of quota features, for the whole fleet when it shares a Redis tier: the
//! fleet's ledger (`fleet::redis::ledger`) while Redis answers, this process's
//! ([`ledger`](crate::client::ledger)) otherwise, with the same rules.
//!
//! Redis unreachable, a check falls back to this process's ledger at once (no request fails
//! for it); while it does, each instance holds quotas alone, so a fleet of N instances may
//! let through up to N − 1 requests' units past a maximum. Holds and reported usage already
//! in the fleet's ledger go on counting there: they leave by their expiry and the platform's
//! figures, as ever. A check of a feature without a quota never asks Redis.

use std::sync::Arc;
#[cfg(feature = "redis")]
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::client::fleet::FleetTier;
use crate::client::keys;
use crate::client::ledger::{Figure, Ledger};
use crate::models::{EventData, UsageEvent};

/// How many times a check decides again when other instances take units between its read of
/// the fleet's ledger and its hold; past that, it holds in this process alone (logged).
#[cfg(feature = "redis")]
const FLEET_ATTEMPTS: usize = 16;

#[derive(Debug)]
pub(crate) struct PendingUsage {
    local: Ledger,
    /// The fleet's Redis tier, when there is one.
    #[cfg(feature = "redis")]
    tier: Option<Arc<crate::client::fleet::redis::RedisTier>>,
    #[cfg(feature = "redis")]
    lifetimes: crate::client::fleet::redis::ledger::Lifetimes,
    /// Events reported to the fleet's ledger not yet accepted or refused: only those cost a
    /// Redis call when refused. (The fleet's lag starts when they are reported.)
    #[cfg(feature = "redis")]
    in_fleet: Mutex<std::collections::HashMap<String, (String, String)>>,
}

/// Where one feature's hold is.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    Local(u64),
    /// In the fleet's ledger, by the hold's id (one for all the features of a check).
    #[cfg(feature = "redis")]
    Fleet(Arc<str>),
}

impl Entry {
    fn local(&self) -> Option<u64> {
        match self {
            Self::Local(id) => Some(*id),
            #[cfg(feature = "redis")]
            Self::Fleet(_) => None,
        }
    }
}

impl PendingUsage {
    pub(crate) fn new(
        hold_ttl: std::time::Duration,
        metering_lag: std::time::Duration,
        fleet: &FleetTier,
    ) -> Self {
        #[cfg(not(feature = "redis"))]
        let _ = fleet;
        Self {
            local: Ledger::new(hold_ttl, metering_lag),
            #[cfg(feature = "redis")]
            tier: fleet.redis.clone(),
            #[cfg(feature = "redis")]
            lifetimes: crate::client::fleet::redis::ledger::Lifetimes {
                hold_ttl,
                metering_lag,
            },
            #[cfg(feature = "redis")]
            in_fleet: Mutex::default(),
        }
    }

    #[cfg(feature = "redis")]
    fn fleet(&self) -> Option<&Arc<crate::client::fleet::redis::RedisTier>> {
        // Not `is_up`: an instance still connecting waits for its first attempt, as reads do,
        // and a tier being skipped answers at once.
        self.tier.as_ref()
    }

    /// The units to add to each figure (pending usage, and how far the figure is below the
    /// highest one seen), and `decide`'s answer from them; with `hold`, when it allows, that
    /// many units of each feature held in the same step. `room` says, for pending units that
    /// `decide` allowed, the most of each it would still allow (checked by the caller; the
    /// units themselves are always a safe answer).
    pub(crate) async fn decide<T>(
        &self,
        customer: &str,
        figures: &[impl Figure],
        hold: Option<f64>,
        clock: Instant,
        room: impl Fn(&[(&str, f64)]) -> Vec<f64>,
        decide: impl Fn(&[(&str, f64)]) -> (T, bool),
    ) -> (T, Vec<Entry>) {
        #[cfg(feature = "redis")]
        let clock = match self.fleet() {
            Some(tier) => {
                // Boxed: inline, the round trips to Redis would grow every check's future.
                let in_fleet = self.decide_in_fleet(tier, customer, figures, hold, &room, &decide);
                if let Some(decided) = Box::pin(in_fleet).await {
                    return decided;
                }
                // Redis was awaited: the clock moved on.
                Instant::now()
            }
            None => clock,
        };
        let _ = room;
        self.decide_locally(customer, figures, hold, clock, decide)
    }

    /// [`decide`](Self::decide) without a future, when no fleet's ledger is configured: a
    /// check then has nothing to await, and building (and moving) the future that could await
    /// Redis is work on every quota check. `None` when there is a fleet.
    pub(crate) fn decide_at_once<T>(
        &self,
        customer: &str,
        figures: &[impl Figure],
        hold: Option<f64>,
        clock: Instant,
        decide: impl FnOnce(&[(&str, f64)]) -> (T, bool),
    ) -> Option<(T, Vec<Entry>)> {
        #[cfg(feature = "redis")]
        if self.fleet().is_some() {
            return None;
        }
        Some(self.decide_locally(customer, figures, hold, clock, decide))
    }

    fn decide_locally<T>(
        &self,
        customer: &str,
        figures: &[impl Figure],
        hold: Option<f64>,
        clock: Instant,
        decide: impl FnOnce(&[(&str, f64)]) -> (T, bool),
    ) -> (T, Vec<Entry>) {
        let (answer, held) = self.local.decide(customer, figures, hold, clock, decide);
        (answer, held.into_iter().map(Entry::Local).collect())
    }

    /// The fleet's answer, `None` when Redis could not give one.
    #[cfg(feature = "redis")]
    async fn decide_in_fleet<T>(
        &self,
        tier: &crate::client::fleet::redis::RedisTier,
        customer: &str,
        figures: &[impl Figure],
        hold: Option<f64>,
        room: &impl Fn(&[(&str, f64)]) -> Vec<f64>,
        decide: &impl Fn(&[(&str, f64)]) -> (T, bool),
    ) -> Option<(T, Vec<Entry>)> {
        use crate::client::fleet::redis::ledger::HoldRequest;

        let figures: Vec<(&str, f64)> = figures
            .iter()
            .map(|quota| (quota.feature(), quota.figure()))
            .collect();
        let figures = figures.as_slice();

        let with = |extra: &[f64]| -> Vec<(&str, f64)> {
            figures
                .iter()
                .zip(extra)
                .map(|((feature, _), units)| (*feature, *units))
                .collect()
        };
        let Some(units) = hold else {
            let pending = tier
                .pending(self.lifetimes, customer, figures, None)
                .await?;
            return Some((decide(&with(&pending.extra)).0, Vec::new()));
        };
        let id: Arc<str> = keys::random_key().into();
        // Nothing known pending yet: a check that fails with none fails with any.
        let mut seen = vec![0.0; figures.len()];
        for _ in 0..FLEET_ATTEMPTS {
            let (answer, allowed) = decide(&with(&seen));
            if !allowed {
                return Some((answer, Vec::new()));
            }
            let limits = room(&with(&seen));
            let request = HoldRequest {
                id: &id,
                units,
                limits: &limits,
            };
            let pending = tier
                .pending(self.lifetimes, customer, figures, Some(request))
                .await?;
            if pending.held {
                let (answer, allowed) = decide(&with(&pending.extra));
                let features: Vec<&str> = figures.iter().map(|(feature, _)| *feature).collect();
                if !allowed {
                    tier.release(self.lifetimes, customer, &features, &id).await;
                    return Some((answer, Vec::new()));
                }
                let entries = features.iter().map(|_| Entry::Fleet(Arc::clone(&id)));
                return Some((answer, entries.collect()));
            }
            seen = pending.extra;
        }
        tracing::warn!(customer = ?customer, "the fleet's quota ledger changed under every attempt of a check: this check holds in this process alone");
        None
    }

    /// A hold (`entry`, or none) of `feature` is reported as `event`: its units count until
    /// the platform counts them. An event whose idempotency key is pending adds nothing.
    pub(crate) async fn report(
        &self,
        customer: &str,
        feature: &str,
        entry: Option<Entry>,
        event: &UsageEvent,
    ) {
        match entry {
            Some(Entry::Local(id)) => self.local.report(customer, feature, Some(id), event),
            #[cfg(feature = "redis")]
            Some(Entry::Fleet(id)) => {
                self.report_in_fleet(customer, feature, Some(&id), event)
                    .await
            }
            None => {
                #[cfg(feature = "redis")]
                if self.fleet().is_some() {
                    return self.report_in_fleet(customer, feature, None, event).await;
                }
                self.local.report(customer, feature, None, event)
            }
        }
    }

    #[cfg(feature = "redis")]
    async fn report_in_fleet(
        &self,
        customer: &str,
        feature: &str,
        hold: Option<&str>,
        event: &UsageEvent,
    ) {
        let reported = match &self.tier {
            Some(tier) => {
                tier.report(
                    self.lifetimes,
                    customer,
                    feature,
                    hold,
                    &event.idempotency_key,
                    event.data.quantity,
                )
                .await
            }
            None => false,
        };
        if reported {
            self.in_fleet
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    event.idempotency_key.clone(),
                    (customer.to_owned(), feature.to_owned()),
                );
        } else {
            // The fleet's hold (if any) stops counting at its expiry.
            self.local.report(customer, feature, None, event);
        }
    }

    /// Releases holds whose request failed or ended without reporting.
    pub(crate) async fn release(&self, customer: &str, entries: &[(&str, Entry)]) {
        let local: Vec<(&str, u64)> = entries
            .iter()
            .filter_map(|(feature, entry)| Some((*feature, entry.local()?)))
            .collect();
        if !local.is_empty() {
            self.local.release(customer, &local);
        }
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.tier {
            if let Some((_, Entry::Fleet(id))) = entries
                .iter()
                .find(|(_, entry)| matches!(entry, Entry::Fleet(_)))
            {
                let features: Vec<&str> = entries
                    .iter()
                    .filter(|(_, entry)| matches!(entry, Entry::Fleet(_)))
                    .map(|(feature, _)| *feature)
                    .collect();
                tier.release(self.lifetimes, customer, &features, id).await;
            }
        }
    }

    /// Events the platform accepted: their metering lag starts.
    pub(crate) async fn accepted(&self, events: &[UsageEvent]) {
        self.local.accepted(events);
        #[cfg(feature = "redis")]
        self.settle_in_fleet(events, true).await;
    }

    /// Events the platform refused (or that could not be queued): they stop counting.
    pub(crate) async fn refused(&self, events: &[UsageEvent]) {
        self.local.refused(events);
        #[cfg(feature = "redis")]
        self.settle_in_fleet(events, false).await;
    }

    #[cfg(feature = "redis")]
    async fn settle_in_fleet(&self, events: &[UsageEvent], accepted: bool) {
        let Some(tier) = &self.tier else {
            return;
        };
        let refused: Vec<(String, String, &str)> = {
            let mut in_fleet = self.in_fleet.lock().unwrap_or_else(PoisonError::into_inner);
            if in_fleet.is_empty() {
                return;
            }
            events
                .iter()
                .filter_map(|event| {
                    let (customer, feature) = in_fleet.remove(&event.idempotency_key)?;
                    (!accepted).then_some((customer, feature, event.idempotency_key.as_str()))
                })
                .collect()
        };
        if !refused.is_empty() {
            let refused: Vec<(&str, &str, &str)> = refused
                .iter()
                .map(|(customer, feature, key)| (customer.as_str(), feature.as_str(), *key))
                .collect();
            tier.refuse(self.lifetimes, &refused).await;
        }
    }
}

/// Units of quota features a check let through, held until its usage is reported (then
/// pending until the platform counts it) or released; dropping it releases what is still held.
/// It knows how to report the usage without the platform: the customer's platform id and each
/// feature's event name, read at the check.
#[derive(Debug)]
pub(crate) struct Hold {
    pending: Arc<PendingUsage>,
    customer: String,
    customer_ref: String,
    features: Vec<HeldFeature>,
    pub(crate) units: f64,
}

#[derive(Debug)]
pub(crate) struct HeldFeature {
    pub(crate) feature: String,
    /// The event its usage is reported as; `None` for a feature that reports none.
    pub(crate) event_name: Option<String>,
    /// The ledger's hold, for a quota feature.
    pub(crate) entry: Option<Entry>,
}

impl Hold {
    pub(crate) fn new(
        pending: Arc<PendingUsage>,
        customer: &str,
        customer_ref: &str,
        features: Vec<HeldFeature>,
        units: f64,
    ) -> Self {
        Self {
            pending,
            customer: customer.to_owned(),
            customer_ref: customer_ref.to_owned(),
            features,
            units,
        }
    }

    pub(crate) fn customer(&self) -> &str {
        &self.customer
    }

    /// The events reporting `units` of each feature that reports usage; with `key`, the
    /// event of a single feature carries it, several carry one derived per feature.
    pub(crate) fn events(&self, units: f64, key: Option<&str>) -> Vec<UsageEvent> {
        let reported: Vec<(&str, &str)> = self
            .features
            .iter()
            .filter_map(|held| Some((held.feature.as_str(), held.event_name.as_deref()?)))
            .collect();
        let several = reported.len() > 1;
        let generated_at = crate::models::now_iso();
        reported
            .into_iter()
            .map(|(feature, event_name)| UsageEvent {
                customer_id: self.customer_ref.clone(),
                event_name: event_name.to_owned(),
                generated_at: generated_at.clone(),
                idempotency_key: match key {
                    Some(key) if several => keys::digest(&[key, feature]),
                    Some(key) => key.to_owned(),
                    None => keys::random_key(),
                },
                data: EventData {
                    quantity: units,
                    extra: Default::default(),
                },
                extra: Default::default(),
            })
            .collect()
    }

    /// The usage is queued as `events`: each quota feature's hold becomes the pending entry of
    /// its event.
    pub(crate) async fn reported(mut self, events: &[UsageEvent]) {
        for held in std::mem::take(&mut self.features) {
            let event = held
                .event_name
                .as_deref()
                .and_then(|name| events.iter().find(|event| event.event_name == name));
            match (held.entry, event) {
                (Some(entry), Some(event)) => {
                    self.pending
                        .report(&self.customer, &held.feature, Some(entry), event)
                        .await
                }
                (Some(entry), None) => {
                    self.pending
                        .release(&self.customer, &[(&held.feature, entry)])
                        .await
                }
                (None, _) => {}
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let features = std::mem::take(&mut self.features);
        let local: Vec<(&str, u64)> = features
            .iter()
            .filter_map(|held| Some((held.feature.as_str(), held.entry.as_ref()?.local()?)))
            .collect();
        if !local.is_empty() {
            self.pending.local.release(&self.customer, &local);
        }
        #[cfg(feature = "redis")]
        {
            let fleet: Vec<(String, Entry)> = features
                .into_iter()
                .filter_map(|held| match held.entry {
                    Some(entry @ Entry::Fleet(_)) => Some((held.feature, entry)),
                    _ => None,
                })
                .collect();
            // Outside a runtime (a process ending), the fleet's holds expire by themselves.
            if let (false, Ok(runtime)) = (fleet.is_empty(), tokio::runtime::Handle::try_current())
            {
                let (pending, customer) = (Arc::clone(&self.pending), self.customer.clone());
                runtime.spawn(async move {
                    let entries: Vec<(&str, Entry)> = fleet
                        .iter()
                        .map(|(feature, entry)| (feature.as_str(), entry.clone()))
                        .collect();
                    pending.release(&customer, &entries).await;
                });
            }
        }
    }
}
