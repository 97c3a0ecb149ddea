//! Why a feature is denied: the causes the Atlas React SDK names (`FeatureNotAllowedReason`),
//! found from the same data the engine decided from, and only once it said no.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::entitlements::{
    access, credit_unit, grants_of, CustomerFeature, FeatureId, FeatureType, LimitOutcome,
};
use crate::models::{Customer, PlanEntitlement, PricingModel};

/// Why a feature is denied, in the shapes of the Atlas React SDK's `FeatureNotAllowedReason`
/// (`@runonatlas/react` 2.8.0), plus three of ours: `unknownFeature` (the pricing model has
/// no such feature: a typo, or a feature not configured yet), `limitUnknown` (the app's limit
/// callback is missing or failed, so the limit could not be checked) and `accessRevoked` (the
/// platform turned a usage-based feature off where its grant has no maximum to report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "reason",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum DenialReason {
    /// No plan of the customer includes the feature.
    NotIncluded {
        /// The feature id.
        id: String,
    },
    /// The app's count is at the plan's limit (or would pass it with the quantity asked).
    LimitReached {
        /// The feature id.
        id: String,
        /// The usage before the request, as the app's limit callback counted it.
        #[serde(serialize_with = "crate::models::number::serialize")]
        current_usage: f64,
        /// The plan's limit.
        #[serde(serialize_with = "crate::models::number::serialize")]
        limit: f64,
    },
    /// A usage-based feature reached its maximum usage in every subscription granting it.
    /// Every entry has its `maxUsage`, as the React SDK's type requires.
    MaxUsageReached {
        /// The feature id.
        id: String,
        /// The usage of each subscription granting it.
        usage: Vec<MaxUsage>,
    },
    /// A credit-based feature that blocks overage has no credits left (or too few for the
    /// quantity asked).
    InsufficientCredits {
        /// The feature id.
        id: String,
        /// The credit currency and its balance.
        custom_pricing_unit: CreditShortfall,
    },
    /// The pricing model has no feature with this id.
    UnknownFeature {
        /// The feature id.
        id: String,
    },
    /// The feature has a limit, but the app's limit callback is missing or failed.
    LimitUnknown {
        /// The feature id.
        id: String,
    },
    /// One of ours: the platform turned off a usage-based feature (`access: false`) for a
    /// subscription whose grant has no maximum, so there is no `maxUsageReached` to report
    /// (the React SDK's type requires a `maxUsage`; it gives no reason there itself).
    AccessRevoked {
        /// The feature id.
        id: String,
    },
}

/// A subscription's usage of a usage-based feature against its maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MaxUsage {
    /// Usage in the current period.
    #[serde(serialize_with = "crate::models::number::serialize")]
    pub current_usage: f64,
    /// The plan's maximum, if it has one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::models::number::serialize_option"
    )]
    pub max_usage: Option<f64>,
    /// The subscription.
    pub subscription_id: String,
}

/// The credits a credit-based feature lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreditShortfall {
    /// The credit currency.
    pub custom_pricing_unit_id: String,
    /// Credits left.
    #[serde(serialize_with = "crate::models::number::serialize")]
    pub balance: f64,
}

impl DenialReason {
    /// The feature it is about.
    pub fn feature(&self) -> &str {
        match self {
            Self::NotIncluded { id }
            | Self::LimitReached { id, .. }
            | Self::MaxUsageReached { id, .. }
            | Self::InsufficientCredits { id, .. }
            | Self::UnknownFeature { id }
            | Self::LimitUnknown { id }
            | Self::AccessRevoked { id } => id,
        }
    }
}

impl std::fmt::Display for DenialReason {
    /// A sentence for the person using the app: what stops them, with the numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotIncluded { id } => write!(f, "Your plan does not include {id}"),
            Self::LimitReached {
                id,
                current_usage,
                limit,
            } => write!(f, "You have used {current_usage} of {limit} {id}"),
            Self::MaxUsageReached { id, .. } => {
                write!(
                    f,
                    "You have reached the maximum usage of {id} for this period"
                )
            }
            Self::InsufficientCredits {
                id,
                custom_pricing_unit,
            } => write!(
                f,
                "Not enough credits for {id}: {} left",
                custom_pricing_unit.balance
            ),
            Self::UnknownFeature { id } => write!(f, "{id} is not a feature of this app's plans"),
            Self::LimitUnknown { id } => write!(f, "The usage of {id} could not be counted"),
            Self::AccessRevoked { id } => {
                write!(f, "{id} is not available to your account for now")
            }
        }
    }
}

