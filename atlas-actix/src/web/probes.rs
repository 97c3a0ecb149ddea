//! Liveness and readiness handlers for the app's probes: mount them where the orchestrator
//! looks.
//!
//! ```
//! use actix_web::{web, App};
//!
//! let app = App::new()
//!     .route("/healthz", web::get().to(atlas_actix::health::liveness))
//!     .route("/readyz", web::get().to(atlas_actix::health::readiness));
//! ```

use actix_web::{web, HttpResponse};

use crate::web::atlas::Atlas;

/// 200 `{"status": "alive"}` while the process serves.
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "alive" }))
}

/// 200 `{"status": "ready", ...}` when the client is initialised and the platform answers (or
/// the default outage policy can decide without it); 503 `{"status": "unready", "failing":
/// [...], ...}` otherwise. The rest of the body is [`Health`](crate::Health).
pub async fn readiness(atlas: web::Data<Atlas>) -> HttpResponse {
    let health = atlas.health().await;
    let mut body = serde_json::to_value(&health).unwrap_or_default();
    let status = if health.ready { "ready" } else { "unready" };
    body["status"] = serde_json::json!(status);
    if health.ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
