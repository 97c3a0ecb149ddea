//! The feature ids the app's code names (guards, middleware, limit callbacks), so they can be
//! checked against the pricing model when it loads: a typo such as `analytcs` would otherwise
//! deny every customer, the paying ones included, without a word.
//!
//! `#[requires_feature]` handlers are registered at link time (a `linkme` distributed slice the
//! macro adds to), so they are all known before the first request; `RequireFeatures` registers
//! when the app is built. Limit callbacks are in the client's configuration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Where the code names a feature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NamedFeature {
    pub(crate) feature: String,
    /// The handler or middleware naming it, for the warning.
    pub(crate) site: String,
    pub(crate) reports_usage: bool,
    /// What the pricing-model snapshot said of the feature when the code was compiled against
    /// it (its grant kinds), if it was.
    pub(crate) checked_kinds: Option<&'static [&'static str]>,
}

/// A `#[requires_feature]` handler, as the macro registers it.
#[doc(hidden)]
#[derive(Debug)]
pub struct GuardSite {
    pub handler: &'static str,
    pub features: &'static [&'static str],
    pub reports_usage: bool,
    /// Per feature, the grant kinds the pricing-model snapshot gave it at compile time; empty
    /// when the code was compiled without a snapshot.
    pub checked_kinds: &'static [&'static [&'static str]],
}

/// Every `#[requires_feature]` handler linked into the program.
#[doc(hidden)]
#[linkme::distributed_slice]
pub static GUARD_SITES: [GuardSite];

static MIDDLEWARE: Mutex<Vec<NamedFeature>> = Mutex::new(Vec::new());
/// Bumped when middleware names a feature not named before, so clients check again.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Notes the features a `RequireFeatures` middleware requires.
pub(crate) fn register_middleware(features: &[String], reports_usage: bool) {
    let mut named = MIDDLEWARE.lock().unwrap_or_else(PoisonError::into_inner);
    let mut added = false;
    for feature in features {
        let name = NamedFeature {
            feature: feature.clone(),
            site: "RequireFeatures middleware".to_owned(),
            reports_usage,
            checked_kinds: None,
        };
        if !named.contains(&name) {
            named.push(name);
            added = true;
        }
    }
    if added {
        GENERATION.fetch_add(1, Ordering::Release);
    }
}

/// How many times middleware named new features: a client that validated at an older
/// generation validates again.
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Every feature the code names, guards first.
pub(crate) fn named() -> Vec<NamedFeature> {
    let mut named: Vec<NamedFeature> = GUARD_SITES
        .iter()
        .flat_map(|site| {
            site.features
                .iter()
                .enumerate()
                .map(|(at, feature)| NamedFeature {
                    feature: (*feature).to_owned(),
                    site: format!("#[requires_feature] on {}", site.handler),
                    reports_usage: site.reports_usage,
                    checked_kinds: site.checked_kinds.get(at).copied(),
                })
        })
        .collect();
    named.extend(
        MIDDLEWARE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned(),
    );
    named
}
