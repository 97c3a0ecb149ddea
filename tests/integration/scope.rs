//! The `/atlas-api` scope, route by route, through `actix_web::test`.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, Error, HttpResponse};
use atlas_actix::emulator::EmulatorHandle;
use atlas_actix::Atlas;
use awc::http::Method;
use serde_json::{json, Value};

use crate::common::builder;
use crate::common::{eventually, header_user, json_body, start_emulator, Platform};

fn atlas(emulator: &EmulatorHandle) -> Atlas {
    builder(emulator)
        .user_resolver(header_user)
        .build()
        .unwrap()
}

fn get(path: &str, user: Option<&str>) -> TestRequest {
    let request = TestRequest::get().uri(path);
    match user {
        Some(user) => request.insert_header(("x-test-user", user)),
        None => request,
    }
}

fn post(path: &str, user: Option<&str>, body: &str) -> TestRequest {
    let request = TestRequest::post()
        .uri(path)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned());
    match user {
        Some(user) => request.insert_header(("x-test-user", user)),
        None => request,
    }
}

async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = Error>,
    request: TestRequest,
) -> (u16, Value) {
    json_body(test::call_service(app, request.to_request()).await).await
}

#[actix_rt::test]
async fn status_reports_the_merchant_or_an_invalid_key() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let (status, body) = call(&app, get("/atlas-api/status", None)).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiKey"], true);
    assert_eq!(body["mode"], "test");
    assert_eq!(body["unconfiguredLimits"], json!(["seats"]));

    let wrong = builder(&emulator)
        .api_key("sk_wrong")
        .user_resolver(header_user)
        .build()
        .unwrap();
    let wrong_app = self::app(&wrong).await;
    assert_eq!(
        call(&wrong_app, get("/atlas-api/status", None)).await,
        (200, json!({"apiKey": false}))
    );
    assert_eq!(
        call(&wrong_app, get("/atlas-api/features", Some("user_dave"))).await,
        (503, json!({"error": "Invalid API key"}))
    );
}

#[actix_rt::test]
async fn user_routes_need_a_user() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    for path in [
        "/atlas-api/features",
        "/atlas-api/invoices",
        "/atlas-api/invoices/draft/invoice-line-items",
        "/atlas-api/invoices/inv_standard_1/invoice-line-items",
        "/atlas-api/user",
        "/atlas-api/subscriptions/sub_standard_team",
        "/atlas-api/transactions",
        "/atlas-api/credit-usage/cpu_image_credits",
    ] {
        assert_eq!(
            call(&app, get(path, None)).await,
            (401, json!({"error": "Unauthorized"})),
            "{path}"
        );
    }
    for path in [
        "/atlas-api/user/payment-method",
        "/atlas-api/plans/plan_pro/subscribe",
        "/atlas-api/subscriptions/x/cancel",
        "/atlas-api/subscriptions/x/renew",
    ] {
        assert_eq!(call(&app, post(path, None, "{}")).await.0, 401, "{path}");
    }
}

#[actix_rt::test]
async fn features_and_user_create_new_customers_with_their_headers() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let (status, body) = call(&app, get("/atlas-api/features", Some("org_standard_corp"))).await;
    assert_eq!(status, 200);
    let explorer = body["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "data-explorer")
        .unwrap();
    assert_eq!(explorer["allowed"], true);

    let request = get("/atlas-api/user", Some("user_zed"))
        .insert_header(("x-customer-email", "zed@example.com"))
        .insert_header(("x-customer-name", "Zed"));
    let (status, user) = call(&app, request).await;
    assert_eq!(status, 200);
    assert_eq!(
        (user["email"].as_str(), user["name"].as_str()),
        (Some("zed@example.com"), Some("Zed"))
    );
    assert_eq!(user["activeSubscriptions"][0]["planId"], "plan_free");
}

