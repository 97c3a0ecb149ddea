use serde::{Deserialize, Serialize};

use super::Extra;

/// The merchant behind an API key (`GET /external/merchants/me`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Merchant {
    /// Internal id of the merchant; the emulator uses it as `merchantId` of what it creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `"test"` or `"prod"`.
    pub mode: String,
    /// Whether Stripe is connected, so paid plans can be bought.
    #[serde(default)]
    pub is_stripe_configured: bool,
    /// The plan new customers start on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_plan_id: Option<String>,
    /// Length of a trial, in days.
    #[serde(default, serialize_with = "super::number::serialize")]
    pub trial_duration_in_days: f64,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The merchant's plans and the features they grant (`GET /external/pricingModel`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PricingModel {
    /// Credit currencies that credit-based features draw from.
    #[serde(default)]
    pub custom_pricing_units: Vec<CustomPricingUnit>,
    /// Every feature of the merchant.
    pub entitlements: Vec<Entitlement>,
    /// Every plan, whatever its status.
    pub plans: Vec<Plan>,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

impl PricingModel {
    /// The plan with this id.
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.plans.iter().find(|plan| plan.id == plan_id)
    }

    /// The feature with this internal id.
    pub fn entitlement(&self, entitlement_id: &str) -> Option<&Entitlement> {
        self.entitlements.iter().find(|e| e.id == entitlement_id)
    }

    /// What a pricing page may show, as the official SDK's `getPublicPricingModel` gives it:
    /// available plans only, private ones only when `customer` is offered them, and no
    /// internal ids (`crossEnvironmentId`, `priceId`).
    pub fn public_view(&self, customer: Option<&super::Customer>) -> PricingModel {
        let public_price = |price: &PlanPrice| PlanPrice {
            price: price.price,
            extra: price.extra.without("priceId"),
        };
        let plans = self
            .plans
            .iter()
            .filter(|plan| plan.status == "available")
            .filter(|plan| {
                !plan.is_private || customer.is_some_and(|c| c.has_private_plan(&plan.id))
            })
            .map(|plan| Plan {
                status: "available".to_owned(),
                price: Some(plan.price.as_ref().map_or_else(
                    || PlanPrice {
                        price: None,
                        extra: Extra::new(),
                    },
                    public_price,
                )),
                prices: Some(
                    ["monthly", "quarterly", "annually"]
                        .into_iter()
                        .filter_map(|cadence| {
                            let price = plan.prices.as_ref()?.get(cadence)?;
                            Some((cadence.to_owned(), public_price(price)))
                        })
                        .collect(),
                ),
                entitlements: plan
                    .entitlements
                    .iter()
                    .map(|grant| PlanEntitlement {
                        extra: grant.extra.without("priceId"),
                        ..grant.clone()
                    })
                    .collect(),
                extra: plan.extra.without("crossEnvironmentId"),
                ..plan.clone()
            })
            .collect();
        PricingModel {
            custom_pricing_units: self
                .custom_pricing_units
                .iter()
                .map(|unit| CustomPricingUnit {
                    extra: unit.extra.without("crossEnvironmentId"),
                    ..unit.clone()
                })
                .collect(),
            entitlements: self
                .entitlements
                .iter()
                .map(|entitlement| Entitlement {
                    extra: entitlement.extra.without("crossEnvironmentId"),
                    ..entitlement.clone()
                })
                .collect(),
            plans,
            extra: Extra::new(),
        }
    }

    /// The credit currency with this id.
    pub fn custom_pricing_unit(&self, unit_id: &str) -> Option<&CustomPricingUnit> {
        self.custom_pricing_units.iter().find(|u| u.id == unit_id)
    }
}

/// A credit currency (for example "AI credits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CustomPricingUnit {
    /// Internal id.
    pub id: String,
    /// Name shown to customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Fields this type does not name (`crossEnvironmentId`, labels, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A feature of the merchant's product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Entitlement {
    /// Internal id, which plans and usage events refer to.
    pub id: String,
    /// The feature id that code checks, such as `data-explorer`.
    pub slug: String,
    /// Name shown to customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields this type does not name (`crossEnvironmentId`, labels, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A plan customers subscribe to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Plan {
    /// Internal id.
    pub id: String,
    /// Private plans are offered only to the customers listed in their `customerPrivatePlans`.
    #[serde(default)]
    pub is_private: bool,
    /// Name shown to customers.
    #[serde(default)]
    pub name: String,
    /// Description shown to customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `"available"`, `"draft"` or `"archived"`; only available plans can be bought.
    pub status: String,
    /// The default price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<PlanPrice>,
    /// Prices per billing cadence: `monthly`, `quarterly`, `annually`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<std::collections::BTreeMap<String, PlanPrice>>,
    /// What the plan grants.
    #[serde(default)]
    pub entitlements: Vec<PlanEntitlement>,
    /// Whether the plan can start with a trial.
    #[serde(default)]
    pub is_trial_allowed: bool,
    /// Fields this type does not name (`crossEnvironmentId`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Plan {
    /// Price of the plan for a billing cadence: the cadence's own price, else the default one,
    /// else free.
    pub fn price_for(&self, cadence: &str) -> f64 {
        self.prices
            .as_ref()
            .and_then(|prices| prices.get(cadence))
            .and_then(|price| price.price)
            .or_else(|| self.price.as_ref().and_then(|price| price.price))
            .unwrap_or(0.0)
    }
}

/// A plan's price for one cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PlanPrice {
    /// Amount per period.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub price: Option<f64>,
    /// Fields this type does not name (`priceId`, `status`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a plan grants of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PlanEntitlement {
    /// The [`Entitlement::id`] of the feature.
    pub id: String,
    /// Whether the plan includes the feature.
    #[serde(default)]
    pub included: bool,
    /// Maximum usage, checked against the app's limit callback.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub limit: Option<f64>,
    /// Usage cap of a usage-based feature.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub max_usage: Option<f64>,
    /// How the feature is charged; absent for a plain entitlement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<EntitlementPrice>,
    /// The credit currency a credit-based feature draws from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_pricing_unit_id: Option<String>,
    /// Whether a credit-based feature stops when the balance runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_overage: Option<bool>,
    /// Fields this type does not name (`priceId`, labels, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// How a plan charges for a feature: `{"priceType": "unit", "price": 0.01}` and the like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EntitlementPrice {
    /// `none`, `unit`, `tier` or `fixed`; kept as sent, so a new type passes through.
    pub price_type: String,
    /// Fields this type does not name (`price`, `tiers`, `quantity`, `cadence`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The kinds of [`EntitlementPrice::price_type`] that change how a feature is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceKind {
    /// Charged per unit of usage.
    Unit,
    /// Charged by usage tiers.
    Tier,
    /// Anything else: `none`, `fixed`, or a type this SDK does not know.
    Other,
}

impl EntitlementPrice {
    /// The kind of this price.
    pub fn kind(&self) -> PriceKind {
        match self.price_type.as_str() {
            "unit" => PriceKind::Unit,
            "tier" => PriceKind::Tier,
            _ => PriceKind::Other,
        }
    }
}
