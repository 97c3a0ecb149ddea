//! The platform's HTTP API, one method per endpoint: paths with every id percent-encoded,
//! retry rules per call, and answers decoded into the models.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use awc::http::Method;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::client::platform::transport::{
    template, Request, Response, Retry, Transport, TransportError,
};
use crate::client::telemetry;
use crate::error::AtlasError;
use crate::models::{
    CheckoutSession, CreditUsage, Customer, CustomerInfo, Invoice, InvoiceLineItem, Merchant, Page,
    PricingModel, Subscription, Transaction, UsageEvent,
};

/// Everything but unreserved characters, and `.` too, so a segment can never be `.` or `..`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');
/// Everything but unreserved characters.
const QUERY: &AsciiSet = &SEGMENT.remove(b'.');

/// Percent-encodes one path segment.
pub(crate) fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn query(pairs: &[(&str, &str)]) -> String {
    let encode = |component| utf8_percent_encode(component, QUERY).to_string();
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

const READ: Retry = Retry::Idempotent { attempts: 3 };
const WRITE: Retry = Retry::UnlessSent { attempts: 3 };
/// Events carry idempotency keys: repeating a batch cannot count it twice.
const EVENTS: Retry = Retry::Idempotent { attempts: 5 };

/// Paging and ordering of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "pagination does nothing until passed to a listing"]
pub struct Pagination {
    /// Page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Items per page (default 10).
    pub page_size: Option<u32>,
    /// Field to sort by.
    pub order_by: Option<String>,
    /// `asc` or `desc`.
    pub order: Option<String>,
}

impl Pagination {
    /// The first page of 10, in the platform's order.
    pub fn new() -> Self {
        Self::default()
    }

    /// Page number, from 1.
    pub fn page(mut self, page: u32) -> Self {
        self.page = Some(page);
        self
    }

    /// Items per page.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size);
        self
    }

    /// The field to sort by (transactions).
    pub fn order_by(mut self, field: impl Into<String>) -> Self {
        self.order_by = Some(field.into());
        self
    }

    /// `asc` or `desc` (transactions).
    pub fn order(mut self, order: impl Into<String>) -> Self {
        self.order = Some(order.into());
        self
    }
}

pub(crate) struct PlatformApi {
    transport: Transport,
    answer_times: AnswerTimes,
}

/// When the platform last answered (below 500) and last failed, in seconds since the epoch
/// (as `f64` bits; 0 for never): what health and readiness read.
#[derive(Debug, Default)]
pub(crate) struct AnswerTimes {
    success: AtomicU64,
    failure: AtomicU64,
}

impl AnswerTimes {
    fn record(&self, answered: bool) {
        let now = telemetry::now_seconds();
        if answered {
            self.success.store(now.to_bits(), Ordering::Relaxed);
            telemetry::platform_answered(now);
        } else {
            self.failure.store(now.to_bits(), Ordering::Relaxed);
        }
    }

    /// The last answer, then the last failure, in seconds since the epoch.
    pub(crate) fn last(&self) -> (Option<f64>, Option<f64>) {
        let read = |at: &AtomicU64| {
            let seconds = f64::from_bits(at.load(Ordering::Relaxed));
            (seconds > 0.0).then_some(seconds)
        };
        (read(&self.success), read(&self.failure))
    }
}

