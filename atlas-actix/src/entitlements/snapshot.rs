//! The pricing-model snapshot: the features of a pricing model with the kinds of grant each
//! plan gives them, in a stable, sorted form that reviews well in git. `cargo atlas pull`
//! writes it as `atlas-snapshot.json` at the app crate's root; when it is there,
//! `#[requires_feature]` and `limit!` check the ids and options they are given against it at
//! compile time, and the client compares the live pricing model with what the code was
//! checked against when it loads.
//!
//! The file is JSON: `{"format": 1, "features": [{"id", "kinds", "plans"}, ...]}`, features by
//! id, kinds and plans sorted. The macro crate reads the same format (its `snapshot.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::entitlements::FeatureType;
use crate::models::{PlanEntitlement, PricingModel};

/// The format this version writes and reads.
const FORMAT: u32 = 1;

/// What a plan's grant of a feature makes of it, as the compile-time checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum GrantKind {
    /// Included or not: nothing to count (`quantity`, `usage` and `limit!` make no sense).
    OnOff,
    /// A limit the app counts (`limit!`).
    Limit,
    /// Usage-based: the app reports usage (`usage =`, `reserve =`).
    Usage,
    /// Credit-based: the app reports usage, paid in credits.
    Credit,
}

impl GrantKind {
    /// The kinds one grant gives its feature: a limit, a metered price, both, or neither.
    fn of(grant: &PlanEntitlement) -> Vec<Self> {
        let metered = match FeatureType::of(grant) {
            FeatureType::UsageBased => Some(Self::Usage),
            FeatureType::CreditBased => Some(Self::Credit),
            FeatureType::Limit | FeatureType::Entitlement => None,
        };
        let kinds: Vec<Self> = grant
            .limit
            .map(|_| Self::Limit)
            .into_iter()
            .chain(metered)
            .collect();
        if kinds.is_empty() {
            vec![Self::OnOff]
        } else {
            kinds
        }
    }

    /// The name the snapshot file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnOff => "on-off",
            Self::Limit => "limit",
            Self::Usage => "usage",
            Self::Credit => "credit",
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One feature of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotFeature {
    /// The id the code checks (`data-explorer`).
    pub id: String,
    /// What the plans' grants make of it, sorted; empty when no plan grants it.
    pub kinds: Vec<GrantKind>,
    /// The plans that grant it, by id, sorted.
    pub plans: Vec<String>,
}

/// A pricing model's features, as `cargo atlas pull` writes them to `atlas-snapshot.json`.
///
/// ```
/// use atlas_actix::models::PricingModel;
/// use atlas_actix::{GrantKind, Snapshot};
///
/// let model: PricingModel = serde_json::from_value(serde_json::json!({
///     "entitlements": [{"id": "ent_seats", "slug": "seats"}],
///     "plans": [{"id": "plan_team", "name": "Team", "status": "available",
///                "entitlements": [{"id": "ent_seats", "included": true, "limit": 10}]}]
/// }))?;
/// let snapshot = Snapshot::of(&model);
/// assert_eq!(snapshot.feature("seats").unwrap().kinds, [GrantKind::Limit]);
/// assert_eq!(Snapshot::from_json(&snapshot.to_json())?, snapshot);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The file format's version.
    pub format: u32,
    /// The features, by id.
    pub features: Vec<SnapshotFeature>,
}

impl Snapshot {
    /// The snapshot of a pricing model.
    pub fn of(model: &PricingModel) -> Self {
        let mut features: BTreeMap<&str, (BTreeSet<GrantKind>, BTreeSet<&str>)> = model
            .entitlements
            .iter()
            .map(|entitlement| (entitlement.slug.as_str(), Default::default()))
            .collect();
        for plan in &model.plans {
            for grant in &plan.entitlements {
                let Some(slug) = model
                    .entitlements
                    .iter()
                    .find(|entitlement| entitlement.id == grant.id)
                    .map(|entitlement| entitlement.slug.as_str())
                else {
                    continue;
                };
                if let Some((kinds, plans)) = features.get_mut(slug) {
                    kinds.extend(GrantKind::of(grant));
                    plans.insert(&plan.id);
                }
            }
        }
        Self {
            format: FORMAT,
            features: features
                .into_iter()
                .map(|(id, (kinds, plans))| SnapshotFeature {
                    id: id.to_owned(),
                    kinds: kinds.into_iter().collect(),
                    plans: plans.into_iter().map(str::to_owned).collect(),
                })
                .collect(),
        }
    }

