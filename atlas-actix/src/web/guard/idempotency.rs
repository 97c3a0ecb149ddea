//! Idempotency keys bound to their request, as Stripe binds its keys: the first request with a
//! key is done and billed once; the same request again (method, route and body alike) gets
//! the first one's answer, or 409 while the first is still running; another request with the
//! same key answers 422 and does nothing. Without this, one key reused for any amount of
//! work would bill it all as one event.
//!
//! Records live in this process for [`AtlasBuilder::idempotency_ttl`] (default 10 min), in a
//! cache bounded by weight (answers of up to 64 KiB kept, 32 MiB in all); a repeat that comes
//! after its record was evicted runs again and is still billed once, by its event's key.
//!
//! [`AtlasBuilder::idempotency_ttl`]: crate::AtlasBuilder::idempotency_ttl

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;

use crate::client::keys;

/// The largest answer kept to replay.
const MAX_STORED_ANSWER: usize = 64 * 1024;
/// The weight of all records together, answers included.
const MAX_WEIGHT: u64 = 32 * 1024 * 1024;
/// What a record weighs besides its answer.
const RECORD_WEIGHT: u64 = 256;

/// What a request was: its method, route and body, hashed.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub(crate) fn of(method: &str, route: &str, body: &[u8]) -> Self {
        Self(keys::digest(&[method, route, &keys::sha256_hex(&[body])]))
    }
}

#[derive(Debug, Clone)]
struct Record {
    fingerprint: Fingerprint,
    at: Instant,
    /// `None` while the first request runs.
    answer: Option<Answer>,
}

#[derive(Debug, Clone)]
enum Answer {
    Stored {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    /// Done, with an answer too large (or streamed) to keep.
    NotStored,
}

#[derive(Clone)]
struct ByAnswerSize;

impl quick_cache::Weighter<String, Record> for ByAnswerSize {
    fn weight(&self, _key: &String, record: &Record) -> u64 {
        let answer = match &record.answer {
            Some(Answer::Stored { body, .. }) => body.len() as u64,
            _ => 0,
        };
        RECORD_WEIGHT + answer
    }
}

/// The records of this process's keys.
pub(crate) struct IdempotencyRecords {
    records: quick_cache::sync::Cache<String, Record, ByAnswerSize>,
    /// Held across a look-up and the insert after it, so two identical requests arriving
    /// together cannot both be first.
    claiming: Mutex<()>,
    ttl: Duration,
}

impl std::fmt::Debug for IdempotencyRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRecords")
            .field("records", &self.records.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// What to do with a request carrying a key.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The first request with this key: do it, then [`Ticket::finish`] with its answer.
    First(Ticket),
    /// The answer to send instead: the first request's, or a refusal.
    Answered(HttpResponse),
}

impl IdempotencyRecords {
    pub(crate) fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            records: quick_cache::sync::Cache::with_weighter(
                (MAX_WEIGHT / RECORD_WEIGHT / 16) as usize,
                MAX_WEIGHT,
                ByAnswerSize,
            ),
            claiming: Mutex::new(()),
            ttl,
        })
    }

    /// Claims `key` (already namespaced by customer) for a request of this fingerprint.
    pub(crate) fn claim(self: &Arc<Self>, key: String, fingerprint: Fingerprint) -> Claim {
        let _one_at_a_time = self.claiming.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self
            .records
            .get(&key)
            .filter(|record| record.at.elapsed() < self.ttl);
        match live {
            None => {
                self.records.insert(
                    key.clone(),
                    Record {
                        fingerprint: fingerprint.clone(),
                        at: Instant::now(),
                        answer: None,
                    },
                );
                Claim::First(Ticket {
                    records: Arc::clone(self),
                    key,
                    fingerprint,
                    finished: false,
                })
            }
            Some(record) if record.fingerprint != fingerprint => Claim::Answered(refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used with a different request (method, route or body)",
            )),
            Some(Record { answer: None, .. }) => {
                let mut answer = refusal(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is in progress",
                );
                answer
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Claim::Answered(answer)
            }
            Some(Record {
                answer: Some(answer),
                ..
            }) => Claim::Answered(replay(answer)),
        }
    }
}

