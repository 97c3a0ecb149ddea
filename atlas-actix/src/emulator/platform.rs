//! The emulated platform's state and what each `/external/*` and admin route does to it. Pure
//! and synchronous: the HTTP layer in `server.rs` parses requests and holds the lock.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use actix_web::http::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::data::AtlasData;
use super::faults::Faults;
use super::reply::{ApiError, Reply};
use crate::models::{
    now_iso, number, CreditUsage, Customer, Invoice, InvoiceLineItem, Merchant, Plan, PricingModel,
    Subscription, SubscriptionPlan, Transaction,
};

const BILLING_CADENCES: [&str; 3] = ["monthly", "quarterly", "annually"];

/// A push the platform sends to connected SDK clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A customer changed: clients refetch it. Holds the customer's external id.
    InvalidateCustomer(String),
    /// The pricing model changed.
    InvalidatePlans,
    /// The merchant changed: clients initialise again.
    InvalidateMerchant,
}

impl Push {
    /// The socket.io event name of this push.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::InvalidateCustomer(_) => "invalidateCustomer",
            Self::InvalidatePlans => "invalidatePlans",
            Self::InvalidateMerchant => "invalidateMerchant",
        }
    }
}

/// What completing a checkout session does.
#[derive(Debug, Clone)]
enum Completion {
    ActivatePlan {
        external_id: String,
        plan_id: String,
    },
    SetPaymentMethod {
        external_id: String,
    },
}

#[derive(Debug)]
struct CheckoutEntry {
    session: Map<String, Value>,
    completion: Completion,
}

/// A query string, read as `URLSearchParams.get` does: the first value of a name.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: &str) -> Self {
        Self(
            actix_web::web::Query::<Vec<(String, String)>>::from_query(raw)
                .map(actix_web::web::Query::into_inner)
                .unwrap_or_default(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    }
}

pub(crate) struct Platform {
    source: AtlasData,
    api_key: String,
    merchant: Merchant,
    pricing_model: PricingModel,
    customers: Vec<Customer>,
    customer_index: HashMap<String, usize>,
    invoices: HashMap<String, Vec<Invoice>>,
    line_items: HashMap<String, Vec<InvoiceLineItem>>,
    transactions: HashMap<String, Vec<Transaction>>,
    credit_usage: HashMap<String, HashMap<String, CreditUsage>>,
    events: Vec<Value>,
    seen_idempotency_keys: HashSet<String>,
    registrations: Vec<String>,
    sdk_versions: Vec<Value>,
    request_counts: BTreeMap<String, u64>,
    minted: HashMap<&'static str, u64>,
    ended_subscriptions: HashMap<String, Subscription>,
    checkout_sessions: HashMap<String, CheckoutEntry>,
    pub(crate) faults: Faults,
    pushes: broadcast::Sender<Push>,
}

impl Platform {
    pub(crate) fn new(source: AtlasData, api_key: String, pushes: broadcast::Sender<Push>) -> Self {
        let mut platform = Self {
            api_key,
            merchant: source.merchant.clone(),
            pricing_model: PricingModel::default(),
            customers: Vec::new(),
            customer_index: HashMap::new(),
            invoices: HashMap::new(),
            line_items: HashMap::new(),
            transactions: HashMap::new(),
            credit_usage: HashMap::new(),
            events: Vec::new(),
            seen_idempotency_keys: HashSet::new(),
            registrations: Vec::new(),
            sdk_versions: Vec::new(),
            request_counts: BTreeMap::new(),
            minted: HashMap::new(),
            ended_subscriptions: HashMap::new(),
            checkout_sessions: HashMap::new(),
            faults: Faults::default(),
            pushes,
            source,
        };
        platform.load();
        platform
    }

    /// Replaces all state with the data file's (or `data`, when given), clearing what the run
    /// accumulated.
    pub(crate) fn reset(&mut self, data: Option<AtlasData>) {
        if let Some(data) = data {
            self.source = data;
        }
        self.load();
    }

