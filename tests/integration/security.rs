//! Hostile and broken input: bodies, ids, other customers' data, and the API key, which must
//! appear nowhere.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{self, TestRequest};
use actix_web::{App, Error};
use atlas_actix::emulator::{Emulator, EmulatorHandle};
use atlas_actix::{Atlas, AtlasError};
use awc::http::Method;
use proptest::prelude::*;
use serde_json::Value;

use crate::common::builder;
use crate::common::{
    captured_logs, example_data, header_user, json_body, start_emulator, Platform,
};

/// The route templates the scope may reach on the platform; anything else reaching it would
/// be an id escaping its path segment.
const PLATFORM_ROUTES: [&str; 14] = [
    "GET /socket.io/",
    "GET /external/merchants/me",
    "GET /external/pricingModel",
    "GET /external/customers/external-id/:id/with-active-and-upcoming-subscriptions",
    "POST /external/customers",
    "GET /external/customers/:id/customPricingUnits/:unitId/credit-usage",
    "GET /external/invoices/amounts",
    "GET /external/invoiceLineItems/expanded",
    "GET /external/subscriptions/:id/expanded",
    "POST /external/plans/:id/subscribe/standard",
    "POST /external/subscriptions/:id/renew",
    "POST /external/subscriptions/:id/cancel",
    "PUT /external/billables/register",
    "POST /external/sdk/version",
];

async fn customers(emulator: &EmulatorHandle) -> Value {
    Platform { emulator }
        .admin(Method::GET, "/__admin/customers", None)
        .await
        .body
}

async fn routes_reached(emulator: &EmulatorHandle) -> BTreeSet<String> {
    let counts = Platform { emulator }
        .admin(Method::GET, "/__admin/requests", None)
        .await
        .body;
    counts.as_object().unwrap().keys().cloned().collect()
}

async fn send(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = Error>,
    method: &str,
    path: &str,
    user: &str,
    body: &str,
) -> (u16, Value) {
    let request = match method {
        "POST" => TestRequest::post().set_payload(body.to_owned()),
        _ => TestRequest::get(),
    }
    .uri(path)
    .insert_header(("content-type", "application/json"))
    .insert_header(("x-test-user", user))
    .to_request();
    json_body(test::call_service(app, request).await).await
}

#[actix_rt::test]
async fn broken_bodies_are_refused_and_change_nothing() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .body_limit(4096)
        .build()
        .unwrap();
    let app = test::init_service(App::new().service(atlas.scope())).await;
    let before = customers(&emulator).await;
    let routes = [
        "/atlas-api/user/payment-method",
        "/atlas-api/plans/plan_pro/subscribe",
        "/atlas-api/subscriptions/sub_erin_pro/cancel",
        "/atlas-api/subscriptions/sub_erin_pro/renew",
        "/atlas-api/features/register",
        "/atlas-api/sdk-version",
    ];
    let oversized = format!("{{\"successUrl\": \"{}\"}}", "x".repeat(8192));
    let bodies = ["{", "[]", "\"text\"", "42", "null", "{\"successUrl\": 5, \"billingCadence\": [], \"type\": {}, \"features\": [1], \"library\": null}", "\u{0}\u{1}", &oversized];
    for route in routes {
        for body in bodies {
            if route.ends_with("/renew") && body.starts_with("{\"") {
                continue; // renew takes no fields: any JSON object is accepted, and ignored
            }
            let (status, answer) = send(&app, "POST", route, "user_erin", body).await;
            assert!(
                (400..500).contains(&status),
                "{route} with {body:.40}: {status}"
            );
            assert!(answer["error"].is_string(), "{route}: {answer}");
        }
    }
    assert_eq!(
        customers(&emulator).await,
        before,
        "nothing changed upstream"
    );
    let reached = routes_reached(&emulator).await;
    for route in [
        "POST /external/plans/:id/subscribe/standard",
        "POST /external/subscriptions/:id/cancel",
        "POST /external/subscriptions/:id/renew",
    ] {
        assert!(!reached.contains(route), "{route} was called");
    }
}

