//! Why a request to the web layer was refused, and the one place where every error, the
//! client's included, becomes an HTTP answer: the [`ResponseError`] impls.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::AtlasError;

/// Why a request to the Atlas scope or a guarded handler was refused. Its
/// [`ResponseError`] impl gives every answer's status and `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No user: the resolver found none in the request. 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// No such route. 404.
    #[error("Not found")]
    NotFound,
    /// The route exists, not with this method. 405.
    #[error("Method not allowed")]
    MethodNotAllowed,
    /// The body or query is not what the route expects. 400.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the limit. 413.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// A state-changing request whose body is not JSON (a form or `text/plain`, which a
    /// browser sends cross-site without a preflight). 415.
    #[error("the body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// A state-changing request authenticated by a cookie, from an origin that is not allowed
    /// (or with none): a cross-site request forgery. 403.
    #[error("cross-site request refused: the origin is not allowed")]
    ForbiddenOrigin,
    /// The caller sent more requests than the route allows; retry after the given seconds. 429.
    #[error("too many requests; retry in {0} s")]
    TooManyRequests(u64),
    /// The user may not change the customer's billing (an organisation member without a billing
    /// role). 403.
    #[error("your role in the organisation may not change its billing")]
    BillingNotAllowed,
    /// An exclusive guard's lock was held by another request of the customer past the wait
    /// ([`AtlasBuilder::exclusive_wait`](crate::AtlasBuilder::exclusive_wait)); nothing was
    /// done. 503 with `Retry-After: 1`.
    #[error("another request of this customer is under way; try again")]
    Busy,
    /// The app is set up wrong (the reason is logged, with the fix). An opaque 500.
    #[error("Internal server error")]
    Misconfigured(&'static str),
    /// The Atlas call failed; answers as [`AtlasError`] does.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
}

impl ResponseError for RequestError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ForbiddenOrigin | Self::BillingNotAllowed => StatusCode::FORBIDDEN,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Atlas(err) => err.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Atlas(err) => err.error_response(),
            Self::TooManyRequests(seconds) => HttpResponse::TooManyRequests()
                .insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()))
                .json(serde_json::json!({ "error": self.to_string() })),
            Self::Busy => HttpResponse::ServiceUnavailable()
                .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
                .json(serde_json::json!({ "error": self.to_string() })),
            other => HttpResponse::build(other.status_code())
                .json(serde_json::json!({ "error": other.to_string() })),
        }
    }
}

/// | error | status | body |
/// |---|---|---|
/// | `InvalidApiKey` | 503 | `{"error": "Invalid API key"}` |
/// | `Unavailable` | 503 | `{"error": "The Atlas platform is unavailable"}` |
/// | `Rejected` | the platform's 4xx | `{"error": <its message>}` |
/// | `SubscriptionChangesNotAllowed` | 403 | `{"error": "Subscription changes are not allowed"}` |
/// | `InvalidInput` | 400 | `{"error": <what is wrong>}` |
/// | `QueueFull` | 503 | `{"error": ...}` |
/// | `Shutdown` | 503 | `{"error": ...}` |
/// | `Misconfigured` | 500 | `{"error": "Internal server error"}` |
///
/// Details of an outage stay in the logs: the answer does not tell clients about the
/// platform's internals.
impl ResponseError for AtlasError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidApiKey
            | Self::Unavailable(_)
            | Self::QueueFull { .. }
            | Self::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Rejected { status, .. } => StatusCode::from_u16(*status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_GATEWAY),
            Self::SubscriptionChangesNotAllowed | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Self::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Denied { reasons } = self {
            return HttpResponse::Forbidden()
                .json(serde_json::json!({ "error": self.to_string(), "reasons": reasons }));
        }
        let message = match self {
            Self::Unavailable(_) => "The Atlas platform is unavailable".to_owned(),
            Self::Misconfigured(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        };
        HttpResponse::build(self.status_code()).json(serde_json::json!({ "error": message }))
    }
}

/// The answer to a body an app's `web::Json` extractor refused (set by `Atlas::configure`):
/// `{"error": ...}` with the status actix gives it (400, 413, 415).
pub(crate) fn json_body_error(
    error: actix_web::error::JsonPayloadError,
    _request: &actix_web::HttpRequest,
) -> actix_web::Error {
    let answer = HttpResponse::build(error.status_code())
        .json(serde_json::json!({ "error": error.to_string() }));
    actix_web::error::InternalError::from_response(error, answer).into()
}

/// An extractor's refusal, as a guarded handler answers it: actix's plain-text answers (a
/// malformed JSON body, a wrong content type, a bad path) become `{"error": ...}` with their
/// status, like every other answer of the SDK; an answer the extractor shaped itself is kept.
pub(crate) fn extraction_error(error: actix_web::Error) -> HttpResponse {
    let response = error.error_response();
    let plain = response
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if plain {
        HttpResponse::build(response.status())
            .json(serde_json::json!({ "error": error.to_string() }))
    } else {
        response
    }
}