#[actix_rt::test]
async fn billing_reads_are_the_users_own() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let org = Some("org_standard_corp");
    let (_, page) = call(&app, get("/atlas-api/invoices?page=2&limit=2", org)).await;
    assert_eq!(
        (
            page["count"].as_u64(),
            page["pages"].as_u64(),
            page["currentPage"].as_u64()
        ),
        (Some(3), Some(2), Some(2))
    );
    let (_, page) = call(&app, get("/atlas-api/invoices?pageSize=1", org)).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        call(&app, get("/atlas-api/invoices?page=abc", org)).await.0,
        400
    );

    let (_, drafts) = call(
        &app,
        get("/atlas-api/invoices/draft/invoice-line-items", org),
    )
    .await;
    let ids: Vec<&str> = drafts
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["li_standard_draft_a", "li_standard_draft_b"]);
    let (_, items) = call(
        &app,
        get("/atlas-api/invoices/inv_standard_1/invoice-line-items", org),
    )
    .await;
    assert_eq!(items.as_array().unwrap().len(), 2);
    let (status, stolen) = call(
        &app,
        get(
            "/atlas-api/invoices/inv_standard_1/invoice-line-items",
            Some("user_erin"),
        ),
    )
    .await;
    assert_eq!((status, stolen), (200, json!([])));

    let (_, transactions) = call(
        &app,
        get(
            "/atlas-api/transactions?pageSize=1&orderBy=createdAt&order=desc",
            org,
        ),
    )
    .await;
    assert_eq!(transactions["results"][0]["id"], "tx_standard_2");
    let (_, credits) = call(&app, get("/atlas-api/credit-usage/cpu_image_credits", org)).await;
    assert_eq!(credits["remaining"], 420);
    let (_, other) = call(
        &app,
        get(
            "/atlas-api/credit-usage/cpu_image_credits",
            Some("user_dave"),
        ),
    )
    .await;
    assert_eq!(
        other["remaining"], 0,
        "Dave's own usage, not the organisation's"
    );
}

#[actix_rt::test]
async fn the_pricing_model_is_public_with_the_users_private_plans() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let plans = |body: &Value| -> Vec<String> {
        body["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, anonymous) = call(&app, get("/atlas-api/pricing-model", None)).await;
    assert_eq!(status, 200);
    assert_eq!(plans(&anonymous), ["plan_free", "plan_pro", "plan_team"]);
    assert!(!anonymous.to_string().contains("priceId"));
    let (_, frank) = call(&app, get("/atlas-api/pricing-model", Some("user_frank"))).await;
    assert!(plans(&frank).contains(&"plan_enterprise".to_owned()));
}

#[actix_rt::test]
async fn subscriptions_are_shown_only_to_their_owner() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let (status, own) = call(
        &app,
        get("/atlas-api/subscriptions/sub_erin_pro", Some("user_erin")),
    )
    .await;
    assert_eq!((status, own["planId"].as_str()), (200, Some("plan_pro")));
    for other in [
        "sub_standard_team",
        "sub_nope",
        "sub_erin_pro%2F..%2Fsub_standard_team",
    ] {
        let (status, body) = call(
            &app,
            get(
                &format!("/atlas-api/subscriptions/{other}"),
                Some("user_erin"),
            ),
        )
        .await;
        assert_eq!(status, 404, "{other}");
        assert!(body["error"].is_string());
    }
}

