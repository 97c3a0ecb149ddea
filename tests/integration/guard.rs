//! Guarding the app's handlers: `#[requires_feature]`, `RequireFeatures`, `Entitlements`,
//! custom answers, and CORS in front of it all.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::test::{self, TestRequest};
use actix_web::{
    get, http::header, post, web, App, FromRequest, HttpRequest, HttpResponse, Responder,
};
use atlas_actix::{requires_feature, Atlas, Denial, Entitlements, RequireFeatures};
use awc::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::common::{builder, eventually};
use crate::common::{captured_logs, header_user, json_body, start_emulator, Platform};

/// Counts how often it is extracted: a costly extractor that must not run when denied.
static COSTLY_CALLS: AtomicUsize = AtomicUsize::new(0);

struct Costly;

impl FromRequest for Costly {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        COSTLY_CALLS.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Costly))
    }
}

#[derive(Deserialize)]
struct Report {
    name: String,
}

#[post("/reports")]
#[requires_feature("data-explorer")]
async fn create_report(_costly: Costly, body: web::Json<Report>) -> impl Responder {
    HttpResponse::Created().json(json!({ "name": body.name }))
}

#[requires_feature("data-explorer", "sso")]
#[get("/admin")]
async fn admin_page(entitlements: Entitlements) -> Result<HttpResponse, actix_web::Error> {
    Ok(HttpResponse::Ok()
        .json(json!({ "customer": entitlements.customer_id, "sso": entitlements.allows("sso") })))
}

#[requires_feature("ai-tokens", usage = 2)]
async fn complete(path: web::Path<u32>) -> HttpResponse {
    match path.into_inner() {
        0 => HttpResponse::BadRequest().finish(),
        _ => HttpResponse::Ok().finish(),
    }
}

#[requires_feature("sso", shadow)]
async fn rollout() -> &'static str {
    "through"
}

async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("plain")
}

async fn profile(entitlements: Entitlements) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "customer": entitlements.customer_id,
        "explorer": entitlements.allows("data-explorer"),
        "seats": entitlements.feature("seats").and_then(|f| f.limit).map(|limit| limit as u64),
    }))
}

fn atlas_for(emulator: &atlas_actix::emulator::EmulatorHandle) -> Atlas {
    builder(emulator)
        .user_resolver(header_user)
        .events_flush_interval(Duration::from_secs(60))
        .build()
        .unwrap()
}

macro_rules! app {
    ($atlas:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($atlas.clone()))
                .service(create_report)
                .service(admin_page)
                .service(web::resource("/complete/{n}").to(complete))
                .route("/rollout", web::get().to(rollout))
                .route("/profile", web::get().to(profile))
                .service(
                    web::scope("/reports-area")
                        .wrap(RequireFeatures::new(["data-explorer"]))
                        .route("", web::get().to(plain)),
                )
                .service(
                    web::scope("/metered")
                        .wrap(RequireFeatures::new(["ai-tokens"]).report_usage(3.0))
                        .route("", web::get().to(plain)),
                )
                .service(
                    web::scope("/shadowed")
                        .wrap(RequireFeatures::new(["sso"]).shadow(true))
                        .route("", web::get().to(plain)),
                ),
        )
        .await
    };
}

fn request(method: &str, path: &str, user: Option<&str>) -> TestRequest {
    let request = match method {
        "POST" => TestRequest::post(),
        _ => TestRequest::get(),
    }
    .uri(path);
    match user {
        Some(user) => request.insert_header(("x-test-user", user)),
        None => request,
    }
}

