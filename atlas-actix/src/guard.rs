//! Guarding the app's own handlers: the check behind both `#[requires_feature]` and the
//! [`RequireFeatures`] middleware, and the [`Entitlements`] extractor.
//!
//! Three outcomes stay distinct: a missing Atlas client or user resolver is a
//! misconfiguration (an opaque 500 and an error log naming the fix); no user is a 401; a plan
//! without the feature is a 403 that says which features are missing.

use std::collections::BTreeMap;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use crate::atlas::Atlas;
use crate::auth::customer_info;
use crate::csrf::check_origin;
use crate::entitlements::CustomerFeature;
use crate::error_response::RequestError;
use crate::exclusive::Lease;

/// Why a guard refused a request; given to a custom answer (see
/// [`AtlasBuilder::deny_with`](crate::AtlasBuilder::deny_with)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The request has no user. Default answer: 401 `{"error": "Unauthorized"}`.
    Unauthenticated,
    /// The user's plan does not grant every feature. Default answer: 403
    /// `{"error": ..., "features": {"<id>": <allowed>}}`.
    NotEntitled {
        /// Each feature checked, and whether it is allowed.
        features: BTreeMap<String, bool>,
    },
}

impl Denial {
    /// The default JSON answer.
    pub fn default_response(&self) -> HttpResponse {
        match self {
            Self::Unauthenticated => RequestError::Unauthorized.error_response(),
            Self::NotEntitled { features } => {
                let missing: Vec<&str> = features
                    .iter()
                    .filter(|(_, allowed)| !**allowed)
                    .map(|(feature, _)| feature.as_str())
                    .collect();
                HttpResponse::Forbidden().json(serde_json::json!({
                    "error": format!("Your plan does not include: {}", missing.join(", ")),
                    "features": features,
                }))
            }
        }
    }
}

/// How a guard behaves; built by the macro's options or [`RequireFeatures`]' methods.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GuardOptions {
    /// Log a would-be denial and let the request through.
    pub shadow: bool,
    /// Report this usage of the features when the handler answers 2xx.
    pub usage: Option<f64>,
    /// Run the check and the handler as one step per customer and features (see
    /// [`RequireFeatures::exclusive`]).
    pub exclusive: bool,
}

impl GuardOptions {
    /// Options as the macro writes them.
    pub const fn new(shadow: bool, usage: Option<f64>, exclusive: bool) -> Self {
        Self {
            shadow,
            usage,
            exclusive,
        }
    }
}

/// The customer a guard let through, kept in the request's extensions for [`Entitlements`].
#[derive(Debug, Clone)]
struct ResolvedCustomer(String);

/// A request the check let through.
#[doc(hidden)]
pub struct Granted {
    /// The client, kept only when usage is to be reported: cloning it on every request would
    /// be an atomic write on memory all workers share.
    atlas: Option<Atlas>,
    customer_id: String,
    /// What `#[requires_feature(usage = ..)]` reports when the handler succeeds.
    usage: Option<(&'static [&'static str], f64)>,
    /// Held until the handler has answered, for an exclusive guard.
    _lease: Option<Lease>,
}

impl Granted {
    /// Reports usage of the features after the handler succeeded; never fails the answer.
    pub(crate) fn report_usage(self, features: Vec<String>, quantity: f64) {
        let Some(atlas) = self.atlas else { return };
        actix_rt::spawn(async move {
            if let Err(err) = atlas.enqueue(&self.customer_id, &features, quantity).await {
                tracing::error!(customer = ?self.customer_id, features = ?features, %err, "could not queue the usage of a guarded handler");
            }
        });
    }
}

/// The Atlas client of the app, or the misconfiguration answer.
fn atlas_of(request: &HttpRequest) -> Result<&Atlas, RequestError> {
    match request.app_data::<web::Data<Atlas>>() {
        Some(atlas) => Ok(atlas),
        None => {
            tracing::error!(
                route = ?request.path(),
                "no Atlas client in the app data: add `.app_data(web::Data::new(atlas.clone()))` to the App"
            );
            Err(RequestError::Misconfigured(
                "no Atlas client in the app data",
            ))
        }
    }
}

