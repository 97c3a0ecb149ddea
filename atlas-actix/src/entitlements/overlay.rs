//! Pending usage laid over a customer's figures: what the platform will count once it has
//! aggregated usage this process took on, read by the engine's rules in place of the figures,
//! so a quota check does not copy the customer to count it.

use smallvec::SmallVec;

/// Units of usage and credits pending, by where the platform will count them.
#[derive(Debug, Default)]
pub(crate) struct Overlay<'a> {
    adjustments: SmallVec<[Adjustment<'a>; 2]>,
}

#[derive(Debug)]
enum Adjustment<'a> {
    /// Usage counted on one subscription's access entry of one grant.
    Usage {
        subscription: &'a str,
        grant: &'a str,
        units: f64,
    },
    /// Credits of one unit spent.
    Credits { unit: &'a str, units: f64 },
}

impl<'a> Overlay<'a> {
    /// `units` of usage pending on the access entry of `grant` in `subscription`.
    pub(crate) fn count_usage(&mut self, subscription: &'a str, grant: &'a str, units: f64) {
        self.adjustments.push(Adjustment::Usage {
            subscription,
            grant,
            units,
        });
    }

    /// `units` of credit `unit` pending.
    pub(crate) fn spend_credits(&mut self, unit: &'a str, units: f64) {
        self.adjustments.push(Adjustment::Credits { unit, units });
    }

    /// Units of usage pending on the access entry of `grant` in `subscription`.
    pub(crate) fn usage(&self, subscription: &str, grant: &str) -> f64 {
        self.adjustments
            .iter()
            .map(|adjustment| match adjustment {
                Adjustment::Usage {
                    subscription: s,
                    grant: g,
                    units,
                } if *s == subscription && *g == grant => *units,
                _ => 0.0,
            })
            .sum()
    }

    /// Credits of `unit` pending.
    pub(crate) fn credits(&self, unit: &str) -> f64 {
        self.adjustments
            .iter()
            .map(|adjustment| match adjustment {
                Adjustment::Credits { unit: u, units } if *u == unit => *units,
                _ => 0.0,
            })
            .sum()
    }
}
