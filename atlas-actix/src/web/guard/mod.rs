//! Guarding the app's own handlers: the check behind both `#[requires_feature]` and the
//! [`RequireFeatures`](crate::RequireFeatures) middleware (`middleware.rs`); the
//! [`Entitlements`](crate::Entitlements) extractor (`extractor.rs`) reuses the customer it
//! resolved.
//!
//! Three outcomes stay distinct: a missing Atlas client or user resolver is a
//! misconfiguration (an opaque 500 and an error log naming the fix); no user is a 401; a plan
//! without the feature is a 403 that says which features are missing.

pub(crate) mod denial;
pub(crate) mod exclusive;
pub(crate) mod extractor;
pub(crate) mod idempotency;
pub(crate) mod middleware;
pub(crate) mod reserved;
pub(crate) mod unrecordable;

use std::collections::BTreeMap;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::client::hooks::{CheckOrigin, UsageStage};
use crate::client::keys;
use crate::client::pending::Hold;
use crate::client::telemetry;
use crate::client::UsageOptions;
use crate::error::AtlasError;
use crate::models::UsageEvent;
use crate::web::atlas::Atlas;
use crate::web::csrf::check_origin;
use crate::web::error_response::RequestError;
use crate::web::guard::denial::Denial;
use crate::web::guard::exclusive::Lease;
use crate::web::guard::idempotency::{Claim, Fingerprint, Ticket};
use crate::web::guard::reserved::{ReservationSlot, SlotGuard};
use crate::web::guard::unrecordable::UnrecordableUsage;

/// How a guard behaves; built by the macro's options or
/// [`RequireFeatures`](crate::RequireFeatures)' methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardOptions {
    /// Log a would-be denial and let the request through.
    pub shadow: bool,
    /// Report this usage of the features when the handler answers 2xx.
    pub usage: Option<f64>,
    /// Run the check and the handler as one step per customer and features (see
    /// [`RequireFeatures::exclusive`](crate::RequireFeatures::exclusive)).
    pub exclusive: bool,
    /// How many units of the features the request needs at once (1 for a plain check).
    pub quantity: f64,
    /// Hold this many units for the handler, which commits what it used through
    /// [`Reserved`](crate::Reserved) (`#[requires_feature(.., reserve = ..)]`).
    pub reserve: Option<f64>,
}

impl Default for GuardOptions {
    fn default() -> Self {
        Self::new(false, None, false)
    }
}

impl GuardOptions {
    /// Options as the macro writes them.
    pub const fn new(shadow: bool, usage: Option<f64>, exclusive: bool) -> Self {
        Self {
            shadow,
            usage,
            exclusive,
            quantity: 1.0,
            reserve: None,
        }
    }

    /// The same options, holding `units` for the handler to commit (`#[requires_feature(..,
    /// reserve = ..)]`).
    pub const fn with_reservation(mut self, units: f64) -> Self {
        self.reserve = Some(units);
        self
    }

    /// Whether a request through the guard bills the customer.
    pub(crate) const fn reports_usage(&self) -> bool {
        self.usage.is_some() || self.reserve.is_some()
    }

    /// The same options, checking `quantity` units (`#[requires_feature(.., quantity = ..)]`).
    pub const fn with_quantity(mut self, quantity: f64) -> Self {
        self.quantity = quantity;
        self
    }
}

