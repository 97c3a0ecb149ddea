//! Checks that explain themselves: every denial reason shape, quantities at their boundary, and
//! caller idempotency keys from the guard to the platform.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{post, web, App, HttpResponse};
use atlas_actix::{limit, requires_feature, DenialReason, Entitlements, UsageOptions};
use awc::http::Method;
use serde_json::{json, Value};

use crate::common::{
    builder, eventually, header_user, json_body, start_emulator, Platform, Quickstart,
};

fn reasons_json(reasons: &[DenialReason]) -> Value {
    serde_json::to_value(reasons).unwrap()
}

#[actix_rt::test]
async fn every_denied_feature_has_one_reason_in_the_react_sdks_shapes() {
    let emulator = start_emulator();
    let seats = Arc::new(AtomicUsize::new(10));
    let counted = Arc::clone(&seats);
    let atlas = limit!(builder(&emulator), "seats", move |_| {
        let seats = Arc::clone(&counted);
        async move { seats.load(Ordering::SeqCst) }
    })
    .build()
    .unwrap();

    let dave = atlas
        .allowed("user_dave", ["data-explorer", "ai-tokens", "analytcs"])
        .await
        .unwrap();
    assert_eq!(
        reasons_json(&dave.reasons),
        json!([
            {"reason": "notIncluded", "id": "data-explorer"},
            {"reason": "unknownFeature", "id": "analytcs"},
        ])
    );
    assert!(dave.features["ai-tokens"]);

    let org = atlas
        .allowed("org_standard_corp", ["seats", "sso"])
        .await
        .unwrap();
    assert_eq!(
        reasons_json(&org.reasons),
        json!([{"reason": "limitReached", "id": "seats", "currentUsage": 10, "limit": 10}])
    );
    assert_eq!(org.reasons[0].to_string(), "You have used 10 of 10 seats");

    let erin = atlas
        .allowed("user_erin", ["image-generation"])
        .await
        .unwrap();
    assert_eq!(
        reasons_json(&erin.reasons),
        json!([{"reason": "insufficientCredits", "id": "image-generation",
                "customPricingUnit": {"customPricingUnitId": "cpu_image_credits", "balance": 0}}])
    );

    // The platform cut Dave's AI tokens off.
    let platform = Platform {
        emulator: &emulator,
    };
    let mut customer = platform
        .admin(Method::GET, "/__admin/customers", None)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["externalId"] == "user_dave")
        .unwrap()
        .clone();
    customer["conditionalBillableAccess"][0]["access"] = json!(false);
    platform
        .admin(Method::PUT, "/__admin/customers/user_dave", Some(customer))
        .await;
    atlas.invalidate_customer("user_dave");
    let cut = atlas.allowed("user_dave", ["ai-tokens"]).await.unwrap();
    assert_eq!(
        reasons_json(&cut.reasons),
        json!([{"reason": "maxUsageReached", "id": "ai-tokens",
                "usage": [{"currentUsage": 2500, "maxUsage": 10000, "subscriptionId": "sub_dave_free"}]}])
    );

    // A limit nobody counts.
    let uncounted = builder(&emulator).build().unwrap();
    let unknown = uncounted
        .allowed("org_standard_corp", ["seats"])
        .await
        .unwrap();
    assert_eq!(
        reasons_json(&unknown.reasons),
        json!([{"reason": "limitUnknown", "id": "seats"}])
    );

    // Allowed checks carry none.
    seats.store(3, Ordering::SeqCst);
    let fine = atlas
        .allowed("org_standard_corp", ["seats", "sso", "data-explorer"])
        .await
        .unwrap();
    assert!(fine.ok && fine.reasons.is_empty());
}

