//! Why a guard refused a request, and the default answer: 401 without a user, 403 naming what
//! the plan lacks.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, ResponseError};

use crate::entitlements::reasons::DenialReason;
use crate::web::error_response::RequestError;

/// Why a guard refused a request; given to a custom answer (see
/// [`AtlasBuilder::deny_with`](crate::AtlasBuilder::deny_with)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Denial {
    /// The request has no user. Default answer: 401 `{"error": "Unauthorized"}`.
    Unauthenticated,
    /// The user's plan does not grant every feature. Default answer: 403
    /// `{"error": <the causes, in words>, "features": {"<id>": <allowed>}, "reasons": [...]}`.
    NotEntitled {
        /// Each feature checked, and whether it is allowed.
        features: BTreeMap<String, bool>,
        /// Why each denied feature is denied, in the React SDK's shapes.
        reasons: Vec<DenialReason>,
    },
}

impl Denial {
    /// The default JSON answer.
    pub fn default_response(&self) -> HttpResponse {
        match self {
            Self::Unauthenticated => RequestError::Unauthorized.error_response(),
            Self::NotEntitled { features, reasons } => {
                let causes: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                HttpResponse::Forbidden().json(serde_json::json!({
                    "error": causes.join("; "),
                    "features": features,
                    "reasons": reasons,
                }))
            }
        }
    }
}
