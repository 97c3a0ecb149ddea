//! The `/atlas-api` scope: the backend routes the Atlas React SDK calls (the table is on
//! [`Atlas::scope`]), with their bounds on hostile callers.

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, Scope};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::client::{
    BillingCadence, CancelType, ChangeOptions, Pagination, Status, SubscribeRequest,
};
use crate::entitlements::rules::feature_id_problem;
use crate::error::AtlasError;
use crate::models::CustomerInfo;
use crate::web::atlas::Atlas;
use crate::web::csrf::{check_json_body, check_origin};
use crate::web::error_response::{json_body_error, RequestError};
use crate::web::throttle::caller;

type Answer = Result<HttpResponse, RequestError>;

impl Atlas {
    /// Everything the app needs from Atlas, in one call: the client in the app data (where
    /// the guards and the [`Entitlements`](crate::Entitlements) extractor find it), the
    /// `/atlas-api` scope, and `{"error": ...}` answers for bodies the app's own `web::Json`
    /// extractors refuse, like every other answer of the SDK.
    ///
    /// ```
    /// # fn demo(atlas: atlas_actix::Atlas) {
    /// let app = actix_web::App::new().configure(atlas.configure());
    /// # }
    /// ```
    pub fn configure(&self) -> impl FnOnce(&mut web::ServiceConfig) + 'static {
        let atlas = self.clone();
        move |config| {
            config
                .app_data(web::Data::new(atlas.clone()))
                .app_data(web::JsonConfig::default().error_handler(json_body_error))
                .service(atlas.scope());
        }
    }

    /// The `/atlas-api` scope the Atlas React SDK calls, so its pricing page, customer portal
    /// and feature gates work against an Actix backend unchanged: mount it on the `App`
    /// (`App::new().service(atlas.scope())`, or `App::configure(atlas.configure())`, which also
    /// puts the client where the guards find it).
    ///
    /// | route | method | user | answer |
    /// |---|---|---|---|
    /// | `status` | GET | no | `{apiKey: true, ...merchant, unconfiguredLimits}`, or `{apiKey: false}` |
    /// | `features` | GET | yes | `{features: [...]}`; `x-customer-email`, `x-customer-name` describe a new customer |
    /// | `invoices` | GET | yes | a page of invoices: `page`, `pageSize` (or `limit`, as the React SDK sends it) |
    /// | `invoices/draft/invoice-line-items` | GET | yes | the line items of every draft invoice |
    /// | `invoices/{id}/invoice-line-items` | GET | yes | the invoice's line items (none if it is not the user's) |
    /// | `pricing-model` | GET | no | the public pricing model (with the user's private plans) |
    /// | `user` | GET | yes | the customer, created if absent (with the two headers) |
    /// | `user/payment-method` | POST | yes | `{successUrl, email?, name?}` → checkout session |
    /// | `plans/{id}/subscribe` | POST | yes | `{billingCadence, successUrl, email?, name?}` → checkout session or `{url}` |
    /// | `subscriptions/{id}` | GET | yes | the subscription, only the user's own (404 otherwise) |
    /// | `subscriptions/{id}/cancel` | POST | yes | `{type: "active" \| "upcoming"}` → `{}` |
    /// | `subscriptions/{id}/renew` | POST | yes | the subscription |
    /// | `transactions` | GET | yes | a page: `page`, `pageSize`, `orderBy`, `order` |
    /// | `features/register` | POST | no | `{features: [id, ...]}` → `{}` |
    /// | `sdk-version` | POST | no | `{library, version}` → `{}` |
    /// | `credit-usage/{unitId}` | GET | yes | the user's credit usage |
    ///
    /// The customer is always the user the resolver names, never one a request body names.
    /// Errors are `{"error": ...}`: no user 401; invalid API key 503 `Invalid API key`; platform
    /// unavailable 503; changes not allowed 403; the platform's 4xx kept; malformed body or query
    /// 400; body over the limit 413; unknown route 404; wrong method 405.
    ///
    /// Hostile callers are bounded:
    /// - every `POST` takes only JSON bodies (415 otherwise) and, when the user comes from a
    ///   cookie, only from the app's own or an allowed origin (403 otherwise): the README's "Cross-site
    ///   requests (CSRF)" says why;
    /// - the billing routes (`subscribe`, `cancel`, `renew`, `payment-method`) ask the resolver
    ///   whether the user may change billing ([`UserResolver::may_manage_billing`]), 403 if not;
    /// - `features/register` and `sdk-version`, which need no user, are rate-limited per caller
    ///   (429, [`AtlasBuilder::public_rate_limit`]); feature ids must look like ids (at most 100 a
    ///   request, 128 characters each, letters, digits and `-_.:`), SDK libraries must be Atlas
    ///   SDKs (`react`, `next`, `express`, `core`, `actix`), versions short version strings;
    ///   [`AtlasClient::register_features`](crate::AtlasClient::register_features) and
    ///   [`AtlasClient::report_sdk_version`](crate::AtlasClient::report_sdk_version) bound what reaches the
    ///   platform.
    ///
    /// [`UserResolver::may_manage_billing`]: crate::UserResolver::may_manage_billing
    /// [`AtlasBuilder::public_rate_limit`]: crate::AtlasBuilder::public_rate_limit
    pub fn scope(&self) -> Scope {
        atlas_scope(self.clone())
    }
}

