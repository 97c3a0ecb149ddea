//! Pending usage laid over a customer's figures: a check's quotas (each feature's figure and
//! metered grant, which [`quota`](super::quota) finds) and what the platform will count once it
//! has aggregated usage this process took on, read by the engine's rules in place of the
//! figures, so a quota check does not copy the customer to count it.

use crate::models::PlanEntitlement;

/// A feature the platform meters against a maximum, and where its figure is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Quota<'a> {
    /// Usage-based with a maximum: usage grows towards it.
    Usage,
    /// Credit-based, blocking overage: the balance of this unit shrinks towards zero.
    Credits(&'a str),
}

/// A quota feature of a check: the platform's figure for it, and where its pending units
/// count (the metered grant), found in the same pass over the grants. Small: a check holds a
/// few across its await on the fleet's ledger, in the future Actix allocates per request.
#[derive(Debug, Clone)]
pub(crate) struct Metered<'a> {
    pub(crate) feature: &'a str,
    /// How much of the quota the platform counts as used: the usage of every grant of the
    /// feature (usage-based), or the credits spent, as minus the balance (credit-based). It
    /// only grows as the platform counts usage; a new period or a top-up makes it fall.
    pub(crate) figure: f64,
    /// What the metered grant meters.
    pub(crate) quota: Quota<'a>,
    pub(crate) subscription: &'a str,
    pub(crate) grant: &'a PlanEntitlement,
    /// Whether the metered grant is the feature's only grant in the customer's valid
    /// subscriptions: then the check's answer is that grant's, with no second pass.
    pub(crate) sole: bool,
}

/// Units of usage and credits pending, where the platform will count them: the check's quotas
/// and the ledger's answer for each, borrowed, so laying them costs nothing and the few
/// grants a check reads look them up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overlay<'o> {
    quotas: &'o [Metered<'o>],
    extra: &'o [(&'o str, f64)],
}

impl<'o> Overlay<'o> {
    /// The pending `extra` units of each of `quotas`, in the quotas' order (as the ledger
    /// answers).
    pub(crate) fn new(quotas: &'o [Metered<'o>], extra: &'o [(&'o str, f64)]) -> Self {
        Self { quotas, extra }
    }

    /// Units of usage pending on the access entry of `grant` in `subscription`.
    pub(crate) fn usage(&self, subscription: &str, grant: &str) -> f64 {
        pending(self.quotas, self.extra)
            .filter(|(metered, _)| {
                metered.quota == Quota::Usage
                    && metered.subscription == subscription
                    && metered.grant.id == grant
            })
            .map(|(_, units)| units)
            .sum()
    }

    /// Credits of `unit` pending.
    pub(crate) fn credits(&self, unit: &str) -> f64 {
        pending(self.quotas, self.extra)
            .filter(|(metered, _)| metered.quota == Quota::Credits(unit))
            .map(|(_, units)| units)
            .sum()
    }
}

/// The quotas with pending units, and how many: `extra` follows the quotas' order, as the
/// ledger answers. No pass over the grants: [`metered`](super::quota::metered) found each grant.
pub(crate) fn pending<'q, 'a>(
    quotas: &'q [Metered<'a>],
    extra: &'q [(&str, f64)],
) -> impl Iterator<Item = (&'q Metered<'a>, f64)> + 'q {
    quotas
        .iter()
        .zip(extra)
        .filter_map(|(metered, (feature, units))| {
            debug_assert_eq!(metered.feature, *feature, "extra follows the quotas' order");
            let units = Some(*units).filter(|units| *units > 0.0)?;
            Some((metered, units))
        })
}
