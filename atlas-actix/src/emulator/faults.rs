//! Fault injection for tests of the SDK's resilience: the next N requests to a path answer an
//! error status, answer late, or answer a body that is not JSON.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A fault to inject, as `POST /__admin/faults` takes it.
///
/// ```json
/// {"path": "/external/customers", "method": "GET", "times": 2, "status": 503}
/// {"delayMs": 5000}
/// {"path": "/external/pricingModel", "invalidJson": true}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Applies to requests whose raw path starts with this (every platform route when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Applies to this method only (every method when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// How many requests it applies to (until cleared when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Answer this status with an `{"error"}` body instead of serving the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Answer 200 with a body that is not JSON instead of serving the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid_json: bool,
}

impl Fault {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err("status must be between 100 and 599".to_owned());
        }
        if self.status.is_some() && self.invalid_json {
            return Err("give status or invalidJson, not both".to_owned());
        }
        if self.times == Some(0) {
            return Err("times must be at least 1".to_owned());
        }
        Ok(())
    }

    fn applies_to(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }

    pub(crate) fn delay(&self) -> Option<Duration> {
        self.delay_ms.map(Duration::from_millis)
    }
}

/// The faults in force, first added first applied.
#[derive(Debug, Default)]
pub(crate) struct Faults(Vec<Fault>);

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) {
        self.0.push(fault);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn list(&self) -> &[Fault] {
        &self.0
    }

    /// The fault that applies to this request, used up by one.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self.0.iter().position(|f| f.applies_to(method, path))?;
        let fault = self.0[index].clone();
        match &mut self.0[index].times {
            Some(1) => {
                self.0.remove(index);
            }
            Some(left) => *left -= 1,
            None => {}
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: &str) -> Fault {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_counted_fault_is_used_up() {
        let mut faults = Faults::default();
        faults.add(fault(
            r#"{"path": "/external/pricing", "times": 2, "status": 500}"#,
        ));
        assert!(faults.take("GET", "/external/merchants/me").is_none());
        assert!(faults.take("GET", "/external/pricingModel").is_some());
        assert!(faults.take("GET", "/external/pricingModel").is_some());
        assert!(faults.take("GET", "/external/pricingModel").is_none());
    }

    #[test]
    fn an_uncounted_fault_stays_until_cleared() {
        let mut faults = Faults::default();
        faults.add(fault(r#"{"method": "post", "delayMs": 10}"#));
        for _ in 0..5 {
            assert!(faults.take("POST", "/external/event").is_some());
        }
        assert!(faults.take("GET", "/external/event").is_none());
        faults.clear();
        assert!(faults.take("POST", "/external/event").is_none());
    }

    #[test]
    fn rejects_contradictions() {
        assert!(fault(r#"{"status": 42}"#).check().is_err());
        assert!(fault(r#"{"status": 500, "invalidJson": true}"#)
            .check()
            .is_err());
        assert!(fault(r#"{"times": 0}"#).check().is_err());
        assert!(serde_json::from_str::<Fault>(r#"{"stauts": 500}"#).is_err());
    }
}
