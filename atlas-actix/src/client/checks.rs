//! Entitlement checks: the features a customer and the pricing model (from
//! [`sources`](super::sources)) grant with the app's limit callbacks, and the outage policy
//! when the platform is down.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::client::hooks::{CheckDecision, CheckOrigin, CheckRecord, Provenance};
use crate::client::outage::OutagePolicy;
use crate::client::pending::{Entry, HeldFeature, Hold};
use crate::client::telemetry::{otel, CheckResult};
use crate::client::{Allowed, AtlasClient};
use crate::entitlements::overlay::Overlay;
use crate::entitlements::quota::{figures, headroom, projected};
use crate::entitlements::reasons::{denial_reason, DenialReason};
use crate::entitlements::{
    customer_features, is_allowed_over, is_limited, limited_features, usage_event_name,
    CustomerFeature, FeatureId, LimitOutcome,
};
use crate::error::AtlasError;
use crate::models::{Customer, CustomerInfo, PricingModel};

impl AtlasClient {
    /// The pricing model a pricing page may show: available plans only, private plans only to
    /// the customer they are offered to, internal ids removed.
    pub async fn public_pricing_model(
        &self,
        customer_id: Option<&str>,
    ) -> Result<PricingModel, AtlasError> {
        let model = self.pricing_model().await?;
        let customer = match customer_id {
            Some(id) => match self.customer(id, None).await {
                Ok(customer) => Some(customer),
                Err(err) => {
                    tracing::warn!(customer = ?id, %err, "no customer for the public pricing model; showing public plans only");
                    None
                }
            },
            None => None,
        };
        Ok(model.public_view(customer.as_deref()))
    }

