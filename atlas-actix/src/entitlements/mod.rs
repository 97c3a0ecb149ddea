//! The entitlement engine: what a customer's plans grant, as pure functions over the models.
//!
//! The rules are those of `@runonatlas/core` 2.8.0, quirks included where the frontend or the
//! conformance fixtures depend on them. One difference, on purpose: a subscription whose plan
//! is missing from the pricing model makes the official call fail; here it is skipped with a
//! warning, so one bad plan cannot lock a customer out of what its other plans grant.

pub(crate) mod findings;
pub(crate) mod grants;
pub(crate) mod named_in_code;
pub(crate) mod overlay;
pub(crate) mod quota;
pub mod reasons;
pub(crate) mod rules;
pub(crate) mod snapshot;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub(crate) use crate::entitlements::grants::{grants, grants_of, FeatureId};
use crate::entitlements::overlay::Overlay;
use crate::models::{Customer, PlanEntitlement, PriceKind, PricingModel};

/// How a feature is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum FeatureType {
    /// Included or not.
    Entitlement,
    /// Included up to a limit the app counts (seats, projects, ...).
    Limit,
    /// Charged per use; the app reports usage events.
    UsageBased,
    /// Paid with credits; the app reports usage events.
    CreditBased,
}

impl FeatureType {
    /// The type of what a plan grants: no price, an entitlement; a credit currency,
    /// credit-based; a unit or tiered price, usage-based; else a limit when it has one.
    pub fn of(grant: &PlanEntitlement) -> Self {
        let Some(price) = &grant.price else {
            return Self::Entitlement;
        };
        if grant.custom_pricing_unit_id.is_some() {
            return Self::CreditBased;
        }
        match price.kind() {
            PriceKind::Unit | PriceKind::Tier => Self::UsageBased,
            PriceKind::Other if grant.limit.is_some() => Self::Limit,
            PriceKind::Other => Self::Entitlement,
        }
    }

    /// Whether using the feature must be reported as usage events.
    pub fn reports_events(self) -> bool {
        matches!(self, Self::UsageBased | Self::CreditBased)
    }
}

/// What a customer may use of one feature, as `features` returns it (the official
/// `CustomerFeature`, camelCase JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CustomerFeature {
    /// The feature id (slug), such as `data-explorer`.
    pub id: String,
    /// The feature's internal id; usage events are named by it.
    pub internal_id: String,
    /// Whether the customer may use it now.
    pub allowed: bool,
    /// Whether a plan of the customer includes it.
    pub included: bool,
    /// How it is sold.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// Whether using it must be reported with [`AtlasClient::enqueue`](crate::AtlasClient::enqueue).
    pub should_report_events: bool,
    /// The limit and the usage the app's callback reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FeatureLimits>,
    /// Usage of a usage-based feature, per subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Vec<FeatureUsage>>,
    /// The credit balance of a credit-based feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_pricing_unit: Option<CreditBalance>,
    /// Deprecated copy of a limit, which the frontend still reads.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub limit: Option<f64>,
    /// Deprecated copy of the usage a limit callback reported, which the frontend still reads.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub current_usage: Option<f64>,
}

/// A feature's limit and current usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FeatureLimits {
    /// The limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub limit: Option<f64>,
    /// The usage the app's limit callback reported.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub current: Option<f64>,
}

/// Usage of a usage-based feature under one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FeatureUsage {
    /// Usage in the current period.
    #[serde(serialize_with = "crate::models::number::serialize")]
    pub current: f64,
    /// The plan's usage cap.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub max_usage: Option<f64>,
    /// The subscription.
    pub subscription_id: String,
}

/// A customer's balance for a credit-based feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreditBalance {
    /// Credits left.
    #[serde(serialize_with = "crate::models::number::serialize")]
    pub balance: f64,
    /// The credit currency.
    pub custom_pricing_unit_id: String,
    /// Whether the feature stops when no credits are left.
    pub block_overage: bool,
}

