//! [`Entitlements`]: what the user's plans grant, as an extractor, for handlers that adapt to
//! the plan rather than refuse.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::client::hooks::Provenance;
use crate::entitlements::reasons::{reason_from_feature, DenialReason};
use crate::entitlements::CustomerFeature;
use crate::web::error_response::RequestError;
use crate::web::guard::{atlas_of, ResolvedCustomer};

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
#[non_exhaustive]
pub struct Entitlements {
    /// The Atlas customer id of the user (or of its organisation).
    pub customer_id: String,
    /// Everything its plans grant.
    pub features: Vec<CustomerFeature>,
    /// Where the data came from (fetched, cached and how old, stale during an outage).
    pub provenance: Provenance,
}

impl Entitlements {
    /// Whether the plan grants the feature, now.
    pub fn allows(&self, feature: &str) -> bool {
        self.feature(feature).is_some_and(|f| f.allowed)
    }

    /// Why the plans do not let the user use the feature now, in the React SDK's shapes;
    /// `None` when they do. A feature no plan of the user grants is `notIncluded`.
    pub fn why_not(&self, feature: &str) -> Option<DenialReason> {
        reason_from_feature(feature, self.feature(feature))
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
            let (features, provenance) = atlas
                .features_sourced(&customer_id, Some(&atlas.customer_info(&request)))
                .await?;
            Ok(Self {
                customer_id,
                features,
                provenance,
            })
        })
    }
}