/// The check: the user, then its entitlements; `Err` holds the answer to send instead.
pub(crate) async fn check(
    request: &HttpRequest,
    features: &[&str],
    options: GuardOptions,
) -> Result<Granted, HttpResponse> {
    let atlas = atlas_of(request).map_err(|err| err.error_response())?;
    if options.usage.is_some() {
        // Reporting usage bills the customer: a cross-site request must not do it.
        check_origin(request, atlas.allowed_origins()).map_err(|err| err.error_response())?;
    }
    let customer = match atlas.resolve_user(request).await {
        Ok(Some(customer)) => customer,
        Ok(None) => return Err(atlas.deny(request, &Denial::Unauthenticated)),
        Err(err) => return Err(err.error_response()),
    };
    let lease = if options.exclusive {
        Some(atlas.exclusive_locks().acquire(&customer, features).await)
    } else {
        None
    };
    let flags = match atlas.allowed_flags(&customer, features).await {
        Ok(flags) => flags,
        Err(err) => {
            tracing::error!(route = ?request.path(), customer = ?customer, %err, "the entitlement check failed");
            return Err(RequestError::Atlas(err).error_response());
        }
    };
    if flags.contains(&false) {
        let allowed: BTreeMap<String, bool> = features
            .iter()
            .map(|f| (*f).to_owned())
            .zip(flags)
            .collect();
        let denied: Vec<&str> = allowed
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(f, _)| f.as_str())
            .collect();
        if options.shadow {
            tracing::warn!(route = ?request.path(), customer = ?customer, denied = ?denied, "shadow mode: this request would be denied");
        } else {
            tracing::debug!(route = ?request.path(), customer = ?customer, denied = ?denied, "request denied by plan");
            return Err(atlas.deny(request, &Denial::NotEntitled { features: allowed }));
        }
    }
    request
        .extensions_mut()
        .insert(ResolvedCustomer(customer.clone()));
    Ok(Granted {
        atlas: options.usage.map(|_| Atlas::clone(atlas)),
        customer_id: customer,
        usage: None,
        _lease: lease,
    })
}

/// The check as `#[requires_feature]` expands it: the handler's own extractors run after it,
/// only when it passed, so a denied request never has its body read.
#[doc(hidden)]
pub async fn check_handler(
    request: &HttpRequest,
    features: &'static [&'static str],
    options: GuardOptions,
) -> Result<Granted, HttpResponse> {
    check(request, features, options)
        .await
        .map(|granted| Granted {
            usage: options.usage.map(|quantity| (features, quantity)),
            ..granted
        })
}

impl Granted {
    /// The handler's answer, after which the usage is reported if the answer is 2xx.
    #[doc(hidden)]
    pub fn respond<R: actix_web::Responder>(
        self,
        request: &HttpRequest,
        answer: R,
    ) -> HttpResponse {
        let response = answer.respond_to(request).map_into_boxed_body();
        if let Some((features, quantity)) = self.usage {
            if response.status().is_success() {
                self.report_usage(features.iter().map(|f| (*f).to_owned()).collect(), quantity);
            }
        }
        response
    }
}

/// Middleware that lets a request through only when its user's plan grants every feature:
/// for whole scopes and resources.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use atlas_actix::RequireFeatures;
///
/// let app = App::new().service(
///     web::scope("/reports")
///         .wrap(RequireFeatures::new(["data-explorer"]))
///         .route("", web::get().to(HttpResponse::Ok)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct RequireFeatures {
    features: Arc<[String]>,
    options: GuardOptions,
}

