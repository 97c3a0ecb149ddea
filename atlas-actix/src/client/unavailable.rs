//! Checks while the platform cannot answer: each feature as its outage policy says, from the
//! last known data under `ServeStale`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::checks::Decision;
use crate::client::fleet::FleetKey;
use crate::client::hooks::Provenance;
use crate::client::outage::OutagePolicy;
use crate::client::telemetry;
use crate::client::AtlasClient;
use crate::error::AtlasError;
use crate::models::{Customer, PricingModel};

impl AtlasClient {
    /// The answer during an outage under [`OutagePolicy::ServeStale`]: `serve` computes it from
    /// the last known customer and pricing model younger than `max_age` (given the outage, to
    /// say why, and how old the data is); without them, the outage `err` is the answer.
    pub(super) async fn serve_stale<T, Fut>(
        &self,
        customer_id: &str,
        max_age: Duration,
        err: AtlasError,
        serve: impl FnOnce(Arc<Customer>, Arc<PricingModel>, AtlasError, Provenance) -> Fut,
    ) -> Result<T, AtlasError>
    where
        Fut: Future<Output = T>,
    {
        match self.stale_data(customer_id, max_age).await {
            Some((customer, model, provenance)) => {
                Ok(serve(customer, model, err, provenance).await)
            }
            None => {
                telemetry::outage_decision("serve_stale", "unavailable");
                tracing::warn!(customer = ?customer_id, %err, "Atlas unavailable and no recent entitlements: failing closed");
                Err(err)
            }
        }
    }

    /// The last customer and pricing model fetched, if both are younger than `max_age`: this
    /// instance's, else those another instance of the fleet fetched; with the customer's age.
    pub(super) async fn stale_data(
        &self,
        customer_id: &str,
        max_age: Duration,
    ) -> Option<(Arc<Customer>, Arc<PricingModel>, Provenance)> {
        let (customer, age) = match self
            .inner
            .customers
            .get_stale_aged(&customer_id.to_owned(), max_age)
        {
            Some((customer, age)) => (customer, Some(age.as_millis() as u64)),
            None => (
                Arc::new(
                    self.inner
                        .fleet
                        .read_stale(FleetKey::customer(customer_id, "customer", ""), max_age)
                        .await?,
                ),
                None,
            ),
        };
        let model = match self.inner.pricing_model.get_stale(&(), max_age) {
            Some(model) => model,
            None => Arc::new(
                self.inner
                    .fleet
                    .read_stale(FleetKey::merchant("pricing_model", ""), max_age)
                    .await?,
            ),
        };
        Some((customer, model, Provenance::Stale { age_ms: age }))
    }

    /// The check while the platform cannot answer: each feature as its outage policy says.
    pub(super) async fn decide_during_outage(
        &self,
        customer_id: &str,
        slugs: &[&str],
        quantity: f64,
        hold: Option<f64>,
        err: AtlasError,
    ) -> Result<Decision, AtlasError> {
        let mut decision = Decision {
            flags: Vec::with_capacity(slugs.len()),
            reasons: Vec::new(),
            hold: None,
            provenance: Provenance::FailOpen,
            limits: Vec::new(),
        };
        for slug in slugs {
            let allowed = match self.inner.outage.of(slug) {
                OutagePolicy::FailOpen => {
                    telemetry::outage_decision("fail_open", "allowed");
                    tracing::warn!(customer = ?customer_id, feature = ?slug, %err, "Atlas unavailable: allowing the feature (fail open)");
                    true
                }
                OutagePolicy::ServeStale { max_age } => {
                    let stale = self
                        .serve_stale(customer_id, max_age, err.clone(), |customer, model, err, provenance| async move {
                            let stale = self
                                .decide(customer_id, &[*slug], &customer, &model, quantity, hold, provenance, Instant::now())
                                .await;
                            let allowed = stale.flags[0];
                            telemetry::outage_decision(
                                "serve_stale",
                                if allowed { "allowed" } else { "denied" },
                            );
                            tracing::warn!(customer = ?customer_id, feature = ?slug, allowed, %err, "Atlas unavailable: deciding from the last known entitlements");
                            stale
                        })
                        .await?;
                    decision.reasons.extend(stale.reasons);
                    decision.limits.extend(stale.limits);
                    decision.provenance = stale.provenance;
                    decision.hold = decision.hold.take().or(stale.hold);
                    stale.flags[0]
                }
                OutagePolicy::FailClosed => {
                    telemetry::outage_decision("fail_closed", "unavailable");
                    tracing::warn!(customer = ?customer_id, feature = ?slug, %err, "Atlas unavailable: failing closed");
                    return Err(err);
                }
            };
            decision.flags.push(allowed);
        }
        Ok(decision)
    }
}