#[actix_rt::test]
async fn quantities_fit_up_to_the_limit_and_not_one_more() {
    let emulator = start_emulator();
    let atlas = limit!(builder(&emulator), "seats", |_| async { 3_u32 })
        .build()
        .unwrap();
    let seats = |n: f64| atlas.allowed_quantity("org_standard_corp", ["seats"], n);
    // Team: 10 seats, 3 taken.
    assert!(seats(7.0).await.unwrap().ok, "3 + 7 = 10 fits");
    let over = seats(8.0).await.unwrap();
    assert!(!over.ok);
    assert_eq!(
        reasons_json(&over.reasons),
        json!([{"reason": "limitReached", "id": "seats", "currentUsage": 3, "limit": 10}])
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(seats(bad).await.is_err(), "{bad}");
    }

    // Dave's Free plan: 2,500 of 10,000 AI tokens used.
    let tokens = |n: f64| atlas.allowed_quantity("user_dave", ["ai-tokens"], n);
    assert!(tokens(7500.0).await.unwrap().ok);
    let too_many = tokens(7501.0).await.unwrap();
    assert_eq!(too_many.reasons[0].feature(), "ai-tokens");
    assert!(matches!(
        too_many.reasons[0],
        DenialReason::MaxUsageReached { .. }
    ));

    // Standard Corp has 420 image credits, but its Team plan does not block overage.
    assert!(
        atlas
            .allowed_quantity("org_standard_corp", ["image-generation"], 10_000.0)
            .await
            .unwrap()
            .ok
    );
}

#[derive(serde::Deserialize)]
struct Invite {
    emails: Vec<String>,
}

#[post("/invite")]
#[requires_feature("seats", quantity = body.emails.len())]
async fn invite(body: web::Json<Invite>) -> HttpResponse {
    HttpResponse::Created().json(json!({ "invited": body.emails.len() }))
}

#[post("/complete")]
#[requires_feature("ai-tokens", usage = 1)]
async fn complete() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[actix_rt::test]
async fn guards_answer_why_with_the_quantity_the_request_asks() {
    let emulator = start_emulator();
    let atlas = limit!(builder(&emulator), "seats", |_| async { 8_u32 })
        .user_resolver(header_user)
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(invite),
    )
    .await;
    let invitation = |emails: Vec<&str>| {
        TestRequest::post()
            .uri("/invite")
            .insert_header(("x-test-user", "org_standard_corp"))
            .set_json(json!({ "emails": emails }))
            .to_request()
    };
    let (status, body) =
        json_body(test::call_service(&app, invitation(vec!["a", "b"])).await).await;
    assert_eq!((status, body), (201, json!({"invited": 2})));
    let (status, body) =
        json_body(test::call_service(&app, invitation(vec!["a", "b", "c"])).await).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({
            "error": "You have used 8 of 10 seats",
            "features": {"seats": false},
            "reasons": [{"reason": "limitReached", "id": "seats", "currentUsage": 8, "limit": 10}],
        })
    );
    let (status, body) = json_body(test::call_service(&app, invitation(vec![])).await).await;
    assert_eq!(status, 400, "{body}");

    // The Entitlements extractor says why too.
    let request = TestRequest::get()
        .insert_header(("x-test-user", "user_dave"))
        .app_data(web::Data::new(atlas.clone()))
        .to_http_request();
    let entitlements = <Entitlements as actix_web::FromRequest>::extract(&request)
        .await
        .unwrap();
    assert_eq!(
        entitlements.why_not("data-explorer"),
        Some(DenialReason::NotIncluded {
            id: "data-explorer".into()
        })
    );
    assert_eq!(entitlements.why_not("ai-tokens"), None);
}

