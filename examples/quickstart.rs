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
//! billed route does when its usage cannot be recorded. `/healthz` and `/readyz` (no figures) are on the app's port; `/metrics`
//! and `/health` (the full report) on `METRICS_BIND` (default 127.0.0.1:9464) alone.
//!
//! Every defence is on: state changes refuse cross-site requests (allowed origins), tokens
//! must name this app (`azp`) and, with `CLERK_ISSUER`, the Clerk instance (`iss`); only an
//! organisation's `org:admin` members change its billing; adding seats is `exclusive`, so the
//! plan's seat limit holds under concurrent requests. Demo mode hands out tokens to anyone who
//! asks, so it refuses to listen beyond loopback unless `ATLAS_DEMO_PUBLIC=1`, and answers only
//! requests whose `Host` names this machine (DNS rebinding).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use actix_cors::Cors;
use actix_web::{get, http, post, web, App, HttpResponse, HttpServer, Responder};
use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use atlas_actix::{limit, requires_feature, Atlas, ClerkAuth, OutagePolicy, UnrecordableUsage};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::Generate;
use serde::Deserialize;
use serde_json::json;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The app's own data: who holds a seat in each customer's account.
#[derive(Default)]
struct Seats(Mutex<HashMap<String, Vec<String>>>);

impl Seats {
    fn count(&self, customer: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(customer)
            .map_or(0, Vec::len)
    }

    fn add(&self, customer: &str, member: String) -> usize {
        let mut seats = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = seats.entry(customer.to_owned()).or_default();
        taken.push(member);
        taken.len()
    }
}

/// A demo user: a customer of the data file, or a member of an organisation customer.
struct DemoUser {
    name: String,
    user_id: String,
    /// The organisation, and the member's role in it.
    organization: Option<(String, String)>,
}

/// Demo users from the data file: each customer, and the `demoMembers` of organisations.
fn demo_users(data: &AtlasData) -> Vec<DemoUser> {
    let mut users = Vec::new();
    for customer in &data.customers {
        let members = customer.extra.get("demoMembers");
        match members.as_ref().and_then(|m| m.as_array()) {
            Some(members) => users.extend(members.iter().filter_map(|member| {
                let role = member.get("role").and_then(|r| r.as_str());
                Some(DemoUser {
                    name: member.get("name")?.as_str()?.to_owned(),
                    user_id: member.get("id")?.as_str()?.to_owned(),
                    organization: Some((
                        customer.external_id.clone(),
                        role.unwrap_or("org:member").to_owned(),
                    )),
                })
            })),
            None => users.push(DemoUser {
                name: customer
                    .name
                    .clone()
                    .unwrap_or_else(|| customer.external_id.clone()),
                user_id: customer.external_id.clone(),
                organization: None,
            }),
        }
    }
    users
}

/// Each demo user's name and session token.
type DemoTokens = Vec<(String, String)>;

/// The issuer of the demo's tokens.
const DEMO_ISSUER: &str = "https://demo.clerk.invalid";

