//! Metering, when the data file turns it on (`"metering": {"delayMs": N}`): each stored usage
//! event is applied N ms after it arrived, as the platform's aggregation would, and the
//! customer's change is pushed. Without it, usage never moves (the conformance fixtures).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{touch, Platform};
use crate::emulator::reply::json_number;
use crate::models::{now_iso, Customer, PlanEntitlement, PriceKind};

/// A stored usage event waiting for its aggregation: when it is due, and what it counts.
#[derive(Debug)]
pub(super) struct Metered {
    due: Instant,
    customer: String,
    event_name: String,
    quantity: f64,
}

impl Platform {
    /// Schedules a stored event for aggregation, when metering is on: only what aggregation
    /// reads is kept (under a benchmark's load, a copy of every event was most of the
    /// emulator's work).
    pub(super) fn meter(&mut self, event: &Value, arrived: Instant) {
        let Some(metering) = &self.source.metering else {
            return;
        };
        let (Some(customer), Some(event_name), Some(quantity)) = (
            event["customerId"].as_str(),
            event["eventName"].as_str(),
            event["data"]["quantity"].as_f64(),
        ) else {
            return;
        };
        let due = arrived + Duration::from_millis(metering.delay_ms);
        self.metering.push_back(Metered {
            due,
            customer: customer.to_owned(),
            event_name: event_name.to_owned(),
            quantity,
        });
    }

    /// Applies every event due by `now`, in the order they arrived, then pushes each customer
    /// they changed once, as an aggregation run does (a push per event would flood every
    /// connected client with identical invalidations under load).
    pub(crate) fn apply_due_usage(&mut self, now: Instant) {
        let mut changed: Vec<String> = Vec::new();
        while self
            .metering
            .front()
            .is_some_and(|metered| metered.due <= now)
        {
            if let Some(metered) = self.metering.pop_front() {
                if let Some(customer) = self.apply_usage(&metered) {
                    if !changed.contains(&customer) {
                        changed.push(customer);
                    }
                }
            }
        }
        for customer in changed {
            self.customer_changed(&customer);
        }
    }

    /// The subscription in force of `customer` whose plan grants the feature `entitlement_id`
    /// (internal id), with its grant.
    pub(super) fn grant_in_force(
        &self,
        customer: &Customer,
        entitlement_id: &str,
    ) -> Option<(String, PlanEntitlement)> {
        let now = time::OffsetDateTime::now_utc();
        customer
            .active_subscriptions
            .iter()
            .filter(|subscription| subscription.is_valid_at(now))
            .find_map(|subscription| {
                let plan = self.pricing_model.plan(&subscription.plan_id)?;
                let grant = plan
                    .entitlements
                    .iter()
                    .find(|grant| grant.id == entitlement_id)?;
                Some((subscription.id.clone(), grant.clone()))
            })
    }

