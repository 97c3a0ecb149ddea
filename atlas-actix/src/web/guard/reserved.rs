//! The handler's side of a reserving guard (`#[requires_feature(.., reserve = ..)]`,
//! [`RequireFeatures::reserve`](crate::RequireFeatures::reserve)): the [`Reserved`] extractor,
//! through which it commits what the work used.

use std::future::{ready, Ready};
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::client::reservation::Reservation;
use crate::error::AtlasError;

/// The reservation a guard took for the request, shared between the guard (which releases it
/// after the answer if the handler did not commit) and the handler's [`Reserved`].
#[derive(Debug, Clone)]
pub(crate) struct ReservationSlot(Arc<Mutex<Option<Reservation>>>);

impl ReservationSlot {
    pub(crate) fn new(reservation: Reservation) -> Self {
        Self(Arc::new(Mutex::new(Some(reservation))))
    }

    fn take(&self) -> Option<Reservation> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn units(&self) -> Option<f64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Reservation::units)
    }
}

/// Held by the guard until the answer: what the handler did not commit is released then,
/// whatever the answer (a panic included).
#[derive(Debug)]
pub(crate) struct SlotGuard(pub(crate) ReservationSlot);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(reservation) = self.0.take() {
            tracing::debug!(customer = ?reservation.customer(), units = reservation.units(), "a reservation was not committed; released");
        }
    }
}

/// The quota a reserving guard held for this request: commit what the work used.
///
/// ```no_run
/// use actix_web::{post, web, HttpResponse, Responder};
/// use atlas_actix::{requires_feature, Reserved};
///
/// #[derive(serde::Deserialize)]
/// struct Prompt { text: String, max_tokens: u32 }
///
/// #[post("/api/ai/summarise")]
/// #[requires_feature("ai-tokens", reserve = body.max_tokens)]
/// async fn summarise(body: web::Json<Prompt>, reserved: Reserved) -> impl Responder {
///     let used = body.text.split_whitespace().count(); // what the model reported
///     match reserved.commit(used as f64).await {
///         Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "tokens": used })),
///         Err(err) => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": err.to_string() })),
///     }
/// }
/// ```
///
/// Extracting it never fails; committing through a handler whose guard does not reserve is
/// [`AtlasError::Misconfigured`].
#[derive(Debug, Clone)]
pub struct Reserved {
    request: HttpRequest,
}

impl Reserved {
    fn slot(&self) -> Option<ReservationSlot> {
        self.request.extensions().get::<ReservationSlot>().cloned()
    }

    /// The units held, while the reservation is neither committed nor released.
    pub fn units(&self) -> Option<f64> {
        self.slot().and_then(|slot| slot.units())
    }

    /// Reports `actual` units of usage and frees the rest of the hold (see
    /// [`Reservation::commit`]): once per request; a second commit is
    /// [`AtlasError::InvalidInput`].
    pub async fn commit(self, actual: f64) -> Result<(), AtlasError> {
        let Some(slot) = self.slot() else {
            tracing::error!(route = ?self.request.path(), "`Reserved` in a handler whose guard does not reserve: add `reserve = ..` to #[requires_feature]");
            return Err(AtlasError::Misconfigured(
                "no reservation: the handler's guard does not reserve".to_owned(),
            ));
        };
        match slot.take() {
            Some(reservation) => reservation.commit(actual).await,
            None => Err(AtlasError::InvalidInput(
                "the reservation was already committed or released".to_owned(),
            )),
        }
    }

    /// Frees the hold and reports nothing (the work did not happen).
    pub fn release(self) {
        if let Some(slot) = self.slot() {
            slot.take();
        }
    }
}

impl FromRequest for Reserved {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Looked up when used: with `reserve = ..` the handler's arguments are extracted
        // before the check that makes the reservation.
        ready(Ok(Self {
            request: request.clone(),
        }))
    }
}
