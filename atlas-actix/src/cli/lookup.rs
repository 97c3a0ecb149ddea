//! `cargo atlas customer` and `cargo atlas check`: what the platform holds of a customer, and
//! what the SDK decides from it.

use std::path::Path;

use serde_json::json;

use super::{block_on, platform, Failure, Outcome, Output};
use crate::client::AtlasClient;
use crate::entitlements::{CustomerFeature, FeatureType};
use crate::models::Customer;

/// The customer, as the platform has it: an error (never a creation) when it has none.
async fn existing(atlas: &AtlasClient, id: &str) -> Result<Customer, Failure> {
    atlas.find_customer(id).await?.ok_or_else(|| {
        Failure(format!(
            "the platform has no customer {id:?} (the id is the one the app's user resolver returns)"
        ))
    })
}

/// The customer's plans and each feature with its type, whether allowed, and its figures.
pub(super) fn customer(
    output: &mut Output<'_>,
    id: &str,
    data_file: Option<&Path>,
) -> Result<Outcome, Failure> {
    let (builder, _platform) = platform(data_file)?;
    let atlas = builder.build()?;
    let (customer, features) = block_on(async {
        let found = async {
            let customer = existing(&atlas, id).await?;
            let features = atlas.features(id, None).await?;
            Ok::<_, Failure>((customer, features))
        }
        .await;
        let _ = atlas.shutdown().await;
        found
    })?;
    if output.json {
        output.json(&json!({"customer": customer, "features": features}))?;
        return Ok(Outcome::Done);
    }
    output.line(format!(
        "customer {} ({})",
        customer.external_id, customer.id
    ))?;
    for subscription in customer.subscriptions() {
        let name = subscription
            .plan
            .as_ref()
            .and_then(|plan| plan.name.clone())
            .unwrap_or_default();
        let until = subscription
            .end_date
            .as_deref()
            .map(|end| format!(", until {end}"))
            .unwrap_or_default();
        output.line(format!("  plan {} {name}{until}", subscription.plan_id))?;
    }
    let rows: Vec<Vec<String>> = features.iter().map(feature_row).collect();
    output.table(&["feature", "type", "allowed", "figures"], &rows)?;
    Ok(Outcome::Done)
}

fn feature_row(feature: &CustomerFeature) -> Vec<String> {
    let kind = match feature.kind {
        FeatureType::Entitlement => "on/off",
        FeatureType::Limit => "limit",
        FeatureType::UsageBased => "usage",
        FeatureType::CreditBased => "credits",
    };
    let mut figures = Vec::new();
    if let Some(limits) = &feature.limits {
        let current = limits.current.map_or_else(
            || "unknown (the app counts it)".to_owned(),
            |n| n.to_string(),
        );
        let limit = limits
            .limit
            .map_or("no limit".to_owned(), |n| n.to_string());
        figures.push(format!("{current} of {limit}"));
    }
    for usage in feature.usage.iter().flatten() {
        let max = usage
            .max_usage
            .map_or("no maximum".to_owned(), |n| n.to_string());
        figures.push(format!("used {} of {max}", usage.current));
    }
    if let Some(credits) = &feature.custom_pricing_unit {
        figures.push(format!(
            "{} {} left{}",
            credits.balance,
            credits.custom_pricing_unit_id,
            if credits.block_overage {
                ""
            } else {
                " (overage allowed)"
            }
        ));
    }
    vec![
        feature.id.clone(),
        kind.to_owned(),
        if feature.allowed { "yes" } else { "no" }.to_owned(),
        figures.join("; "),
    ]
}

/// The decision for `quantity` units of `features`, with the reasons in the scope's shapes.
pub(super) fn check(
    output: &mut Output<'_>,
    id: &str,
    features: &[String],
    quantity: f64,
    counts: &[(String, f64)],
    data_file: Option<&Path>,
) -> Result<Outcome, Failure> {
    let (mut builder, _platform) = platform(data_file)?;
    for (feature, count) in counts {
        let count = *count;
        builder = builder.limit(feature.clone(), move |_customer| async move { count });
    }
    let atlas = builder.build()?;
    let allowed = block_on(async {
        let decided = async {
            existing(&atlas, id).await?;
            Ok::<_, Failure>(atlas.allowed_quantity(id, features, quantity).await?)
        }
        .await;
        let _ = atlas.shutdown().await;
        decided
    })?;
    let outcome = if allowed.ok {
        Outcome::Done
    } else {
        Outcome::Denied
    };
    if output.json {
        output.json(&json!({
            "customer": id,
            "allowed": allowed.ok,
            "features": allowed.features,
            "reasons": allowed.reasons,
        }))?;
        return Ok(outcome);
    }
    output.line(format!(
        "{id}: {}",
        if allowed.ok { "allowed" } else { "denied" }
    ))?;
    let rows: Vec<Vec<String>> = allowed
        .features
        .iter()
        .map(|(feature, ok)| {
            let why = allowed
                .reasons
                .iter()
                .filter(|reason| reason.feature() == feature)
                .map(|reason| {
                    let name = serde_json::to_value(reason)
                        .ok()
                        .and_then(|value| value["reason"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{name}: {reason}")
                })
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                feature.clone(),
                if *ok { "allowed" } else { "denied" }.to_owned(),
                why,
            ]
        })
        .collect();
    output.table(&["feature", "decision", "why"], &rows)?;
    if allowed.reasons.iter().any(|reason| {
        matches!(
            reason,
            crate::entitlements::reasons::DenialReason::LimitUnknown { .. }
        )
    }) {
        output.line(
            "limits are counted by the app's own callbacks: give the count with --count FEATURE=N",
        )?;
    }
    Ok(outcome)
}
