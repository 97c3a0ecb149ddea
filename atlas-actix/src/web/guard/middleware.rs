//! [`RequireFeatures`]: the guard's check as middleware, for whole scopes and resources.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use futures_util::future::LocalBoxFuture;

use crate::web::guard::{check, idempotency, GuardOptions};

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
#[must_use = "middleware does nothing until `.wrap()`ped around a service"]
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

    /// Holds `units` of the features for each request (403 when they do not fit the
    /// customer's quota), which the wrapped handler commits at their actual cost through the
    /// [`Reserved`](crate::Reserved) extractor; a request that does not commit, or answers
    /// non-2xx before committing, releases them. A reserving guard is never in shadow mode.
    pub fn reserve(mut self, units: f64) -> Self {
        self.options.reserve = Some(units);
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
        crate::entitlements::named_in_code::register_middleware(
            &self.features,
            self.options.reports_usage(),
        );
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
            let (http_request, mut payload) = request.into_parts();
            let fingerprint = match idempotency::fingerprint_body(
                &http_request,
                &mut payload,
                options.reports_usage(),
            )
            .await
            {
                Ok(fingerprint) => fingerprint,
                Err(answer) => {
                    let request = ServiceRequest::from_parts(http_request, payload);
                    return Ok(request.into_response(answer).map_into_right_body());
                }
            };
            let request = ServiceRequest::from_parts(http_request, payload);
            let granted = match check(request.request(), &slugs, options, fingerprint).await {
                Ok(granted) => granted,
                // Answered as a response, not an error, so outer middleware (CORS) decorates it.
                Err(answer) => return Ok(request.into_response(answer).map_into_right_body()),
            };
            let response = service.call(request).await?;
            if response.status().is_success() {
                granted.report_usage().await;
            }
            Ok(response.map_into_left_body())
        })
    }
}
