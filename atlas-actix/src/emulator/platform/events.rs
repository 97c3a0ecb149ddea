//! Usage events (idempotent by key), feature registrations and SDK version reports.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use serde_json::{json, Value};

use super::{ApiError, Platform, Reply};

impl Platform {
    /// Stores a batch of usage events. The whole batch is checked first, so a bad event stores
    /// none; an event whose idempotency key was seen before is accepted and not stored again.
    pub(crate) fn post_events(&mut self, body: Option<Value>) -> Result<Reply, ApiError> {
        let Some(Value::Array(events)) = body else {
            return Err(ApiError::bad_request("body must be a JSON array of events"));
        };
        for (i, event) in events.iter().enumerate() {
            check_event(event)
                .map_err(|problem| ApiError::bad_request(format!("event {i}{problem}")))?;
        }
        let received = events.len();
        let arrived = std::time::Instant::now();
        for event in events {
            let key = event["idempotencyKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if self.seen_idempotency_keys.insert(key) {
                self.meter(&event, arrived);
                self.events.push(event);
            }
        }
        Reply::ok(json!({ "received": received }))
    }

    pub(crate) fn register_features(&mut self, body: Option<Value>) -> Result<Reply, ApiError> {
        let slugs = body
            .as_ref()
            .and_then(|b| b.get("slugs"))
            .and_then(Value::as_array)
            .filter(|_| body.as_ref().is_some_and(Value::is_object))
            .and_then(|slugs| {
                slugs
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| ApiError::bad_request("body must be {slugs: [string]}"))?;
        self.registrations.extend(slugs);
        Reply::ok(json!({}))
    }

    pub(crate) fn sdk_version(&mut self, body: Option<Value>) -> Result<Reply, ApiError> {
        let versions = body
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|versions| {
                versions
                    .iter()
                    .map(|v| {
                        let library = v.get("library")?.as_str()?;
                        let version = v.get("version")?.as_str()?;
                        Some(json!({ "library": library, "version": version }))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| ApiError::bad_request("body must be [{library, version}]"))?;
        self.sdk_versions.extend(versions);
        Reply::ok(json!({}))
    }

    // ---- /__admin/* --------------------------------------------------------------------------
}

pub(super) fn check_event(event: &Value) -> Result<(), String> {
    let Value::Object(event) = event else {
        return Err(" must be an object".to_owned());
    };
    for key in ["customerId", "eventName", "idempotencyKey", "generatedAt"] {
        if event
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!(": {key} must be a non-empty string"));
        }
    }
    let quantity = event
        .get("data")
        .filter(|data| data.is_object())
        .and_then(|data| data.get("quantity"))
        .and_then(Value::as_f64);
    match quantity {
        Some(q) if q.is_finite() => Ok(()),
        _ => Err(": data.quantity must be a finite number".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::now_iso;

    #[test]
    fn checks_events_field_by_field() {
        let good = json!({"customerId": "c", "eventName": "e", "idempotencyKey": "k",
            "generatedAt": "2024-01-01T00:00:00.000Z", "data": {"quantity": 2}});
        assert!(check_event(&good).is_ok());
        let mut no_key = good.clone();
        no_key["idempotencyKey"] = json!("");
        assert!(check_event(&no_key).unwrap_err().contains("idempotencyKey"));
        let mut text_quantity = good.clone();
        text_quantity["data"]["quantity"] = json!("2");
        assert!(check_event(&text_quantity)
            .unwrap_err()
            .contains("quantity"));
        assert!(check_event(&json!([])).is_err());
    }

    #[test]
    fn now_is_iso_with_milliseconds() {
        let now = now_iso();
        assert_eq!(now.len(), "2024-01-15T08:30:00.000Z".len());
        assert!(now.ends_with('Z'));
    }
}

/// How many sets the received idempotency keys are spread over.
const KEY_SHARDS: usize = 64;

/// The idempotency keys received. A set grows by doubling, and a single set of the millions
/// a load benchmark sends stalled the single-worker emulator for up to a second at each
/// rehash (every customer answer waited behind it); spread over shards, each rehash moves a
/// sixty-fourth of the keys.
#[derive(Debug)]
pub(super) struct KeySet {
    shards: Vec<HashSet<String>>,
    hasher: RandomState,
}

impl KeySet {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..KEY_SHARDS).map(|_| Default::default()).collect(),
            hasher: Default::default(),
        }
    }

    /// Whether the key is new (then it is kept).
    pub(super) fn insert(&mut self, key: String) -> bool {
        let shard = self.hasher.hash_one(&key) as usize % KEY_SHARDS;
        self.shards[shard].insert(key)
    }

    pub(super) fn clear(&mut self) {
        self.shards.iter_mut().for_each(HashSet::clear);
    }
}
