//! Liveness and readiness handlers for the app's probes: mount them where the orchestrator
//! looks. [`liveness`] and [`readiness`] say only whether, and why not in words, so they may
//! sit on a public port; [`report`] has every figure of [`Health`](crate::Health) (backlog,
//! last answers, tiers) and belongs on an internal one, beside `/metrics`.
//!
//! ```
//! use actix_web::{web, App};
//!
//! let public = App::new()
//!     .route("/healthz", web::get().to(atlas_actix::health::liveness))
//!     .route("/readyz", web::get().to(atlas_actix::health::readiness));
//! let internal = App::new().route("/health", web::get().to(atlas_actix::health::report));
//! ```

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::web::atlas::Atlas;

/// 200 `{"status": "alive"}` while the process serves.
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

/// 200 `{"status": "ready"}` when the client is initialised and the platform answers (or the
/// default outage policy can decide without it); 503 `{"status": "unready", "failing": [...]}`
/// otherwise, `failing` saying what in words. No figures: safe on a public port.
pub async fn readiness(atlas: web::Data<Atlas>) -> HttpResponse {
    let health = atlas.health().await;
    if health.ready {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unready", "failing": health.failing }))
    }
}

/// [`readiness`]'s answer with all of [`Health`](crate::Health) in the body (the event backlog,
/// when the platform last answered, the push link, the Redis tier): for an internal port.
pub async fn report(atlas: web::Data<Atlas>) -> HttpResponse {
    let health = atlas.health().await;
    let mut body = serde_json::to_value(&health).unwrap_or_default();
    let status = if health.ready { "ready" } else { "unready" };
    body["status"] = json!(status);
    if health.ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
