//! Atlas (runonatlas.com) pricing, entitlements and usage billing for Actix Web.
//!
//! - [`Atlas`]: what an app builds once ([`Atlas::builder`]) and hands to its workers: the
//!   platform client [`AtlasClient`] — entitlement checks ([`AtlasClient::allowed`],
//!   [`AtlasClient::features`]), customers, plans, subscriptions, invoices, usage events, with
//!   bounded caches, request coalescing and retries — which it dereferences to, plus the web
//!   layer's settings.
//! - [`macro@requires_feature`], [`RequireFeatures`] and [`Entitlements`]: gate the app's
//!   handlers by plan.
//! - [`Atlas::scope`]: the `/atlas-api` routes the Atlas React SDK calls.
//! - [`UserResolver`] and `ClerkAuth` (feature `clerk`): who the user of a request is.
//! - [`limit!`]: count a limited feature's usage in the app's own store.
//! - [`entitlements`]: the entitlement rules as pure functions.
//! - [`models`]: the platform's JSON objects as Rust types.
//! - `emulator` (feature `emulator`): a local Atlas platform for tests and development.
//!
//! The README (`README.md` at the repository's root) walks through a whole app; ARCHITECTURE.md
//! says where each concept lives.
//!
//! # Which type do I need
//!
//! | to ... | use |
//! |---|---|
//! | configure and build the client once, at start | [`Atlas::builder`] → [`AtlasBuilder`] → [`Atlas`] |
//! | serve the React SDK's backend routes | [`Atlas::configure`] (or [`Atlas::scope`]) on the `App` |
//! | gate one handler | [`macro@requires_feature`] |
//! | gate a scope or a whole app | [`RequireFeatures`] (`.wrap(..)`) |
//! | decide inside a handler, or show what a plan grants | the [`Entitlements`] extractor |
//! | check from code that is no handler | [`AtlasClient::allowed`] (through `Atlas`, or [`Atlas::client`]) |
//! | say who the user is | a closure or a [`UserResolver`]; `ClerkAuth` for Clerk sessions |
//! | count a limited feature (seats, projects) | [`limit!`] or [`AtlasBuilder::limit`] |
//! | report usage of a metered feature | `usage = N` on the guard, or [`AtlasClient::enqueue`] / [`AtlasClient::enqueue_with`] ([`UsageOptions`]) |
//! | choose what happens when Atlas is down | [`OutagePolicy`] |
//! | answer probes, read metrics | [`health`], [`AtlasClient::health`] ([`Health`]) |
//! | test against a local platform | `emulator::Emulator` with `emulator::AtlasData::sample()` (feature `emulator`) |
//!
//! # Cargo features
//!
//! None is on by default: the SDK alone is `actix-web`, `awc` with rustls, serde, tokio's sync
//! primitives and a few small crates (about 200 crates in all, most of them actix-web's own).
//!
//! | feature | what it brings | what it costs |
//! |---|---|---|
//! | `clerk` | `ClerkAuth`, `ClerkSession`, `ClerkError`: Clerk session tokens verified with a PEM key or the instance's JWKS | `jsonwebtoken` with its RustCrypto back-ends (about 60 more crates) |
//! | `redis` | `AtlasBuilder::redis_url`: a fleet's shared cache and durable event stream on Redis | `redis` (tokio, connection manager) and `ring` for the key namespace (about 15 more) |
//! | `emulator` | `atlas_actix::emulator` and the `atlas-emulator` binary: a local Atlas platform for tests and development | `actix-ws`, `tracing-subscriber` (about 15 more) |
//! | `cli` | `atlas_actix::cli` and the `cargo-atlas` binary: `cargo atlas pull` (the pricing-model snapshot the macros check ids against), `customer`, `check`, `spool inspect`/`drain`, `data check` | `emulator`'s, and `clap` (about 10 more) |
//!
//! ```
//! # #[cfg(feature = "emulator")]
//! # actix_web::rt::System::new().block_on(async {
//! use actix_web::{get, test, App, HttpResponse, HttpRequest};
//! use atlas_actix::{requires_feature, Atlas};
//!
//! #[get("/api/reports")]
//! #[requires_feature("data-explorer")]
//! async fn reports() -> HttpResponse {
//!     HttpResponse::Ok().body("the reports")
//! }
//!
//! // A local Atlas platform with the sample plans and customers.
//! let platform = atlas_actix::emulator::Emulator::start(atlas_actix::emulator::AtlasData::sample())?;
//!
//! let atlas = Atlas::builder()
//!     .base_url(platform.url())
//!     .api_key(platform.api_key())
//!     // Who the user is: here a header; in an app, its auth (or `ClerkAuth`).
//!     .user_resolver(|request: HttpRequest| async move {
//!         let user = request.headers().get("x-user")?.to_str().ok()?;
//!         Some(user.to_owned())
//!     })
//!     .build()?;
//! let app = test::init_service(
//!     App::new()
//!         // The client where the guards find it, and the /atlas-api routes.
//!         .configure(atlas.configure())
//!         .service(reports),
//! )
//! .await;
//!
//! // Erin's Pro plan has the data explorer; Dave's Free plan does not.
//! for (user, status) in [("user_erin", 200), ("user_dave", 403)] {
//!     let request = test::TestRequest::get()
//!         .uri("/api/reports")
//!         .insert_header(("x-user", user))
//!         .to_request();
//!     assert_eq!(test::call_service(&app, request).await.status(), status);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// Library code logs through `tracing`, never to the terminal.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod auth;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod client;
pub mod entitlements;
mod error;
pub mod models;
mod web;

