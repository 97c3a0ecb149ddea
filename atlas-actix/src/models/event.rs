use serde::{Deserialize, Serialize};

use super::Extra;

/// A usage event, as `POST /external/event` takes it (in an array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UsageEvent {
    /// The customer's internal Atlas id ([`Customer::id`](super::Customer::id)).
    pub customer_id: String,
    /// The feature's internal id ([`Entitlement::id`](super::Entitlement::id)).
    pub event_name: String,
    /// When the usage happened (ISO-8601).
    pub generated_at: String,
    /// A key the platform deduplicates by; a retried event keeps its key.
    pub idempotency_key: String,
    /// The usage.
    pub data: EventData,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a [`UsageEvent`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EventData {
    /// How much was used; finite and above zero.
    #[serde(serialize_with = "super::number::serialize")]
    pub quantity: f64,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The longest idempotency key the platform stores.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 255;

impl UsageEvent {
    /// What the platform would refuse in this event, if anything: its rules (non-empty ids
    /// and time, a finite quantity above zero, a key of at most 255 characters), checked
    /// before the event is queued, so one bad event never travels in a batch with good ones.
    pub(crate) fn problem(&self) -> Option<String> {
        let fields = [
            ("customerId", &self.customer_id),
            ("eventName", &self.event_name),
            ("idempotencyKey", &self.idempotency_key),
            ("generatedAt", &self.generated_at),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, value)| value.is_empty()) {
            return Some(format!("{name} must be a non-empty string"));
        }
        if self.idempotency_key.chars().count() > MAX_IDEMPOTENCY_KEY {
            return Some(format!(
                "idempotencyKey must have at most {MAX_IDEMPOTENCY_KEY} characters"
            ));
        }
        let quantity = self.data.quantity;
        (!quantity.is_finite() || quantity <= 0.0)
            .then(|| format!("data.quantity must be a finite number above zero, not {quantity}"))
    }
}

#[cfg(test)]
impl UsageEvent {
    /// One unit for customer `c`, with the idempotency key `key`.
    pub(crate) fn sample(key: &str) -> Self {
        serde_json::from_value(serde_json::json!({
            "customerId": "c", "eventName": "e", "generatedAt": "2026-01-01T00:00:00Z",
            "idempotencyKey": key, "data": {"quantity": 1}
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_the_platform_would_refuse_are_named() {
        assert_eq!(UsageEvent::sample("k").problem(), None);
        let mut empty = UsageEvent::sample("k");
        empty.customer_id.clear();
        assert_eq!(
            empty.problem().as_deref(),
            Some("customerId must be a non-empty string")
        );
        let long = UsageEvent::sample(&"k".repeat(256));
        assert!(long.problem().unwrap().contains("at most 255"));
        assert_eq!(UsageEvent::sample(&"é".repeat(255)).problem(), None);
        for quantity in [f64::NAN, f64::INFINITY, 0.0, -1_000_000.0] {
            let mut event = UsageEvent::sample("k");
            event.data.quantity = quantity;
            assert!(
                event.problem().unwrap().contains("data.quantity"),
                "{quantity}"
            );
        }
    }
}
