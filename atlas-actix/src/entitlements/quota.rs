//! Quotas: the features whose use the platform meters against a maximum (a usage-based
//! feature with a `maxUsage`, a credit-based one that blocks overage), the platform's figure
//! for each, and the customer as the platform will show it once it has counted usage it has
//! not counted yet (the client's ledger of pending usage).

use smallvec::SmallVec;
use time::OffsetDateTime;

use crate::entitlements::overlay::{pending, Overlay};
pub(crate) use crate::entitlements::overlay::{Metered, Quota};
use crate::entitlements::{
    credit_unit, grant_allows, grants_of, FeatureId, FeatureType, LimitOutcome,
};
use crate::models::{Customer, PlanEntitlement, PricingModel};

/// Whether the customer's valid subscriptions meter `feature` against a maximum: the grant
/// its usage events are reported under (the first, as
/// [`usage_event_name`](crate::entitlements::usage_event_name) picks) decides.
pub(crate) fn quota_of<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
    feature: &str,
) -> Option<Quota<'a>> {
    metered_grant(customer, model, now, feature).and_then(|(_, grant)| grant_quota(grant))
}

/// The quota a metered grant sets, if any.
fn grant_quota(grant: &PlanEntitlement) -> Option<Quota<'_>> {
    let kind = FeatureType::of(grant);
    if kind == FeatureType::UsageBased && grant.max_usage.is_some() {
        return Some(Quota::Usage);
    }
    credit_unit(kind, grant)
        .filter(|_| grant.block_overage.unwrap_or(false))
        .map(Quota::Credits)
}

impl Metered<'_> {
    /// [`is_allowed_over`](crate::entitlements::is_allowed_over) of this quota's feature,
    /// from the metered grant when it is the feature's only one (the pass that read the figure
    /// found every grant); `None` when others may allow it too.
    pub(crate) fn sole_grant_allows(
        &self,
        customer: &Customer,
        overlay: &Overlay<'_>,
        outcome: LimitOutcome,
        allow_unknown_limits: bool,
        quantity: f64,
    ) -> Option<bool> {
        self.sole.then(|| {
            grant_allows(
                customer,
                overlay,
                self.subscription,
                self.grant,
                outcome,
                allow_unknown_limits,
                quantity,
            )
        })
    }
}

/// The feature's quota, when it has one. One pass over the grants: every quota check reads it.
pub(crate) fn metered<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
    feature: &'a str,
) -> Option<Metered<'a>> {
    let mut granted = grants_of(customer, model, now, FeatureId::of(model, feature));
    let (subscription, grant) = granted.next()?;
    let quota = grant_quota(grant)?;
    let usage = |subscription: &str, grant: &PlanEntitlement| {
        crate::entitlements::access(customer, subscription, grant)
            .and_then(|access| access.current_usage)
            .unwrap_or(0.0)
    };
    let mut sole = true;
    let figure = match quota {
        Quota::Usage => {
            usage(subscription, grant)
                + granted
                    .map(|(subscription, grant)| {
                        sole = false;
                        usage(subscription, grant)
                    })
                    .sum::<f64>()
        }
        Quota::Credits(unit) => {
            sole = granted.next().is_none();
            -customer.balance(unit)
        }
    };
    Some(Metered {
        feature,
        figure,
        quota,
        subscription,
        grant,
        sole,
    })
}

/// The quota features among `slugs`, in their order (two inline: most checks name one).
pub(crate) fn figures<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
    slugs: impl Iterator<Item = &'a str>,
) -> SmallVec<[Metered<'a>; 2]> {
    slugs
        .filter_map(|slug| metered(customer, model, now, slug))
        .collect()
}