    /// One event's usage: on the access entry of the subscription that grants the feature
    /// (usage-based: `currentUsage` grows, `access` ends at `maxUsage`), or off the customer's
    /// credit balance (credit-based, with its credit usage figures). Returns the external id
    /// of the customer changed, to push.
    fn apply_usage(&mut self, metered: &Metered) -> Option<String> {
        let (customer_id, event_name, quantity) = (
            metered.customer.as_str(),
            metered.event_name.as_str(),
            metered.quantity,
        );
        let Some(at) = self.customers.iter().position(|c| c.id == customer_id) else {
            tracing::warn!(customer = ?customer_id, "emulator: a usage event for no known customer; not metered");
            return None;
        };
        let customer = &self.customers[at];
        let Some((subscription, grant)) = self.grant_in_force(customer, event_name) else {
            tracing::warn!(customer = ?customer_id, event = ?event_name, "emulator: a usage event for a feature no subscription grants; not metered");
            return None;
        };
        let stamp = now_iso();
        let external_id = customer.external_id.clone();
        let customer = &mut self.customers[at];
        let credit_unit = grant
            .custom_pricing_unit_id
            .as_deref()
            .filter(|unit| !unit.is_empty());
        match (&grant.price, credit_unit) {
            (Some(_), Some(unit)) => {
                customer.spend_credits(unit, quantity);
                if let Some(usage) = self
                    .credit_usage
                    .get_mut(&external_id)
                    .and_then(|units| units.get_mut(unit))
                {
                    for (figure, change) in [("totalUsed", quantity), ("remaining", -quantity)] {
                        if let Some(value) = usage.extra.get(figure).and_then(|v| v.as_f64()) {
                            usage.extra.insert(figure, json_number(value + change));
                        }
                    }
                }
            }
            (Some(price), None) if matches!(price.kind(), PriceKind::Unit | PriceKind::Tier) => {
                customer.count_usage(&subscription, &grant.id, grant.max_usage, quantity);
                if let Some(access) = customer
                    .conditional_billable_access
                    .iter_mut()
                    .find(|a| a.subscription_id == subscription && a.billable_id == grant.id)
                {
                    access.extra.insert("updatedAt", json!(stamp));
                }
            }
            _ => return None,
        }
        touch(customer, &stamp);
        Some(external_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::data::{AtlasData, Metering};
    use crate::models::Push;

    fn platform(metering: Option<Metering>) -> (Platform, tokio::sync::broadcast::Receiver<Push>) {
        let mut data = AtlasData::sample();
        data.metering = metering;
        let (pushes, receiver) = tokio::sync::broadcast::channel(16);
        (Platform::new(data, "key".into(), pushes), receiver)
    }

    fn event(customer: &str, event_name: &str, key: &str, quantity: f64) -> Value {
        json!({"customerId": customer, "eventName": event_name, "idempotencyKey": key,
            "generatedAt": now_iso(), "data": {"quantity": quantity}})
    }

    #[test]
    fn events_move_usage_and_balances_after_the_delay_once_per_key() {
        let (mut platform, mut pushes) = platform(Some(Metering { delay_ms: 1000 }));
        let customer = platform.customers[0].clone();
        let subscription = &customer.active_subscriptions[0];
        let plan = platform
            .pricing_model
            .plan(&subscription.plan_id)
            .unwrap()
            .clone();
        let usage_grant = plan
            .entitlements
            .iter()
            .find(|g| {
                g.custom_pricing_unit_id.is_none()
                    && g.price
                        .as_ref()
                        .is_some_and(|p| matches!(p.kind(), PriceKind::Unit | PriceKind::Tier))
            })
            .expect("the sample's first customer has a usage-based feature");
        let before = customer
            .conditional_billable_access
            .iter()
            .find(|a| a.billable_id == usage_grant.id)
            .and_then(|a| a.current_usage)
            .unwrap_or(0.0);
        let batch = json!([
            event(&customer.id, &usage_grant.id, "k1", 5.0),
            event(&customer.id, &usage_grant.id, "k1", 5.0),
            event(&customer.id, &usage_grant.id, "k2", 1.0),
        ]);
        platform.post_events(Some(batch)).unwrap();
        let now = Instant::now();
        platform.apply_due_usage(now);
        assert!(pushes.try_recv().is_err(), "nothing before the delay");
        platform.apply_due_usage(now + Duration::from_millis(1001));
        let after = platform.customers[0]
            .conditional_billable_access
            .iter()
            .find(|a| a.billable_id == usage_grant.id && a.subscription_id == subscription.id)
            .and_then(|a| a.current_usage)
            .unwrap();
        assert_eq!(after, before + 6.0, "each key counted once");
        assert_eq!(
            pushes.try_recv().unwrap(),
            Push::InvalidateCustomer(customer.external_id.clone())
        );
        assert!(
            pushes.try_recv().is_err(),
            "one push for the customer's events of one run"
        );
    }

    #[test]
    fn without_metering_events_change_nothing() {
        let (mut platform, _pushes) = platform(None);
        let before = platform.customers.clone();
        let customer = &before[0];
        let grant = &platform.pricing_model.plans[0].entitlements[0].id.clone();
        platform
            .post_events(Some(json!([event(&customer.id, grant, "k", 1.0)])))
            .unwrap();
        platform.apply_due_usage(Instant::now() + Duration::from_secs(3600));
        assert_eq!(platform.customers, before);
    }
}
