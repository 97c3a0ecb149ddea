//! The admin API: what the emulator received, its customers, and pushes on request.

use serde_json::{json, Value};

use super::{members, object, to_value, ApiError, Platform, Reply};
use crate::models::Customer;
use crate::models::Push;

impl Platform {
    pub(crate) fn admin_events(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.events)
    }

    pub(crate) fn admin_registrations(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.registrations)
    }

    pub(crate) fn admin_sdk_versions(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.sdk_versions)
    }

    pub(crate) fn admin_customers(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.customers)
    }

    pub(crate) fn admin_requests(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.request_counts)
    }

    /// A shallow merge into the stored customer (created when absent). Emits nothing: this is
    /// how tests change a customer behind the SDK's back.
    pub(crate) fn admin_put_customer(
        &mut self,
        external_id: &str,
        body: Option<Value>,
    ) -> Result<Reply, ApiError> {
        let patch = object(body)?;
        if self.customer(external_id).is_none() {
            self.create_customer(external_id, None, None, false);
        }
        let customer = self.customer_mut(external_id)?;
        let mut merged = members(to_value(&*customer));
        merged.extend(patch);
        merged.insert("externalId".into(), json!(external_id));
        let updated: Customer = serde_json::from_value(Value::Object(merged)).map_err(|err| {
            ApiError::bad_request(format!("the customer would be invalid: {err}"))
        })?;
        *customer = updated;
        Reply::ok(&*customer)
    }

    pub(crate) fn admin_invalidate(&self, body: Option<Value>) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let push = if let Some(Value::String(customer)) = body.get("customer") {
            Push::InvalidateCustomer(customer.clone())
        } else if body.get("plans") == Some(&Value::Bool(true)) {
            Push::InvalidatePlans
        } else if body.get("merchant") == Some(&Value::Bool(true)) {
            Push::InvalidateMerchant
        } else {
            return Err(ApiError::bad_request(
                r#"body must be {"customer": id}, {"plans": true} or {"merchant": true}"#,
            ));
        };
        let event = push.event_name();
        let sockets = self.emit(push);
        Reply::ok(json!({ "event": event, "sockets": sockets }))
    }

    /// The usage events received (each idempotency key once), for the handle's helpers.
    pub(crate) fn received_events(&self) -> &[Value] {
        &self.events
    }

    /// The feature ids registered, for the handle's helpers.
    pub(crate) fn registered_features(&self) -> &[String] {
        &self.registrations
    }

    /// Moves the customer to `plan_id` as a completed checkout would, and pushes the change.
    pub(crate) fn set_plan(&mut self, external_id: &str, plan_id: &str) -> Result<(), ApiError> {
        let plan = self
            .pricing_model
            .plan(plan_id)
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("no plan {plan_id:?}")))?;
        self.activate_plan(external_id, &plan)?;
        self.customer_changed(external_id);
        Ok(())
    }
}
