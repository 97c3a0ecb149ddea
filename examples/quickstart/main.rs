//! The quickstart: a real Actix app whose features are gated by Atlas.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! With no `ATLAS_API_KEY` it runs the Atlas emulator in-process, seeded from
//! `ATLAS_DATA_FILE` (default `examples/atlas-data.json`); with one it talks to the platform
//! (`ATLAS_HOST` overrides its URL). Users are Clerk sessions (`CLERK_JWT_KEY` or
//! `CLERK_JWKS_URL`), organisation members counting as their organisation; with neither, a
//! demo mode signs Clerk-shaped tokens for the data file's customers and prints them. It
//! listens on `BIND`:`PORT` (default 127.0.0.1:8080) and lets the origins of
//! `ALLOWED_ORIGINS` (comma-separated) call it from a browser. `ATLAS_EVENT_SPOOL` names a
//! directory that keeps queued usage events on disk across crashes. `ATLAS_REDIS_URL` shares a
//! Redis tier with the app's other instances (cache and usage events); `ATLAS_OUTAGE_POLICY`
//! (`fail-closed`, the default, `serve-stale` or `fail-open`) says what checks do while the
//! platform is down, and `ATLAS_UNRECORDABLE_USAGE` (`refuse`, the default, or `serve`) what a
//! billed route does when its usage cannot be recorded. `QUICKSTART_DB` is the SQLite file
//! that holds the seats (default in memory; several quickstarts may share one), and
//! `ATLAS_HOLD_TTL` the seconds before an uncommitted reservation expires (default 300).
//! `ATLAS_DECISION_LOG` names a file where every denial, every usage event and a sample of the
//! allowed checks (`ATLAS_DECISION_LOG_SAMPLE`, default 0.01) are written as JSON lines.
//! `/healthz` and `/readyz` (no figures) are on the app's port; `/metrics`
//! and `/health` (the full report) on `METRICS_BIND` (default 127.0.0.1:9464) alone.
//!
//! Every defence is on: state changes refuse cross-site requests (allowed origins), tokens
//! must name this app (`azp`) and, with `CLERK_ISSUER`, the Clerk instance (`iss`); only an
//! organisation's `org:admin` members change its billing; adding seats is `exclusive`, so the
//! plan's seat limit holds under concurrent requests; the AI routes and the image route hold
//! their quotas (metered usage, a reservation, credits) between the platform's updates. Demo mode hands out tokens to anyone who
//! asks, so it refuses to listen beyond loopback unless `ATLAS_DEMO_PUBLIC=1`, and answers only
//! requests whose `Host` names this machine (DNS rebinding).

mod demo;
mod seats;

use actix_cors::Cors;
use actix_web::{get, http, post, web, App, HttpResponse, HttpServer, Responder};
use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use atlas_actix::{
    limit, requires_feature, Atlas, ClerkAuth, DecisionLog, OutagePolicy, Reserved,
    UnrecordableUsage,
};
use serde::Deserialize;
use serde_json::json;

use crate::demo::{
    demo_asset, demo_auth, demo_host_allowed, demo_page, demo_tokens_route, demo_users, print_demo,
};
use crate::seats::Seats;

