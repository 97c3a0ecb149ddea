//! Quotas that hold between platform updates: the quickstart against a metering emulator
//! (usage applied 1 s after it arrives, then pushed), many concurrent requests at once.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::Method;
use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use serde_json::{json, Value};

use crate::common::{call, eventually, example_data, quickstart_command, Quickstart};

/// The quickstart's data, metered, with `customer`'s usage or balances set as `changes` say.
pub(crate) fn metered_data(customer: &str, changes: Value) -> (AtlasData, PathBuf) {
    let mut data = serde_json::to_value(example_data()).unwrap();
    data["metering"] = json!({"delayMs": 1000});
    let customers = data["customers"].as_array_mut().unwrap();
    let entry = customers
        .iter_mut()
        .find(|c| c["externalId"] == customer)
        .unwrap();
    for (key, value) in changes.as_object().unwrap() {
        entry[key] = value.clone();
    }
    let path = std::env::temp_dir().join(format!(
        "atlas-quotas-{}-{customer}.json",
        std::process::id()
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&data).unwrap()).unwrap();
    (AtlasData::from_file(&path).unwrap(), path)
}

fn start(customer: &str, changes: Value) -> (EmulatorHandle, Quickstart) {
    let (data, path) = metered_data(customer, changes);
    let emulator = Emulator::builder(data).start().unwrap();
    let mut command = quickstart_command(&emulator);
    command.env("ATLAS_DATA_FILE", &path);
    let quickstart = Quickstart::spawn(command);
    // The quickstart reads it once, before it listens.
    let _ = std::fs::remove_file(&path);
    (emulator, quickstart)
}

/// `count` requests at once: each answer's status and body.
async fn concurrently(
    base: &str,
    token: &str,
    path: &str,
    body: Value,
    count: usize,
) -> Vec<(u16, Value)> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let bearer = format!("Bearer {token}");
    let requests = (0..count).map(|_| {
        let request = client
            .post(format!("{base}{path}"))
            .insert_header(("authorization", bearer.as_str()))
            .send_json(&body);
        async move {
            let mut response = request.await.expect("answered");
            let body: Value = response.json().limit(1 << 20).await.unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
    });
    futures_util::future::join_all(requests).await
}

/// The platform's own state of a customer.
pub(crate) async fn platform_customer(emulator: &EmulatorHandle, customer: &str) -> Value {
    let customers = call(
        emulator.url(),
        None,
        Method::GET,
        "/__admin/customers",
        None,
    )
    .await
    .body;
    customers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["externalId"] == customer)
        .cloned()
        .unwrap()
}

pub(crate) fn usage_of(customer: &Value, billable: &str) -> f64 {
    customer["conditionalBillableAccess"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["billableId"] == billable)
        .filter_map(|a| a["currentUsage"].as_f64())
        .sum()
}

