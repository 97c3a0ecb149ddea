//! Why a guard refused a request, and the default answer: 401 without a user, 403 naming what
//! the plan lacks.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, ResponseError};

use crate::entitlements::reasons::DenialReason;
use crate::web::error_response::RequestError;

/// Why a guard refused a request; given to a custom answer (see
/// [`AtlasBuilder::deny_with`](crate::AtlasBuilder::deny_with)).
///
/// A browser app sends a signed-out visitor to the sign-in page and a customer whose plan
/// lacks the feature to the pricing page, naming what it lacks; API clients keep the JSON:
///
#[cfg_attr(feature = "emulator", doc = "```")]
#[cfg_attr(not(feature = "emulator"), doc = "```ignore")]
/// use actix_web::http::header;
/// use actix_web::{test, web, App, HttpRequest, HttpResponse};
/// use atlas_actix::emulator::{AtlasData, Emulator};
/// use atlas_actix::{requires_feature, Atlas, Denial};
///
/// #[requires_feature("data-explorer")]
/// async fn explorer() -> HttpResponse {
///     HttpResponse::Ok().finish()
/// }
///
/// fn answer(request: &HttpRequest, denial: &Denial) -> HttpResponse {
///     let wants_html = request
///         .headers()
///         .get(header::ACCEPT)
///         .and_then(|accept| accept.to_str().ok())
///         .is_some_and(|accept| accept.contains("text/html"));
///     match denial {
///         _ if !wants_html => denial.default_response(),
///         Denial::Unauthenticated => HttpResponse::SeeOther()
///             .insert_header((header::LOCATION, "/sign-in"))
///             .finish(),
///         Denial::NotEntitled { features, .. } => {
///             let lacking: Vec<&str> = features
///                 .iter()
///                 .filter(|(_, allowed)| !**allowed)
///                 .map(|(id, _)| id.as_str())
///                 .collect();
///             HttpResponse::SeeOther()
///                 .insert_header((header::LOCATION, format!("/pricing?upgrade={}", lacking.join(","))))
///                 .finish()
///         }
///         other => other.default_response(),
///     }
/// }
///
/// # #[actix_web::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let platform = Emulator::start(AtlasData::sample())?;
/// let atlas = Atlas::builder()
///     .base_url(platform.url())
///     .api_key(platform.api_key())
///     .user_resolver(|request: HttpRequest| async move {
///         Some(request.headers().get("x-user")?.to_str().ok()?.to_owned())
///     })
///     .deny_with(answer)
///     .build()?;
/// let app = test::init_service(
///     App::new().configure(atlas.configure()).route("/explorer", web::get().to(explorer)),
/// )
/// .await;
/// let page = test::TestRequest::get()
///     .uri("/explorer")
///     .insert_header((header::ACCEPT, "text/html"))
///     .insert_header(("x-user", "user_dave"))
///     .to_request();
/// let response = test::call_service(&app, page).await;
/// let location = response.headers().get(header::LOCATION).unwrap();
/// assert_eq!(location, "/pricing?upgrade=data-explorer");
/// let api = test::TestRequest::get().uri("/explorer").insert_header(("x-user", "user_dave"));
/// assert_eq!(test::call_service(&app, api.to_request()).await.status(), 403);
/// # Ok(())
/// # }
/// ```
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