impl RequireFeatures {
    /// Requires every one of these features.
    pub fn new<I, S>(features: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            features: features.into_iter().map(Into::into).collect(),
            options: GuardOptions::default(),
        }
    }

    /// Shadow mode, to roll gating out safely: the check runs and a would-be denial is logged
    /// (customer, features, route), but the request goes through.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.options.shadow = shadow;
        self
    }

    /// Reports `quantity` of usage of the features each time the wrapped service answers 2xx.
    /// Such requests bill the customer, so a cookie-authenticated one must come from an
    /// allowed origin (see [`AtlasBuilder::allowed_origins`](crate::AtlasBuilder::allowed_origins)).
    pub fn report_usage(mut self, quantity: f64) -> Self {
        self.options.usage = Some(quantity);
        self
    }

    /// Runs the check and the wrapped service as one step per customer and features, in this
    /// process: the next request of the same customer waits until this one has answered, so
    /// its limit callback counts what this one added. For handlers that add to a limited
    /// feature (a seat, a project): without it, concurrent requests all pass the check before
    /// any adds, and together overshoot the limit. Costs a lock per request and serialises one
    /// customer's requests to the route; other customers do not wait.
    ///
    /// Several app instances need the limit held in the shared store as well: count and insert
    /// in one database transaction, or a constraint.
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.options.exclusive = exclusive;
        self
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireFeatures
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireFeaturesService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireFeaturesService {
            service: Rc::new(service),
            features: Arc::clone(&self.features),
            options: self.options,
        }))
    }
}

/// The service [`RequireFeatures`] wraps around the inner one.
#[derive(Debug)]
pub struct RequireFeaturesService<S> {
    service: Rc<S>,
    features: Arc<[String]>,
    options: GuardOptions,
}

impl<S, B> Service<ServiceRequest> for RequireFeaturesService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let features = Arc::clone(&self.features);
        let options = self.options;
        Box::pin(async move {
            let slugs: Vec<&str> = features.iter().map(String::as_str).collect();
            let granted = match check(request.request(), &slugs, options).await {
                Ok(granted) => granted,
                // Answered as a response, not an error, so outer middleware (CORS) decorates it.
                Err(answer) => return Ok(request.into_response(answer).map_into_right_body()),
            };
            let response = service.call(request).await?;
            if let Some(quantity) = options.usage {
                if response.status().is_success() {
                    granted.report_usage(features.to_vec(), quantity);
                }
            }
            Ok(response.map_into_left_body())
        })
    }
}

/// The user of the request and what its plans grant; for handlers that adapt to the plan
/// rather than refuse. Answers 401 without a user.
///
/// ```no_run
/// use actix_web::{get, HttpResponse};
/// use atlas_actix::Entitlements;
///
/// #[get("/dashboard")]
/// async fn dashboard(entitlements: Entitlements) -> HttpResponse {
///     let charts = entitlements.allows("data-explorer");
///     HttpResponse::Ok().json(serde_json::json!({ "charts": charts }))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Entitlements {
    /// The Atlas customer id of the user (or of its organisation).
    pub customer_id: String,
    /// Everything its plans grant.
    pub features: Vec<CustomerFeature>,
}

impl Entitlements {
    /// Whether the plan grants the feature, now.
    pub fn allows(&self, feature: &str) -> bool {
        self.feature(feature).is_some_and(|f| f.allowed)
    }

    /// The feature, if the plans grant it at all.
    pub fn feature(&self, feature: &str) -> Option<&CustomerFeature> {
        self.features.iter().find(|f| f.id == feature)
    }
}

impl FromRequest for Entitlements {
    type Error = RequestError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let atlas = atlas_of(&request)?.clone();
            let resolved = request.extensions().get::<ResolvedCustomer>().cloned();
            let customer_id = match resolved {
                Some(ResolvedCustomer(customer)) => customer,
                None => atlas
                    .resolve_user(&request)
                    .await?
                    .ok_or(RequestError::Unauthorized)?,
            };
            let features = atlas
                .features(&customer_id, Some(&customer_info(&request)))
                .await?;
            Ok(Self {
                customer_id,
                features,
            })
        })
    }
}
