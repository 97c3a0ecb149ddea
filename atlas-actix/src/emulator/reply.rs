//! What an emulator route answers, and its errors, mapped to HTTP in one place.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

/// `value` as a JSON number, written as the models write theirs (`29`, not `29.0`).
pub(crate) fn json_number(value: f64) -> Value {
    crate::models::number::serialize(&value, serde_json::value::Serializer).unwrap_or(Value::Null)
}

/// A successful answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Json(StatusCode, Value),
    Redirect(String),
}

impl Reply {
    pub(crate) fn ok(body: impl serde::Serialize) -> Result<Self, ApiError> {
        Self::with_status(StatusCode::OK, body)
    }

    pub(crate) fn with_status(
        status: StatusCode,
        body: impl serde::Serialize,
    ) -> Result<Self, ApiError> {
        let body = serde_json::to_value(body).map_err(|err| ApiError::internal(err.to_string()))?;
        Ok(Self::Json(status, body))
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        match self {
            Self::Json(status, body) => HttpResponse::build(status).json(body),
            Self::Redirect(location) => HttpResponse::Found()
                .insert_header((header::LOCATION, location))
                .finish(),
        }
    }
}

/// An error answer: `{"error": message, "message": message}`, as the platform sends them (the
/// official client reads `message`, then `error`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Whether it says that what was asked for does not exist (404).
    pub(crate) fn is_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .json(json!({"error": self.message, "message": self.message}))
    }
}