#[actix_rt::test]
async fn a_retried_request_with_its_idempotency_key_is_billed_once() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .user_resolver(header_user)
        .build()
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(complete),
    )
    .await;
    let send = |key: &str| {
        TestRequest::post()
            .uri("/complete")
            .insert_header(("x-test-user", "user_erin"))
            .insert_header(("idempotency-key", key))
            .to_request()
    };
    for (key, replayed) in [("retry-7", false), ("retry-7", true), ("another", false)] {
        let answer = test::call_service(&app, send(key)).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers().contains_key("idempotent-replayed"),
            replayed,
            "{key}: the repeat gets the first answer, and does no work"
        );
    }
    let bad = test::call_service(&app, send("no spaces allowed")).await;
    assert_eq!(bad.status(), 400);
    // The usage is queued right after the answer, on the worker: give it a moment.
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
    let mut keys: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["idempotencyKey"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    // Each key is the customer's own (a digest of customer and key), so no other customer
    // sending `retry-7` can make the platform drop this one as a duplicate.
    assert_eq!(keys.len(), 2, "the retry is billed once: {events}");
    for key in keys {
        assert!(
            key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
    }

    // The client's own call: a key and a time of the caller's.
    let at = time::macros::datetime!(2026-11-01 12:00 UTC);
    for _ in 0..2 {
        atlas
            .enqueue_with(
                "user_erin",
                ["ai-tokens"],
                UsageOptions::new()
                    .quantity(3.0)
                    .idempotency_key("job-42")
                    .at(at),
            )
            .await
            .unwrap();
    }
    atlas.flush().await.unwrap();
    let events = Platform {
        emulator: &emulator,
    }
    .admin(Method::GET, "/__admin/events", None)
    .await
    .body;
    let job: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["idempotencyKey"] == "job-42")
        .collect();
    assert_eq!(job.len(), 1, "counted once");
    assert_eq!(job[0]["generatedAt"], "2026-11-01T12:00:00.000Z");
    assert_eq!(job[0]["data"]["quantity"], 3);
}

#[actix_rt::test]
async fn the_quickstart_adds_seats_in_bulk_all_or_none() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let alice = format!("Bearer {}", quickstart.token("Alice").await);
    let client = awc::Client::default();
    let bulk = |count: usize| {
        let emails: Vec<String> = (0..count)
            .map(|i| format!("new{i}@standard.example"))
            .collect();
        client
            .post(format!("{}/api/seats/bulk", quickstart.base))
            .insert_header(("authorization", alice.as_str()))
            .send_json(&json!({ "emails": emails }))
    };
    let answer = |response: awc::ClientResponse<_>| async move {
        let mut response = response;
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (response.status().as_u16(), body)
    };
    // Standard Corp: 10 seats on Team, 3 taken by Alice, Bob and Carol.
    let (status, body) = answer(bulk(8).await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["reasons"],
        json!([{"reason": "limitReached", "id": "seats", "currentUsage": 3, "limit": 10}])
    );
    let (status, body) = answer(bulk(7).await.unwrap()).await;
    assert_eq!((status, body), (201, json!({"seats": 10})));
    let (status, body) = answer(bulk(1).await.unwrap()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "You have used 10 of 10 seats");
    let (status, _) = answer(bulk(0).await.unwrap()).await;
    assert_eq!(status, 400);

    // The AI completion, retried with its key, reaches the platform once.
    let erin = format!("Bearer {}", quickstart.token("Erin Pro").await);
    for _ in 0..2 {
        let response = client
            .post(format!("{}/api/ai/complete", quickstart.base))
            .insert_header(("authorization", erin.as_str()))
            .insert_header(("idempotency-key", "completion-1"))
            .send_json(&json!({"prompt": "say it once"}))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    quickstart.signal("-TERM");
    quickstart.wait();
    let events = Platform {
        emulator: &emulator,
    }
    .admin(Method::GET, "/__admin/events", None)
    .await
    .body;
    assert_eq!(
        events,
        json!([events[0].clone()]),
        "one event for the two tries"
    );
    assert_ne!(
        events[0]["idempotencyKey"], "completion-1",
        "the platform sees the key bound to its customer"
    );
}