/// The customer as the platform will show it once it has counted the pending `extra` units
/// of each of `quotas`: the metered grant's usage grows (and its access ends at the maximum, as
/// the platform's aggregation does), or the credit balance shrinks. Every rule of the engine
/// then reads the pending usage as it will read the platform's.
pub(crate) fn projected(
    customer: &Customer,
    quotas: &[Metered<'_>],
    extra: &[(&str, f64)],
) -> Customer {
    let mut projected = customer.rules_copy();
    for (metered, units) in pending(quotas, extra) {
        match metered.quota {
            Quota::Usage => {
                let grant = metered.grant;
                projected.count_usage(metered.subscription, &grant.id, grant.max_usage, units);
            }
            Quota::Credits(unit) => {
                projected.spend_credits(unit, units);
            }
        }
    }
    projected
}

/// What a quota has left once `wanted` more units are used: the metered grant's maximum
/// less its usage (usage-based), or the credit balance (credit-based); zero when nothing is
/// left or the feature has no quota. A figure for the fleet's ledger, which the caller checks
/// against the rules (another grant may allow more).
pub(crate) fn headroom(
    customer: &Customer,
    model: &PricingModel,
    now: OffsetDateTime,
    feature: &str,
    wanted: f64,
) -> f64 {
    let left = metered_grant(customer, model, now, feature).and_then(|(subscription, grant)| {
        match grant_quota(grant)? {
            Quota::Usage => {
                let used = crate::entitlements::access(customer, subscription, grant)
                    .and_then(|access| access.current_usage)
                    .unwrap_or(0.0);
                Some(grant.max_usage? - used)
            }
            Quota::Credits(unit) => Some(customer.balance(unit)),
        }
    });
    left.map_or(0.0, |left| (left - wanted).max(0.0))
}

/// The subscription and grant a feature's usage events are counted under: the first valid
/// grant of it, as the platform's aggregation (and the emulator's) applies them.
pub(crate) fn metered_grant<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
    feature: &str,
) -> Option<(&'a str, &'a PlanEntitlement)> {
    grants_of(customer, model, now, FeatureId::of(model, feature)).next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::{is_allowed, LimitOutcome};
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

    fn model() -> PricingModel {
        serde_json::from_value(json!({
            "entitlements": [
                {"id": "ent_tokens", "slug": "tokens"},
                {"id": "ent_images", "slug": "images"},
                {"id": "ent_open", "slug": "open"}
            ],
            "plans": [{"id": "p", "status": "available", "entitlements": [
                {"id": "ent_tokens", "included": true, "maxUsage": 100, "price": {"priceType": "unit", "price": 1}},
                {"id": "ent_images", "included": true, "customPricingUnitId": "cpu", "blockOverage": true,
                 "price": {"priceType": "unit", "price": 1}},
                {"id": "ent_open", "included": true, "price": {"priceType": "unit", "price": 1}}
            ]}]
        }))
        .unwrap()
    }

    fn customer(usage: f64, balance: f64) -> Customer {
        serde_json::from_value(json!({
            "id": "cus", "externalId": "c",
            "activeSubscriptions": [{"id": "s", "planId": "p"}],
            "conditionalBillableAccess": [{"billableId": "ent_tokens", "subscriptionId": "s",
                "access": true, "currentUsage": usage}],
            "customPricingUnits": [{"customPricingUnitId": "cpu", "balance": balance}]
        }))
        .unwrap()
    }

    fn allows(customer: &Customer, feature: &str, quantity: f64) -> bool {
        is_allowed(
            customer,
            &model(),
            NOW,
            feature,
            false,
            LimitOutcome::NoCallback,
            quantity,
        )
    }

    #[test]
    fn only_maxima_and_blocked_overage_are_quotas() {
        let model = model();
        let figure = |customer: &Customer, feature: &str| {
            metered(customer, &model, NOW, feature).map(|metered| metered.figure)
        };
        assert_eq!(figure(&customer(42.0, 0.0), "tokens"), Some(42.0));
        let customer = customer(0.0, 5.0);
        assert_eq!(
            quota_of(&customer, &model, NOW, "tokens"),
            Some(Quota::Usage)
        );
        assert_eq!(
            quota_of(&customer, &model, NOW, "images"),
            Some(Quota::Credits("cpu"))
        );
        assert_eq!(quota_of(&customer, &model, NOW, "open"), None);
        assert_eq!(quota_of(&customer, &model, NOW, "missing"), None);
        assert_eq!(figure(&customer, "tokens"), Some(0.0));
        assert_eq!(figure(&customer, "images"), Some(-5.0));
        assert_eq!(figure(&customer, "open"), None);
    }

    #[test]
    fn the_overlay_decides_as_the_projected_customer() {
        let model = model();
        let (mut decided, mut sole_answers) = (0, 0);
        for usage in [0.0, 50.0, 95.0, 99.0, 100.0, 120.0] {
            for balance in [0.0, 1.0, 3.0, 10.0] {
                let mut customers = vec![customer(usage, balance)];
                let mut bare = customer(usage, balance);
                bare.conditional_billable_access.clear();
                bare.custom_pricing_units.clear();
                customers.push(bare);
                // Two subscriptions grant each feature: the second's tokens are unused.
                let mut twice = customer(usage, balance);
                let mut second = twice.active_subscriptions[0].clone();
                second.id = "s2".to_owned();
                twice.active_subscriptions.push(second);
                customers.push(twice);
                for customer in &customers {
                    for extra in [0.0, 1.0, 4.0, 5.0, 10.0] {
                        let features = ["tokens", "images", "open"].into_iter();
                        let quotas = figures(customer, &model, NOW, features);
                        let pending: Vec<(&str, f64)> =
                            quotas.iter().map(|quota| (quota.feature, extra)).collect();
                        let projected = projected(customer, &quotas, &pending);
                        let overlay = Overlay::new(&quotas, &pending);
                        for feature in ["tokens", "images", "open"] {
                            for quantity in [1.0, 2.0, 5.0] {
                                let over = crate::entitlements::is_allowed_over(
                                    customer,
                                    &overlay,
                                    &model,
                                    NOW,
                                    FeatureId::of(&model, feature),
                                    false,
                                    LimitOutcome::NoCallback,
                                    quantity,
                                );
                                let case = format!("{feature} ×{quantity}, usage {usage}, balance {balance}, pending {extra}, {} subscriptions", customer.active_subscriptions.len());
                                assert_eq!(over, allows(&projected, feature, quantity), "{case}");
                                let quota = quotas.iter().find(|quota| quota.feature == feature);
                                let sole = quota.and_then(|quota| {
                                    quota.sole_grant_allows(
                                        customer,
                                        &overlay,
                                        LimitOutcome::NoCallback,
                                        false,
                                        quantity,
                                    )
                                });
                                assert!(sole.is_none_or(|sole| sole == over), "{case}");
                                sole_answers += usize::from(sole.is_some());
                                decided += usize::from(over);
                            }
                        }
                    }
                }
            }
        }
        assert!(
            decided > 0 && decided < 6 * 4 * 3 * 5 * 3 * 3,
            "both answers occur"
        );
        // The quotas of the customers with one subscription: tokens and images.
        assert_eq!(
            sole_answers,
            6 * 4 * 2 * 5 * 2 * 3,
            "a sole grant answers alone"
        );
    }

    /// `customer` once the platform counts `extra`, each feature of it a quota.
    fn project(customer: &Customer, model: &PricingModel, extra: &[(&str, f64)]) -> Customer {
        let quotas = figures(
            customer,
            model,
            NOW,
            extra.iter().map(|(feature, _)| *feature),
        );
        projected(customer, &quotas, extra)
    }

    #[test]
    fn pending_usage_is_read_as_the_platform_will_count_it() {
        let model = model();
        let customer = customer(90.0, 5.0);
        let nine = project(&customer, &model, &[("tokens", 9.0)]);
        assert!(allows(&nine, "tokens", 1.0), "99 of 100: one more fits");
        assert!(!allows(&nine, "tokens", 2.0));
        let ten = project(&customer, &model, &[("tokens", 10.0)]);
        assert!(!allows(&ten, "tokens", 1.0), "100 of 100");
        assert_eq!(
            ten.conditional_billable_access[0].current_usage,
            Some(100.0)
        );
        let four = project(&customer, &model, &[("images", 4.0)]);
        assert!(allows(&four, "images", 1.0));
        assert!(!allows(&four, "images", 2.0));
        let five = project(&customer, &model, &[("images", 5.0)]);
        assert!(!allows(&five, "images", 1.0));
        assert_eq!(five.balance("cpu"), 0.0);
    }

    #[test]
    fn a_missing_access_entry_is_made() {
        let model = model();
        let mut customer = customer(0.0, 0.0);
        customer.conditional_billable_access.clear();
        customer.custom_pricing_units.clear();
        let used_up = project(&customer, &model, &[("tokens", 100.0), ("images", 1.0)]);
        assert_eq!(used_up.conditional_billable_access[0].access, Some(false));
        assert_eq!(used_up.balance("cpu"), -1.0);
    }

    #[test]
    fn the_rules_copy_of_a_customer_decides_as_the_customer() {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../../data/atlas-data.json")).unwrap();
        let model: PricingModel = serde_json::from_value(data["pricingModel"].clone()).unwrap();
        let customers: Vec<Customer> = serde_json::from_value(data["customers"].clone()).unwrap();
        let no_callbacks = std::collections::HashMap::new();
        for customer in &customers {
            let copy = customer.rules_copy();
            for unknown_limits in [false, true] {
                assert_eq!(
                    crate::entitlements::customer_features(
                        &copy,
                        &model,
                        NOW,
                        unknown_limits,
                        &no_callbacks
                    ),
                    crate::entitlements::customer_features(
                        customer,
                        &model,
                        NOW,
                        unknown_limits,
                        &no_callbacks
                    ),
                    "{}",
                    customer.external_id
                );
            }
        }
    }
}