/// What the app's limit callback said for one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LimitOutcome {
    /// No callback is registered for the feature.
    NoCallback,
    /// The callback counted this usage.
    Usage(f64),
    /// The callback failed.
    Failed,
    /// The callback took longer than `limit_timeout`.
    TimedOut,
}

/// The slugs of the limited features the customer's valid subscriptions grant: the limit
/// callbacks a [`customer_features`] call needs, each once.
pub fn limited_features<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
) -> Vec<&'a str> {
    let mut slugs: Vec<&str> = Vec::new();
    for (_, grant, slug) in grants(customer, model, now, false) {
        if grant.limit.is_some() && !slugs.contains(&slug) {
            slugs.push(slug);
        }
    }
    slugs
}

/// Everything the customer may use, from its valid subscriptions.
///
/// `limits` gives, per feature slug, what the app's limit callback said (features missing from
/// it have no callback). A feature in several subscriptions is merged least-restrictively.
pub fn customer_features(
    customer: &Customer,
    model: &PricingModel,
    now: OffsetDateTime,
    allow_unknown_limits: bool,
    limits: &HashMap<&str, LimitOutcome>,
) -> Vec<CustomerFeature> {
    let outcome = |slug: &str| {
        limits
            .get(slug)
            .copied()
            .unwrap_or(LimitOutcome::NoCallback)
    };
    // The official client evaluates grants concurrently; those that await a limit callback
    // finish after those that do not, and merging follows that order.
    let awaits_callback = |grant: &PlanEntitlement, slug: &str| {
        grant.limit.is_some() && outcome(slug) != LimitOutcome::NoCallback
    };
    let immediate =
        grants(customer, model, now, true).filter(|(_, grant, slug)| !awaits_callback(grant, slug));
    let awaited =
        grants(customer, model, now, false).filter(|(_, grant, slug)| awaits_callback(grant, slug));

    let mut features: Vec<CustomerFeature> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (subscription_id, grant, slug) in immediate.chain(awaited) {
        let evaluated = evaluate(
            customer,
            subscription_id,
            grant,
            outcome(slug),
            allow_unknown_limits,
        );
        match index.get(slug) {
            Some(&at) => merge(&mut features[at], evaluated, subscription_id, grant),
            None => {
                index.insert(slug, features.len());
                let entitlement_id = grant.id.clone();
                features.push(evaluated.into_feature(slug, entitlement_id, subscription_id, grant));
            }
        }
    }
    features
}

/// One grant of one subscription, evaluated.
struct Evaluated {
    kind: FeatureType,
    allowed: bool,
    /// What the limit callback reported.
    limit_usage: Option<f64>,
    /// Usage of a usage-based feature.
    usage: Option<f64>,
    credit: Option<CreditBalance>,
}

impl Evaluated {
    fn into_feature(
        self,
        slug: &str,
        internal_id: String,
        subscription_id: &str,
        grant: &PlanEntitlement,
    ) -> CustomerFeature {
        CustomerFeature {
            id: slug.to_owned(),
            internal_id,
            allowed: self.allowed,
            included: grant.included,
            kind: self.kind,
            should_report_events: self.kind.reports_events(),
            limits: grant.limit.map(|limit| FeatureLimits {
                limit: Some(limit),
                current: self.limit_usage,
            }),
            usage: self.usage.map(|current| {
                vec![FeatureUsage {
                    current,
                    max_usage: grant.max_usage,
                    subscription_id: subscription_id.to_owned(),
                }]
            }),
            custom_pricing_unit: self.credit,
            limit: grant.limit,
            current_usage: self.limit_usage,
        }
    }
}