    fn load(&mut self) {
        let data = self.source.clone();
        self.merchant = data.merchant;
        self.pricing_model = data.pricing_model;
        self.customer_index = data
            .customers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.external_id.clone(), i))
            .collect();
        self.customers = data.customers;
        self.invoices = data.invoices;
        self.line_items = data.invoice_line_items;
        self.transactions = data.transactions;
        self.credit_usage = data.credit_usage;
        self.events.clear();
        self.seen_idempotency_keys.clear();
        self.registrations.clear();
        self.sdk_versions.clear();
        self.request_counts.clear();
        self.minted.clear();
        self.ended_subscriptions.clear();
        self.checkout_sessions.clear();
        self.faults.clear();
    }

    pub(crate) fn api_key(&self) -> &str {
        &self.api_key
    }

    pub(crate) fn count_request(&mut self, key: String) {
        *self.request_counts.entry(key).or_default() += 1;
    }

    fn emit(&self, push: Push) -> usize {
        // No receiver is not an error: pushes are best effort, as socket.io emits are.
        self.pushes.send(push).unwrap_or(0)
    }

    fn mint(&mut self, kind: &'static str) -> String {
        let counter = self.minted.entry(kind).or_default();
        *counter += 1;
        format!("{kind}_new_{counter}")
    }

    fn merchant_id(&self) -> String {
        self.merchant
            .id
            .clone()
            .unwrap_or_else(|| "merchant".to_owned())
    }

    fn customer_mut(&mut self, external_id: &str) -> Result<&mut Customer, ApiError> {
        match self.customer_index.get(external_id) {
            Some(&i) => Ok(&mut self.customers[i]),
            None => Err(ApiError::not_found("Customer not found")),
        }
    }

    fn customer(&self, external_id: &str) -> Option<&Customer> {
        self.customer_index
            .get(external_id)
            .map(|&i| &self.customers[i])
    }

    fn plan_summary(&self, plan: &Plan) -> SubscriptionPlan {
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
            })),
        }
    }

    fn new_subscription(&mut self, customer_id: &str, plan: &Plan, now: &str) -> Subscription {
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
            })),
        }
    }

    fn create_customer(
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
            })),
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

    fn end_subscription(&mut self, subscription: &Subscription, status: &str, now: &str) {
        let mut ended = subscription.clone();
        ended.status = Some(status.to_owned());
        ended.end_date = Some(now.to_owned());
        self.ended_subscriptions.insert(ended.id.clone(), ended);
    }

    /// Ends the customer's subscriptions at once and starts one to `plan`.
    fn activate_plan(&mut self, external_id: &str, plan: &Plan) -> Result<(), ApiError> {
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

    fn customer_changed(&self, external_id: &str) {
        self.emit(Push::InvalidateCustomer(external_id.to_owned()));
    }

    fn find_subscription(&self, id: &str) -> Option<&Subscription> {
        self.customers
            .iter()
            .flat_map(Customer::subscriptions)
            .find(|s| s.id == id)
            .or_else(|| self.ended_subscriptions.get(id))
    }

    // ---- /external/* -----------------------------------------------------------------------

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

    pub(crate) fn credit_usage(
        &self,
        customer_key: &str,
        unit_id: &str,
    ) -> Result<Reply, ApiError> {
        let customer = self
            .customer(customer_key)
            .or_else(|| self.customers.iter().find(|c| c.id == customer_key))
            .ok_or_else(|| ApiError::not_found("Customer not found"))?;
        if let Some(given) = self
            .credit_usage
            .get(&customer.external_id)
            .and_then(|units| units.get(unit_id))
        {
            return Reply::ok(given);
        }
        let unit = self
            .pricing_model
            .custom_pricing_unit(unit_id)
            .ok_or_else(|| ApiError::not_found("Custom pricing unit not found"))?;
        let balance = customer.balance(unit_id);
        Reply::ok(json!({
            "customPricingUnitId": unit_id,
            "displayName": unit.display_name,
            "totalAllocated": number::to_json(balance.max(0.0)),
            "totalUsed": 0,
            "remaining": number::to_json(balance),
            "nextExpiring": null,
        }))
    }

    /// The customer's invoices, each with an amount (the sum of its line items when absent).
    fn invoices_of(&self, external_id: &str) -> Vec<Invoice> {
        let Some(invoices) = self.invoices.get(external_id) else {
            return Vec::new();
        };
        invoices
            .iter()
            .map(|invoice| {
                let mut invoice = invoice.clone();
                if invoice.amount.is_none() {
                    let items = self
                        .line_items
                        .get(&invoice.id)
                        .map_or(&[][..], Vec::as_slice);
                    invoice.amount = Some(items.iter().filter_map(|item| item.amount).sum());
                }
                invoice
            })
            .collect()
    }

    pub(crate) fn invoices(&self, query: &Query) -> Result<Reply, ApiError> {
        let external_id = query.required("customer.externalId")?;
        let excluded: Vec<Value> = match query.get("statusNotInList") {
            None => Vec::new(),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|_| ApiError::bad_request("statusNotInList must be a JSON array"))?,
        };
        let invoices: Vec<Value> = self
            .invoices_of(external_id)
            .into_iter()
            .filter(|invoice| {
                let status = invoice.status.clone().map_or(Value::Null, Value::String);
                !excluded.contains(&status)
            })
            .map(to_value)
            .collect();
        Reply::ok(paginate(sort_by(invoices, query)?, query)?)
    }

    pub(crate) fn line_items(&self, query: &Query) -> Result<Reply, ApiError> {
        let invoice_id = query.required("invoiceId")?;
        let external_id = query.required("customer.externalId")?;
        let Some(invoice) = self
            .invoices_of(external_id)
            .into_iter()
            .find(|i| i.id == invoice_id)
        else {
            return Reply::ok(json!([]));
        };
        let items: Vec<InvoiceLineItem> = self
            .line_items
            .get(invoice_id)
            .into_iter()
            .flatten()
            .map(|item| {
                let mut item = item.clone();
                item.invoice.get_or_insert_with(|| invoice.clone());
                item
            })
            .collect();
        Reply::ok(items)
    }

    pub(crate) fn transactions(&self, query: &Query) -> Result<Reply, ApiError> {
        let external_id = query.required("allocationBlock.customer.externalId")?;
        let items = self
            .transactions
            .get(external_id)
            .into_iter()
            .flatten()
            .map(to_value)
            .collect();
        Reply::ok(paginate(sort_by(items, query)?, query)?)
    }

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
    fn new_checkout_session(
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
            "customer": customer.extra.get("stripeId").cloned().unwrap_or(Value::Null),
            "customer_email": customer_email,
            "client_reference_id": customer.external_id,
            "amount_subtotal": number::to_json(amount),
            "amount_total": number::to_json(amount),
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
                        .insert("paymentMethod".into(), json!("pm_card_visa"));
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
        for event in events {
            let key = event["idempotencyKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if self.seen_idempotency_keys.insert(key) {
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
}

fn touch(customer: &mut Customer, now: &str) {
    customer.extra.insert("updatedAt".into(), json!(now));
}

/// A model as JSON. Models hold only JSON-representable data (keys are strings, numbers came
/// from JSON), so this cannot fail; `null` would be the answer if it did.
fn to_value(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The members of a JSON object built here (anything else has none).
fn members(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn object(body: Option<Value>) -> Result<Map<String, Value>, ApiError> {
    match body {
        Some(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::bad_request("body must be a JSON object")),
    }
}

fn required_string<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{key} must be a non-empty string")))
}

fn optional_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

fn check_event(event: &Value) -> Result<(), String> {
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

fn positive_int(query: &Query, name: &str, fallback: u64) -> Result<u64, ApiError> {
    let Some(text) = query.get(name).map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(fallback);
    };
    match text.parse::<f64>() {
        Ok(n) if n >= 1.0 && n.fract() == 0.0 && n <= u64::MAX as f64 => Ok(n as u64),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a positive integer"
        ))),
    }
}