impl PlatformApi {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            transport,
            answer_times: AnswerTimes::default(),
        }
    }

    pub(crate) fn answer_times(&self) -> &AnswerTimes {
        &self.answer_times
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
        retry: Retry,
    ) -> Result<Response, AtlasError> {
        let body = body.map(|body| Bytes::from(body.to_string()));
        let request = Request {
            method,
            path,
            body,
            retry,
        };
        let route = template(&request.path).to_owned();
        let span = tracing::info_span!(
            "atlas.platform_request",
            operation,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        let answer = self.transport.call(request).instrument(span.clone()).await;
        let took = started.elapsed();
        let status = match &answer {
            Ok(response) => response.status.to_string(),
            Err(TransportError::Timeout(_)) => "timeout".to_owned(),
            Err(TransportError::Unreachable(_)) => "unreachable".to_owned(),
            Err(TransportError::Shutdown) => "shutdown".to_owned(),
        };
        span.record("status", status.as_str());
        span.record("duration_ms", took.as_millis() as u64);
        telemetry::platform_request(operation, status, took);
        self.answer_times
            .record(matches!(&answer, Ok(response) if response.status < 500));
        answer.map_err(|err| match err {
            TransportError::Shutdown => AtlasError::Shutdown,
            other => AtlasError::unavailable_because(route, other),
        })
    }

    /// Sends a request and decodes a 2xx answer; other answers become typed errors.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
        retry: Retry,
    ) -> Result<T, AtlasError> {
        let route = template(&path).to_owned();
        let response = self.send(operation, method, path, body, retry).await?;
        decode(&route, &response)
    }

    pub(crate) async fn merchant(&self) -> Result<Merchant, AtlasError> {
        let path = "/external/merchants/me".to_owned();
        let response = self.send("merchant", Method::GET, path, None, READ).await?;
        match response.status {
            401 | 403 => Err(AtlasError::InvalidApiKey),
            _ => decode("/external/merchants/me", &response),
        }
    }

    pub(crate) async fn pricing_model(&self) -> Result<PricingModel, AtlasError> {
        self.call(
            "pricing_model",
            Method::GET,
            "/external/pricingModel".to_owned(),
            None,
            READ,
        )
        .await
    }

    /// The customer, or `None` when the platform has none with that external id.
    pub(crate) async fn customer(&self, external_id: &str) -> Result<Option<Customer>, AtlasError> {
        let path = format!(
            "/external/customers/external-id/{}/with-active-and-upcoming-subscriptions",
            encode(external_id)
        );
        let route = template(&path).to_owned();
        let response = self.send("customer", Method::GET, path, None, READ).await?;
        if response.status == 404 {
            return Ok(None);
        }
        decode(&route, &response).map(Some)
    }

    /// Creates a customer; the platform answers the existing one if it already exists, so a
    /// retry cannot create two.
    pub(crate) async fn create_customer(
        &self,
        external_id: &str,
        info: &CustomerInfo,
    ) -> Result<Customer, AtlasError> {
        let body = json!({"externalId": external_id, "email": info.email, "name": info.name});
        self.call(
            "create_customer",
            Method::POST,
            "/external/customers".to_owned(),
            Some(body),
            READ,
        )
        .await
    }

    /// Every invoice of the customer but void and paused ones.
    pub(crate) async fn invoices(&self, external_id: &str) -> Result<Vec<Invoice>, AtlasError> {
        let path = format!(
            "/external/invoices/amounts?{}",
            query(&[
                ("all", "true"),
                ("customer.externalId", external_id),
                ("statusNotInList", r#"["void","paused"]"#),
            ])
        );
        let page: Page<Invoice> = self.call("invoices", Method::GET, path, None, READ).await?;
        Ok(page.results)
    }

    pub(crate) async fn line_items(
        &self,
        external_id: &str,
        invoice_id: &str,
    ) -> Result<Vec<InvoiceLineItem>, AtlasError> {
        let path = format!(
            "/external/invoiceLineItems/expanded?{}",
            query(&[
                ("invoiceId", invoice_id),
                ("customer.externalId", external_id)
            ])
        );
        self.call("line_items", Method::GET, path, None, READ).await
    }

    pub(crate) async fn transactions(
        &self,
        external_id: &str,
        pagination: &Pagination,
    ) -> Result<Page<Transaction>, AtlasError> {
        let page = pagination.page.map(|p| p.to_string());
        let page_size = pagination.page_size.map(|p| p.to_string());
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        // As the official client: zero means "not given".
        if let Some(page) = page.as_deref().filter(|p| *p != "0") {
            pairs.push(("page", page));
        }
        if let Some(size) = page_size.as_deref().filter(|p| *p != "0") {
            pairs.push(("pageSize", size));
        }
        if let Some(order_by) = pagination.order_by.as_deref().filter(|o| !o.is_empty()) {
            pairs.push(("orderBy", order_by));
        }
        if let Some(order) = pagination.order.as_deref().filter(|o| !o.is_empty()) {
            pairs.push(("order", order));
        }
        pairs.push(("allocationBlock.customer.externalId", external_id));
        let path = format!("/external/transactions?{}", query(&pairs));
        self.call("transactions", Method::GET, path, None, READ)
            .await
    }

    pub(crate) async fn subscription(&self, id: &str) -> Result<Subscription, AtlasError> {
        let path = format!("/external/subscriptions/{}/expanded", encode(id));
        self.call("subscription", Method::GET, path, None, READ)
            .await
    }

    pub(crate) async fn credit_usage(
        &self,
        external_id: &str,
        unit_id: &str,
    ) -> Result<CreditUsage, AtlasError> {
        // The path reads `/customers/{id}`, but it takes the external id.
        let path = format!(
            "/external/customers/{}/customPricingUnits/{}/credit-usage",
            encode(external_id),
            encode(unit_id)
        );
        self.call("credit_usage", Method::GET, path, None, READ)
            .await
    }

    pub(crate) async fn subscribe(
        &self,
        plan_id: &str,
        body: Value,
    ) -> Result<CheckoutSession, AtlasError> {
        let path = format!("/external/plans/{}/subscribe/standard", encode(plan_id));
        self.call("subscribe", Method::POST, path, Some(body), WRITE)
            .await
    }

    pub(crate) async fn payment_method(
        &self,
        external_id: &str,
        body: Value,
    ) -> Result<CheckoutSession, AtlasError> {
        let path = format!(
            "/external/customers/external-id/{}/stripe/payment-method",
            encode(external_id)
        );
        self.call("payment_method", Method::PATCH, path, Some(body), WRITE)
            .await
    }

    pub(crate) async fn cancel(
        &self,
        subscription_id: &str,
        body: Value,
    ) -> Result<(), AtlasError> {
        let path = format!("/external/subscriptions/{}/cancel", encode(subscription_id));
        let route = template(&path).to_owned();
        let response = self
            .send("cancel", Method::POST, path, Some(body), WRITE)
            .await?;
        check_status(&route, &response)
    }

    pub(crate) async fn renew(
        &self,
        subscription_id: &str,
        body: Value,
    ) -> Result<Subscription, AtlasError> {
        let path = format!("/external/subscriptions/{}/renew", encode(subscription_id));
        self.call("renew", Method::POST, path, Some(body), WRITE)
            .await
    }

    pub(crate) async fn send_events(&self, events: &[UsageEvent]) -> Result<(), AtlasError> {
        let body = serde_json::to_value(events)
            .map_err(|err| AtlasError::InvalidInput(err.to_string()))?;
        let response = self
            .send(
                "send_events",
                Method::POST,
                "/external/event".to_owned(),
                Some(body),
                EVENTS,
            )
            .await?;
        check_status("/external/event", &response)
    }

    pub(crate) async fn register_features(&self, slugs: &[String]) -> Result<(), AtlasError> {
        let body = json!({ "slugs": slugs });
        let path = "/external/billables/register".to_owned();
        let response = self
            .send("register_features", Method::PUT, path, Some(body), READ)
            .await?;
        check_status("/external/billables/register", &response)
    }

    pub(crate) async fn report_sdk_version(
        &self,
        library: &str,
        version: &str,
    ) -> Result<(), AtlasError> {
        let body = json!([{ "library": library, "version": version }]);
        let path = "/external/sdk/version".to_owned();
        let response = self
            .send("report_sdk_version", Method::POST, path, Some(body), READ)
            .await?;
        check_status("/external/sdk/version", &response)
    }
}