#[actix_rt::test]
async fn hostile_ids_stay_inside_their_path_segment() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .build()
        .unwrap();
    let app = test::init_service(App::new().service(atlas.scope())).await;
    let before = customers(&emulator).await;
    let long_unicode = "%C3%A9".repeat(3000);
    let ids = [
        "..",
        "%2E%2E",
        "..%2F..%2F..%2Fmerchants%2Fme",
        "sub%2F..%2Fsub_standard_team",
        "x%3Fcustomer.externalId%3Dorg_standard_corp",
        "x%26customer.externalId%3Dorg_standard_corp",
        "x%23fragment",
        "x%00y",
        "x%0D%0Ay",
        "%E2%80%AE%F0%9F%92%A5",
        long_unicode.as_str(),
    ];
    for id in ids {
        for (method, path) in [
            ("GET", format!("/atlas-api/subscriptions/{id}")),
            (
                "GET",
                format!("/atlas-api/invoices/{id}/invoice-line-items"),
            ),
            ("GET", format!("/atlas-api/credit-usage/{id}")),
            ("POST", format!("/atlas-api/plans/{id}/subscribe")),
            ("POST", format!("/atlas-api/subscriptions/{id}/cancel")),
        ] {
            let body = r#"{"billingCadence": "monthly", "successUrl": "https://app.example", "type": "active"}"#;
            let (status, answer) = send(&app, method, &path, "user_erin", body).await;
            let ok_empty = status == 200 && answer == Value::Array(Vec::new());
            assert!(
                ok_empty || (400..500).contains(&status),
                "{method} {path:.80}: {status} {answer}"
            );
        }
    }
    assert_eq!(
        customers(&emulator).await,
        before,
        "nothing changed upstream"
    );
    let reached = routes_reached(&emulator).await;
    for route in &reached {
        assert!(
            PLATFORM_ROUTES.contains(&route.as_str()),
            "an id escaped its segment: {route}"
        );
    }
}