#[actix_rt::test]
async fn the_macro_checks_before_any_extractor_runs() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let bad_body = |user: Option<&'static str>| {
        request("POST", "/reports", user)
            .insert_header(("content-type", "application/json"))
            .set_payload("{ this is not json")
            .to_request()
    };
    let (status, body) = json_body(test::call_service(&app, bad_body(None)).await).await;
    assert_eq!((status, body), (401, json!({"error": "Unauthorized"})));
    let (status, body) =
        json_body(test::call_service(&app, bad_body(Some("user_dave"))).await).await;
    assert_eq!(status, 403);
    assert_eq!(body["features"], json!({"data-explorer": false}));
    assert!(body["error"].as_str().unwrap().contains("data-explorer"));
    assert_eq!(
        COSTLY_CALLS.load(Ordering::SeqCst),
        0,
        "denied: no extractor ran, the body was not read"
    );

    let (status, _) = json_body(test::call_service(&app, bad_body(Some("user_erin"))).await).await;
    assert_eq!(
        status, 400,
        "allowed: the Json extractor ran and refused the body"
    );
    assert_eq!(COSTLY_CALLS.load(Ordering::SeqCst), 1);
    let good = request("POST", "/reports", Some("user_erin"))
        .set_json(json!({"name": "q3"}))
        .to_request();
    assert_eq!(
        json_body(test::call_service(&app, good).await).await,
        (201, json!({"name": "q3"}))
    );
}

#[actix_rt::test]
async fn the_macro_works_below_a_route_attribute_with_several_features() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let (status, body) = json_body(
        test::call_service(
            &app,
            request("GET", "/admin", Some("user_erin")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["features"],
        json!({"data-explorer": true, "sso": false})
    );
    let (status, body) = json_body(
        test::call_service(
            &app,
            request("GET", "/admin", Some("org_standard_corp")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"customer": "org_standard_corp", "sso": true}))
    );
}

#[actix_rt::test]
async fn usage_is_reported_only_when_the_handler_succeeds() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let call = |path: &str| request("GET", path, Some("user_erin")).to_request();
    assert_eq!(
        test::call_service(&app, call("/complete/1")).await.status(),
        200
    );
    assert_eq!(
        test::call_service(&app, call("/complete/0")).await.status(),
        400
    );
    assert_eq!(
        test::call_service(&app, call("/metered")).await.status(),
        200
    );
    eventually("2 queued events", Duration::from_secs(5), || async {
        (atlas.queued_events() == 2).then_some(())
    })
    .await;
    atlas.flush().await.unwrap();
    let events = Platform {
        emulator: &emulator,
    }
    .admin(Method::GET, "/__admin/events", None)
    .await
    .body;
    let quantities: Vec<f64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["quantity"].as_f64().unwrap())
        .collect();
    let mut quantities = quantities;
    quantities.sort_by(f64::total_cmp);
    assert_eq!(
        quantities,
        [2.0, 3.0],
        "the macro's usage = 2, the middleware's 3, none for the 400"
    );
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["customerId"] == "cus_erin" && e["eventName"] == "ent_ai_tokens"));
}

#[actix_rt::test]
async fn shadow_mode_lets_denied_requests_through() {
    captured_logs();
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let response = test::call_service(
        &app,
        request("GET", "/rollout", Some("user_dave")).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(test::read_body(response).await, "through");
    let response = test::call_service(
        &app,
        request("GET", "/shadowed", Some("user_dave")).to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let anonymous = test::call_service(&app, request("GET", "/rollout", None).to_request()).await;
    assert_eq!(anonymous.status(), 401, "shadow mode still needs a user");
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    for route in ["/rollout", "/shadowed"] {
        assert!(
            logs.lines().any(
                |line| line.contains("shadow mode: this request would be denied")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains("customer=\"user_dave\"")
                    && line.contains("\"sso\"")
            ),
            "no shadow-mode log line for {route}: {logs}"
        );
    }
}

#[actix_rt::test]
async fn the_middleware_guards_whole_scopes() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let anonymous =
        test::call_service(&app, request("GET", "/reports-area", None).to_request()).await;
    assert_eq!(
        json_body(anonymous).await,
        (401, json!({"error": "Unauthorized"}))
    );
    let dave = test::call_service(
        &app,
        request("GET", "/reports-area", Some("user_dave")).to_request(),
    )
    .await;
    assert_eq!(dave.status(), 403);
    let response = test::call_service(
        &app,
        request("GET", "/reports-area", Some("user_erin")).to_request(),
    )
    .await;
    assert_eq!(test::read_body(response).await, "plain");
}

#[actix_rt::test]
async fn entitlements_hand_the_handler_its_customer() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = app!(atlas);
    let (status, body) = json_body(
        test::call_service(
            &app,
            request("GET", "/profile", Some("user_erin")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"customer": "user_erin", "explorer": true, "seats": 3})
        )
    );
    let (status, _) =
        json_body(test::call_service(&app, request("GET", "/profile", None).to_request()).await)
            .await;
    assert_eq!(status, 401);
}