/// Demo mode: an RSA key pair made now, Clerk-shaped tokens signed with it for the app at
/// `origin`, verified by the very `ClerkAuth` code path a real Clerk setup uses.
fn demo_auth(
    users: &[DemoUser],
    origin: &str,
) -> Result<(ClerkAuth, DemoTokens), Box<dyn std::error::Error>> {
    let private_key = rsa::PrivateKey::generate();
    let public_pem = private_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)?;
    let private_pem = private_key.to_pkcs8_pem(LineEnding::LF)?;
    let signing = EncodingKey::from_rsa_pem(private_pem.as_bytes())?;
    let now = jsonwebtoken::get_current_timestamp();
    let mut tokens = Vec::new();
    for user in users {
        let mut claims = json!({
            "sub": user.user_id,
            "sid": format!("sess_demo_{}", user.user_id),
            "iss": DEMO_ISSUER,
            "azp": origin,
            "iat": now,
            "nbf": now,
            "exp": now + 24 * 3600,
            "v": 2,
        });
        if let Some((organization, role)) = &user.organization {
            // v2 tokens carry the role without its `org:` prefix.
            let role = role.strip_prefix("org:").unwrap_or(role);
            claims["o"] = json!({"id": organization, "rol": role, "slg": organization});
        }
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &signing)?;
        tokens.push((user.name.clone(), token));
    }
    Ok((
        ClerkAuth::from_pem(&public_pem)?.issuer(DEMO_ISSUER),
        tokens,
    ))
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
    let taken = seats.add(&entitlements.customer_id, body.into_inner().email);
    HttpResponse::Created().json(json!({ "seats": taken }))
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
    for email in body.into_inner().emails {
        taken = seats.add(&entitlements.customer_id, email);
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

    let seats = web::Data::new(Seats::default());
    for user in demo_users(&data) {
        seats.add(
            user.organization
                .as_ref()
                .map_or(&user.user_id, |(organization, _)| organization),
            user.user_id.clone(),
        );
    }
    let counted = seats.clone();
    builder = limit!(builder, "seats", move |customer| {
        let seats = counted.clone();
        async move { seats.count(&customer) }
    });
    if let Some(spool) = env("ATLAS_EVENT_SPOOL") {
        builder = builder.event_spool(spool);
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
            .service(ai_complete);
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

/// The demo page's files, in the binary: no build step, nothing fetched from elsewhere.
const DEMO_PAGE: &str = include_str!("demo/index.html");
const DEMO_SCRIPT: &str = include_str!("demo/app.js");
const DEMO_STYLE: &str = include_str!("demo/style.css");

/// Whether a `Host` header names this machine (`localhost`, `127.x.y.z`, `[::1]`, with any
/// port) or one of the public demo's hosts.
fn demo_host_allowed(host: &str, public: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(address, _)| address),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback
        || public
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
}

/// The page may run its own script and style only: a value an answer carries can never run,
/// nor can a `<base>`, a form or a plug-in send it elsewhere.
fn demo_answer(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        ))
        .insert_header((http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// `GET /`: the demo page (demo mode only).
async fn demo_page() -> HttpResponse {
    demo_answer("text/html; charset=utf-8", DEMO_PAGE)
}

async fn demo_asset(asset: web::Path<String>) -> HttpResponse {
    match asset.as_str() {
        "app.js" => demo_answer("text/javascript; charset=utf-8", DEMO_SCRIPT),
        "style.css" => demo_answer("text/css; charset=utf-8", DEMO_STYLE),
        _ => HttpResponse::NotFound().json(json!({ "error": "no such file" })),
    }
}

async fn demo_tokens_route(tokens: web::Data<DemoTokens>) -> impl Responder {
    let tokens: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .map(|(name, token)| (name.clone(), json!(token)))
        .collect();
    HttpResponse::Ok().json(tokens)
}

fn print_demo(base: &str, tokens: &DemoTokens) {
    println!("\nDemo mode (no CLERK_JWT_KEY or CLERK_JWKS_URL): tokens for the data file's users, valid 24 hours.");
    println!("The demo page: open {base}/ in a browser.");
    println!("All of them: curl {base}/demo/tokens\n");
    for (name, token) in tokens {
        println!("{name}:\n  TOKEN={token}");
    }
    if let Some((name, _)) = tokens.first() {
        println!("\nTry, with TOKEN set to {name}'s:");
    }
    for line in [
        "curl -H \"Authorization: Bearer $TOKEN\" BASE/atlas-api/features",
        "curl -H \"Authorization: Bearer $TOKEN\" BASE/api/data-explorer",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"email\":\"new@example.com\"}' BASE/api/seats",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -d '{\"prompt\":\"hello there\"}' BASE/api/ai/complete",
        "curl BASE/atlas-api/pricing-model",
    ] {
        println!("  {}", line.replace("BASE", base));
    }
    println!();
}
