//! Customers: look-up, creation, and the payment-method checkout.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::{
    members, object, optional_string, required_string, ApiError, Completion, Platform, Reply,
};
use crate::models::{now_iso, Customer};

impl Platform {
    pub(super) fn create_customer(
        &mut self,
        external_id: &str,
        email: Option<String>,
        name: Option<String>,
        with_default_plan: bool,
    ) -> &mut Customer {
        let now = now_iso();
        let id = self.mint("cus");
        let mut customer = Customer {
            id: id.clone(),
            external_id: external_id.to_owned(),
            email,
            name,
            active_subscriptions: Vec::new(),
            upcoming_subscriptions: Vec::new(),
            conditional_billable_access: Vec::new(),
            custom_pricing_units: Vec::new(),
            customer_private_plans: Vec::new(),
            extra: members(json!({
                "status": "active",
                "merchantId": self.merchant_id(),
                "createdAt": now,
                "updatedAt": now,
                "isEligibleForTrial": true,
            }))
            .into(),
        };
        let default_plan = self
            .merchant
            .default_plan_id
            .as_deref()
            .filter(|_| with_default_plan)
            .and_then(|plan_id| self.pricing_model.plan(plan_id))
            .cloned();
        if let Some(plan) = default_plan {
            let subscription = self.new_subscription(&id, &plan, &now);
            customer.active_subscriptions.push(subscription);
        }
        let index = self.customers.len();
        self.customers.push(customer);
        self.customer_index.insert(external_id.to_owned(), index);
        &mut self.customers[index]
    }

    pub(crate) fn merchant(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.merchant)
    }

    pub(crate) fn pricing_model(&self) -> Result<Reply, ApiError> {
        Reply::ok(&self.pricing_model)
    }

    pub(crate) fn get_customer(&self, external_id: &str) -> Result<Reply, ApiError> {
        match self.customer(external_id) {
            Some(customer) => Reply::ok(customer),
            None => Err(ApiError::not_found("Customer not found")),
        }
    }

    pub(crate) fn post_customer(&mut self, body: Option<Value>) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let external_id = required_string(&body, "externalId")?.to_owned();
        let email = optional_string(&body, "email")?;
        let name = optional_string(&body, "name")?;
        if let Some(existing) = self.customer(&external_id) {
            return Reply::ok(existing);
        }
        let created = self.create_customer(&external_id, email, name, true);
        let reply = Reply::with_status(StatusCode::CREATED, &*created);
        self.customer_changed(&external_id);
        reply
    }

    pub(crate) fn payment_method(
        &mut self,
        base_url: &str,
        external_id: &str,
        body: Option<Value>,
    ) -> Result<Reply, ApiError> {
        let customer = self.customer_mut(external_id)?.clone();
        let body = object(body)?;
        let success_url = required_string(&body, "successUrl")?.to_owned();
        let email = optional_string(&body, "email")?;
        let session = self.new_checkout_session(
            base_url,
            "setup",
            &customer,
            &success_url,
            email,
            0.0,
            json!({"externalCustomerId": customer.external_id}),
            Completion::SetPaymentMethod {
                external_id: customer.external_id.clone(),
            },
        );
        Reply::ok(session)
    }
}
