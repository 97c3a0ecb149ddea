//! The conformance harness's contract service (`../shared/conformance/PROTOCOL.md`): thin glue
//! that exposes the SDK's calls over HTTP, so the harness can compare them with the official
//! JavaScript client's, on the wire.
//!
//! `PORT=8123 cargo run --example contract_service`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer, ResponseError};
use atlas_actix::{
    Atlas, AtlasError, BillingCadence, CancelType, CustomerInfo, Pagination, SubscribeRequest,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

const CAPABILITIES: [&str; 6] = [
    "features",
    "allowed",
    "events",
    "customer-creation",
    "invalidation",
    "billing",
];

#[derive(Default)]
struct Clients {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<String, Atlas>>,
}

impl Clients {
    fn get(&self, id: &str) -> Result<Atlas, Failure> {
        self.by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("no client with id {id}")))
    }
}

#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({ "error": self.message }))
    }
}

/// An SDK failure: 403 when subscription changes are not allowed, else 500, as the protocol
/// says.
impl From<AtlasError> for Failure {
    fn from(err: AtlasError) -> Self {
        let status = match err {
            AtlasError::SubscriptionChangesNotAllowed => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, err.to_string())
    }
}

type Answer = Result<HttpResponse, Failure>;

fn ok(value: impl serde::Serialize) -> Answer {
    Ok(HttpResponse::Ok().json(value))
}

/// The JSON body; an empty one is `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Failure> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|err| Failure::bad_request(format!("invalid body: {err}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewClient {
    atlas_host: String,
    api_key: String,
    allow_unknown_limits: Option<bool>,
    #[serde(default)]
    limits: HashMap<String, LimitSpec>,
    events_flush_interval: Option<f64>,
    events_flush_at: Option<f64>,
}

/// A limit callback as the protocol describes it.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct LimitSpec {
    usage: Option<f64>,
    by_customer: Option<HashMap<String, f64>>,
    #[serde(default)]
    error: bool,
}

impl LimitSpec {
    fn usage_of(&self, customer: &str) -> Result<f64, String> {
        if self.error {
            return Err("limit callback failed".to_owned());
        }
        self.by_customer
            .as_ref()
            .and_then(|by_customer| by_customer.get(customer).copied())
            .or(self.usage)
            .ok_or_else(|| format!("no usage for customer {customer}"))
    }
}

fn non_negative(value: Option<f64>, name: &str) -> Result<Option<f64>, Failure> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(Failure::bad_request(format!(
            "{name} must be a non-negative number"
        ))),
        other => Ok(other),
    }
}

async fn create_client(clients: web::Data<Clients>, bytes: Bytes) -> Answer {
    let request: NewClient = body(&bytes)?;
    let mut builder = Atlas::builder()
        .api_key(request.api_key)
        .base_url(request.atlas_host);
    if let Some(allow) = request.allow_unknown_limits {
        builder = builder.allow_unknown_limits(allow);
    }
    if let Some(ms) = non_negative(request.events_flush_interval, "eventsFlushInterval")? {
        builder = builder.events_flush_interval(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(count) = non_negative(request.events_flush_at, "eventsFlushAt")? {
        builder = builder.events_flush_at(count as usize);
    }
    for (feature, spec) in request.limits {
        if !spec.error && spec.usage.is_none() && spec.by_customer.is_none() {
            return Err(Failure::bad_request(format!(
                "limits.{feature} needs usage, byCustomer or error"
            )));
        }
        builder = builder.limit(feature, move |customer: String| {
            let spec = spec.clone();
            async move { spec.usage_of(&customer) }
        });
    }
    let atlas = builder
        .build()
        .map_err(|err| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?;
    if let Err(err) = atlas.status().await {
        let _ = atlas.shutdown().await;
        return Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            err.to_string(),
        ));
    }
    let id = (clients.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
    clients
        .by_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), atlas);
    Ok(HttpResponse::Created().json(json!({ "id": id })))
}

async fn delete_client(clients: web::Data<Clients>, id: web::Path<String>) -> Answer {
    let atlas = clients.get(&id)?;
    clients
        .by_id
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id.as_str());
    // Queued events are sent first; a failure to send them is the SDK's to log.
    let _ = atlas.shutdown().await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    customer_id: Option<String>,
    customer_info: Option<CustomerInfo>,
    feature_ids: Option<Vec<String>>,
    quantity: Option<Value>,
    page: Option<u32>,
    page_size: Option<u32>,
    order_by: Option<String>,
    order: Option<String>,
    invoice_id: Option<String>,
    subscription_id: Option<String>,
    custom_pricing_unit_id: Option<String>,
    plan_id: Option<String>,
    billing_cadence: Option<String>,
    success_url: Option<String>,
    email: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The request's paging and ordering, as far as it gives them.
fn pagination(request: &Request) -> Pagination {
    let mut pagination = Pagination::new();
    pagination.page = request.page;
    pagination.page_size = request.page_size;
    pagination.order_by = request.order_by.clone();
    pagination.order = request.order.clone();
    pagination
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Failure> {
    value
        .as_deref()
        .ok_or_else(|| Failure::bad_request(format!("{name} must be a string")))
}

/// JSON has no NaN or infinities: the protocol spells them as strings.
fn quantity(value: Option<&Value>) -> Result<f64, Failure> {
    match value {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| Failure::bad_request("quantity is not a number")),
        Some(Value::String(s)) if s == "NaN" => Ok(f64::NAN),
        Some(Value::String(s)) if s == "Infinity" => Ok(f64::INFINITY),
        Some(Value::String(s)) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(Failure::bad_request("quantity must be a number")),
    }
}