fn evaluate(
    customer: &Customer,
    subscription_id: &str,
    grant: &PlanEntitlement,
    outcome: LimitOutcome,
    allow_unknown_limits: bool,
) -> Evaluated {
    let kind = FeatureType::of(grant);
    let limit_usage = match (grant.limit, outcome) {
        (Some(_), LimitOutcome::Usage(usage)) => Some(usage),
        _ => None,
    };
    let usage = (kind == FeatureType::UsageBased).then(|| {
        access(customer, subscription_id, grant)
            .and_then(|a| a.current_usage)
            .unwrap_or(0.0)
    });
    let credit = credit_unit(kind, grant).map(|unit_id| CreditBalance {
        balance: customer.balance(unit_id),
        custom_pricing_unit_id: unit_id.to_owned(),
        block_overage: grant.block_overage.unwrap_or(false),
    });
    Evaluated {
        kind,
        allowed: grant_allows(
            customer,
            &Overlay::default(),
            subscription_id,
            grant,
            outcome,
            allow_unknown_limits,
            1.0,
        ),
        limit_usage,
        usage,
        credit,
    }
}

/// The customer's usage-based access entry for this grant of this subscription.
pub(crate) fn access<'a>(
    customer: &'a Customer,
    subscription_id: &str,
    grant: &PlanEntitlement,
) -> Option<&'a crate::models::BillableAccess> {
    customer
        .conditional_billable_access
        .iter()
        .find(|access| access.subscription_id == subscription_id && access.billable_id == grant.id)
}

/// The credit currency of a credit-based grant.
pub(crate) fn credit_unit(kind: FeatureType, grant: &PlanEntitlement) -> Option<&str> {
    (kind == FeatureType::CreditBased)
        .then_some(grant.custom_pricing_unit_id.as_deref())
        .flatten()
        .filter(|id| !id.is_empty())
}

/// Whether one grant of one subscription allows the feature: `included`, replaced by the
/// limit check when the grant has a limit, then denied by a usage-based access entry that
/// says so, or by an exhausted credit balance that blocks overage.
pub(crate) fn grant_allows(
    customer: &Customer,
    overlay: &Overlay<'_>,
    subscription_id: &str,
    grant: &PlanEntitlement,
    outcome: LimitOutcome,
    allow_unknown_limits: bool,
    quantity: f64,
) -> bool {
    let kind = FeatureType::of(grant);
    let mut allowed = grant.included;
    if let Some(limit) = grant.limit {
        // A limit replaces `included`: a feature not included is allowed below its limit.
        allowed = match outcome {
            LimitOutcome::Usage(usage) => fits(usage, quantity, limit),
            LimitOutcome::NoCallback | LimitOutcome::Failed | LimitOutcome::TimedOut => {
                allow_unknown_limits
            }
        };
    }
    if kind == FeatureType::UsageBased {
        let access = access(customer, subscription_id, grant);
        let pending = overlay.usage(subscription_id, &grant.id);
        let current = access.and_then(|a| a.current_usage).unwrap_or(0.0) + pending;
        // Pending usage ends access at the maximum, as the platform's aggregation will.
        let reached = pending > 0.0 && grant.max_usage.is_some_and(|max| current >= max);
        if reached || access.is_some_and(|a| a.access == Some(false)) {
            allowed = false;
        }
        // The platform's access flag answers for one more unit; a larger quantity must fit
        // under the maximum too.
        if let Some(max) = grant.max_usage.filter(|_| quantity > 1.0) {
            allowed &= current + quantity <= max;
        }
    }
    if let Some(unit_id) = credit_unit(kind, grant) {
        let balance = customer.balance(unit_id) - overlay.credits(unit_id);
        let short = if quantity > 1.0 {
            balance < quantity
        } else {
            balance <= 0.0
        };
        if grant.block_overage.unwrap_or(false) && short {
            allowed = false;
        }
    }
    allowed
}

/// Whether `quantity` more units fit under `cap` after `current`. One unit (or less) fits while
/// the count is below the cap, as the official client decides; more must fit whole.
fn fits(current: f64, quantity: f64, cap: f64) -> bool {
    if quantity > 1.0 {
        current + quantity <= cap
    } else {
        current < cap
    }
}

