//! Reservations: quota held for work whose cost is known only afterwards (the tokens an AI
//! call used), checked and held before the work, committed at its actual cost after it.

use crate::client::checks::Decision;
use crate::client::hooks::CheckOrigin;
use crate::client::pending::Hold;
use crate::client::{check_idempotency_key, AtlasClient};
use crate::error::AtlasError;

/// Units of a feature held for one piece of work: what [`AtlasClient::reserve`] answers.
///
/// While it lives, the units count against the customer's quota in every check, so concurrent
/// work cannot spend the same units twice. [`commit`](Self::commit) reports the work's actual
/// usage as one event per feature and frees the rest of the hold; [`release`](Self::release),
/// or dropping it, reports nothing. A reservation neither committed nor dropped (a process
/// that hangs) stops counting after the hold TTL
/// ([`AtlasBuilder::hold_ttl`](crate::AtlasBuilder::hold_ttl), 5 minutes by default).
///
/// ```no_run
/// # async fn demo(atlas: atlas_actix::AtlasClient) -> Result<(), atlas_actix::AtlasError> {
/// // Up to 500 tokens may be used: refused (`AtlasError::Denied`) unless they fit.
/// let reservation = atlas.reserve("org_42", "ai-tokens", 500.0).await?;
/// let used = 137.0; // known once the model answered
/// reservation.commit(used).await?; // bills 137, frees the other 363
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a reservation holds quota until it is committed, released or dropped"]
pub struct Reservation {
    client: AtlasClient,
    hold: Hold,
    idempotency_key: Option<String>,
}

impl AtlasClient {
    /// Checks that `estimate` units of `feature_id` fit the customer's plan (its maximum or
    /// credit balance, with the usage pending in this process counted, or in the fleet with the
    /// Redis tier) and holds them. Denied is [`AtlasError::Denied`] with the reasons; the hold
    /// is taken only when allowed, in the same step as the check. `estimate` must be finite and above zero.
    pub async fn reserve(
        &self,
        customer_id: &str,
        feature_id: &str,
        estimate: f64,
    ) -> Result<Reservation, AtlasError> {
        match self
            .reserve_features(customer_id, &[feature_id], estimate, CheckOrigin::default())
            .await?
        {
            Ok(reservation) => Ok(reservation),
            Err(denied) => Err(AtlasError::Denied {
                reasons: denied.reasons,
            }),
        }
    }

    /// The check and hold behind [`reserve`](Self::reserve) and the guards' `reserve`: the
    /// reservation, or the decision that refused it. Refused with
    /// [`AtlasError::QueueFull`] when the usage could not be queued afterwards.
    pub(crate) async fn reserve_features(
        &self,
        customer_id: &str,
        features: &[&str],
        estimate: f64,
        origin: CheckOrigin<'_>,
    ) -> Result<Result<Reservation, Decision>, AtlasError> {
        let mut decision = self
            .decide_features(customer_id, features, estimate, origin, Some(estimate))
            .await?;
        let Some(hold) = decision.hold.take() else {
            return Ok(Err(decision));
        };
        self.inner.events.check_room(features.len())?;
        Ok(Ok(Reservation {
            client: self.clone(),
            hold,
            idempotency_key: None,
        }))
    }
}

impl Reservation {
    /// The units held.
    pub fn units(&self) -> f64 {
        self.hold.units
    }

    /// The customer it holds quota of.
    pub fn customer(&self) -> &str {
        self.hold.customer()
    }

    /// The idempotency key the committed usage carries (at most 255 characters), so that a
    /// job retried after a commit bills once; by default a fresh one.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Reports `actual` units of usage (one event per feature that reports usage) and frees
    /// the hold: what the work really cost, which may be less than the units held, or more
    /// (the excess is billed too, and counts against the quota from now on). Zero reports
    /// nothing. The usage is queued when this returns (spooled, with a spool); a failure to
    /// queue it is the error, and the hold is released.
    pub async fn commit(self, actual: f64) -> Result<(), AtlasError> {
        if !actual.is_finite() || actual < 0.0 {
            return Err(AtlasError::InvalidInput(
                "the actual usage must be a finite number, zero or more".to_owned(),
            ));
        }
        check_idempotency_key(self.idempotency_key.as_deref())?;
        if actual == 0.0 {
            return Ok(());
        }
        let Self {
            client,
            hold,
            idempotency_key,
        } = self;
        let events = hold.events(actual, idempotency_key.as_deref());
        let customer = hold.customer().to_owned();
        // Pending before it is queued, so that the platform's acceptance finds it.
        hold.reported(&events).await;
        match client.queue_usage(&customer, events.clone()).await {
            Ok(()) => Ok(()),
            Err(err) => {
                client.forget_pending(&events).await;
                tracing::error!(customer = ?customer, %err, events = %serde_json::to_string(&events).unwrap_or_default(), "could not queue the usage of a committed reservation");
                Err(err)
            }
        }
    }

    /// Frees the hold and reports nothing (the work did not happen); as dropping it does.
    pub fn release(self) {}
}