fn refusal(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

fn replay(answer: Answer) -> HttpResponse {
    match answer {
        Answer::Stored {
            status,
            content_type,
            body,
        } => {
            let mut response = HttpResponse::build(status);
            if let Some(content_type) = content_type {
                response.insert_header((header::CONTENT_TYPE, content_type));
            }
            response
                .insert_header(("idempotent-replayed", "true"))
                .body(body)
        }
        Answer::NotStored => refusal(
            StatusCode::CONFLICT,
            "the request with this Idempotency-Key was done; its answer was too large to keep",
        ),
    }
}

/// The first request's hold on its key: [`finish`](Self::finish) records a 2xx answer for
/// repeats; any other answer, or the request's end without one, frees the key for a retry.
#[derive(Debug)]
pub(crate) struct Ticket {
    records: Arc<IdempotencyRecords>,
    key: String,
    fingerprint: Fingerprint,
    finished: bool,
}

impl Ticket {
    /// Records the handler's answer (a 2xx one) and hands it back, unchanged.
    pub(crate) fn finish(mut self, response: HttpResponse) -> HttpResponse {
        if !response.status().is_success() {
            return response;
        }
        self.finished = true;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let (response, body) = response.into_parts();
        let small = fits(body.size(), MAX_STORED_ANSWER);
        let (answer, body) = if small {
            match body.try_into_bytes() {
                Ok(bytes) => (
                    Answer::Stored {
                        status,
                        content_type,
                        body: bytes.clone(),
                    },
                    BoxBody::new(bytes),
                ),
                Err(body) => (Answer::NotStored, body),
            }
        } else {
            (Answer::NotStored, body)
        };
        self.store(Some(answer));
        response.set_body(body)
    }

    /// Records a 2xx answer whose body cannot be kept (the middleware's).
    pub(crate) fn finish_unstored(mut self, status: StatusCode) {
        if status.is_success() {
            self.finished = true;
            self.store(Some(Answer::NotStored));
        }
    }

    fn store(&self, answer: Option<Answer>) {
        self.records.records.insert(
            self.key.clone(),
            Record {
                fingerprint: self.fingerprint.clone(),
                at: Instant::now(),
                answer,
            },
        );
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            let _one_at_a_time = self
                .records
                .claiming
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.records
                .records
                .remove_if(&self.key, |record| record.answer.is_none());
        }
    }
}

/// Whether a body is small enough to keep: sized within `limit`, or empty.
fn fits(size: BodySize, limit: usize) -> bool {
    match size {
        BodySize::None => true,
        BodySize::Sized(size) => size <= limit as u64,
        BodySize::Stream => false,
    }
}

/// The largest body read to bind a key to it; the default of actix-web's `Json`.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// The longest a body may take to arrive.
const BODY_WAIT: Duration = Duration::from_secs(10);

/// The fingerprint of a request carrying an `Idempotency-Key` to a guard that reports usage:
/// its body is read (at most 2 MiB, within 10 s) and put back for the handler's extractors.
/// `Ok(None)` for any other request, whose body is left alone.
#[doc(hidden)]
pub async fn fingerprint_body(
    request: &HttpRequest,
    payload: &mut Payload,
    reports_usage: bool,
) -> Result<Option<Fingerprint>, HttpResponse> {
    if !reports_usage || !request.headers().contains_key("idempotency-key") {
        return Ok(None);
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|err| {
                refusal(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {err}"),
                )
            })?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body of a request with an Idempotency-Key may have at most 2 MiB",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let body = tokio::time::timeout(BODY_WAIT, read).await.map_err(|_| {
        refusal(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
    })??;
    let route = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path(), |route| route.as_str());
    let fingerprint = Fingerprint::of(request.method().as_str(), route, &body);
    *payload = Payload::from(body);
    Ok(Some(fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(body: &str) -> Fingerprint {
        Fingerprint::of("POST", "/api/ai/complete", body.as_bytes())
    }

    #[test]
    fn one_key_is_one_request() {
        let records = IdempotencyRecords::new(Duration::from_secs(60));
        let Claim::First(ticket) = records.claim("k".into(), fingerprint("a")) else {
            panic!("the first request runs");
        };
        let Claim::Answered(busy) = records.claim("k".into(), fingerprint("a")) else {
            panic!("a repeat while the first runs waits");
        };
        assert_eq!(busy.status(), StatusCode::CONFLICT);
        let Claim::Answered(other) = records.claim("k".into(), fingerprint("b")) else {
            panic!("another request with the key is refused");
        };
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let answer = ticket.finish(HttpResponse::Created().body("done"));
        assert_eq!(answer.status(), StatusCode::CREATED);
        let Claim::Answered(replayed) = records.claim("k".into(), fingerprint("a")) else {
            panic!("a repeat after the first gets its answer");
        };
        assert_eq!(replayed.status(), StatusCode::CREATED);
        assert_eq!(
            replayed.headers().get("idempotent-replayed").unwrap(),
            "true"
        );
        let body = actix_web::body::to_bytes(replayed.into_body());
        let body = futures_util::FutureExt::now_or_never(body)
            .unwrap()
            .unwrap();
        assert_eq!(body, "done");
    }

    #[test]
    fn a_failed_or_abandoned_first_request_frees_its_key() {
        let records = IdempotencyRecords::new(Duration::from_secs(60));
        let Claim::First(ticket) = records.claim("k".into(), fingerprint("a")) else {
            panic!();
        };
        ticket.finish(HttpResponse::InternalServerError().finish());
        let Claim::First(ticket) = records.claim("k".into(), fingerprint("a")) else {
            panic!("a retry after a failure runs");
        };
        drop(ticket);
        assert!(matches!(
            records.claim("k".into(), fingerprint("b")),
            Claim::First(_)
        ));
    }

    #[test]
    fn records_expire() {
        let records = IdempotencyRecords::new(Duration::ZERO);
        let Claim::First(ticket) = records.claim("k".into(), fingerprint("a")) else {
            panic!();
        };
        ticket.finish(HttpResponse::Ok().finish());
        assert!(matches!(
            records.claim("k".into(), fingerprint("b")),
            Claim::First(_)
        ));
    }
}