fn paginate(items: Vec<Value>, query: &Query) -> Result<Value, ApiError> {
    let page = positive_int(query, "page", 1)?;
    let page_size = positive_int(query, "pageSize", 10)?;
    let count = items.len() as u64;
    if query.get("all") == Some("true") {
        return Ok(json!({"results": items, "count": count, "pages": 1, "currentPage": 1}));
    }
    let start = (page - 1).saturating_mul(page_size);
    let results: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(usize::try_from(page_size).unwrap_or(usize::MAX))
        .collect();
    Ok(json!({
        "results": results,
        "count": count,
        "pages": count.div_ceil(page_size),
        "currentPage": page,
    }))
}

/// Sorts by the `orderBy` field (`order` `asc` by default, or `desc`); items without the field
/// go last either way.
fn sort_by(mut items: Vec<Value>, query: &Query) -> Result<Vec<Value>, ApiError> {
    let Some(field) = query.get("orderBy").filter(|f| !f.is_empty()) else {
        return Ok(items);
    };
    let descending = match query.get("order").unwrap_or("asc") {
        "asc" => false,
        "desc" => true,
        _ => return Err(ApiError::bad_request("order must be asc or desc")),
    };
    items.sort_by(|a, b| {
        let (x, y) = (a.get(field), b.get(field));
        let (x, y) = (x.filter(|v| !v.is_null()), y.filter(|v| !v.is_null()));
        match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let order = compare_values(x, y);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            }
        }
    });
    Ok(items)
}

fn compare_values(x: &Value, y: &Value) -> Ordering {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(raw: &str) -> Query {
        Query::parse(raw)
    }

    fn numbers(values: &[Value]) -> Vec<i64> {
        values
            .iter()
            .map(|v| v["n"].as_i64().unwrap_or(-1))
            .collect()
    }

    #[test]
    fn paginates_and_counts_pages() {
        let items: Vec<Value> = (1..=25).map(|n| json!({ "n": n })).collect();
        let page = paginate(items.clone(), &query("page=3&pageSize=10")).unwrap();
        assert_eq!(page["count"], 25);
        assert_eq!(page["pages"], 3);
        assert_eq!(page["currentPage"], 3);
        assert_eq!(page["results"].as_array().unwrap().len(), 5);
        let all = paginate(items, &query("all=true&pageSize=2")).unwrap();
        assert_eq!(all["results"].as_array().unwrap().len(), 25);
        assert_eq!(all["pages"], 1);
    }

    #[test]
    fn rejects_bad_page_numbers() {
        for bad in ["page=0", "page=-1", "page=1.5", "pageSize=abc"] {
            assert!(paginate(vec![], &query(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sorts_with_missing_values_last() {
        let items = vec![json!({"n": 2}), json!({}), json!({"n": 3}), json!({"n": 1})];
        let asc = sort_by(items.clone(), &query("orderBy=n")).unwrap();
        assert_eq!(numbers(&asc), [1, 2, 3, -1]);
        let desc = sort_by(items.clone(), &query("orderBy=n&order=desc")).unwrap();
        assert_eq!(numbers(&desc), [3, 2, 1, -1]);
        assert!(sort_by(items, &query("orderBy=n&order=sideways")).is_err());
    }

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