/// The quickstart's own `ATLAS_*` variables: the SDK warns about any other one set.
const QUICKSTART_VARIABLES: [&str; 8] = [
    "ATLAS_DEMO_PUBLIC",
    "ATLAS_DECISION_LOG",
    "ATLAS_DECISION_LOG_SAMPLE",
    "ATLAS_HOLD_TTL",
    "ATLAS_EVENT_SPOOL",
    "ATLAS_REDIS_URL",
    "ATLAS_OUTAGE_POLICY",
    "ATLAS_UNRECORDABLE_USAGE",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The report the data explorer serves.
async fn data_explorer_report() -> impl Responder {
    HttpResponse::Ok().json(json!({
        "report": "revenue by month",
        "rows": [["2026-09", 1200], ["2026-10", 1350], ["2026-11", 1510]],
    }))
}

#[get("/api/data-explorer")]
#[requires_feature("data-explorer")]
async fn data_explorer() -> impl Responder {
    data_explorer_report().await
}

/// The same handler without the guard, to measure what the guard costs.
#[get("/api/public/data-explorer")]
async fn public_data_explorer() -> impl Responder {
    data_explorer_report().await
}

/// The same handler behind a limited feature, whose callback counts seats in memory.
#[get("/api/limited/data-explorer")]
#[requires_feature("seats")]
async fn limited_data_explorer() -> impl Responder {
    data_explorer_report().await
}

#[derive(Deserialize)]
struct NewSeat {
    email: String,
}

/// Adds a seat: allowed while the customer's seats are below its plan's limit. `exclusive`:
/// the check and the insert are one step per customer, so 200 concurrent requests end with
/// exactly the limit.
#[post("/api/seats")]
#[requires_feature("seats", exclusive)]
async fn add_seat(
    entitlements: atlas_actix::Entitlements,
    seats: web::Data<Seats>,
    body: web::Json<NewSeat>,
) -> impl Responder {
    match seats.add(&entitlements.customer_id, &body.email) {
        Ok(taken) => HttpResponse::Created().json(json!({ "seats": taken })),
        Err(err) => database_error(&err),
    }
}

fn database_error(err: &rusqlite::Error) -> HttpResponse {
    tracing::error!(%err, "the seats database failed");
    HttpResponse::ServiceUnavailable().json(json!({ "error": "the seats database is unavailable" }))
}

#[derive(Deserialize)]
struct NewSeats {
    emails: Vec<String>,
}

/// Adds several seats at once, all or none: the check asks for as many seats as emails, so a
/// request that would pass the plan's limit is refused whole (403, `limitReached`).
#[post("/api/seats/bulk")]
#[requires_feature("seats", exclusive, quantity = body.emails.len())]
async fn add_seats(
    entitlements: atlas_actix::Entitlements,
    seats: web::Data<Seats>,
    body: web::Json<NewSeats>,
) -> impl Responder {
    let mut taken = 0;
    for email in &body.emails {
        match seats.add(&entitlements.customer_id, email) {
            Ok(now) => taken = now,
            Err(err) => return database_error(&err),
        }
    }
    HttpResponse::Created().json(json!({ "seats": taken }))
}

#[derive(Deserialize)]
struct Prompt {
    prompt: String,
}

/// An AI completion; each successful one is reported as usage of `ai-tokens`. A client that
/// retries sends the same `Idempotency-Key` header, and the usage is billed once.
#[post("/api/ai/complete")]
#[requires_feature("ai-tokens", usage = 1)]
async fn ai_complete(body: web::Json<Prompt>) -> impl Responder {
    let words = body.prompt.split_whitespace().count();
    HttpResponse::Ok().json(json!({ "completion": format!("You wrote {words} words. Here is more of them."), "tokens": words }))
}

/// `POST /api/ai/summarise`: `maxTokens` must be a whole number from 1 to 100,000 (default 100).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summarise {
    text: String,
    #[serde(default = "default_max_tokens")]
    max_tokens: f64,
}

fn default_max_tokens() -> f64 {
    100.0
}

/// Reads the body and refuses a bad one (400) before any check or reservation.
fn valid_summarise(body: web::Json<Summarise>) -> Result<web::Json<Summarise>, actix_web::Error> {
    let max = body.max_tokens;
    if max.fract() != 0.0 || !(1.0..=100_000.0).contains(&max) {
        let answer = HttpResponse::BadRequest()
            .json(json!({ "error": "maxTokens must be a whole number from 1 to 100000" }));
        return Err(actix_web::error::InternalError::from_response("maxTokens", answer).into());
    }
    Ok(body)
}

/// An AI summary, whose cost is known only once it is made: the guard reserves `maxTokens` of
/// `ai-tokens` (403 when they do not fit what is left of the quota), the handler commits the
/// tokens it used (here, one per word of the text) and the rest of the reservation is freed.
/// A summary that used more than reserved is billed in full.
#[post("/api/ai/summarise")]
#[requires_feature("ai-tokens", reserve = body.max_tokens)]
async fn ai_summarise(body: ValidSummarise, reserved: Reserved) -> impl Responder {
    let words: Vec<&str> = body.0.text.split_whitespace().collect();
    let tokens = words.len();
    let summary = words.iter().take(8).copied().collect::<Vec<_>>().join(" ");
    match reserved.commit(tokens as f64).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "summary": summary, "tokens": tokens })),
        Err(err) => actix_web::ResponseError::error_response(&err),
    }
}

/// The summarise body, validated as it is extracted.
struct ValidSummarise(web::Json<Summarise>);

impl actix_web::FromRequest for ValidSummarise {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(
        request: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let body = web::Json::<Summarise>::from_request(request, payload);
        Box::pin(async move { valid_summarise(body.await?).map(ValidSummarise) })
    }
}

impl std::ops::Deref for ValidSummarise {
    type Target = Summarise;

    fn deref(&self) -> &Summarise {
        &self.0
    }
}

