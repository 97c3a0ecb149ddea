//! The admin API: what the emulator received, its customers, and pushes on request.

use serde_json::{json, Value};

use super::{members, object, to_value, touch, ApiError, Platform, Reply};
use crate::emulator::RecordedUsage;
use crate::models::{now_iso, Customer, Push};

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

    /// The usage events received, in the app's ids: the customer's external id and the
    /// feature's slug (an id the platform does not know is given as it came).
    pub(crate) fn recorded_usage(&self) -> Vec<RecordedUsage> {
        self.events
            .iter()
            .map(|event| {
                let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
                let (customer_id, event_name) = (text("customerId"), text("eventName"));
                RecordedUsage {
                    customer: self
                        .customers
                        .iter()
                        .find(|customer| customer.id == customer_id)
                        .map_or(customer_id.clone(), |customer| customer.external_id.clone()),
                    feature: self
                        .pricing_model
                        .entitlements
                        .iter()
                        .find(|entitlement| entitlement.id == event_name)
                        .map_or(event_name.clone(), |entitlement| entitlement.slug.clone()),
                    quantity: event["data"]["quantity"].as_f64().unwrap_or_default(),
                    idempotency_key: text("idempotencyKey"),
                    generated_at: text("generatedAt"),
                }
            })
            .collect()
    }

    /// Sets the usage the platform counted of the usage-based feature `slug` for the customer,
    /// on its subscription that grants it, as its aggregation would: access ends at the
    /// grant's `maxUsage` and comes back below it. Pushes the change.
    pub(crate) fn set_usage(
        &mut self,
        external_id: &str,
        slug: &str,
        usage: f64,
    ) -> Result<(), ApiError> {
        if !usage.is_finite() || usage < 0.0 {
            return Err(ApiError::bad_request(format!(
                "usage must be a finite number of at least zero, not {usage}"
            )));
        }
        let entitlement_id = self.entitlement_id(slug)?;
        let customer = self
            .customer(external_id)
            .ok_or_else(|| ApiError::not_found(format!("no customer {external_id:?}")))?;
        let (subscription, grant) =
            self.grant_in_force(customer, &entitlement_id)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no subscription in force of {external_id:?} grants {slug:?}"
                    ))
                })?;
        let customer = self.customer_mut(external_id)?;
        let access = customer.access_entry(&subscription, &entitlement_id);
        access.current_usage = Some(usage);
        access.access = Some(grant.max_usage.is_none_or(|max| usage < max));
        access.extra.insert("updatedAt", json!(now_iso()));
        touch(customer, &now_iso());
        self.customer_changed(external_id);
        Ok(())
    }

    /// Sets the customer's balance of the credit `unit` (a `customPricingUnits` id of the
    /// pricing model). Pushes the change.
    pub(crate) fn set_balance(
        &mut self,
        external_id: &str,
        unit: &str,
        balance: f64,
    ) -> Result<(), ApiError> {
        if !balance.is_finite() {
            return Err(ApiError::bad_request(format!(
                "a balance must be a finite number, not {balance}"
            )));
        }
        if !self
            .pricing_model
            .custom_pricing_units
            .iter()
            .any(|known| known.id == unit)
        {
            return Err(ApiError::not_found(format!(
                "no credit unit {unit:?} in the pricing model"
            )));
        }
        let customer = self.customer_mut(external_id)?;
        customer.balance_entry(unit).balance = balance;
        touch(customer, &now_iso());
        self.customer_changed(external_id);
        Ok(())
    }

    fn entitlement_id(&self, slug: &str) -> Result<String, ApiError> {
        self.pricing_model
            .entitlements
            .iter()
            .find(|entitlement| entitlement.slug == slug)
            .map(|entitlement| entitlement.id.clone())
            .ok_or_else(|| ApiError::not_found(format!("no feature {slug:?} in the pricing model")))
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