/// Whether the customer may use `quantity` units of one feature (1 for a plain check): some
/// grant of a valid subscription allows it (the least-restrictive merge of
/// [`customer_features`], without building the features). Above one unit, a limit, a maximum
/// usage or a credit balance must hold the whole quantity: current + quantity ≤ limit.
pub fn is_allowed(
    customer: &Customer,
    model: &PricingModel,
    now: OffsetDateTime,
    feature: &str,
    allow_unknown_limits: bool,
    outcome: LimitOutcome,
    quantity: f64,
) -> bool {
    is_allowed_over(
        customer,
        &Overlay::default(),
        model,
        now,
        FeatureId::of(model, feature),
        allow_unknown_limits,
        outcome,
        quantity,
    )
}

/// [`is_allowed`] with pending usage laid over the customer's figures: as `is_allowed` of the
/// [`projected`](quota::projected) customer, without the copy.
#[allow(clippy::too_many_arguments)] // is_allowed's inputs and the overlay
pub(crate) fn is_allowed_over(
    customer: &Customer,
    overlay: &Overlay<'_>,
    model: &PricingModel,
    now: OffsetDateTime,
    feature: FeatureId<'_>,
    allow_unknown_limits: bool,
    outcome: LimitOutcome,
    quantity: f64,
) -> bool {
    grants_of(customer, model, now, feature).any(|(subscription_id, grant)| {
        grant_allows(
            customer,
            overlay,
            subscription_id,
            grant,
            outcome,
            allow_unknown_limits,
            quantity,
        )
    })
}

/// The internal id to report a feature's usage under, when the customer's valid
/// subscriptions grant it and its use must be reported (usage- or credit-based): what
/// [`customer_features`] says in `internal_id` and `should_report_events`, without building
/// the features, for [`enqueue`](crate::AtlasClient::enqueue) on every usage-reporting request.
pub(crate) fn usage_event_name<'a>(
    customer: &'a Customer,
    model: &'a PricingModel,
    now: OffsetDateTime,
    feature: &str,
) -> Option<&'a str> {
    let mut granted = grants_of(customer, model, now, FeatureId::of(model, feature));
    let (_, first) = granted.next()?;
    let reports = FeatureType::of(first).reports_events()
        || granted.any(|(_, grant)| FeatureType::of(grant).reports_events());
    reports.then_some(first.id.as_str())
}

/// Whether some grant of the feature in the customer's valid subscriptions has a limit.
pub fn is_limited(
    customer: &Customer,
    model: &PricingModel,
    now: OffsetDateTime,
    feature: &str,
) -> bool {
    grants_of(customer, model, now, FeatureId::of(model, feature))
        .any(|(_, grant)| grant.limit.is_some())
}