/// An image, paid with one image credit (403 `insufficientCredits` when none are left).
#[post("/api/images")]
// `quantity = 1`, one image, is read after the arguments: a bad body is a 400 before the check.
#[requires_feature("image-generation", usage = 1, quantity = 1)]
async fn create_image(body: web::Json<Prompt>) -> impl Responder {
    HttpResponse::Created()
        .json(json!({ "image": format!("an image of {:?}", body.prompt), "credits": 1 }))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Metrics: installed before the client is built, which binds its counters once.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                "atlas_platform_request_duration_seconds".to_owned(),
            ),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;

    let data_file = env("ATLAS_DATA_FILE").unwrap_or_else(|| "examples/atlas-data.json".to_owned());
    let data = AtlasData::from_file(&data_file)?;
    // With no key, the whole platform runs here, in-process.
    let (mut builder, _emulator): (_, Option<EmulatorHandle>) = match env("ATLAS_API_KEY") {
        Some(_) => (Atlas::builder(), None),
        None => {
            let emulator = Emulator::from_file(&data_file)?.start()?;
            println!("Atlas emulator at {} (data: {data_file})", emulator.url());
            let builder = Atlas::builder()
                .base_url(emulator.url())
                .api_key(emulator.api_key());
            (builder, Some(emulator))
        }
    };

    let mut origins: Vec<String> = env("ALLOWED_ORIGINS")
        .unwrap_or_else(|| "http://localhost:3000,http://127.0.0.1:3000".to_owned())
        .split(',')
        .map(|origin| origin.trim().to_owned())
        .collect();
    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1".to_owned());
    let port: u16 = env("PORT").map(|p| p.parse()).transpose()?.unwrap_or(8080);
    // Bound first: demo tokens name the app's own origin.
    let listener = std::net::TcpListener::bind((bind.as_str(), port))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    origins.push(base.clone());

    let (clerk, demo_tokens) = match ClerkAuth::from_env()? {
        Some(clerk) => {
            let clerk = match env("CLERK_ISSUER") {
                Some(issuer) => clerk.issuer(issuer),
                None => clerk,
            };
            let parties: Vec<String> = env("CLERK_AUTHORIZED_PARTIES")
                .map(|p| p.split(',').map(|p| p.trim().to_owned()).collect())
                .unwrap_or_else(|| origins.clone());
            (clerk.authorized_parties(parties), None)
        }
        None => {
            let public = env("ATLAS_DEMO_PUBLIC").is_some_and(|v| v == "1");
            if !addr.ip().is_loopback() && !public {
                return Err(format!(
                    "demo mode hands session tokens to anyone who asks: it listens on loopback only, not {addr}. Set CLERK_JWT_KEY or CLERK_JWKS_URL, or ATLAS_DEMO_PUBLIC=1 to expose the demo anyway"
                )
                .into());
            }
            let (clerk, tokens) = demo_auth(&demo_users(&data), &base)?;
            (clerk.authorized_parties(origins.clone()), Some(tokens))
        }
    };
    let clerk = clerk.organizations(true).billing_roles(["org:admin"]);

    let seats = web::Data::new(Seats::open(env("QUICKSTART_DB").as_deref())?);
    for user in demo_users(&data) {
        seats.add(
            user.organization
                .as_ref()
                .map_or(&user.user_id, |(organization, _)| organization),
            &user.user_id,
        )?;
    }
    let counted = seats.clone();
    builder = limit!(builder, "seats", move |customer| {
        let seats = counted.clone();
        async move { seats.count(&customer) }
    });
    if let Some(seconds) = env("ATLAS_HOLD_TTL") {
        let seconds: u64 = seconds
            .parse()
            .map_err(|err| format!("ATLAS_HOLD_TTL: {err}"))?;
        builder = builder.hold_ttl(std::time::Duration::from_secs(seconds));
    }
    if let Some(spool) = env("ATLAS_EVENT_SPOOL") {
        builder = builder.event_spool(spool);
    }
    if let Some(path) = env("ATLAS_DECISION_LOG") {
        let sample: f64 = env("ATLAS_DECISION_LOG_SAMPLE")
            .map(|fraction| fraction.parse())
            .transpose()
            .map_err(|err| format!("ATLAS_DECISION_LOG_SAMPLE: {err}"))?
            .unwrap_or(0.01);
        let log = DecisionLog::builder()
            .sample(sample)
            .open(&path)
            .map_err(|err| format!("ATLAS_DECISION_LOG {path}: {err}"))?;
        builder = builder.hook(log);
    }
    if let Some(redis) = env("ATLAS_REDIS_URL") {
        builder = builder.redis_url(redis);
    }
    if let Some(policy) = env("ATLAS_OUTAGE_POLICY") {
        builder = builder.outage_policy(
            policy
                .parse::<OutagePolicy>()
                .map_err(|err| format!("ATLAS_OUTAGE_POLICY: {err}"))?,
        );
    }
    if let Some(choice) = env("ATLAS_UNRECORDABLE_USAGE") {
        builder = builder.unrecordable_usage(match choice.as_str() {
            "refuse" => UnrecordableUsage::Refuse,
            "serve" => UnrecordableUsage::Serve,
            other => {
                return Err(format!(
                    "ATLAS_UNRECORDABLE_USAGE: `{other}` is neither `refuse` nor `serve`"
                )
                .into())
            }
        });
    }
    let atlas = builder
        .app_variables(QUICKSTART_VARIABLES)
        .user_resolver(clerk)
        .allowed_origins(&origins)
        .build()?;

    let app_atlas = atlas.clone();
    // Beside loopback names, the hosts of the allowed origins when the demo is public.
    let demo_hosts: Vec<String> = if env("ATLAS_DEMO_PUBLIC").is_some_and(|v| v == "1") {
        origins
            .iter()
            .filter_map(|origin| origin.split_once("://").map(|(_, host)| host.to_owned()))
            .collect()
    } else {
        Vec::new()
    };
    let tokens = web::Data::new(demo_tokens.clone().unwrap_or_default());
    let demo = demo_tokens.is_some();
    let server = HttpServer::new(move || {
        let mut cors = Cors::default()
            .allowed_methods(["GET", "POST"])
            .allowed_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
            .allowed_header("x-customer-email")
            .allowed_header("x-customer-name")
            .allowed_header("idempotency-key")
            .expose_headers(["idempotent-replayed"])
            .supports_credentials()
            .max_age(3600);
        for origin in &origins {
            cors = cors.allowed_origin(origin);
        }
        let mut app = App::new()
            .configure(app_atlas.configure())
            .app_data(seats.clone())
            .app_data(tokens.clone())
            .route("/healthz", web::get().to(atlas_actix::health::liveness))
            .route("/readyz", web::get().to(atlas_actix::health::readiness))
            .service(data_explorer)
            .service(public_data_explorer)
            .service(limited_data_explorer)
            .service(add_seat)
            .service(add_seats)
            .service(ai_complete)
            .service(ai_summarise)
            .service(create_image);
        if demo {
            // Only for the app's own host names: a page of another site whose name resolves to
            // this machine (DNS rebinding) must not read the tokens.
            let hosts = demo_hosts.clone();
            let own_host = move |ctx: &actix_web::guard::GuardContext<'_>| {
                ctx.head()
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|host| host.to_str().ok())
                    .is_some_and(|host| demo_host_allowed(host, &hosts))
            };
            app = app.service(
                web::scope("")
                    .guard(actix_web::guard::fn_guard(own_host))
                    .route("/demo/tokens", web::get().to(demo_tokens_route))
                    .route("/", web::get().to(demo_page))
                    .route("/demo/{asset}", web::get().to(demo_asset)),
            );
        }
        // Actix runs the last `wrap` first: CORS must be last, so it answers preflights and
        // decorates every answer, the Atlas scope's and the guards' refusals included.
        app.wrap(cors)
    })
    .listen(listener)?;

    // The figures (metrics, the full health report) on their own address, loopback unless
    // METRICS_BIND says otherwise: the app's port shows nothing an operator alone should see.
    let metrics_listener = std::net::TcpListener::bind(
        env("METRICS_BIND").unwrap_or_else(|| "127.0.0.1:9464".to_owned()),
    )?;
    println!("metrics http://{}", metrics_listener.local_addr()?);
    let metrics_atlas = atlas.clone();
    let metrics_server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(metrics_atlas.clone()))
            .app_data(web::Data::new(metrics.clone()))
            .route("/metrics", web::get().to(metrics_route))
            .route("/health", web::get().to(atlas_actix::health::report))
    })
    .workers(1)
    .listen(metrics_listener)?
    .run();
    let metrics_handle = metrics_server.handle();
    actix_web::rt::spawn(metrics_server);
    println!("listening {base}");
    if let Some(tokens) = &demo_tokens {
        print_demo(&base, tokens);
    }
    server.run().await?;
    metrics_handle.stop(true).await;

    // Stopped (Ctrl-C, SIGTERM): send the usage events still queued.
    atlas.shutdown().await?;
    Ok(())
}

/// The metrics, in the Prometheus text format, with the counts up to this request.
async fn metrics_route(
    handle: web::Data<metrics_exporter_prometheus::PrometheusHandle>,
    atlas: web::Data<Atlas>,
) -> impl Responder {
    atlas.publish_metrics();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