async fn operation(
    clients: web::Data<Clients>,
    path: web::Path<(String, String)>,
    bytes: Bytes,
) -> Answer {
    let (id, op) = path.into_inner();
    let atlas = clients.get(&id)?;
    let r: Request = body(&bytes)?;
    match op.as_str() {
        "features" => {
            let features = atlas
                .features(
                    required(&r.customer_id, "customerId")?,
                    r.customer_info.as_ref(),
                )
                .await?;
            ok(json!({ "features": features }))
        }
        "allowed" => {
            let feature_ids = r
                .feature_ids
                .ok_or_else(|| Failure::bad_request("featureIds must be an array of strings"))?;
            ok(&atlas
                .allowed(required(&r.customer_id, "customerId")?, &feature_ids)
                .await?)
        }
        "events" => {
            let customer = required(&r.customer_id, "customerId")?;
            let feature_ids = r
                .feature_ids
                .ok_or_else(|| Failure::bad_request("featureIds must be an array of strings"))?;
            let quantity = quantity(r.quantity.as_ref())?;
            match atlas.enqueue(customer, &feature_ids, quantity).await {
                Ok(()) => Ok(HttpResponse::NoContent().finish()),
                Err(AtlasError::InvalidInput(message)) => Err(Failure::bad_request(message)),
                Err(err) => Err(err.into()),
            }
        }
        "flush" => {
            atlas.flush().await?;
            Ok(HttpResponse::NoContent().finish())
        }
        "customer" => ok(&*atlas
            .customer(
                required(&r.customer_id, "customerId")?,
                r.customer_info.as_ref(),
            )
            .await?),
        "pricing-model" => ok(&*atlas.pricing_model().await?),
        "public-pricing-model" => ok(&atlas.public_pricing_model(r.customer_id.as_deref()).await?),
        "invoices" => ok(&atlas
            .invoices(required(&r.customer_id, "customerId")?, &pagination(&r))
            .await?),
        "invoice-line-items" => {
            let customer = required(&r.customer_id, "customerId")?;
            ok(&*atlas
                .invoice_line_items(customer, required(&r.invoice_id, "invoiceId")?)
                .await?)
        }
        "transactions" => ok(&atlas
            .transactions(required(&r.customer_id, "customerId")?, &pagination(&r))
            .await?),
        "subscription" => ok(&*atlas
            .subscription(required(&r.subscription_id, "subscriptionId")?)
            .await?),
        "credit-usage" => {
            let customer = required(&r.customer_id, "customerId")?;
            ok(&*atlas
                .credit_usage(
                    customer,
                    required(&r.custom_pricing_unit_id, "customPricingUnitId")?,
                )
                .await?)
        }
        "subscribe" => {
            let customer = required(&r.customer_id, "customerId")?;
            let plan = required(&r.plan_id, "planId")?;
            let cadence = required(&r.billing_cadence, "billingCadence")?;
            let Ok(billing_cadence) = serde_json::from_value::<BillingCadence>(json!(cadence))
            else {
                // The official client sends any cadence: it looks the customer up (creating
                // it) before the platform refuses it. Do the same, then fail as it does.
                atlas.customer(customer, None).await?;
                return Err(AtlasError::InvalidInput(format!(
                    "unknown billing cadence {cadence:?}"
                ))
                .into());
            };
            let mut request =
                SubscribeRequest::new(billing_cadence, required(&r.success_url, "successUrl")?);
            request.email = r.email.clone();
            request.name = r.name.clone();
            ok(&atlas.subscribe(customer, plan, &request).await?)
        }
        "cancel" => {
            let customer = required(&r.customer_id, "customerId")?;
            let subscription = required(&r.subscription_id, "subscriptionId")?;
            let kind: CancelType = serde_json::from_value(json!(required(&r.kind, "type")?))
                .map_err(|_| Failure::bad_request("type must be active or upcoming"))?;
            atlas
                .cancel_subscription(customer, subscription, kind)
                .await?;
            Ok(HttpResponse::NoContent().finish())
        }
        "renew" => {
            let customer = required(&r.customer_id, "customerId")?;
            ok(&atlas
                .renew_subscription(customer, required(&r.subscription_id, "subscriptionId")?)
                .await?)
        }
        "payment-method" => {
            let customer = required(&r.customer_id, "customerId")?;
            let mut info = CustomerInfo::new();
            info.email = r.email.clone();
            info.name = r.name.clone();
            ok(&atlas
                .update_payment_method(
                    customer,
                    required(&r.success_url, "successUrl")?,
                    Some(&info),
                )
                .await?)
        }
        _ => Err(Failure::new(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn capabilities() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": concat!("atlas-actix ", env!("CARGO_PKG_VERSION")),
        "capabilities": CAPABILITIES,
    }))
}

async fn not_found() -> Answer {
    Err(Failure::new(StatusCode::NOT_FOUND, "not found"))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| std::io::Error::other("PORT must be a port number"))
        })
        .transpose()?
        .unwrap_or(0);
    let clients = web::Data::new(Clients::default());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(clients.clone())
            .route("/", web::get().to(capabilities))
            .route("/clients", web::post().to(create_client))
            .route("/clients/{id}", web::delete().to(delete_client))
            .route("/clients/{id}/{op}", web::post().to(operation))
            .default_service(web::to(not_found))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!("listening {}", addr.port());
    server.run().await
}