/// What the quickstart's `/atlas-api/features` says of a feature.
async fn feature(quickstart: &Quickstart, token: &str, id: &str) -> Value {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("{}/atlas-api/features", quickstart.base))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    let features: Value = response.json().limit(1 << 20).await.unwrap();
    features["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn two_hundred_concurrent_requests_spend_exactly_the_ten_units_left() {
    let (emulator, quickstart) = start(
        "user_dave",
        json!({"conditionalBillableAccess": [{"billableId": "ent_ai_tokens",
            "subscriptionId": "sub_dave_free", "access": true, "currentUsage": 9990}]}),
    );
    let dave = quickstart.token("Dave Free").await;
    let answers = concurrently(
        &quickstart.base,
        &dave,
        "/api/ai/complete",
        json!({"prompt": "one more"}),
        200,
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 403, "{body}");
        let reason = &body["reasons"][0];
        assert_eq!(reason["reason"], "maxUsageReached", "{body}");
        // The platform still says 9,990: the ten units pending are counted in.
        assert_eq!(reason["usage"][0]["currentUsage"], 10000, "{body}");
        assert_eq!(reason["usage"][0]["maxUsage"], 10000, "{body}");
    }
    // The platform aggregates the ten events: 10,000, and nothing counted twice after that.
    eventually(
        "the platform's count of the ten events",
        Duration::from_secs(15),
        || async {
            let usage = usage_of(
                &platform_customer(&emulator, "user_dave").await,
                "ent_ai_tokens",
            );
            (usage == 10000.0).then_some(())
        },
    )
    .await;
    assert_eq!(emulator.events().len(), 10);
    eventually(
        "the check's figure equal to the platform's",
        Duration::from_secs(15),
        || async {
            let tokens = feature(&quickstart, &dave, "ai-tokens").await;
            (tokens["usage"][0]["current"] == 10000).then_some(())
        },
    )
    .await;
    let after = concurrently(
        &quickstart.base,
        &dave,
        "/api/ai/complete",
        json!({"prompt": "again"}),
        1,
    )
    .await;
    assert_eq!(after[0].0, 403, "still at the maximum: {:?}", after[0].1);
    // An upgrade to a plan with room: allowed again once its push arrives.
    emulator.set_plan("user_dave", "plan_pro").unwrap();
    eventually(
        "allowed after the upgrade",
        Duration::from_secs(5),
        || async {
            let answer = concurrently(
                &quickstart.base,
                &dave,
                "/api/ai/complete",
                json!({"prompt": "pro"}),
                1,
            )
            .await;
            (answer[0].0 == 200).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn five_credits_buy_exactly_five_images_and_the_balance_ends_at_zero() {
    let (emulator, quickstart) = start(
        "user_erin",
        json!({"customPricingUnits": [{"customPricingUnitId": "cpu_image_credits", "balance": 5}]}),
    );
    let erin = quickstart.token("Erin Pro").await;
    let answers = concurrently(
        &quickstart.base,
        &erin,
        "/api/images",
        json!({"prompt": "a lighthouse"}),
        100,
    )
    .await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(
        created,
        5,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 403, "{body}");
        assert_eq!(
            body["reasons"][0]["reason"], "insufficientCredits",
            "{body}"
        );
        assert_eq!(
            body["reasons"][0]["customPricingUnit"]["balance"], 0,
            "{body}"
        );
    }
    let balance = |customer: &Value| customer["customPricingUnits"][0]["balance"].as_f64();
    eventually(
        "the platform's balance at zero",
        Duration::from_secs(15),
        || async {
            let customer = platform_customer(&emulator, "user_erin").await;
            (balance(&customer) == Some(0.0)).then_some(())
        },
    )
    .await;
    assert_eq!(emulator.events().len(), 5);
    let bad = concurrently(
        &quickstart.base,
        &erin,
        "/api/images",
        json!({"prompt": 7}),
        1,
    )
    .await;
    assert_eq!(
        bad[0].0, 400,
        "a bad body is refused before the check: {:?}",
        bad[0].1
    );
}

#[actix_rt::test]
async fn reservations_free_what_the_work_did_not_use() {
    let (emulator, quickstart) = start(
        "user_frank",
        json!({"conditionalBillableAccess": [{"billableId": "ent_ai_tokens",
            "subscriptionId": "sub_frank_pro", "access": true, "currentUsage": 999_900}]}),
    );
    let frank = quickstart.token("Frank Locked").await;
    let body = json!({"text": "four words of text", "maxTokens": 10});
    let mut succeeded = 0;
    loop {
        let wave = concurrently(
            &quickstart.base,
            &frank,
            "/api/ai/summarise",
            body.clone(),
            40,
        )
        .await;
        let passed = wave.iter().filter(|(status, _)| *status == 200).count();
        for (status, answer) in &wave {
            match status {
                200 => assert_eq!(answer["tokens"], 4, "{answer}"),
                403 => assert_eq!(
                    answer["reasons"][0]["reason"], "maxUsageReached",
                    "{answer}"
                ),
                other => panic!("{other}: {answer}"),
            }
        }
        succeeded += passed;
        if passed == 0 {
            break;
        }
    }
    // Admitted while 10 fit: 22 × 4 = 88 committed, 88 + 10 ≤ 100, then 92 + 10 > 100.
    assert_eq!(succeeded, 23);
    eventually(
        "the platform's count of 92",
        Duration::from_secs(15),
        || async {
            let usage = usage_of(
                &platform_customer(&emulator, "user_frank").await,
                "ent_ai_tokens",
            );
            (usage == 999_992.0).then_some(())
        },
    )
    .await;
    let events = emulator.events();
    assert_eq!(events.len(), 23);
    assert!(events.iter().all(|event| event.data.quantity == 4.0));
    let invalid = concurrently(
        &quickstart.base,
        &frank,
        "/api/ai/summarise",
        json!({"text": "x", "maxTokens": 0}),
        1,
    )
    .await;
    assert_eq!(invalid[0].0, 400, "{:?}", invalid[0].1);
}

mod in_process {
    use actix_web::{test, web, App, HttpResponse};
    use atlas_actix::{requires_feature, Reserved};

    use crate::common::{builder, header_user, start_emulator};

    /// Reserves the whole quota and fails without committing.
    #[requires_feature("ai-tokens", reserve = 7_500)]
    async fn fails(_reserved: Reserved) -> HttpResponse {
        HttpResponse::InternalServerError().finish()
    }

    /// Reserves the whole quota and answers 200 without committing.
    #[requires_feature("ai-tokens", reserve = 7_500)]
    async fn forgets(_reserved: Reserved) -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[requires_feature("ai-tokens", reserve = 7_500)]
    async fn commits(reserved: Reserved) -> HttpResponse {
        match reserved.commit(3.0).await {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(err) => actix_web::ResponseError::error_response(&err),
        }
    }

    #[actix_rt::test]
    async fn a_failed_or_uncommitted_handler_releases_its_hold_and_a_commit_frees_the_rest() {
        let emulator = start_emulator();
        let atlas = builder(&emulator)
            .user_resolver(header_user)
            .build()
            .unwrap();
        let app = test::init_service(
            App::new()
                .configure(atlas.configure())
                .route("/fails", web::post().to(fails))
                .route("/forgets", web::post().to(forgets))
                .route("/commits", web::post().to(commits)),
        )
        .await;
        let request = |path: &str| {
            test::TestRequest::post()
                .uri(path)
                .insert_header(("x-test-user", "user_dave"))
                .to_request()
        };
        // Dave's Free plan: 10,000 tokens, 2,500 used. Each failure frees all 7,500 left.
        for _ in 0..3 {
            assert_eq!(
                test::call_service(&app, request("/fails")).await.status(),
                500
            );
        }
        // A success that commits nothing reports nothing, and frees the hold too.
        for _ in 0..3 {
            let answer = test::call_service(&app, request("/forgets")).await;
            assert_eq!(answer.status(), 200);
        }
        assert_eq!(
            test::call_service(&app, request("/commits")).await.status(),
            200
        );
        // 3 are pending: 7,500 more no longer fit until the platform says otherwise.
        let denied = test::call_service(&app, request("/commits")).await;
        assert_eq!(denied.status(), 403);
        let direct = atlas
            .reserve("user_dave", "ai-tokens", 7_497.0)
            .await
            .unwrap();
        assert!(
            atlas.reserve("user_dave", "ai-tokens", 1.0).await.is_err(),
            "all held"
        );
        direct.release();
        atlas
            .reserve("user_dave", "ai-tokens", 1.0)
            .await
            .unwrap()
            .release();
        atlas.flush().await.unwrap();
        let events = emulator.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.quantity, 3.0);
    }
}