#[actix_rt::test]
async fn the_app_itself_may_change_a_subscription_that_locks_customer_changes() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    // Frank's Pro subscription does not allow changes by Frank.
    let refused = atlas
        .renew_subscription("user_frank", "sub_frank_pro")
        .await;
    assert_eq!(
        refused.unwrap_err(),
        atlas_actix::AtlasError::SubscriptionChangesNotAllowed
    );
    let back_office = atlas_actix::ChangeOptions::new().ignore_allow_subscription_changes(true);
    atlas
        .cancel_subscription_with(
            "user_frank",
            "sub_frank_pro",
            atlas_actix::CancelType::Active,
            back_office,
        )
        .await
        .unwrap();
}

#[actix_rt::test]
async fn registering_a_feature_the_pricing_model_lacks_is_logged() {
    let logs = crate::common::captured_logs();
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    atlas.register_features(["data-explorer", "dta-explorer"]);
    let warning = "a feature registered with Atlas is not configured in the pricing model";
    let text = eventually(
        "the registration warning",
        Duration::from_secs(5),
        || async {
            let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
            (text.contains("dta-explorer") && text.contains(warning)).then_some(text)
        },
    )
    .await;
    assert!(
        text.lines()
            .any(|line| line.contains(warning) && line.contains("\"dta-explorer\"")),
        "{text}"
    );
    assert!(!text
        .lines()
        .any(|line| line.contains(warning) && line.contains("\"data-explorer\"")));
}

/// An end date in a form the platform's JavaScript reads (a date alone, no offset, a basic
/// offset) ends the plan as it does for the official client; an unreadable one never grants.
#[actix_rt::test]
async fn end_dates_in_every_form_end_the_plan_and_unreadable_ones_never_grant() {
    for (end, granted) in [
        ("2020-12-31", false),
        ("2020-06-30T00:00:00", false),
        ("2021-01-31T23:59:59+0200", false),
        ("someday", false),
        ("2099-12-31", true),
        ("2099-06-30T00:00", true),
        ("", true),
    ] {
        let mut data = serde_json::to_value(atlas_actix::emulator::AtlasData::sample()).unwrap();
        let erin = data["customers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|customer| customer["externalId"] == "user_erin")
            .unwrap();
        erin["activeSubscriptions"][0]["endDate"] = serde_json::json!(end);
        let data = serde_json::from_value(data).unwrap();
        let emulator = atlas_actix::emulator::Emulator::start(data).unwrap();
        let atlas = builder(&emulator).build().unwrap();
        let allowed = atlas.allowed("user_erin", ["data-explorer"]).await.unwrap();
        assert_eq!(allowed.ok, granted, "endDate {end:?}: {allowed:?}");
    }
}

/// The platform turns a usage-based feature off (`access: false`) where the plan has no
/// maximum: the reason is our `accessRevoked`, never a `maxUsageReached` without the
/// `maxUsage` the React SDK's type requires.
#[actix_rt::test]
async fn access_revoked_without_a_maximum_is_not_a_max_usage_reason() {
    let mut data = serde_json::to_value(atlas_actix::emulator::AtlasData::sample()).unwrap();
    let standard = data["customers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|customer| customer["externalId"] == "org_standard_corp")
        .unwrap();
    standard["conditionalBillableAccess"][0]["access"] = json!(false);
    let emulator =
        atlas_actix::emulator::Emulator::start(serde_json::from_value(data).unwrap()).unwrap();
    let atlas = builder(&emulator).build().unwrap();
    let allowed = atlas
        .allowed("org_standard_corp", ["ai-tokens"])
        .await
        .unwrap();
    assert!(!allowed.ok);
    assert_eq!(
        serde_json::to_value(&allowed.reasons).unwrap(),
        json!([{"reason": "accessRevoked", "id": "ai-tokens"}])
    );
    // The features list, as the Entitlements extractor reads it, says the same.
    let features = atlas.features("org_standard_corp", None).await.unwrap();
    let tokens = features.iter().find(|feature| feature.id == "ai-tokens");
    assert_eq!(
        atlas_actix::reasons::reason_from_feature("ai-tokens", tokens),
        Some(DenialReason::AccessRevoked {
            id: "ai-tokens".into()
        })
    );
}