fn atlas_scope(atlas: Atlas) -> Scope {
    web::scope("/atlas-api")
        .app_data(web::Data::new(atlas))
        .service(route("/status", Method::GET, status))
        .service(route("/features", Method::GET, features))
        .service(route("/features/register", Method::POST, register_features))
        .service(route("/invoices", Method::GET, invoices))
        .service(route(
            "/invoices/draft/invoice-line-items",
            Method::GET,
            draft_line_items,
        ))
        .service(route(
            "/invoices/{invoice}/invoice-line-items",
            Method::GET,
            line_items,
        ))
        .service(route("/pricing-model", Method::GET, pricing_model))
        .service(route("/user", Method::GET, user))
        .service(route("/user/payment-method", Method::POST, payment_method))
        .service(route("/plans/{plan}/subscribe", Method::POST, subscribe))
        .service(route(
            "/subscriptions/{subscription}",
            Method::GET,
            subscription,
        ))
        .service(route(
            "/subscriptions/{subscription}/cancel",
            Method::POST,
            cancel,
        ))
        .service(route(
            "/subscriptions/{subscription}/renew",
            Method::POST,
            renew,
        ))
        .service(route("/transactions", Method::GET, transactions))
        .service(route("/sdk-version", Method::POST, sdk_version))
        .service(route("/credit-usage/{unit}", Method::GET, credit_usage))
        .default_service(web::to(not_found))
}

/// One route, answering 405 `{"error"}` to other methods.
fn route<F, Args>(path: &str, method: Method, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn not_found() -> Answer {
    Err(RequestError::NotFound)
}

async fn method_not_allowed() -> Answer {
    Err(RequestError::MethodNotAllowed)
}

/// The request's user, or 401.
async fn user_of(atlas: &Atlas, request: &HttpRequest) -> Result<String, RequestError> {
    atlas
        .resolve_user(request)
        .await?
        .ok_or(RequestError::Unauthorized)
}

/// Reads the JSON body of a state-changing request, of at most the configured size, once the
/// request passed the cross-site checks; an empty body reads as `{}`.
async fn body<T: DeserializeOwned>(
    atlas: &Atlas,
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<T, RequestError> {
    check_json_body(request)?;
    check_origin(request, atlas.allowed_origins())?;
    let limit = atlas.body_limit();
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|err| RequestError::BadRequest(format!("could not read the body: {err}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(RequestError::BodyTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes: Bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        Bytes::from_static(b"{}")
    } else {
        bytes.freeze()
    };
    serde_json::from_slice(&bytes)
        .map_err(|err| RequestError::BadRequest(format!("invalid JSON body: {err}")))
}

/// Reads the query string; a malformed one is a 400.
fn query<T: DeserializeOwned>(request: &HttpRequest) -> Result<T, RequestError> {
    web::Query::<T>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|err| RequestError::BadRequest(format!("invalid query: {err}")))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusAnswer<'a> {
    api_key: bool,
    #[serde(flatten)]
    status: &'a Status,
}

async fn status(atlas: web::Data<Atlas>) -> Answer {
    match atlas.status().await {
        Ok(status) => {
            // The findings as they are now: middleware built after start adds to them.
            let mut status = Status::clone(&status);
            status.findings = atlas.findings().to_vec();
            Ok(HttpResponse::Ok().json(StatusAnswer {
                api_key: true,
                status: &status,
            }))
        }
        Err(AtlasError::InvalidApiKey) => Ok(HttpResponse::Ok().json(json!({ "apiKey": false }))),
        Err(err) => Err(err.into()),
    }
}

async fn features(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let features = atlas
        .features(&user, Some(&atlas.customer_info(&request)))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "features": features })))
}