/// The emulator's test helpers speak the app's ids: usage and balances set by customer and
/// feature id, events read back the same way.
#[actix_rt::test]
async fn the_emulators_helpers_set_usage_and_balances_in_the_apps_ids() {
    use atlas_actix::emulator::EmulatorError;

    let platform = Emulator::start(AtlasData::sample()).unwrap();
    // A short metering lag: a usage set below the one last seen counts at once, not after
    // the default minute the ledger keeps the higher figure as its floor.
    let atlas = crate::common::builder(&platform)
        .metering_lag(Duration::from_millis(10))
        .build()
        .unwrap();
    let allowed = |feature: &'static str| {
        let atlas = atlas.clone();
        async move { atlas.allowed("user_erin", [feature]).await.unwrap().ok }
    };
    let pushed = |atlas: &atlas_actix::Atlas| atlas.invalidate_customer("user_erin");

    // Erin's Pro plan: ai-tokens up to 1,000,000.
    platform
        .set_usage("user_erin", "ai-tokens", 1_000_000.0)
        .unwrap();
    pushed(&atlas);
    assert!(!allowed("ai-tokens").await, "at the maximum");
    platform.set_usage("user_erin", "ai-tokens", 10.0).unwrap();
    pushed(&atlas);
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    assert!(allowed("ai-tokens").await, "below it again");

    // Image credits: none left blocks (blockOverage), five allow.
    assert!(!allowed("image-generation").await, "Erin starts with 0");
    platform
        .set_balance("user_erin", "cpu_image_credits", 5.0)
        .unwrap();
    pushed(&atlas);
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    assert!(allowed("image-generation").await);

    atlas
        .enqueue("user_erin", ["ai-tokens", "image-generation"], 2.0)
        .await
        .unwrap();
    atlas.flush().await.unwrap();
    let mut usage: Vec<(String, String, f64)> = platform
        .usage()
        .into_iter()
        .map(|event| (event.customer, event.feature, event.quantity))
        .collect();
    usage.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        usage,
        [
            ("user_erin".to_owned(), "ai-tokens".to_owned(), 2.0),
            ("user_erin".to_owned(), "image-generation".to_owned(), 2.0),
        ]
    );

    // What does not exist, or cannot be, is refused and changes nothing.
    for (refused, kind) in [
        (
            platform.set_usage("user_nobody", "ai-tokens", 1.0),
            "not found",
        ),
        (
            platform.set_usage("user_erin", "ai-tokns", 1.0),
            "not found",
        ),
        (platform.set_usage("user_dave", "sso", 1.0), "not found"),
        (
            platform.set_usage("user_erin", "ai-tokens", -1.0),
            "invalid",
        ),
        (
            platform.set_balance("user_erin", "cpu_nope", 1.0),
            "not found",
        ),
        (
            platform.set_balance("user_erin", "cpu_image_credits", f64::NAN),
            "invalid",
        ),
    ] {
        match (refused, kind) {
            (Err(EmulatorError::NotFound(_)), "not found")
            | (Err(EmulatorError::InvalidValue(_)), "invalid") => {}
            (other, kind) => panic!("{kind} expected: {other:?}"),
        }
    }
}