/// Why the customer may not use `feature`: the first cause found, in the order the React SDK
/// looks for them. Called only for a feature [`is_allowed`](crate::entitlements::is_allowed)
/// refused, so the allowed path never builds one.
pub fn denial_reason(
    customer: &Customer,
    model: &PricingModel,
    now: OffsetDateTime,
    feature: &str,
    outcome: LimitOutcome,
) -> DenialReason {
    let id = feature.to_owned();
    if !model.entitlements.iter().any(|e| e.slug == feature) {
        return DenialReason::UnknownFeature { id };
    }
    let granted: Vec<(&str, &PlanEntitlement)> =
        grants_of(customer, model, now, FeatureId::of(model, feature)).collect();
    if !granted
        .iter()
        .any(|(_, grant)| grant.included || grant.limit.is_some())
    {
        return DenialReason::NotIncluded { id };
    }
    let limit = granted
        .iter()
        .filter_map(|(_, grant)| grant.limit)
        .reduce(f64::max);
    if let Some(limit) = limit {
        return match outcome {
            LimitOutcome::Usage(current_usage) => DenialReason::LimitReached {
                id,
                current_usage,
                limit,
            },
            LimitOutcome::NoCallback | LimitOutcome::Failed | LimitOutcome::TimedOut => {
                DenialReason::LimitUnknown { id }
            }
        };
    }
    let usage: Vec<MaxUsage> = granted
        .iter()
        .filter(|(_, grant)| FeatureType::of(grant) == FeatureType::UsageBased)
        .map(|(subscription, grant)| MaxUsage {
            current_usage: access(customer, subscription, grant)
                .and_then(|a| a.current_usage)
                .unwrap_or(0.0),
            max_usage: grant.max_usage,
            subscription_id: (*subscription).to_owned(),
        })
        .collect();
    if !usage.is_empty() {
        return max_usage_reached(id, usage);
    }
    let credit = granted
        .iter()
        .find_map(|(_, grant)| credit_unit(FeatureType::of(grant), grant));
    if let Some(unit) = credit {
        return DenialReason::InsufficientCredits {
            id,
            custom_pricing_unit: CreditShortfall {
                custom_pricing_unit_id: unit.to_owned(),
                balance: customer.balance(unit),
            },
        };
    }
    DenialReason::NotIncluded { id }
}

/// `maxUsageReached` when every subscription's entry has a maximum (the React SDK's type
/// requires one); else the platform revoked access without a maximum: `accessRevoked`.
fn max_usage_reached(id: String, usage: Vec<MaxUsage>) -> DenialReason {
    if usage.iter().all(|usage| usage.max_usage.is_some()) {
        DenialReason::MaxUsageReached { id, usage }
    } else {
        DenialReason::AccessRevoked { id }
    }
}

/// Why a feature of a customer's [`features`](crate::AtlasClient::features) list is denied, as
/// the React SDK's `useFeaturesAllowed` reads it from the list: `None` when it is allowed.
/// `feature` is `None` when the list does not have the id (no plan of the customer grants it).
pub fn reason_from_feature(id: &str, feature: Option<&CustomerFeature>) -> Option<DenialReason> {
    let id = id.to_owned();
    let Some(feature) = feature else {
        return Some(DenialReason::NotIncluded { id });
    };
    if feature.allowed {
        return None;
    }
    if !feature.included {
        return Some(DenialReason::NotIncluded { id });
    }
    if let Some(limits) = &feature.limits {
        return Some(match (limits.current, limits.limit) {
            (Some(current_usage), Some(limit)) => DenialReason::LimitReached {
                id,
                current_usage,
                limit,
            },
            _ => DenialReason::LimitUnknown { id },
        });
    }
    if let Some(usage) = feature.usage.as_ref().filter(|usage| !usage.is_empty()) {
        let usage = usage
            .iter()
            .map(|usage| MaxUsage {
                current_usage: usage.current,
                max_usage: usage.max_usage,
                subscription_id: usage.subscription_id.clone(),
            })
            .collect();
        return Some(max_usage_reached(id, usage));
    }
    if let Some(unit) = &feature.custom_pricing_unit {
        return Some(DenialReason::InsufficientCredits {
            id,
            custom_pricing_unit: CreditShortfall {
                custom_pricing_unit_id: unit.custom_pricing_unit_id.clone(),
                balance: unit.balance,
            },
        });
    }
    Some(DenialReason::NotIncluded { id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::{FeatureLimits, FeatureUsage};

    fn feature(allowed: bool, included: bool) -> CustomerFeature {
        CustomerFeature {
            id: "f".into(),
            internal_id: "ent_f".into(),
            allowed,
            included,
            kind: FeatureType::Entitlement,
            should_report_events: false,
            limits: None,
            usage: None,
            custom_pricing_unit: None,
            limit: None,
            current_usage: None,
        }
    }

    #[test]
    fn a_features_list_says_why_as_the_react_sdk_reads_it() {
        assert_eq!(reason_from_feature("f", Some(&feature(true, true))), None);
        assert_eq!(
            reason_from_feature("f", None),
            Some(DenialReason::NotIncluded { id: "f".into() })
        );
        let mut limited = feature(false, true);
        limited.limits = Some(FeatureLimits {
            limit: Some(3.0),
            current: Some(3.0),
        });
        assert_eq!(
            reason_from_feature("f", Some(&limited)).map(|r| r.to_string()),
            Some("You have used 3 of 3 f".to_owned())
        );
        let mut uncounted = limited.clone();
        uncounted.limits = Some(FeatureLimits {
            limit: Some(3.0),
            current: None,
        });
        assert_eq!(
            reason_from_feature("f", Some(&uncounted)),
            Some(DenialReason::LimitUnknown { id: "f".into() })
        );
        let mut metered = feature(false, true);
        metered.usage = Some(vec![FeatureUsage {
            current: 10.0,
            max_usage: Some(10.0),
            subscription_id: "sub".into(),
        }]);
        let json = serde_json::to_value(reason_from_feature("f", Some(&metered))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"reason": "maxUsageReached", "id": "f",
                "usage": [{"currentUsage": 10, "maxUsage": 10, "subscriptionId": "sub"}]})
        );
    }
}