/// Maps a non-2xx answer to its error.
fn check_status(route: &str, response: &Response) -> Result<(), AtlasError> {
    match response.status {
        200..=299 => Ok(()),
        401 => Err(AtlasError::InvalidApiKey),
        status @ 400..=499 if status != 429 => Err(AtlasError::Rejected {
            status,
            message: error_message(&response.body)
                .unwrap_or_else(|| format!("{route} answered {status}")),
        }),
        status => Err(AtlasError::unavailable(format!(
            "{route} answered {status}"
        ))),
    }
}

fn decode<T: DeserializeOwned>(route: &str, response: &Response) -> Result<T, AtlasError> {
    check_status(route, response)?;
    serde_json::from_slice(&response.body).map_err(|err| {
        AtlasError::unavailable_because(format!("{route} answered unexpected JSON"), err)
    })
}

/// The reason in a platform error body: `message`, else `error`.
fn error_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    ["message", "error"]
        .iter()
        .find_map(|key| {
            body.get(key)
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_that_could_change_the_url() {
        assert_eq!(encode("a/b?c&d#e f%.."), "a%2Fb%3Fc%26d%23e%20f%25%2E%2E");
        assert_eq!(encode("user_2x-Y~z"), "user_2x-Y~z");
        assert_eq!(encode("café"), "caf%C3%A9");
        assert_eq!(
            query(&[("customer.externalId", "x&customer.externalId=victim")]),
            "customer.externalId=x%26customer.externalId%3Dvictim"
        );
    }

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(check_status("/r", &response(204, "")).is_ok());
        assert_eq!(
            check_status("/r", &response(401, "")),
            Err(AtlasError::InvalidApiKey)
        );
        assert_eq!(
            check_status(
                "/r",
                &response(
                    403,
                    r#"{"error": "Plan is private", "message": "Plan is private"}"#
                )
            ),
            Err(AtlasError::Rejected {
                status: 403,
                message: "Plan is private".into()
            })
        );
        assert_eq!(
            check_status("/r", &response(400, "not json")),
            Err(AtlasError::Rejected {
                status: 400,
                message: "/r answered 400".into()
            })
        );
        assert!(matches!(
            check_status("/r", &response(429, "")),
            Err(AtlasError::Unavailable(_))
        ));
        assert!(matches!(
            check_status("/r", &response(502, "")),
            Err(AtlasError::Unavailable(_))
        ));
        let garbage: Result<Merchant, _> = decode("/r", &response(200, "{not json"));
        assert!(matches!(garbage, Err(AtlasError::Unavailable(_))));
    }
}