#[actix_rt::test]
async fn a_user_cannot_reach_another_customers_data() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .build()
        .unwrap();
    let app = test::init_service(App::new().service(atlas.scope())).await;
    let before = customers(&emulator).await;
    let cases = [
        ("GET", "/atlas-api/subscriptions/sub_dave_free", ""),
        (
            "POST",
            "/atlas-api/subscriptions/sub_dave_free/cancel",
            r#"{"type": "active"}"#,
        ),
        ("POST", "/atlas-api/subscriptions/sub_dave_free/renew", ""),
        (
            "POST",
            "/atlas-api/subscriptions/sub_standard_team/cancel",
            r#"{"type": "active"}"#,
        ),
    ];
    for (method, path, body) in cases {
        let (status, _) = send(&app, method, path, "user_erin", body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, items) = send(
        &app,
        "GET",
        "/atlas-api/invoices/inv_standard_1/invoice-line-items",
        "user_erin",
        "",
    )
    .await;
    assert_eq!(items, Value::Array(Vec::new()));
    let (_, invoices) = send(
        &app,
        "GET",
        "/atlas-api/invoices?customer.externalId=org_standard_corp",
        "user_erin",
        "",
    )
    .await;
    assert!(invoices["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["customerId"] == "cus_erin"));
    let (_, credits) = send(
        &app,
        "GET",
        "/atlas-api/credit-usage/cpu_image_credits",
        "user_erin",
        "",
    )
    .await;
    assert_eq!(
        credits["remaining"], 0,
        "Erin's own balance, not Standard Corp's 420"
    );
    let (status, session) = send(
        &app,
        "POST",
        "/atlas-api/user/payment-method",
        "user_erin",
        r#"{"successUrl": "https://x", "customerId": "user_dave", "id": "user_dave"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(session["client_reference_id"], "user_erin");
    assert_eq!(
        customers(&emulator).await,
        before,
        "nobody else was changed"
    );
}

#[actix_rt::test]
async fn the_api_key_appears_in_no_log_error_debug_output_or_answer() {
    const KEY: &str = "sk_live_CANARY_7f3a9e_never_print_me";
    let logs = captured_logs();
    let emulator = Emulator::builder(example_data())
        .api_key(KEY)
        .start()
        .unwrap();
    let mut seen = String::new();

    let builder = builder(&emulator)
        .user_resolver(header_user)
        .timeout(Duration::from_millis(300));
    seen += &format!("{builder:?}");
    let atlas = builder.build().unwrap();
    seen += &format!("{atlas:?}");
    let app = test::init_service(App::new().service(atlas.scope())).await;
    for path in [
        "/atlas-api/status",
        "/atlas-api/features",
        "/atlas-api/user",
        "/atlas-api/pricing-model",
        "/atlas-api/invoices",
    ] {
        let (_, body) = send(&app, "GET", path, "user_erin", "").await;
        seen += &body.to_string();
    }
    atlas
        .enqueue("user_erin", ["ai-tokens"], 1.0)
        .await
        .unwrap();
    atlas.flush().await.unwrap();
    // Failures are logged and returned: they must not carry the key either.
    let platform = Platform {
        emulator: &emulator,
    };
    platform
        .inject_fault(serde_json::json!({"status": 500}))
        .await;
    atlas.invalidate_customer("user_erin");
    let (_, body) = send(&app, "GET", "/atlas-api/features", "user_erin", "").await;
    seen += &body.to_string();
    if let Err(err) = atlas.customer("user_erin", None).await {
        seen += &format!("{err} {err:?}");
    }
    platform
        .inject_fault(serde_json::json!({"delayMs": 2000, "times": 3}))
        .await;
    if let Err(err) = atlas.pricing_model().await {
        seen += &format!("{err} {err:?}");
    }
    platform.clear_faults().await;
    let wrong = crate::common::builder(&emulator)
        .api_key(format!("{KEY}_wrong"))
        .build()
        .unwrap();
    let refused = wrong.status().await.unwrap_err();
    assert_eq!(refused, AtlasError::InvalidApiKey);
    seen += &format!("{refused} {refused:?} {wrong:?}");
    atlas.shutdown().await.unwrap();

    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains("Atlas client initialised"),
        "the logs were captured"
    );
    assert!(!logs.contains("CANARY"), "the key is in the logs");
    assert!(
        !seen.contains("CANARY"),
        "the key is in an error, a Debug output or an answer: {seen}"
    );
}

#[actix_rt::test]
async fn request_data_is_logged_escaped_never_raw() {
    let logs = captured_logs();
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .build()
        .unwrap();
    atlas.status().await.unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(serde_json::json!({"path": "/external/sdk/version", "status": 500}))
    .await;
    // What a caller controls, with a line break and a terminal escape in it.
    let forged = "react\nFORGED-SDK the platform is down\u{1b}[31m";
    atlas.report_sdk_version(forged, "2.8.0\nFORGED-VERSION");
    let app = test::init_service(App::new().service(atlas.scope())).await;
    for (path, body) in [
        (
            "/atlas-api/sdk-version",
            r#"{"library":"x\nFORGED-SCOPE","version":"1"}"#,
        ),
        (
            "/atlas-api/features/register",
            r#"{"features":["a\nFORGED-SLUG"]}"#,
        ),
        (
            "/atlas-api/plans/p%0AFORGED-PATH%1B%5B31m/subscribe",
            r#"{"billingCadence":"monthly","successUrl":"https://x"}"#,
        ),
    ] {
        let (status, _) = send(&app, "POST", path, "user_dave", body).await;
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let mut text = String::new();
    for _ in 0..200 {
        text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        if text.contains(r#"react\nFORGED-SDK"#) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(r#"react\nFORGED-SDK"#),
        "the name is logged, escaped: {text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with("FORGED"), "a forged log line: {line:?}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "a terminal escape reached the log"
    );
}

#[actix_rt::test]
async fn a_registration_the_platform_refuses_is_not_retried_forever() {
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    platform
        .inject_fault(serde_json::json!({"path": "/external/billables/register", "status": 413}))
        .await;
    atlas.register_features(["refused-once"]);
    let register = "PUT /external/billables/register";
    let attempts = || async {
        platform
            .admin(Method::GET, "/__admin/requests", None)
            .await
            .body[register]
            .as_u64()
            .unwrap_or(0)
    };
    for _ in 0..100 {
        if attempts().await >= 1 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for several retries, were the refused chunk put back.
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(attempts().await, 1, "the refused chunk was sent again");
    platform.clear_faults().await;
    atlas.register_features(["accepted"]);
    for _ in 0..100 {
        if attempts().await >= 2 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let registered = platform
        .admin(Method::GET, "/__admin/registrations", None)
        .await
        .body;
    assert_eq!(registered, serde_json::json!(["accepted"]));
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("externalId".to_owned()),
                    Just("activeSubscriptions".to_owned()),
                    Just("planId".to_owned()),
                    Just("entitlements".to_owned()),
                    Just("plans".to_owned()),
                    Just("limit".to_owned()),
                    Just("price".to_owned()),
                    Just("priceType".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..8
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Reading any JSON as a model never panics, and what reads writes back unchanged.
    #[test]
    fn models_read_any_json_without_panicking(json in arbitrary_json()) {
        if let Ok(customer) = serde_json::from_value::<atlas_actix::models::Customer>(json.clone()) {
            let again: atlas_actix::models::Customer = serde_json::from_value(serde_json::to_value(&customer).unwrap()).unwrap();
            prop_assert_eq!(again, customer);
        }
        if let Ok(model) = serde_json::from_value::<atlas_actix::models::PricingModel>(json.clone()) {
            let again: atlas_actix::models::PricingModel = serde_json::from_value(serde_json::to_value(&model).unwrap()).unwrap();
            prop_assert_eq!(again, model);
        }
        let _ = serde_json::from_value::<atlas_actix::emulator::AtlasData>(json.clone());
        let _ = serde_json::from_value::<atlas_actix::models::UsageEvent>(json);
    }
}

/// A float in an unknown field reads back exactly (serde_json's `float_roundtrip`): the
/// property above once found `3.8037611534571504e71` coming back as `3.80376115345715e71`.
#[test]
fn unknown_fields_keep_floats_exactly() {
    let json = serde_json::json!({"id": "", "externalId": "", "planId": [3.8037611534571504e71]});
    let customer: atlas_actix::models::Customer = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&customer).unwrap()["planId"],
        json["planId"]
    );
    let again: atlas_actix::models::Customer =
        serde_json::from_value(serde_json::to_value(&customer).unwrap()).unwrap();
    assert_eq!(again, customer);
}

/// A client for the parsing property: built once, on the in-process emulator.
fn shared_platform() -> &'static (EmulatorHandle, Atlas) {
    static SHARED: OnceLock<(EmulatorHandle, Atlas)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let emulator = start_emulator();
        let atlas = builder(&emulator)
            .user_resolver(header_user)
            .push_invalidation(false)
            .build()
            .unwrap();
        (emulator, atlas)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The scope's request parsing: any body to any route is answered, never with a 5xx.
    #[test]
    fn the_scope_answers_any_body_without_a_server_error(
        route in prop::sample::select(vec![
            "/atlas-api/user/payment-method",
            "/atlas-api/plans/plan_free/subscribe",
            "/atlas-api/subscriptions/sub_erin_pro/cancel",
            "/atlas-api/subscriptions/nope/renew",
            "/atlas-api/features/register",
            "/atlas-api/sdk-version",
        ]),
        body in prop_oneof![
            arbitrary_json().prop_map(|json| json.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        let (_, atlas) = shared_platform();
        let status = actix_rt::System::new().block_on(async {
            let app = test::init_service(App::new().service(atlas.scope())).await;
            let request = TestRequest::post()
                .uri(route)
                .insert_header(("content-type", "application/json"))
                .insert_header(("x-test-user", "user_zed"))
                .set_payload(body)
                .to_request();
            test::call_service(&app, request).await.status().as_u16()
        });
        prop_assert!(status < 500, "{} answered {}", route, status);
    }
}
