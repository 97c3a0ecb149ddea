//! What is wrong between the code and the pricing model: feature ids the model lacks (with the
//! nearest one it has), limit callbacks for features no plan limits, usage reported for
//! features no plan meters. Pure: the client runs it when the pricing model loads.

use serde::Serialize;

use crate::entitlements::named_in_code::NamedFeature;
use crate::entitlements::rules::{feature_id_problem, nearest};
use crate::entitlements::snapshot::{kinds_of, GrantKind};
use crate::entitlements::FeatureType;
use crate::models::PricingModel;

/// A mistake between the app's code and the pricing model; `status()` and
/// `/atlas-api/status` list them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Finding {
    /// The feature id the code names.
    pub feature: String,
    /// Where: a handler, middleware, or `limit!`.
    pub site: String,
    /// What is wrong, and what it does.
    pub problem: String,
}

/// The findings for the features `named` and the limit callbacks of `limits`.
pub(crate) fn findings(
    model: &PricingModel,
    named: &[NamedFeature],
    limits: &[String],
) -> Vec<Finding> {
    let slugs: Vec<&str> = model.entitlements.iter().map(|e| e.slug.as_str()).collect();
    let grants = |slug: &str| {
        let id = model
            .entitlements
            .iter()
            .find(|e| e.slug == slug)
            .map(|e| e.id.as_str());
        model
            .plans
            .iter()
            .flat_map(|plan| &plan.entitlements)
            .filter(move |grant| Some(grant.id.as_str()) == id)
    };
    let mut found: Vec<Finding> = Vec::new();
    let mut add = |finding: Finding| {
        if !found.contains(&finding) {
            found.push(finding);
        }
    };
    let limit_sites = limits.iter().map(|feature| NamedFeature {
        feature: feature.clone(),
        site: "limit! callback".to_owned(),
        reports_usage: false,
        checked_kinds: None,
    });
    for name in named.iter().cloned().chain(limit_sites.clone()) {
        if slugs.contains(&name.feature.as_str()) {
            continue;
        }
        if let Some(problem) = feature_id_problem(&name.feature) {
            add(Finding {
                problem: format!(
                    "`{}` is not a feature id ({problem}): every check of it is denied",
                    name.feature
                ),
                feature: name.feature,
                site: name.site,
            });
            continue;
        }
        let hint = match (nearest(&name.feature, &slugs), name.checked_kinds) {
            (Some(near), _) => format!("; did you mean `{near}`?"),
            (None, Some(_)) => "; the pricing-model snapshot the code was compiled against has it: it was removed since (run `cargo atlas pull` and rebuild)".to_owned(),
            (None, None) => String::new(),
        };
        add(Finding {
            problem: format!(
                "`{}` is not a feature of the pricing model: every check of it is denied{hint}",
                name.feature
            ),
            feature: name.feature,
            site: name.site,
        });
    }
    for name in named {
        let Some(checked) = name.checked_kinds else {
            continue;
        };
        if !slugs.contains(&name.feature.as_str()) {
            continue;
        }
        let live: Vec<&str> = kinds_of(model, &name.feature)
            .into_iter()
            .map(GrantKind::as_str)
            .collect();
        if live != checked {
            let say = |kinds: &[&str]| {
                if kinds.is_empty() {
                    "granted by no plan".to_owned()
                } else {
                    kinds.join(", ")
                }
            };
            add(Finding {
                problem: format!(
                    "`{}` was {} in the pricing-model snapshot the code was compiled against, and the pricing model now makes it {}: check the code still fits, then run `cargo atlas pull` and rebuild",
                    name.feature,
                    say(checked),
                    say(&live)
                ),
                feature: name.feature.clone(),
                site: name.site.clone(),
            });
        }
    }
    for name in limit_sites {
        if slugs.contains(&name.feature.as_str())
            && !grants(&name.feature).any(|grant| grant.limit.is_some())
        {
            add(Finding {
                problem: format!(
                    "a limit callback is registered for `{}`, but no plan gives it a limit: the callback is never used",
                    name.feature
                ),
                feature: name.feature,
                site: name.site,
            });
        }
    }
    for name in named.iter().filter(|name| name.reports_usage) {
        if slugs.contains(&name.feature.as_str())
            && !grants(&name.feature).any(|grant| FeatureType::of(grant).reports_events())
        {
            add(Finding {
                problem: format!(
                    "usage is reported for `{}`, but no plan meters it (usage- or credit-based): no event is sent",
                    name.feature
                ),
                feature: name.feature.clone(),
                site: name.site.clone(),
            });
        }
    }
    found
}
