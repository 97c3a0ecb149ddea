//! Subscriptions: subscribing (free, or through a checkout session), completing checkouts,
//! cancelling and renewing.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use super::{
    members, object, optional_string, required_string, touch, ApiError, CheckoutEntry, Completion,
    Platform, Reply,
};
use crate::emulator::reply::json_number;
use crate::models::{now_iso, Customer, Plan, Subscription, SubscriptionPlan};

const BILLING_CADENCES: [&str; 3] = ["monthly", "quarterly", "annually"];

impl Platform {
    pub(super) fn plan_summary(&self, plan: &Plan) -> SubscriptionPlan {
        SubscriptionPlan {
            id: plan.id.clone(),
            name: Some(plan.name.clone()),
            extra: members(json!({
                "isPrivate": plan.is_private,
                "description": plan.description,
                "status": plan.status,
                "externalId": null,
                "merchantId": self.merchant_id(),
                "isTrialAllowed": plan.is_trial_allowed,
            }))
            .into(),
        }
    }

    pub(super) fn new_subscription(
        &mut self,
        customer_id: &str,
        plan: &Plan,
        now: &str,
    ) -> Subscription {
        Subscription {
            id: self.mint("sub"),
            allow_customer_changes: Some(true),
            status: Some("active".to_owned()),
            start_date: Some(now.to_owned()),
            end_date: None,
            plan_id: plan.id.clone(),
            plan: Some(self.plan_summary(plan)),
            extra: members(json!({
                "customerId": customer_id,
                "merchantId": self.merchant_id(),
                "isTrial": false,
            }))
            .into(),
        }
    }

    pub(super) fn end_subscription(
        &mut self,
        subscription: &Subscription,
        status: &str,
        now: &str,
    ) {
        let mut ended = subscription.clone();
        ended.status = Some(status.to_owned());
        ended.end_date = Some(now.to_owned());
        self.ended_subscriptions.insert(ended.id.clone(), ended);
    }

    /// Ends the customer's subscriptions at once and starts one to `plan`.
    pub(super) fn activate_plan(&mut self, external_id: &str, plan: &Plan) -> Result<(), ApiError> {
        let now = now_iso();
        let customer = self.customer_mut(external_id)?;
        let active = std::mem::take(&mut customer.active_subscriptions);
        let upcoming = std::mem::take(&mut customer.upcoming_subscriptions);
        let customer_id = customer.id.clone();
        for subscription in &active {
            self.end_subscription(subscription, "ended", &now);
        }
        for subscription in &upcoming {
            self.end_subscription(subscription, "deleted", &now);
        }
        let subscription = self.new_subscription(&customer_id, plan, &now);
        let customer = self.customer_mut(external_id)?;
        customer.active_subscriptions = vec![subscription];
        touch(customer, &now);
        Ok(())
    }

    pub(super) fn find_subscription(&self, id: &str) -> Option<&Subscription> {
        self.customers
            .iter()
            .flat_map(Customer::subscriptions)
            .find(|s| s.id == id)
            .or_else(|| self.ended_subscriptions.get(id))
    }

    // ---- /external/* -----------------------------------------------------------------------

    pub(crate) fn subscription(&self, id: &str) -> Result<Reply, ApiError> {
        let subscription = self
            .find_subscription(id)
            .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
        if subscription.plan.is_none() {
            if let Some(plan) = self.pricing_model.plan(&subscription.plan_id) {
                let mut expanded = subscription.clone();
                expanded.plan = Some(self.plan_summary(plan));
                return Reply::ok(expanded);
            }
        }
        Reply::ok(subscription)
    }

