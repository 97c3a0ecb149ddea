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