#[derive(Deserialize)]
struct FeatureList {
    features: Vec<String>,
}

/// The most feature ids one registration may carry.
const MAX_REGISTERED: usize = 100;

async fn register_features(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    payload: web::Payload,
) -> Answer {
    throttle(&atlas, &request).await?;
    let list: FeatureList = body(&atlas, &request, payload).await?;
    if list.features.len() > MAX_REGISTERED {
        return Err(RequestError::BadRequest(format!(
            "at most {MAX_REGISTERED} features may be registered at once"
        )));
    }
    for id in &list.features {
        if let Some(problem) = feature_id_problem(id) {
            return Err(RequestError::BadRequest(format!(
                "{id:?} is not a feature id: {problem}"
            )));
        }
    }
    atlas.register_features(&list.features);
    Ok(HttpResponse::Ok().json(json!({})))
}

/// Counts the request against the caller's allowance on the routes anyone may call.
async fn throttle(atlas: &Atlas, request: &HttpRequest) -> Result<(), RequestError> {
    // A resolver that is missing or fails counts the caller by address.
    let user = atlas.resolve_user(request).await.ok().flatten();
    let caller = caller(request, user.as_deref());
    atlas.public_throttle().admit(&caller).inspect_err(|_| {
        tracing::debug!(caller = ?caller, route = ?request.path(), "rate limit reached");
    })
}