    pub(crate) fn subscribe(
        &mut self,
        base_url: &str,
        plan_id: &str,
        body: Option<Value>,
    ) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let cadence = body.get("billingCadence").and_then(Value::as_str);
        let Some(cadence) = cadence.filter(|c| BILLING_CADENCES.contains(c)) else {
            return Err(ApiError::bad_request(format!(
                "billingCadence must be one of {}",
                BILLING_CADENCES.join(", ")
            )));
        };
        let external_id = required_string(&body, "id")?.to_owned();
        let success_url = required_string(&body, "successUrl")?.to_owned();
        let email = optional_string(&body, "email")?;
        let name = optional_string(&body, "name")?;
        let plan = self
            .pricing_model
            .plan(plan_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Plan not found"))?;
        if plan.status != "available" {
            return Err(ApiError::bad_request("Plan is not available"));
        }
        let existing = self.customer(&external_id);
        if plan.is_private && !existing.is_some_and(|c| c.has_private_plan(&plan.id)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Plan is not available to this customer",
            ));
        }
        if existing.is_none() {
            self.create_customer(&external_id, email.clone(), name, false);
        }
        let price = plan.price_for(cadence);
        if price == 0.0 {
            self.activate_plan(&external_id, &plan)?;
            self.customer_changed(&external_id);
            return Reply::ok(json!({ "url": success_url }));
        }
        let customer = self.customer_mut(&external_id)?.clone();
        let session = self.new_checkout_session(
            base_url,
            "subscription",
            &customer,
            &success_url,
            email,
            price,
            json!({
                "planId": plan.id,
                "billingCadence": cadence,
                "externalCustomerId": external_id,
            }),
            Completion::ActivatePlan {
                external_id: external_id.clone(),
                plan_id: plan.id.clone(),
            },
        );
        Reply::ok(session)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_checkout_session(
        &mut self,
        base_url: &str,
        mode: &str,
        customer: &Customer,
        success_url: &str,
        email: Option<String>,
        amount: f64,
        metadata: Value,
        completion: Completion,
    ) -> Value {
        let id = self.mint("cs");
        let created = time::OffsetDateTime::now_utc().unix_timestamp();
        let customer_email = email.or_else(|| customer.email.clone());
        let session = json!({
            "id": id,
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": if mode == "setup" { "no_payment_required" } else { "unpaid" },
            "url": format!("{base_url}/__checkout/{id}"),
            "success_url": success_url,
            "cancel_url": null,
            "customer": customer.extra.get("stripeId").unwrap_or(Value::Null),
            "customer_email": customer_email,
            "client_reference_id": customer.external_id,
            "amount_subtotal": json_number(amount),
            "amount_total": json_number(amount),
            "currency": "usd",
            "livemode": false,
            "created": created,
            "expires_at": created + 24 * 3600,
            "metadata": metadata,
            "ui_mode": "hosted",
        });
        self.checkout_sessions.insert(
            id,
            CheckoutEntry {
                session: members(session.clone()),
                completion,
            },
        );
        session
    }

    pub(crate) fn complete_checkout(&mut self, id: &str) -> Result<Reply, ApiError> {
        let entry = self
            .checkout_sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found("Checkout session not found"))?;
        let success_url = entry
            .session
            .get("success_url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if entry.session.get("status") == Some(&json!("open")) {
            entry.session.insert("status".into(), json!("complete"));
            if entry.session.get("payment_status") == Some(&json!("unpaid")) {
                entry.session.insert("payment_status".into(), json!("paid"));
            }
            match entry.completion.clone() {
                Completion::ActivatePlan {
                    external_id,
                    plan_id,
                } => {
                    let plan = self
                        .pricing_model
                        .plan(&plan_id)
                        .cloned()
                        .ok_or_else(|| ApiError::not_found("Plan not found"))?;
                    self.activate_plan(&external_id, &plan)?;
                    self.customer_changed(&external_id);
                }
                Completion::SetPaymentMethod { external_id } => {
                    let customer = self.customer_mut(&external_id)?;
                    customer
                        .extra
                        .insert("paymentMethod", json!("pm_card_visa"));
                    touch(customer, &now_iso());
                    self.customer_changed(&external_id);
                }
            }
        }
        Ok(Reply::Redirect(success_url))
    }

    pub(crate) fn cancel(&mut self, id: &str, body: Option<Value>) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let external_id = required_string(&body, "externalCustomerId")?.to_owned();
        self.customer_mut(&external_id)?;
        let kind = body.get("type").and_then(Value::as_str);
        let now = now_iso();
        match kind {
            Some("active") => {
                let customer = self.customer_mut(&external_id)?;
                let position = customer
                    .active_subscriptions
                    .iter()
                    .position(|s| s.id == id)
                    .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
                let cancelled = customer.active_subscriptions.remove(position);
                let customer_id = customer.id.clone();
                self.end_subscription(&cancelled, "ended", &now);
                let fallback = self
                    .merchant
                    .default_plan_id
                    .as_deref()
                    .and_then(|plan_id| self.pricing_model.plan(plan_id))
                    .filter(|plan| plan.id != cancelled.plan_id)
                    .cloned();
                if let Some(plan) = fallback {
                    let subscription = self.new_subscription(&customer_id, &plan, &now);
                    self.customer_mut(&external_id)?
                        .active_subscriptions
                        .push(subscription);
                }
            }
            Some("upcoming") => {
                let customer = self.customer_mut(&external_id)?;
                let position = customer
                    .upcoming_subscriptions
                    .iter()
                    .position(|s| s.id == id)
                    .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
                let cancelled = customer.upcoming_subscriptions.remove(position);
                for active in &mut customer.active_subscriptions {
                    active.end_date = None;
                }
                self.end_subscription(&cancelled, "deleted", &now);
            }
            _ => return Err(ApiError::bad_request("type must be active or upcoming")),
        }
        touch(self.customer_mut(&external_id)?, &now);
        self.customer_changed(&external_id);
        Reply::ok(&self.ended_subscriptions[id])
    }

    pub(crate) fn renew(&mut self, id: &str, body: Option<Value>) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let external_id = required_string(&body, "externalCustomerId")?.to_owned();
        let customer = self.customer_mut(&external_id)?;
        let subscription = customer
            .active_subscriptions
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found("Subscription not found"))?;
        subscription.end_date = None;
        let renewed = subscription.clone();
        touch(customer, &now_iso());
        self.customer_changed(&external_id);
        Reply::ok(renewed)
    }
}