    /// Everything the customer's plans grant, with limits counted by the app's callbacks. The
    /// customer is created (with `info`) when the platform does not know it.
    ///
    /// While the platform cannot answer, a [`ServeStale`](OutagePolicy::ServeStale) default
    /// policy serves the last known features; otherwise the outage is the answer.
    pub async fn features(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<Vec<CustomerFeature>, AtlasError> {
        Ok(self.features_sourced(customer_id, info).await?.0)
    }

    /// [`features`](Self::features), with where the data came from.
    pub(crate) async fn features_sourced(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<(Vec<CustomerFeature>, Provenance), AtlasError> {
        match self.features_of(customer_id, info).await {
            Err(err) if err.is_outage() => match self.inner.outage.default {
                OutagePolicy::ServeStale { max_age } => {
                    self.serve_stale(customer_id, max_age, err, |customer, model, err, provenance| async move {
                        tracing::warn!(customer = ?customer_id, %err, "Atlas unavailable: serving the last known features");
                        let features = self.features_from(customer_id, &customer, &model, None).await;
                        (features, provenance)
                    })
                    .await
                }
                _ => Err(err),
            },
            other => other,
        }
    }

    /// Features of the customer, and where its data came from.
    pub(super) async fn features_of(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<(Vec<CustomerFeature>, Provenance), AtlasError> {
        let mut clock = Instant::now();
        let (customer, provenance) = self.customer_sourced(customer_id, info, &mut clock).await?;
        let model = self.pricing_model_at(&mut clock).await?;
        let features = self
            .features_from(customer_id, &customer, &model, None)
            .await;
        Ok((features, provenance))
    }

    /// The features a customer and pricing model grant, with limit callbacks run (for `only`
    /// the features listed, when given).
    pub(super) async fn features_from(
        &self,
        customer_id: &str,
        customer: &Customer,
        model: &PricingModel,
        only: Option<&[&str]>,
    ) -> Vec<CustomerFeature> {
        let now = OffsetDateTime::now_utc();
        let limited = limited_features(customer, model, now)
            .into_iter()
            .filter(|slug| only.is_none_or(|only| only.contains(slug)));
        let outcomes = self.inner.limits.outcomes(customer_id, limited).await;
        let projected = self.with_pending(customer_id, customer, model, now).await;
        customer_features(
            projected.as_ref().unwrap_or(customer),
            model,
            now,
            self.inner.allow_unknown_limits,
            &outcomes,
        )
    }

    /// The customer as the platform will show it once it counts the usage pending in the
    /// ledger; `None` when nothing is pending (or it has no quota).
    async fn with_pending(
        &self,
        customer_id: &str,
        customer: &Customer,
        model: &PricingModel,
        now: OffsetDateTime,
    ) -> Option<Customer> {
        let quotas = figures(
            customer,
            model,
            now,
            model.entitlements.iter().map(|e| e.slug.as_str()),
        );
        if quotas.is_empty() {
            return None;
        }
        let (projected, _) = self
            .inner
            .pending
            .decide(
                customer_id,
                &quotas,
                None,
                Instant::now(),
                |extra| extra.iter().map(|(_, units)| *units).collect(),
                |extra| {
                    let pending = extra.iter().any(|(_, units)| *units > 0.0);
                    (pending.then(|| projected(customer, &quotas, extra)), true)
                },
            )
            .await;
        projected
    }

    /// Whether the customer may use each of the features (by id, such as `data-explorer`):
    /// granted by a valid plan, within its limit, with access or credits left; and, for each
    /// feature denied, why ([`Allowed::reasons`]). It also tells the platform which features
    /// the code checks (debounced), for its dashboard.
    pub async fn allowed<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
    ) -> Result<Allowed, AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allowed_quantity(customer_id, feature_ids, 1.0).await
    }

    /// Whether the customer may use `quantity` units of each feature at once: "may this
    /// customer add 5 seats?" passes only when the count plus 5 is within the limit (likewise
    /// a maximum usage, or a credit balance that blocks overage). `quantity` must be finite and
    /// above zero.
    ///
    /// ```no_run
    /// # async fn demo(atlas: atlas_actix::AtlasClient) -> Result<(), atlas_actix::AtlasError> {
    /// let check = atlas.allowed_quantity("org_42", ["seats"], 5.0).await?;
    /// for reason in &check.reasons {
    ///     println!("{reason}"); // "You have used 8 of 10 seats"
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn allowed_quantity<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
        quantity: f64,
    ) -> Result<Allowed, AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let feature_ids: Vec<S> = feature_ids.into_iter().collect();
        let slugs: Vec<&str> = feature_ids.iter().map(AsRef::as_ref).collect();
        let decision = self
            .decide_features(customer_id, &slugs, quantity, CheckOrigin::default(), None)
            .await?;
        let features: BTreeMap<String, bool> = slugs
            .iter()
            .map(|slug| (*slug).to_owned())
            .zip(decision.flags)
            .collect();
        Ok(Allowed {
            ok: features.values().all(|allowed| *allowed),
            features,
            reasons: decision.reasons,
            provenance: decision.provenance,
            limits: decision.limits,
        })
    }

    /// Whether each feature is allowed, in order, and why not for those denied; what
    /// [`allowed`](Self::allowed) and the guards decide from, without building a map on the
    /// hot path. Each feature's result is counted (`atlas_checks_total`; a `shadow` guard's
    /// denials with `shadow="true"`), the check is a `debug` span with OpenTelemetry's
    /// feature-flag fields, and the hooks see it. With `hold`, an allowed check holds that
    /// many units of each feature (see [`Decision::hold`]).
    pub(crate) async fn decide_features(
        &self,
        customer_id: &str,
        slugs: &[&str],
        quantity: f64,
        origin: CheckOrigin<'_>,
        hold: Option<f64>,
    ) -> Result<Decision, AtlasError> {
        // Only the hooks read the latency: without them, no clock read.
        let started = (!self.inner.hooks.is_empty()).then(Instant::now);
        let span = tracing::debug_span!(
            "atlas.check",
            features = ?slugs,
            decision = tracing::field::Empty,
            "feature_flag.key" = tracing::field::Empty,
            "feature_flag.provider.name" = "atlas",
            "feature_flag.result.value" = tracing::field::Empty,
            "feature_flag.result.reason" = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
        );
        let decided = self
            .decide_features_counted(customer_id, slugs, quantity, hold)
            .instrument(span.clone())
            .await;
        let decision = match &decided {
            Ok(decision) if decision.reasons.is_empty() => CheckDecision::Allowed,
            Ok(_) => CheckDecision::Denied,
            Err(_) => CheckDecision::Unavailable,
        };
        if !span.is_disabled() {
            let reason = match &decided {
                Ok(decision) => decision.provenance.otel_reason(),
                Err(_) => "error",
            };
            otel::record(&span, slugs, decision, reason, decided.as_ref().err());
        }
        match &decided {
            Ok(decision) => {
                for (slug, allowed) in slugs.iter().zip(&decision.flags) {
                    let result = match (allowed, origin.shadow) {
                        (true, _) => CheckResult::Allowed,
                        (false, false) => CheckResult::Denied,
                        (false, true) => CheckResult::ShadowDenied,
                    };
                    self.inner.checks.record(slug, result);
                }
            }
            Err(err) if err.is_outage() => {
                for slug in slugs {
                    self.inner.checks.record(slug, CheckResult::Unavailable);
                }
            }
            Err(_) => {}
        }
        if !self.inner.hooks.is_empty() {
            let error = decided.as_ref().err().map(ToString::to_string);
            let (allowed, reasons, provenance, limits): (&[bool], &[DenialReason], _, &[_]) =
                match &decided {
                    Ok(decision) => (
                        &decision.flags,
                        &decision.reasons,
                        Some(decision.provenance),
                        &decision.limits,
                    ),
                    Err(_) => (&[], &[], None, &[]),
                };
            self.inner.hooks.check(&CheckRecord {
                customer: customer_id,
                features: slugs,
                quantity,
                decision,
                allowed,
                reasons,
                provenance,
                limits,
                error: error.as_deref(),
                latency: started.map(|at| at.elapsed()).unwrap_or_default(),
                route: origin.route,
                request_id: origin.request_id,
                shadow: origin.shadow,
            });
        }
        decided
    }

    async fn decide_features_counted(
        &self,
        customer_id: &str,
        slugs: &[&str],
        quantity: f64,
        hold: Option<f64>,
    ) -> Result<Decision, AtlasError> {
        if !quantity.is_finite()
            || quantity <= 0.0
            || hold.is_some_and(|h| !h.is_finite() || h <= 0.0)
        {
            return Err(AtlasError::InvalidInput(
                "the quantity must be a positive number".to_owned(),
            ));
        }
        self.inner.registrations.register(slugs.iter().copied());
        let checked = async {
            self.ensure_ready().await?;
            // One reading of the clock for the caches' freshness and the ledger.
            let mut clock = Instant::now();
            let (customer, provenance) =
                self.customer_sourced(customer_id, None, &mut clock).await?;
            let model = self.pricing_model_at(&mut clock).await?;
            Ok::<_, AtlasError>(
                self.decide(
                    customer_id,
                    slugs,
                    &customer,
                    &model,
                    quantity,
                    hold,
                    provenance,
                    clock,
                )
                .await,
            )
        };
        match checked.await {
            Err(err) if err.is_outage() => {
                Box::pin(self.decide_during_outage(customer_id, slugs, quantity, hold, err)).await
            }
            other => other,
        }
    }

    /// Whether a customer and pricing model allow each feature. Limit callbacks (the app's
    /// database) run only for the limited features checked; reasons are built only for the
    /// features denied. A quota feature counts the usage pending in the ledger, and with
    /// `hold` must fit that many units (or `quantity`, if more); the check and the hold are
    /// one step under the ledger's lock. The ledger reads time at `clock`, the check's reading
    /// of the monotonic clock, unless the app's limit callbacks were awaited since.
    #[allow(clippy::too_many_arguments)] // one check's inputs, passed on by two callers
    pub(super) async fn decide(
        &self,
        customer_id: &str,
        slugs: &[&str],
        customer: &Customer,
        model: &PricingModel,
        quantity: f64,
        hold: Option<f64>,
        provenance: Provenance,
        clock: Instant,
    ) -> Decision {
        let now = OffsetDateTime::now_utc();
        let limited: Vec<&str> = slugs
            .iter()
            .copied()
            .filter(|slug| self.inner.limits.has(slug) && is_limited(customer, model, now, slug))
            .collect();
        let callbacks_awaited = !limited.is_empty();
        let outcomes = if limited.is_empty() {
            HashMap::new()
        } else {
            // Boxed: the app's callbacks are joined only for limited features.
            Box::pin(self.inner.limits.outcomes(customer_id, limited)).await
        };
        let outcome = |slug: &str| {
            outcomes
                .get(slug)
                .copied()
                .unwrap_or(LimitOutcome::NoCallback)
        };
        let quotas = figures(customer, model, now, slugs.iter().copied());
        let wanted = hold.map_or(quantity, |units| units.max(quantity));
        // Pending usage (`extra`) is laid over the customer's figures; only a denial's reasons
        // read the projected copy of the customer.
        let evaluate = |extra: &[(&str, f64)]| {
            let overlay = Overlay::new(&quotas, extra);
            let flags: Vec<bool> = slugs
                .iter()
                .map(|slug| {
                    let quota = quotas.iter().find(|quota| quota.feature == *slug);
                    let units = if quota.is_some() { wanted } else { quantity };
                    let (outcome, allow_unknown) = (outcome(slug), self.inner.allow_unknown_limits);
                    quota
                        .and_then(|quota| {
                            quota.sole_grant_allows(
                                customer,
                                &overlay,
                                outcome,
                                allow_unknown,
                                units,
                            )
                        })
                        .unwrap_or_else(|| {
                            is_allowed_over(
                                customer,
                                &overlay,
                                model,
                                now,
                                FeatureId::of(model, slug),
                                allow_unknown,
                                outcome,
                                units,
                            )
                        })
                })
                .collect();
            if !flags.contains(&false) {
                return (flags, Vec::new());
            }
            let pending = extra.iter().any(|(_, units)| *units > 0.0);
            let projected = pending.then(|| projected(customer, &quotas, extra));
            let at = projected.as_ref().unwrap_or(customer);
            let reasons: Vec<DenialReason> = slugs
                .iter()
                .zip(&flags)
                .filter(|(_, allowed)| !**allowed)
                .map(|(slug, _)| denial_reason(at, model, now, slug, outcome(slug)))
                .collect();
            (flags, reasons)
        };
        let evaluate_pending = |extra: &[(&str, f64)]| {
            let decided = evaluate(extra);
            let allowed = decided.1.is_empty();
            (decided, allowed)
        };
        // The most pending units the answer at `extra` still allows: what each quota has
        // left past `wanted`, when the rules agree; else `extra` itself.
        let room = |extra: &[(&str, f64)]| -> Vec<f64> {
            let at = projected(customer, &quotas, extra);
            let widened: Vec<(&str, f64)> = extra
                .iter()
                .map(|(feature, units)| {
                    (*feature, units + headroom(&at, model, now, feature, wanted))
                })
                .collect();
            let verified = evaluate_pending(&widened).1;
            let chosen = if verified { &widened } else { extra };
            chosen.iter().map(|(_, units)| *units).collect()
        };
        let ((flags, reasons), held) = if quotas.is_empty() {
            (evaluate(&[]), Vec::new())
        } else {
            let clock = if callbacks_awaited {
                Instant::now()
            } else {
                clock
            };
            let pending = &self.inner.pending;
            match pending.decide_at_once(customer_id, &quotas, hold, clock, evaluate_pending) {
                Some(decided) => decided,
                // Boxed: the future that may await the fleet's Redis is built only for a fleet.
                None => {
                    let in_fleet =
                        pending.decide(customer_id, &quotas, hold, clock, room, evaluate_pending);
                    Box::pin(in_fleet).await
                }
            }
        };
        let hold = hold.filter(|_| reasons.is_empty()).map(|units| {
            let entries: Vec<(&str, Entry)> =
                quotas.iter().map(|quota| quota.feature).zip(held).collect();
            let features = slugs
                .iter()
                .map(|slug| HeldFeature {
                    feature: (*slug).to_owned(),
                    event_name: usage_event_name(customer, model, now, slug).map(str::to_owned),
                    entry: entries
                        .iter()
                        .find(|(feature, _)| feature == slug)
                        .map(|(_, entry)| entry.clone()),
                })
                .collect();
            Hold::new(
                Arc::clone(&self.inner.pending),
                customer_id,
                &customer.id,
                features,
                units,
            )
        });
        let mut limits: Vec<(String, LimitOutcome)> = outcomes
            .into_iter()
            .map(|(slug, outcome)| (slug.to_owned(), outcome))
            .collect();
        limits.sort_by(|a, b| a.0.cmp(&b.0));
        Decision {
            flags,
            reasons,
            hold,
            provenance,
            limits,
        }
    }
}

/// What a check decided: each feature's answer, in order, and why for each one denied.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) flags: Vec<bool>,
    pub(crate) reasons: Vec<DenialReason>,
    /// The units held for the request when the check asked for a hold and allowed it.
    pub(crate) hold: Option<Hold>,
    /// Where the data decided from came from.
    pub(crate) provenance: Provenance,
    /// What the app's limit callbacks answered, for the limited features checked.
    pub(crate) limits: Vec<(String, LimitOutcome)>,
}