/// The longest a guarded answer waits for its usage to be queued.
const USAGE_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest `Idempotency-Key` header taken.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key` header, for the usage a guard reports: `Ok(None)` without
/// one, 400 for one that is not a short printable key.
fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, RequestError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()))
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(RequestError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        ))),
    }
}

/// The customer a guard let through, kept in the request's extensions for
/// [`Entitlements`](crate::Entitlements).
#[derive(Debug, Clone)]
pub(crate) struct ResolvedCustomer(pub(crate) String);

/// A request the check let through.
#[doc(hidden)]
#[derive(Debug)]
pub struct Granted {
    /// The client and the usage events to queue when the handler succeeds: built at the
    /// check, from the data it decided on, so work done never waits on the platform to be
    /// billed.
    usage: Option<(Atlas, Vec<UsageEvent>)>,
    /// The quota the check held for the usage, until it is queued (released if it never is).
    hold: Option<Hold>,
    /// The reservation the handler commits; released after the answer if it did not.
    _reservation: Option<SlotGuard>,
    /// The request's hold on its `Idempotency-Key`, finished with the handler's answer.
    ticket: Option<Ticket>,
    /// Held until the handler has answered, for an exclusive guard.
    _lease: Option<Lease>,
}

impl Granted {
    /// Queues the usage prepared at the check, after the handler succeeded; never fails the
    /// answer. The answer waits up to [`USAGE_QUEUE_WAIT`] (the spool's sync, or the fleet's
    /// stream), so an `atlas.flush()` after the response sends it.
    pub(crate) async fn report_usage(self) {
        if let Some(ticket) = self.ticket {
            ticket.finish_unstored(actix_web::http::StatusCode::OK);
        }
        let Some((atlas, events)) = self.usage else {
            return;
        };
        let hold = self.hold;
        let queued = actix_rt::spawn(async move {
            let customer = events
                .first()
                .map(|event| event.customer_id.clone())
                .unwrap_or_default();
            // Pending before it is queued, so that the platform's acceptance finds it.
            if let Some(hold) = hold {
                hold.reported(&events).await;
            }
            match atlas.queue_usage(&customer, events.clone()).await {
                Ok(()) => {}
                // Only a queue that filled since the check: the events are in this line.
                Err(err) => {
                    atlas.forget_pending(&events).await;
                    atlas.hooks().usage(&events, || UsageStage::Dropped {
                        why: err.to_string(),
                    });
                    tracing::error!(customer = ?customer, %err, events = %serde_json::to_string(&events).unwrap_or_default(), "could not queue the usage of a guarded handler");
                }
            }
        });
        let _ = tokio::time::timeout(USAGE_QUEUE_WAIT, queued).await;
    }
}

/// The usage a guard reports for a request: its events, built before the handler runs; or
/// the answer when they cannot be and the app refuses unbilled work.
async fn prepare_usage(
    atlas: &Atlas,
    request: &HttpRequest,
    customer: &str,
    features: &[&str],
    quantity: f64,
    idempotency_key: Option<&str>,
) -> Result<Option<(Atlas, Vec<UsageEvent>)>, HttpResponse> {
    let mut usage = UsageOptions::new().quantity(quantity);
    if let Some(key) = idempotency_key {
        // Namespaced by customer, so one customer's keys never collide with another's, and
        // hashed, so the platform's 255 characters hold any id and key.
        usage = usage.idempotency_key(keys::digest(&[customer, key]));
    }
    match atlas.usage_events(customer, features, &usage).await {
        Ok(events) => Ok(Some((Atlas::clone(atlas), events))),
        Err(err @ AtlasError::InvalidInput(_)) => Err(RequestError::Atlas(err).error_response()),
        Err(err) => match atlas.unrecordable_usage() {
            UnrecordableUsage::Refuse => {
                tracing::error!(route = ?request.path(), customer = ?customer, features = ?features, %err, "the usage of this request could not be recorded: refused before the work (503)");
                let mut answer = RequestError::Atlas(err).error_response();
                answer.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("1"),
                );
                Err(answer)
            }
            UnrecordableUsage::Serve => {
                telemetry::usage_unrecorded();
                tracing::error!(route = ?request.path(), customer = ?customer, features = ?features, quantity, %err, "the usage of this request could not be recorded; serving it unbilled, as configured");
                Ok(None)
            }
        },
    }
}

/// The Atlas client of the app, or the misconfiguration answer.
pub(crate) fn atlas_of(request: &HttpRequest) -> Result<&Atlas, RequestError> {
    match request.app_data::<web::Data<Atlas>>() {
        Some(atlas) => Ok(atlas),
        None if request.app_data::<Atlas>().is_some() => {
            tracing::error!(
                route = ?request.path(),
                "the Atlas client is in the app data without web::Data: write `App::new().configure(atlas.configure())` instead, which registers it as web::Data and mounts the Atlas scope"
            );
            Err(RequestError::Misconfigured(
                "the Atlas client is not in web::Data",
            ))
        }
        None => {
            tracing::error!(
                route = ?request.path(),
                "no Atlas client in the app data: add `.configure(atlas.configure())` to the App (it registers the client and mounts the /atlas-api scope)"
            );
            Err(RequestError::Misconfigured(
                "no Atlas client in the app data",
            ))
        }
    }
}

/// `METHOD /route/{template}`: where a check was made, bounded (the route's pattern, not the
/// path a caller chose).
fn route_of(request: &HttpRequest) -> String {
    let pattern = request.match_pattern();
    format!(
        "{} {}",
        request.method(),
        pattern.as_deref().unwrap_or("(no route)")
    )
}

/// The request's `X-Request-Id`, when it has a short printable one.
fn request_id(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get("x-request-id")?
        .to_str()
        .ok()
        .filter(|id| !id.is_empty() && id.len() <= 128)
}

/// The check: the user, then its entitlements; `Err` holds the answer to send instead.
pub(crate) async fn check(
    request: &HttpRequest,
    features: &[&str],
    options: GuardOptions,
    fingerprint: Option<Fingerprint>,
) -> Result<Granted, HttpResponse> {
    let atlas = atlas_of(request).map_err(|err| err.error_response())?;
    atlas.warn_preflight(request);
    atlas.revalidate_if_needed();
    let idempotency_key = if options.reports_usage() {
        // Reporting usage bills the customer: a cross-site request must not do it.
        check_origin(request, atlas.allowed_origins()).map_err(|err| err.error_response())?;
        idempotency_key(request).map_err(|err| err.error_response())?
    } else {
        None
    };
    let customer = match atlas.resolve_user(request).await {
        Ok(Some(customer)) => customer,
        Ok(None) => return Err(atlas.deny(request, &Denial::Unauthenticated)),
        Err(err) => return Err(err.error_response()),
    };
    // A key is claimed before any work: a repeat gets the first answer, a reuse for another
    // request is refused, and neither is checked, locked or billed again.
    let ticket = match (&idempotency_key, fingerprint) {
        (Some(key), Some(fingerprint)) => {
            match atlas
                .idempotency_records()
                .claim(keys::compose(&[&customer, key]), fingerprint)
            {
                Claim::First(ticket) => Some(ticket),
                Claim::Answered(answer) => {
                    tracing::info!(route = ?request.path(), customer = ?customer, status = answer.status().as_u16(), "a request with an Idempotency-Key already used");
                    return Err(answer);
                }
            }
        }
        _ => None,
    };
    let lease = if options.exclusive {
        // Boxed, as are the reservation and the usage below: inline, the rarer guards'
        // steps would grow every check's future, which actix allocates and moves per request.
        let acquired = Box::pin(atlas.exclusive_locks().acquire(
            atlas.client().fleet(),
            &customer,
            features,
        ))
        .await;
        match acquired {
            Some(lease) => Some(lease),
            None => {
                tracing::warn!(customer = ?customer, features = ?features, "another request of the customer held the exclusive lock past the wait: 503");
                return Err(RequestError::Busy.error_response());
            }
        }
    } else {
        None
    };
    // Only for the hooks: a route template (never the path, which holds caller data) and the
    // request's own id.
    let (route, request_id) = if atlas.client().hooks().is_empty() {
        (None, None)
    } else {
        (Some(route_of(request)), request_id(request))
    };
    let origin = CheckOrigin {
        shadow: options.shadow,
        route: route.as_deref(),
        request_id,
    };
    let checked = match options.reserve {
        Some(units) => Box::pin(atlas.reserve_features(&customer, features, units, origin))
            .await
            .map(|reserved| match reserved {
                Ok(reservation) => Err(reservation),
                Err(denied) => Ok(denied),
            }),
        None => atlas
            .decide_features(&customer, features, options.quantity, origin, options.usage)
            .await
            .map(Ok),
    };
    let mut decision = match checked {
        Ok(Ok(decision)) => decision,
        Ok(Err(reservation)) => {
            let reservation = match &idempotency_key {
                Some(key) => reservation.idempotency_key(keys::digest(&[&customer, key])),
                None => reservation,
            };
            let slot = ReservationSlot::new(reservation);
            request.extensions_mut().insert(slot.clone());
            request.extensions_mut().insert(ResolvedCustomer(customer));
            return Ok(Granted {
                usage: None,
                hold: None,
                _reservation: Some(SlotGuard(slot)),
                ticket,
                _lease: lease,
            });
        }
        Err(err @ AtlasError::InvalidInput(_)) => {
            return Err(RequestError::Atlas(err).error_response());
        }
        Err(err) => {
            tracing::error!(route = ?request.path(), customer = ?customer, %err, "the entitlement check failed");
            return Err(RequestError::Atlas(err).error_response());
        }
    };
    if !decision.reasons.is_empty() {
        let allowed: BTreeMap<String, bool> = features
            .iter()
            .map(|f| (*f).to_owned())
            .zip(decision.flags)
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
            let denial = Denial::NotEntitled {
                features: allowed,
                reasons: decision.reasons,
            };
            return Err(atlas.deny(request, &denial));
        }
    }
    let usage = match options.usage {
        Some(quantity) => {
            Box::pin(prepare_usage(
                atlas,
                request,
                &customer,
                features,
                quantity,
                idempotency_key.as_deref(),
            ))
            .await?
        }
        None => None,
    };
    request.extensions_mut().insert(ResolvedCustomer(customer));
    Ok(Granted {
        usage,
        hold: decision.hold.take(),
        _reservation: None,
        ticket,
        _lease: lease,
    })
}

/// The check as `#[requires_feature]` expands it: the handler's own extractors run after it,
/// only when it passed, so a denied request never has its body read.
#[doc(hidden)]
pub async fn check_guard(
    request: &HttpRequest,
    fingerprint: Option<Fingerprint>,
    features: &'static [&'static str],
    options: GuardOptions,
) -> Result<Granted, HttpResponse> {
    check(request, features, options, fingerprint).await
}

impl Granted {
    /// The handler's answer, after which the usage is reported if the answer is 2xx.
    #[doc(hidden)]
    pub async fn respond<R: actix_web::Responder>(
        mut self,
        request: &HttpRequest,
        answer: R,
    ) -> HttpResponse {
        let mut response = answer.respond_to(request).map_into_boxed_body();
        if let Some(ticket) = self.ticket.take() {
            response = ticket.finish(response);
        }
        if response.status().is_success() {
            self.report_usage().await;
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Actix allocates and moves each request's handler future, which holds the check's:
    /// cache misses, outage answers, reservations, exclusive locks and usage are boxed so
    /// that a check answered from the cache stays small (3.6 KB before they were). The future
    /// is measured, never polled, so the request needs no `Atlas`.
    #[test]
    fn a_checks_future_holds_only_the_common_path() {
        let request = actix_web::test::TestRequest::default().to_http_request();
        let check = check(&request, &["feature"], GuardOptions::default(), None);
        let size = std::mem::size_of_val(&check);
        assert!(size <= 2048, "the check's future is {size} bytes");
    }
}