#[actix_rt::test]
async fn subscribe_cancel_renew_and_payment_method_act_for_the_user_only() {
    let emulator = start_emulator();
    let app = app(&atlas(&emulator)).await;
    let subscribe = |plan: &str, user: &str, body: &str| {
        post(
            &format!("/atlas-api/plans/{plan}/subscribe"),
            Some(user),
            body,
        )
    };

    // The body's customer id is ignored: the user subscribes, never someone else.
    let body = r#"{"billingCadence": "monthly", "successUrl": "https://app.example/ok", "id": "user_erin"}"#;
    let (status, session) = call(&app, subscribe("plan_team", "user_dave", body)).await;
    assert_eq!(status, 200);
    assert!(session["url"].as_str().unwrap().contains("/__checkout/"));
    assert_eq!(session["client_reference_id"], "user_dave");

    let (status, free) = call(
        &app,
        subscribe(
            "plan_free",
            "user_dave",
            r#"{"billingCadence": "monthly", "successUrl": "https://app.example/free"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, free),
        (200, json!({"url": "https://app.example/free"}))
    );

    assert_eq!(
        call(
            &app,
            subscribe(
                "plan_pro",
                "user_dave",
                r#"{"billingCadence": "weekly", "successUrl": "u"}"#
            )
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            subscribe("plan_pro", "user_dave", r#"{"successUrl": "u"}"#)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            subscribe("plan_pro", "user_dave", r#"{"billingCadence": "monthly", "#)
        )
        .await
        .0,
        400
    );
    let (status, body) = call(
        &app,
        subscribe(
            "plan_nope",
            "user_dave",
            r#"{"billingCadence": "monthly", "successUrl": "u"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Plan not found"))
    );
    let (status, body) = call(
        &app,
        subscribe(
            "plan_enterprise",
            "user_dave",
            r#"{"billingCadence": "annually", "successUrl": "u"}"#,
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &app,
        subscribe(
            "plan_team",
            "user_frank",
            r#"{"billingCadence": "monthly", "successUrl": "u"}"#,
        ),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": "Subscription changes are not allowed"})
        )
    );

    let (status, body) = call(
        &app,
        post(
            "/atlas-api/subscriptions/sub_erin_pro/renew",
            Some("user_erin"),
            "",
        ),
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (200, Some("sub_erin_pro")));
    let (status, _) = call(
        &app,
        post(
            "/atlas-api/subscriptions/sub_erin_pro/cancel",
            Some("user_dave"),
            r#"{"type": "active"}"#,
        ),
    )
    .await;
    assert_eq!(status, 404, "Dave cannot cancel Erin's subscription");
    assert_eq!(
        call(
            &app,
            post(
                "/atlas-api/subscriptions/sub_erin_pro/cancel",
                Some("user_erin"),
                r#"{"type": "later"}"#
            )
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            post(
                "/atlas-api/subscriptions/sub_erin_pro/cancel",
                Some("user_erin"),
                r#"{"type": "active"}"#
            )
        )
        .await,
        (200, json!({}))
    );

    let (status, card) = call(
        &app,
        post(
            "/atlas-api/user/payment-method",
            Some("user_erin"),
            r#"{"successUrl": "https://app.example/card"}"#,
        ),
    )
    .await;
    assert_eq!((status, card["mode"].as_str()), (200, Some("setup")));
    assert_eq!(
        call(
            &app,
            post("/atlas-api/user/payment-method", Some("user_erin"), "{}")
        )
        .await
        .0,
        400
    );

    let customers = Platform {
        emulator: &emulator,
    }
    .admin(Method::GET, "/__admin/customers", None)
    .await
    .body;
    let erin = customers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["externalId"] == "user_erin")
        .unwrap();
    assert_eq!(
        erin["activeSubscriptions"][0]["planId"], "plan_free",
        "cancelled to the default plan"
    );
}

#[actix_rt::test]
async fn registrations_and_sdk_versions_reach_the_platform() {
    let emulator = start_emulator();
    let atlas = atlas(&emulator);
    let app = app(&atlas).await;
    assert_eq!(
        call(
            &app,
            post(
                "/atlas-api/features/register",
                None,
                r#"{"features": ["sso", "seats"]}"#
            )
        )
        .await,
        (200, json!({}))
    );
    assert_eq!(
        call(
            &app,
            post(
                "/atlas-api/features/register",
                None,
                r#"{"features": "sso"}"#
            )
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            post(
                "/atlas-api/sdk-version",
                None,
                r#"{"library": "react", "version": "2.8.0"}"#
            )
        )
        .await,
        (200, json!({}))
    );
    assert_eq!(
        call(
            &app,
            post("/atlas-api/sdk-version", None, r#"{"library": 1}"#)
        )
        .await
        .0,
        400
    );
    let platform = Platform {
        emulator: &emulator,
    };
    eventually(
        "the registrations and the React SDK's version",
        std::time::Duration::from_secs(5),
        || async {
            let registrations = platform
                .admin(Method::GET, "/__admin/registrations", None)
                .await
                .body;
            let versions = platform
                .admin(Method::GET, "/__admin/sdk-versions", None)
                .await
                .body;
            let has_react = versions
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["library"] == "react");
            (registrations.as_array().unwrap().len() == 2 && has_react).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn unknown_routes_wrong_methods_and_oversized_bodies_answer_json() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .body_limit(1024)
        .build()
        .unwrap();
    let app = app(&atlas).await;
    assert_eq!(
        call(&app, get("/atlas-api/nothing", None)).await,
        (404, json!({"error": "Not found"}))
    );
    assert_eq!(
        call(&app, post("/atlas-api/status", None, "{}")).await,
        (405, json!({"error": "Method not allowed"}))
    );
    assert_eq!(
        call(
            &app,
            get("/atlas-api/plans/plan_pro/subscribe", Some("user_dave"))
        )
        .await
        .0,
        405
    );
    let big = format!(r#"{{"features": ["{}"]}}"#, "x".repeat(2048));
    assert_eq!(
        call(&app, post("/atlas-api/features/register", None, &big)).await,
        (413, json!({"error": "request body larger than 1024 bytes"}))
    );
}

#[actix_rt::test]
async fn without_a_resolver_user_routes_answer_an_opaque_500() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    let app = app(&atlas).await;
    assert_eq!(
        call(&app, get("/atlas-api/features", None)).await,
        (500, json!({"error": "Internal server error"}))
    );
    assert_eq!(
        call(&app, get("/atlas-api/pricing-model", None)).await.0,
        200,
        "the public pricing model needs no user"
    );
}

#[actix_rt::test]
async fn the_platform_down_is_a_503_not_a_hang() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    atlas.status().await.unwrap();
    let app = app(&atlas).await;
    let platform = Platform {
        emulator: &emulator,
    };
    platform
        .inject_fault(json!({"path": "/external/customers", "status": 500}))
        .await;
    let (status, body) = call(&app, get("/atlas-api/features", Some("user_dave"))).await;
    assert_eq!(
        (status, body),
        (503, json!({"error": "The Atlas platform is unavailable"}))
    );
}

/// The app of these tests, for other modules.
pub(crate) async fn app(
    atlas: &Atlas,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = Error> {
    test::init_service(App::new().service(atlas.scope())).await
}

/// One rule for what a feature id is: `features/register` takes exactly the ids
/// `#[requires_feature]` takes (its refusals are the UI cases `requires-feature-bad-character`
/// and `limit-feature-with-space`), and the findings name every other id that code gives.
#[actix_rt::test]
async fn the_scope_and_the_findings_keep_the_macros_feature_id_rule() {
    const IDS: [(&str, bool); 8] = [
        ("seats", true),
        ("data-explorer", true),
        ("ai_tokens.v2", true),
        ("org:seats", true),
        ("seats!", false),
        ("data explorer", false),
        ("séats", false),
        ("a/b", false),
    ];
    let emulator = start_emulator();
    let atlas = atlas(&emulator);
    let mut app_builder = App::new().configure(atlas.configure());
    for (index, (id, _)) in IDS.iter().enumerate() {
        app_builder = app_builder.service(
            web::scope(&format!("/gated/{index}"))
                .wrap(atlas_actix::RequireFeatures::new([*id]))
                .route("", web::get().to(HttpResponse::Ok)),
        );
    }
    let app = test::init_service(app_builder).await;
    for (index, (id, valid)) in IDS.iter().enumerate() {
        let body = json!({ "features": [id] }).to_string();
        let (status, _) = call(&app, post("/atlas-api/features/register", None, &body)).await;
        assert_eq!(status, if *valid { 200 } else { 400 }, "{id:?}");
        call(&app, get(&format!("/gated/{index}"), Some("user_erin"))).await;
    }
    let findings = atlas.findings();
    for (id, valid) in IDS {
        let named = findings
            .iter()
            .any(|f| f.feature == id && f.problem.contains("is not a feature id"));
        assert_eq!(named, !valid, "{id:?}: {findings:?}");
    }
}