/// Merges another subscription's grant of the same feature: the least restrictive wins.
fn merge(
    feature: &mut CustomerFeature,
    other: Evaluated,
    subscription_id: &str,
    grant: &PlanEntitlement,
) {
    let mut usage = feature.usage.take().unwrap_or_default();
    if other.usage.is_some() || grant.max_usage.is_some() {
        usage.push(FeatureUsage {
            current: other.usage.unwrap_or(0.0),
            max_usage: grant.max_usage,
            subscription_id: subscription_id.to_owned(),
        });
    }
    let previous = feature.limits.take().unwrap_or_default();
    feature.limits = Some(FeatureLimits {
        current: previous.current.or(other.limit_usage),
        limit: match (previous.limit, grant.limit) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0).max(b.unwrap_or(0.0))),
        },
    });
    feature.usage = (!usage.is_empty()).then_some(usage);
    feature.included |= grant.included;
    feature.allowed |= other.allowed;
    feature.should_report_events |= other.kind.reports_events();
    // As the official client does: the merged feature keeps the first type, drops the credit
    // balance, and its deprecated copies are those of the last grant merged.
    feature.custom_pricing_unit = None;
    feature.limit = grant.limit;
    feature.current_usage = other.limit_usage;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

    fn model() -> PricingModel {
        serde_json::from_value(json!({
            "entitlements": [
                {"id": "ent_flag", "slug": "flag"},
                {"id": "ent_seats", "slug": "seats"},
                {"id": "ent_calls", "slug": "calls"},
                {"id": "ent_credits", "slug": "credits"},
                {"id": "ent_free_limit", "slug": "free-limit"}
            ],
            "plans": [
                {"id": "basic", "status": "available", "entitlements": [
                    {"id": "ent_flag", "included": true},
                    {"id": "ent_seats", "included": true, "limit": 3, "price": {"priceType": "none"}},
                    {"id": "ent_calls", "included": true, "maxUsage": 100, "price": {"priceType": "unit", "price": 1}},
                    {"id": "ent_credits", "included": true, "customPricingUnitId": "cpu", "blockOverage": true,
                     "price": {"priceType": "unit", "price": 1}},
                    {"id": "ent_free_limit", "included": false, "limit": 5},
                    {"id": "ent_unknown", "included": true}
                ]},
                {"id": "big", "status": "available", "entitlements": [
                    {"id": "ent_flag", "included": false},
                    {"id": "ent_seats", "included": true, "limit": 10, "price": {"priceType": "none"}},
                    {"id": "ent_calls", "included": true, "price": {"priceType": "tier", "tiers": []}}
                ]}
            ]
        }))
        .unwrap()
    }

    fn customer(plans: &[(&str, &str, Option<&str>)], extra: serde_json::Value) -> Customer {
        let subscriptions: Vec<_> = plans
            .iter()
            .map(|(id, plan, end)| json!({"id": id, "planId": plan, "endDate": end}))
            .collect();
        let mut customer =
            json!({"id": "cus_1", "externalId": "c1", "activeSubscriptions": subscriptions});
        customer
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(customer).unwrap()
    }

    fn by_slug(features: Vec<CustomerFeature>) -> HashMap<String, CustomerFeature> {
        features.into_iter().map(|f| (f.id.clone(), f)).collect()
    }

    fn features(
        customer: &Customer,
        limits: &[(&str, LimitOutcome)],
        allow_unknown: bool,
    ) -> HashMap<String, CustomerFeature> {
        let limits = limits.iter().copied().collect();
        by_slug(customer_features(
            customer,
            &model(),
            NOW,
            allow_unknown,
            &limits,
        ))
    }

    #[test]
    fn usage_event_names_agree_with_the_features() {
        let model = model();
        let plans = model.plans.iter().map(|plan| plan.id.as_str());
        let mut subscriptions: Vec<Vec<(&str, &str, Option<&str>)>> =
            plans.clone().map(|plan| vec![("s1", plan, None)]).collect();
        subscriptions.push(plans.map(|plan| ("s", plan, None)).collect());
        subscriptions.push(vec![("s1", "basic", Some("2000-01-01T00:00:00Z"))]);
        for plans in subscriptions {
            let customer = customer(&plans, json!({}));
            let features = features(&customer, &[], false);
            for entitlement in &model.entitlements {
                let expected = features
                    .get(&entitlement.slug)
                    .filter(|f| f.should_report_events)
                    .map(|f| f.internal_id.as_str());
                assert_eq!(
                    usage_event_name(&customer, &model, NOW, &entitlement.slug),
                    expected,
                    "{} under {plans:?}",
                    entitlement.slug
                );
            }
        }
    }

    #[test]
    fn types_follow_the_price() {
        let model = model();
        let kinds: Vec<FeatureType> = model.plans[0]
            .entitlements
            .iter()
            .map(FeatureType::of)
            .collect();
        use FeatureType::*;
        assert_eq!(
            kinds,
            [
                Entitlement,
                Limit,
                UsageBased,
                CreditBased,
                Entitlement,
                Entitlement
            ]
        );
        assert!(UsageBased.reports_events() && CreditBased.reports_events());
        assert!(!Limit.reports_events() && !Entitlement.reports_events());
    }

    #[test]
    fn a_plain_feature_is_allowed_when_included() {
        let c = customer(&[("s1", "basic", None)], json!({}));
        let f = features(&c, &[], false);
        let flag = &f["flag"];
        assert!(flag.allowed && flag.included && !flag.should_report_events);
        assert_eq!(flag.internal_id, "ent_flag");
        assert!(flag.limits.is_none() && flag.usage.is_none());
        assert!(
            !f.contains_key("unknown"),
            "grants of unknown features are skipped"
        );
    }

    #[test]
    fn limits_use_the_callback_or_allow_unknown_limits() {
        let c = customer(&[("s1", "basic", None)], json!({}));
        let below = features(&c, &[("seats", LimitOutcome::Usage(2.0))], false);
        assert!(below["seats"].allowed);
        assert_eq!(
            below["seats"].limits,
            Some(FeatureLimits {
                limit: Some(3.0),
                current: Some(2.0)
            })
        );
        assert_eq!(below["seats"].current_usage, Some(2.0));
        let at = features(&c, &[("seats", LimitOutcome::Usage(3.0))], false);
        assert!(!at["seats"].allowed, "usage must be below the limit");
        let failed = features(&c, &[("seats", LimitOutcome::Failed)], true);
        assert!(failed["seats"].allowed);
        assert_eq!(
            failed["seats"].limits,
            Some(FeatureLimits {
                limit: Some(3.0),
                current: None
            })
        );
        let none = features(&c, &[], false);
        assert!(!none["seats"].allowed);
        // A limit overrides `included`: not included, but below its limit.
        let not_included = features(&c, &[("free-limit", LimitOutcome::Usage(1.0))], false);
        assert!(not_included["free-limit"].allowed && !not_included["free-limit"].included);
        assert_eq!(
            not_included["free-limit"].kind,
            FeatureType::Entitlement,
            "no price: not a limit type"
        );
    }

    #[test]
    fn usage_based_features_read_their_access_entry() {
        let access = json!({"conditionalBillableAccess": [
            {"billableId": "ent_calls", "subscriptionId": "s1", "access": false, "currentUsage": 120},
            {"billableId": "ent_calls", "subscriptionId": "other", "access": true, "currentUsage": 5}
        ]});
        let c = customer(&[("s1", "basic", None)], access);
        let calls = &features(&c, &[], false)["calls"];
        assert!(!calls.allowed && calls.should_report_events);
        assert_eq!(
            calls.usage,
            Some(vec![FeatureUsage {
                current: 120.0,
                max_usage: Some(100.0),
                subscription_id: "s1".into()
            }])
        );
        let without = customer(&[("s1", "basic", None)], json!({}));
        let calls = &features(&without, &[], false)["calls"];
        assert!(calls.allowed);
        assert_eq!(calls.usage.as_ref().unwrap()[0].current, 0.0);
    }

    #[test]
    fn credits_block_overage_at_zero() {
        let empty = customer(
            &[("s1", "basic", None)],
            json!({"customPricingUnits": [{"customPricingUnitId": "cpu", "balance": 0}]}),
        );
        let credits = &features(&empty, &[], false)["credits"];
        assert!(!credits.allowed && credits.should_report_events);
        assert_eq!(
            credits.custom_pricing_unit,
            Some(CreditBalance {
                balance: 0.0,
                custom_pricing_unit_id: "cpu".into(),
                block_overage: true
            })
        );
        let funded = customer(
            &[("s1", "basic", None)],
            json!({"customPricingUnits": [{"customPricingUnitId": "cpu", "balance": 9}]}),
        );
        assert!(features(&funded, &[], false)["credits"].allowed);
    }

    #[test]
    fn ended_subscriptions_and_unknown_plans_grant_nothing() {
        let c = customer(
            &[
                ("s1", "basic", Some("2020-01-01T00:00:00.000Z")),
                ("s2", "gone", None),
                ("s3", "big", Some("2099-01-01T00:00:00Z")),
            ],
            json!({}),
        );
        let f = features(&c, &[], false);
        assert!(!f.contains_key("credits"), "basic has ended");
        assert!(f.contains_key("seats"), "big runs until 2099");
        assert!(!f["flag"].allowed, "big does not include flag");
    }

    #[test]
    fn two_subscriptions_merge_least_restrictively() {
        let c = customer(&[("s1", "basic", None), ("s2", "big", None)], json!({}));
        let f = features(&c, &[("seats", LimitOutcome::Usage(5.0))], false);
        let flag = &f["flag"];
        assert!(flag.allowed && flag.included);
        assert_eq!(
            flag.limits,
            Some(FeatureLimits::default()),
            "merged features always carry limits"
        );
        let seats = &f["seats"];
        assert!(seats.allowed, "5 is over basic's 3 but under big's 10");
        assert_eq!(
            seats.limits,
            Some(FeatureLimits {
                limit: Some(10.0),
                current: Some(5.0)
            })
        );
        assert_eq!(
            seats.limit,
            Some(10.0),
            "the deprecated copy is the last grant's"
        );
        let calls = &f["calls"];
        assert_eq!(calls.kind, FeatureType::UsageBased);
        let subscriptions: Vec<&str> = calls
            .usage
            .as_ref()
            .unwrap()
            .iter()
            .map(|u| u.subscription_id.as_str())
            .collect();
        assert_eq!(subscriptions, ["s1", "s2"]);
    }

    #[test]
    fn is_allowed_agrees_with_the_features() {
        let access = json!({"conditionalBillableAccess": [
            {"billableId": "ent_calls", "subscriptionId": "s1", "access": false}],
            "customPricingUnits": [{"customPricingUnitId": "cpu", "balance": 0}]});
        let customers = [
            customer(&[("s1", "basic", None)], access.clone()),
            customer(&[("s1", "basic", None), ("s2", "big", None)], access),
            customer(&[("s2", "big", Some("2020-01-01T00:00:00Z"))], json!({})),
        ];
        let model = model();
        for customer in &customers {
            for outcome in [
                LimitOutcome::NoCallback,
                LimitOutcome::Failed,
                LimitOutcome::Usage(2.0),
                LimitOutcome::Usage(5.0),
            ] {
                for allow_unknown in [false, true] {
                    let limits = ["seats", "free-limit"]
                        .into_iter()
                        .map(|slug| (slug, outcome))
                        .collect();
                    let features = customer_features(customer, &model, NOW, allow_unknown, &limits);
                    for slug in ["flag", "seats", "calls", "credits", "free-limit", "nothing"] {
                        let outcome = if slug == "seats" || slug == "free-limit" {
                            outcome
                        } else {
                            LimitOutcome::NoCallback
                        };
                        let expected = features.iter().any(|f| f.id == slug && f.allowed);
                        assert_eq!(
                            is_allowed(customer, &model, NOW, slug, allow_unknown, outcome, 1.0),
                            expected,
                            "{slug} {outcome:?}"
                        );
                    }
                }
            }
        }
        assert!(is_limited(&customers[0], &model, NOW, "seats"));
        assert!(!is_limited(&customers[0], &model, NOW, "flag"));
    }

    #[test]
    fn limited_features_lists_each_slug_once() {
        let c = customer(&[("s1", "basic", None), ("s2", "big", None)], json!({}));
        let model = model();
        assert_eq!(limited_features(&c, &model, NOW), ["seats", "free-limit"]);
    }

    #[test]
    fn serialises_like_the_official_client() {
        let c = customer(&[("s1", "basic", None)], json!({}));
        let limits = [("seats", LimitOutcome::Usage(2.0))].into_iter().collect();
        let features = customer_features(&c, &model(), NOW, false, &limits);
        let seats = features.iter().find(|f| f.id == "seats").unwrap();
        assert_eq!(
            serde_json::to_value(seats).unwrap(),
            json!({"id": "seats", "internalId": "ent_seats", "allowed": true, "included": true, "type": "limit",
                   "shouldReportEvents": false, "limits": {"limit": 3, "current": 2}, "limit": 3, "currentUsage": 2})
        );
    }
}