#[actix_rt::test]
async fn denials_can_be_answered_by_the_app() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .deny_with(|_, denial| match denial {
            Denial::NotEntitled { .. } => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/pricing"))
                .finish(),
            other => other.default_response(),
        })
        .build()
        .unwrap();
    let app = app!(atlas);
    let response = test::call_service(
        &app,
        request("GET", "/reports-area", Some("user_dave")).to_request(),
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers().get(header::LOCATION).unwrap(),
        "/pricing"
    );
    let response =
        test::call_service(&app, request("GET", "/reports-area", None).to_request()).await;
    assert_eq!(response.status(), 401);
}

#[actix_rt::test]
async fn a_missing_client_is_an_opaque_500() {
    captured_logs();
    let app = test::init_service(
        App::new()
            .service(create_report)
            .service(
                web::scope("/area")
                    .wrap(RequireFeatures::new(["sso"]))
                    .route("", web::get().to(plain)),
            )
            .route("/profile", web::get().to(profile)),
    )
    .await;
    for path in ["/area", "/profile"] {
        let (status, body) = json_body(
            test::call_service(&app, request("GET", path, Some("user_erin")).to_request()).await,
        )
        .await;
        assert_eq!(
            (status, body),
            (500, json!({"error": "Internal server error"})),
            "{path}"
        );
    }
    let (status, _) = json_body(
        test::call_service(
            &app,
            request("POST", "/reports", Some("user_erin")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 500);
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    for route in ["/area", "/profile", "/reports"] {
        assert!(
            logs.lines().any(|line| line.contains("ERROR")
                && line.contains("no Atlas client in the app data: add `.configure(atlas.configure())` to the App")
                && line.contains(&format!("route=\"{route}\""))),
            "no log line naming the fix for {route}: {logs}"
        );
    }
}

#[actix_rt::test]
async fn a_preflight_reaching_a_guard_is_logged_with_the_fix() {
    captured_logs();
    let emulator = start_emulator();
    let cors = || {
        actix_cors::Cors::default()
            .allowed_origin("https://app.example.com")
            .allowed_methods(["GET"])
    };
    let atlas = atlas_for(&emulator);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(
                // The wrong order: the last wrap runs first, so the guard sees the preflight.
                web::scope("/wrong-order")
                    .wrap(cors())
                    .wrap(RequireFeatures::new(["data-explorer"]))
                    .route("", web::get().to(plain)),
            )
            .service(
                web::scope("/right-order")
                    .wrap(RequireFeatures::new(["data-explorer"]))
                    .wrap(cors())
                    .route("", web::get().to(plain)),
            ),
    )
    .await;
    let preflight = |path: &str| {
        TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri(path)
            .insert_header((header::ORIGIN, "https://app.example.com"))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
            .to_request()
    };
    let right = test::call_service(&app, preflight("/right-order")).await;
    assert_eq!(right.status(), 200, "CORS answers the preflight itself");
    for _ in 0..3 {
        let wrong = test::call_service(&app, preflight("/wrong-order")).await;
        assert_eq!(wrong.status(), 401);
        assert!(wrong
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
    }
    let logs = String::from_utf8_lossy(&captured_logs().lock().unwrap()).into_owned();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("a CORS preflight reached an Atlas guard"))
        .collect();
    assert!(
        warnings.iter().any(|line| line.contains("WARN")
            && line.contains("route=\"/wrong-order\"")
            && line.contains("`.wrap(RequireFeatures::new(..)).wrap(cors)`")),
        "{logs}"
    );
    assert!(
        !warnings.iter().any(|line| line.contains("/right-order")),
        "{logs}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|line| line.contains("/wrong-order"))
            .count(),
        1,
        "once per client: {logs}"
    );
}

#[actix_rt::test]
async fn cors_answers_preflights_and_decorates_refusals() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let origin = "https://app.example.com";
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(atlas.scope())
            .service(
                web::scope("/reports-area")
                    .wrap(RequireFeatures::new(["data-explorer"]))
                    .route("", web::get().to(plain)),
            )
            .wrap(
                actix_cors::Cors::default()
                    .allowed_origin(origin)
                    .allowed_methods(["GET", "POST"])
                    .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                    .supports_credentials(),
            ),
    )
    .await;
    let preflight = TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/atlas-api/features")
        .insert_header((header::ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
        .insert_header((
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        ))
        .to_request();
    let response = test::call_service(&app, preflight).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(
        headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        origin
    );
    assert_eq!(
        headers
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .unwrap(),
        "true"
    );
    let allowed = headers
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");

    for (path, user, status) in [
        ("/atlas-api/features", None, 401),
        ("/reports-area", Some("user_dave"), 403),
        ("/atlas-api/pricing-model", None, 200),
    ] {
        let response = test::call_service(
            &app,
            request("GET", path, user)
                .insert_header((header::ORIGIN, origin))
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .unwrap(),
            origin,
            "{path}"
        );
    }
    let foreign = test::call_service(
        &app,
        request("GET", "/atlas-api/pricing-model", None)
            .insert_header((header::ORIGIN, "https://evil.example"))
            .to_request(),
    )
    .await;
    assert!(foreign
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

#[actix_rt::test]
async fn a_real_server_serves_the_scope_and_the_guards_over_http() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let server_atlas = atlas.clone();
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(server_atlas.clone()))
            .service(server_atlas.scope())
            .service(admin_page)
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let client = awc::Client::default();
    let mut answer = client
        .get(format!("{base}/admin"))
        .insert_header(("x-test-user", "org_standard_corp"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["sso"], true);
    let mut features = client
        .get(format!("{base}/atlas-api/features"))
        .insert_header(("x-test-user", "user_dave"))
        .send()
        .await
        .unwrap();
    let body: Value = features.json().await.unwrap();
    assert!(body["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == "seats"));
    handle.stop(false).await;
}

#[post("/notes")]
#[requires_feature("data-explorer")]
async fn create_note(body: web::Json<Report>) -> HttpResponse {
    HttpResponse::Created().json(json!({ "name": body.name }))
}

#[actix_rt::test]
async fn a_guarded_route_answers_a_malformed_body_in_json() {
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(create_note),
    )
    .await;
    let (status, body) = json_body(
        test::call_service(
            &app,
            request("POST", "/notes", Some("user_erin"))
                .insert_header(("content-type", "application/json"))
                .set_payload("{\"name\": ")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("Json")),
        "{body}"
    );
}

#[post("/plain-notes")]
async fn plain_note(body: web::Json<Report>) -> HttpResponse {
    HttpResponse::Created().json(json!({ "name": body.name }))
}

#[actix_rt::test]
async fn one_call_wires_the_app_and_a_bare_client_is_named_in_the_log() {
    let logs = captured_logs();
    let emulator = start_emulator();
    let atlas = atlas_for(&emulator);
    let app = test::init_service(
        App::new()
            .configure(atlas.configure())
            .service(create_note)
            .service(plain_note),
    )
    .await;
    let (status, _) = json_body(
        test::call_service(
            &app,
            request("GET", "/atlas-api/features", Some("user_erin")).to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "the scope is mounted");
    let note = |path: &str, body: &'static str| {
        request("POST", path, Some("user_erin"))
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
            .to_request()
    };
    let (status, body) =
        json_body(test::call_service(&app, note("/notes", r#"{"name": "q3"}"#)).await).await;
    assert_eq!(
        (status, body),
        (201, json!({"name": "q3"})),
        "the guard finds the client"
    );
    let (status, body) =
        json_body(test::call_service(&app, note("/plain-notes", "{ nope")).await).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].is_string(),
        "the app's own Json answers JSON: {body}"
    );

    // The client registered by hand, without web::Data.
    let bare = test::init_service(App::new().app_data(atlas.clone()).service(create_note)).await;
    let response = test::call_service(&bare, note("/notes", r#"{"name": "q3"}"#)).await;
    assert_eq!(response.status(), 500);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("the Atlas client is in the app data without web::Data: write `App::new().configure(atlas.configure())` instead"),
        "{text}"
    );
}