    /// Reads a snapshot file's text. Features are sorted by id on reading, so a file edited by
    /// hand is looked up (and compared) as one `pull` writes.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut snapshot: Self = serde_json::from_str(text)?;
        snapshot.features.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(snapshot)
    }

    /// The file's text: two-space indents, one item a line, a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The feature `id`, if the snapshot has it.
    pub fn feature(&self, id: &str) -> Option<&SnapshotFeature> {
        self.features
            .binary_search_by(|feature| feature.id.as_str().cmp(id))
            .ok()
            .map(|at| &self.features[at])
    }

    /// What changed since `previous`, a line each: `+ x` added, `- x` removed, `~ x` changed
    /// (its kinds or plans, before and after).
    pub fn changes_since(&self, previous: &Snapshot) -> Vec<String> {
        let describe = |feature: &SnapshotFeature| {
            format!(
                "{} ({})",
                join(&feature.kinds, "no plan grants it"),
                join(&feature.plans, "no plan")
            )
        };
        let mut changes = Vec::new();
        for feature in &previous.features {
            if self.feature(&feature.id).is_none() {
                changes.push(format!("- {}: was {}", feature.id, describe(feature)));
            }
        }
        for feature in &self.features {
            match previous.feature(&feature.id) {
                None => changes.push(format!("+ {}: {}", feature.id, describe(feature))),
                Some(before) if before != feature => changes.push(format!(
                    "~ {}: {} -> {}",
                    feature.id,
                    describe(before),
                    describe(feature)
                )),
                Some(_) => {}
            }
        }
        changes
    }
}

/// The kinds the live pricing model gives the feature `slug`, as a snapshot would list them.
pub(crate) fn kinds_of(model: &PricingModel, slug: &str) -> Vec<GrantKind> {
    let Some(id) = model
        .entitlements
        .iter()
        .find(|entitlement| entitlement.slug == slug)
        .map(|entitlement| entitlement.id.as_str())
    else {
        return Vec::new();
    };
    let kinds: BTreeSet<GrantKind> = model
        .plans
        .iter()
        .flat_map(|plan| &plan.entitlements)
        .filter(|grant| grant.id == id)
        .flat_map(GrantKind::of)
        .collect();
    kinds.into_iter().collect()
}

fn join<T: fmt::Display>(items: &[T], none: &str) -> String {
    if items.is_empty() {
        return none.to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> PricingModel {
        serde_json::from_value(serde_json::json!({
            "entitlements": [
                {"id": "e_sso", "slug": "sso"},
                {"id": "e_ai", "slug": "ai-tokens"},
                {"id": "e_seats", "slug": "seats"},
                {"id": "e_img", "slug": "images"},
                {"id": "e_new", "slug": "beta"}
            ],
            "plans": [
                {"id": "pro", "name": "Pro", "status": "available", "entitlements": [
                    {"id": "e_seats", "included": true, "limit": 3},
                    {"id": "e_ai", "included": true, "maxUsage": 100,
                     "price": {"priceType": "unit", "price": 1}},
                    {"id": "e_img", "included": true, "customPricingUnitId": "cpu",
                     "price": {"priceType": "unit", "price": 1}}
                ]},
                {"id": "basic", "name": "Basic", "status": "available", "entitlements": [
                    {"id": "e_sso", "included": true},
                    {"id": "e_seats", "included": true, "limit": 1,
                     "price": {"priceType": "unit", "price": 5}}
                ]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn features_are_sorted_with_their_kinds_and_plans() {
        let snapshot = Snapshot::of(&model());
        let ids: Vec<&str> = snapshot.features.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["ai-tokens", "beta", "images", "seats", "sso"]);
        let seats = snapshot.feature("seats").unwrap();
        assert_eq!(seats.kinds, [GrantKind::Limit, GrantKind::Usage]);
        assert_eq!(seats.plans, ["basic", "pro"]);
        assert_eq!(
            snapshot.feature("images").unwrap().kinds,
            [GrantKind::Credit]
        );
        assert_eq!(snapshot.feature("sso").unwrap().kinds, [GrantKind::OnOff]);
        assert!(snapshot.feature("beta").unwrap().kinds.is_empty());
        assert_eq!(kinds_of(&model(), "ai-tokens"), [GrantKind::Usage]);
        assert!(kinds_of(&model(), "nope").is_empty());
    }

    #[test]
    fn the_text_is_stable_and_reads_back() {
        let snapshot = Snapshot::of(&model());
        let text = snapshot.to_json();
        assert_eq!(text, Snapshot::of(&model()).to_json());
        assert!(
            text.contains("\"kinds\": [\n        \"on-off\"\n      ]"),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        assert_eq!(Snapshot::from_json(&text).unwrap(), snapshot);
    }

    #[test]
    fn changes_name_what_was_added_removed_and_changed() {
        let before = Snapshot::of(&model());
        let mut model = model();
        model.entitlements.retain(|e| e.slug != "beta");
        model.entitlements.push(
            serde_json::from_value(serde_json::json!({"id": "e_x", "slug": "exports"})).unwrap(),
        );
        model.plans[1]
            .entitlements
            .retain(|grant| grant.id != "e_sso");
        let after = Snapshot::of(&model);
        assert_eq!(
            after.changes_since(&before),
            [
                "- beta: was no plan grants it (no plan)",
                "+ exports: no plan grants it (no plan)",
                "~ sso: on-off (basic) -> no plan grants it (no plan)",
            ]
        );
        assert!(after.changes_since(&after).is_empty());
    }
}
