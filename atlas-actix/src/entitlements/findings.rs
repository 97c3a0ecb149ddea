//! What is wrong between the code and the pricing model: feature ids the model lacks (with the
//! nearest one it has), limit callbacks for features no plan limits, usage reported for
//! features no plan meters. Pure: the client runs it when the pricing model loads.

use serde::Serialize;

use crate::entitlements::named_in_code::NamedFeature;
use crate::entitlements::FeatureType;
use crate::models::PricingModel;

/// A mistake between the app's code and the pricing model; `status()` and
/// `/atlas-api/status` list them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
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
    });
    for name in named.iter().cloned().chain(limit_sites.clone()) {
        if slugs.contains(&name.feature.as_str()) {
            continue;
        }
        let hint = nearest(&name.feature, &slugs)
            .map(|near| format!("; did you mean `{near}`?"))
            .unwrap_or_default();
        add(Finding {
            problem: format!(
                "`{}` is not a feature of the pricing model: every check of it is denied{hint}",
                name.feature
            ),
            feature: name.feature,
            site: name.site,
        });
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

/// The known id closest to `id`, if it is close enough to be a typo of it.
fn nearest<'a>(id: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(id, candidate), *candidate))
        .filter(|(distance, _)| *distance <= (id.len() / 3).max(2))
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_matched_to_the_nearest_id() {
        assert_eq!(edit_distance("analytcs", "analytics"), 1);
        assert_eq!(
            nearest("analytcs", &["analytics", "seats"]),
            Some("analytics")
        );
        assert_eq!(nearest("billing", &["analytics", "seats"]), None);
    }
}
