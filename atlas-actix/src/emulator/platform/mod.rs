//! The emulated platform's state and what each `/external/*` and admin route does to it. Pure
//! and synchronous: the HTTP layer in `server.rs` parses requests and holds the lock. One file
//! per concern: customers, subscriptions and checkout, billing reads, events, admin, queries.

mod admin;
mod billing;
mod customers;
mod events;
mod metering;
mod query;
mod subscriptions;

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

pub(crate) use self::query::Query;
use super::data::AtlasData;
use super::faults::Faults;
use super::reply::{ApiError, Reply};
use crate::models::{
    CreditUsage, Customer, Invoice, InvoiceLineItem, Merchant, PricingModel, Push, Subscription,
    Transaction,
};

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
    /// Stored events waiting for their aggregation, when metering is on: when each is due.
    metering: VecDeque<metering::Metered>,
    seen_idempotency_keys: events::KeySet,
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
            metering: VecDeque::new(),
            seen_idempotency_keys: events::KeySet::new(),
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

    pub(super) fn load(&mut self) {
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
        self.metering.clear();
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

    pub(super) fn emit(&self, push: Push) -> usize {
        // No receiver is not an error: pushes are best effort, as socket.io emits are.
        self.pushes.send(push).unwrap_or(0)
    }

    pub(super) fn mint(&mut self, kind: &'static str) -> String {
        let counter = self.minted.entry(kind).or_default();
        *counter += 1;
        format!("{kind}_new_{counter}")
    }

    pub(super) fn merchant_id(&self) -> String {
        self.merchant
            .id
            .clone()
            .unwrap_or_else(|| "merchant".to_owned())
    }

    pub(super) fn customer_mut(&mut self, external_id: &str) -> Result<&mut Customer, ApiError> {
        match self.customer_index.get(external_id) {
            Some(&i) => Ok(&mut self.customers[i]),
            None => Err(ApiError::not_found("Customer not found")),
        }
    }

    pub(super) fn customer(&self, external_id: &str) -> Option<&Customer> {
        self.customer_index
            .get(external_id)
            .map(|&i| &self.customers[i])
    }

    pub(super) fn customer_changed(&self, external_id: &str) {
        self.emit(Push::InvalidateCustomer(external_id.to_owned()));
    }
}

fn touch(customer: &mut Customer, now: &str) {
    customer.extra.insert("updatedAt", json!(now));
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