/// Refuses a user whom the resolver does not let change billing.
fn billing_allowed(atlas: &Atlas, request: &HttpRequest) -> Result<(), RequestError> {
    if atlas.may_manage_billing(request) {
        Ok(())
    } else {
        Err(RequestError::BillingNotAllowed)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageQuery {
    page: Option<u32>,
    page_size: Option<u32>,
    /// The React SDK sends the page size as `limit`.
    limit: Option<u32>,
    order_by: Option<String>,
    order: Option<String>,
}

async fn invoices(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let page: PageQuery = query(&request)?;
    let invoices = atlas
        .invoices(
            &user,
            &Pagination {
                page: page.page,
                page_size: page.page_size.or(page.limit),
                ..Pagination::default()
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(invoices))
}

async fn draft_line_items(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let all = atlas
        .invoices(&user, &Pagination::new().page(1).page_size(u32::MAX))
        .await?;
    let drafts = all
        .results
        .iter()
        .filter(|invoice| invoice.status.as_deref() == Some("draft"));
    let items = futures_util::future::try_join_all(
        drafts.map(|invoice| atlas.invoice_line_items(&user, &invoice.id)),
    )
    .await?;
    let items: Vec<_> = items.iter().flat_map(|items| items.iter()).collect();
    Ok(HttpResponse::Ok().json(items))
}

async fn line_items(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    invoice: web::Path<String>,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let items = atlas
        .absent_lookups()
        .lookup(
            &user,
            "line_items",
            &invoice,
            || async { Ok(atlas.invoice_line_items(&user, &invoice).await?) },
            |items| items.as_ref().is_ok_and(|items| items.is_empty()),
            || Ok(Default::default()),
        )
        .await?;
    Ok(HttpResponse::Ok().json(&*items))
}

async fn pricing_model(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    // The public pricing model needs no user; one only adds its private plans.
    let user = atlas.resolve_user(&request).await.ok().flatten();
    Ok(HttpResponse::Ok().json(atlas.public_pricing_model(user.as_deref()).await?))
}

async fn user(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    let user = user_of(&atlas, &request).await?;
    Ok(HttpResponse::Ok().json(
        &*atlas
            .customer(&user, Some(&atlas.customer_info(&request)))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentMethodBody {
    success_url: String,
    email: Option<String>,
    name: Option<String>,
}

async fn payment_method(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    payload: web::Payload,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let body: PaymentMethodBody = body(&atlas, &request, payload).await?;
    billing_allowed(&atlas, &request)?;
    let info = CustomerInfo {
        email: body.email,
        name: body.name,
    };
    Ok(HttpResponse::Ok().json(
        atlas
            .update_payment_method(&user, &body.success_url, Some(&info))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeBody {
    billing_cadence: BillingCadence,
    success_url: String,
    email: Option<String>,
    name: Option<String>,
}

async fn subscribe(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    plan: web::Path<String>,
    payload: web::Payload,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let body: SubscribeBody = body(&atlas, &request, payload).await?;
    billing_allowed(&atlas, &request)?;
    let request = SubscribeRequest {
        billing_cadence: body.billing_cadence,
        success_url: body.success_url,
        email: body.email,
        name: body.name,
        changes: ChangeOptions::default(),
    };
    Ok(HttpResponse::Ok().json(atlas.subscribe(&user, &plan, &request).await?))
}

async fn subscription(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let (subscription, customer) = atlas
        .absent_lookups()
        .lookup(
            &user,
            "subscription",
            &id,
            || async {
                Ok(futures_util::future::try_join(
                    atlas.subscription(&id),
                    atlas.customer(&user, None),
                )
                .await?)
            },
            is_not_found,
            || Err(RequestError::NotFound),
        )
        .await?;
    let owner = subscription.extra.get("customerId");
    let owner = owner.as_ref().and_then(|owner| owner.as_str());
    let owned = owner == Some(customer.id.as_str())
        || customer.subscriptions().any(|s| s.id == subscription.id);
    if !owned {
        // Another customer's subscription: answered as if it did not exist.
        return Err(RequestError::NotFound);
    }
    Ok(HttpResponse::Ok().json(&*subscription))
}

#[derive(Deserialize)]
struct CancelBody {
    #[serde(rename = "type")]
    kind: CancelType,
}

async fn cancel(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let body: CancelBody = body(&atlas, &request, payload).await?;
    billing_allowed(&atlas, &request)?;
    atlas.cancel_subscription(&user, &id, body.kind).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn renew(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    // The React SDK sends no body; anything sent must still be a JSON object.
    let _: serde_json::Map<String, serde_json::Value> = body(&atlas, &request, payload).await?;
    billing_allowed(&atlas, &request)?;
    Ok(HttpResponse::Ok().json(atlas.renew_subscription(&user, &id).await?))
}

async fn transactions(atlas: web::Data<Atlas>, request: HttpRequest) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let page: PageQuery = query(&request)?;
    let pagination = Pagination {
        page: page.page,
        page_size: page.page_size.or(page.limit),
        order_by: page.order_by,
        order: page.order,
    };
    Ok(HttpResponse::Ok().json(atlas.transactions(&user, &pagination).await?))
}

#[derive(Deserialize)]
struct SdkVersion {
    library: String,
    version: String,
}

/// The Atlas SDKs whose versions the scope relays: the React SDK reports `react` or `next`.
const SDK_LIBRARIES: [&str; 5] = ["react", "next", "express", "core", "actix"];

async fn sdk_version(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    payload: web::Payload,
) -> Answer {
    throttle(&atlas, &request).await?;
    let version: SdkVersion = body(&atlas, &request, payload).await?;
    if !SDK_LIBRARIES.contains(&version.library.as_str()) {
        return Err(RequestError::BadRequest(format!(
            "unknown SDK library; expected one of: {}",
            SDK_LIBRARIES.join(", ")
        )));
    }
    let valid_version = (1..=32).contains(&version.version.len())
        && version
            .version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'));
    if !valid_version {
        return Err(RequestError::BadRequest(
            "the version must be a version string, such as 2.8.0".to_owned(),
        ));
    }
    atlas.report_sdk_version(&version.library, &version.version);
    Ok(HttpResponse::Ok().json(json!({})))
}

async fn credit_usage(
    atlas: web::Data<Atlas>,
    request: HttpRequest,
    unit: web::Path<String>,
) -> Answer {
    let user = user_of(&atlas, &request).await?;
    let usage = atlas
        .absent_lookups()
        .lookup(
            &user,
            "credit_usage",
            &unit,
            || async { Ok(atlas.credit_usage(&user, &unit).await?) },
            is_not_found,
            || Err(RequestError::NotFound),
        )
        .await?;
    Ok(HttpResponse::Ok().json(&*usage))
}

/// Whether the platform said the thing looked up does not exist.
fn is_not_found<T>(answer: &Result<T, RequestError>) -> bool {
    matches!(
        answer,
        Err(RequestError::NotFound | RequestError::Atlas(AtlasError::Rejected { status: 404, .. }))
    )
}