#[cfg(feature = "emulator")]
pub mod emulator;

#[cfg(feature = "clerk")]
pub use auth::clerk::{ClerkAuth, ClerkError, ClerkSession};
pub use auth::{contact_headers, ResolveFuture, UserResolver};
pub use client::decision_log::{DecisionLog, DecisionLogBuilder};
pub use client::hooks::{
    AtlasHook, CheckDecision, CheckRecord, Provenance, UsageRecord, UsageStage,
};
pub use client::limits::{IntoUsage, LimitError};
pub use client::outage::{OutagePolicy, ParseOutagePolicyError, DEFAULT_STALE_AGE};
pub use client::reservation::Reservation;
pub use client::settings::{
    DEFAULT_HOLD_TTL, DEFAULT_METERING_LAG, DEFAULT_PLATFORM_URL, DEFAULT_PUSH_REVALIDATION,
};
pub use client::telemetry::health::{Health, LinkHealth, TierHealth};
pub use client::{
    Allowed, AtlasClient, BillingCadence, CancelType, ChangeOptions, Pagination, PushLink, Status,
    SubscribeRequest, UsageOptions,
};
pub use entitlements::findings::Finding;
pub use entitlements::reasons;
pub use entitlements::reasons::{CreditShortfall, DenialReason, MaxUsage};
pub use entitlements::snapshot::{GrantKind, Snapshot, SnapshotFeature};
pub use entitlements::{CustomerFeature, FeatureType};
pub use error::{AtlasError, BuildError, PlatformUnavailable};
pub use models::CustomerInfo;
pub use web::atlas::Atlas;
pub use web::builder::AtlasBuilder;
pub use web::error_response::RequestError;
pub use web::guard::denial::Denial;
pub use web::guard::extractor::Entitlements;
pub use web::guard::middleware::{RequireFeatures, RequireFeaturesService};
pub use web::guard::reserved::Reserved;
pub use web::guard::unrecordable::UnrecordableUsage;
pub use web::probes as health;

// What the docs promise about threads, checked whenever the crate compiles: the client and
// its answers cross threads, and the futures of its calls can be spawned on any runtime.
const _: fn(AtlasClient) = |client| {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: T) {}
    send_sync::<Atlas>();
    send_sync::<AtlasClient>();
    send_sync::<Allowed>();
    send_sync::<AtlasError>();
    send_sync::<BuildError>();
    send_sync::<Health>();
    send_sync::<OutagePolicy>();
    send(client.allowed("customer", ["feature"]));
    send(client.features("customer", None));
    send(client.enqueue("customer", ["feature"], 1.0));
    send(client.flush());
    send(client.status());
    send(client.health());
    send(client.shutdown());
};

/// Registers the usage callback of a limited feature on an [`AtlasBuilder`] and returns the
/// builder; the same as [`AtlasBuilder::limit`], with the feature id's form checked at compile
/// time (a string of the characters feature ids are made of) and, when the crate has a
/// pricing-model snapshot (`atlas-snapshot.json`, see [`Snapshot`]), that the feature exists
/// and some plan gives it a limit. Without a snapshot, the pricing model is checked when it
/// loads: a [`Finding`] at start-up.
///
/// ```no_run
/// use atlas_actix::{limit, Atlas};
///
/// # #[derive(Clone)] struct Db;
/// # impl Db { async fn seats_of(&self, _: &str) -> Result<u32, std::io::Error> { Ok(2) } }
/// let db = Db;
/// let builder = limit!(Atlas::builder(), "seats", move |customer| {
///     let db = db.clone();
///     async move { db.seats_of(&customer).await }
/// });
/// let atlas = builder.build()?;
/// # Ok::<(), atlas_actix::BuildError>(())
/// ```
pub use atlas_actix_macros::limit;

#[doc(inline)]
pub use atlas_actix_macros::requires_feature;

/// What the macros' expansions call. Not public API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use actix_web::web::Payload;
    pub use actix_web::{FromRequest, HttpRequest, HttpResponse};
    pub use linkme;

    use crate::client::limits::LimitCallback;
    pub use crate::client::limits::Quantity;
    pub use crate::entitlements::named_in_code::{GuardSite, GUARD_SITES};
    pub use crate::web::guard::idempotency::{fingerprint_body, Fingerprint};
    pub use crate::web::guard::{check_guard, Granted, GuardOptions};
    use crate::{AtlasBuilder, IntoUsage};

    /// An extractor's refusal as a guarded handler answers it (JSON for actix's plain text).
    pub fn extraction_error(error: impl Into<actix_web::Error>) -> HttpResponse {
        crate::web::error_response::extraction_error(error.into())
    }

    /// A limit callback whose type was checked where the user wrote it.
    #[derive(Debug)]
    pub struct CheckedLimit(LimitCallback);

    pub fn limit_callback<F, Fut>(callback: F) -> CheckedLimit
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoUsage,
    {
        CheckedLimit(LimitCallback::new(callback))
    }

    pub fn quantity(value: impl Quantity) -> f64 {
        value.into_quantity()
    }

    pub fn register_limit(
        builder: AtlasBuilder,
        feature: &'static str,
        callback: CheckedLimit,
    ) -> AtlasBuilder {
        builder.with_limit(feature.to_owned(), callback.0)
    }
}
