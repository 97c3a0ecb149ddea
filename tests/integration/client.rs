//! The Atlas client against the in-process emulator: every call, retries, timeouts,
//! coalescing, invalidation, encoded ids, usage events, TLS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atlas_actix::emulator::{Emulator, EmulatorHandle};
use atlas_actix::{
    limit, Atlas, AtlasError, BillingCadence, CancelType, CustomerInfo, FeatureType, Pagination,
    SubscribeRequest,
};
use awc::http::Method;
use serde_json::{json, Value};

use crate::common::{
    builder, call, eventually, example_data, requests, start_emulator, Platform, CUSTOMER_ROUTE,
};

async fn admin(
    emulator: &EmulatorHandle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    Platform { emulator }.admin(method, path, body).await.body
}

#[actix_rt::test]
async fn initialises_and_reports_unconfigured_limits_and_its_version() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    let status = atlas.status().await.unwrap();
    assert_eq!(
        status.merchant.default_plan_id.as_deref(),
        Some("plan_free")
    );
    assert_eq!(status.unconfigured_limits, ["seats"]);
    let configured = limit!(builder(&emulator), "seats", |_| async { 0 })
        .build()
        .unwrap();
    assert!(configured
        .status()
        .await
        .unwrap()
        .unconfigured_limits
        .is_empty());
    let versions = eventually(
        "the SDK version's report",
        Duration::from_secs(5),
        || async {
            let versions = admin(&emulator, Method::GET, "/__admin/sdk-versions", None).await;
            versions
                .as_array()
                .is_some_and(|v| !v.is_empty())
                .then_some(versions)
        },
    )
    .await;
    assert_eq!(versions[0]["library"], "actix");
    assert_eq!(versions[0]["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_rt::test]
async fn a_refused_key_is_a_lasting_typed_error() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).api_key("sk_wrong").build().unwrap();
    assert_eq!(atlas.status().await.unwrap_err(), AtlasError::InvalidApiKey);
    assert_eq!(
        atlas.allowed("user_dave", ["sso"]).await.unwrap_err(),
        AtlasError::InvalidApiKey
    );
    assert_eq!(
        requests(&emulator, "GET /external/merchants/me").await,
        1,
        "a refused key is not retried"
    );
}

#[actix_rt::test]
async fn features_follow_the_plan_limits_and_callbacks() {
    let emulator = start_emulator();
    let seats = Arc::new(AtomicUsize::new(3));
    let counted = Arc::clone(&seats);
    let atlas = limit!(builder(&emulator), "seats", move |customer| {
        let counted = Arc::clone(&counted);
        async move {
            assert_eq!(customer, "org_standard_corp");
            counted.load(Ordering::SeqCst)
        }
    })
    .build()
    .unwrap();

    let features = atlas.features("org_standard_corp", None).await.unwrap();
    let by_id = |id: &str| features.iter().find(|f| f.id == id).unwrap().clone();
    assert!(by_id("data-explorer").allowed);
    let seat = by_id("seats");
    assert_eq!(
        (seat.kind, seat.allowed, seat.limit, seat.current_usage),
        (FeatureType::Limit, true, Some(10.0), Some(3.0))
    );
    let tokens = by_id("ai-tokens");
    assert!(tokens.should_report_events);
    assert_eq!(tokens.usage.unwrap()[0].current, 125_000.0);
    assert_eq!(
        by_id("image-generation")
            .custom_pricing_unit
            .unwrap()
            .balance,
        420.0
    );

    seats.store(10, Ordering::SeqCst);
    let check = atlas
        .allowed("org_standard_corp", ["seats", "sso", "nothing-like-it"])
        .await
        .unwrap();
    assert!(!check.ok);
    assert!(check.features["sso"]);
    assert_eq!(
        check.denied().collect::<Vec<_>>(),
        ["nothing-like-it", "seats"]
    );

    let dave = atlas.allowed("user_dave", ["data-explorer"]).await.unwrap();
    assert!(!dave.ok, "Free has no data explorer");
}

#[actix_rt::test]
async fn checked_features_are_registered_once_debounced() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.allowed("user_dave", ["sso", "seats"]).await.unwrap();
    atlas
        .allowed("user_erin", ["seats", "data-explorer"])
        .await
        .unwrap();
    let mut registered: Vec<String> = eventually(
        "the registration of 3 features",
        Duration::from_secs(5),
        || async {
            let registered: Vec<String> = serde_json::from_value(
                admin(&emulator, Method::GET, "/__admin/registrations", None).await,
            )
            .unwrap();
            (registered.len() >= 3).then_some(registered)
        },
    )
    .await;
    registered.sort();
    assert_eq!(registered, ["data-explorer", "seats", "sso"]);
    assert_eq!(
        requests(&emulator, "PUT /external/billables/register").await,
        1,
        "sent together"
    );
}

#[actix_rt::test]
async fn unknown_customers_are_created_with_their_info() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    let info = CustomerInfo::new().email("new@example.com").name("New");
    let created = atlas.customer("user_new", Some(&info)).await.unwrap();
    assert_eq!(created.email.as_deref(), Some("new@example.com"));
    assert_eq!(created.active_subscriptions[0].plan_id, "plan_free");
    let customers = admin(&emulator, Method::GET, "/__admin/customers", None).await;
    assert!(customers
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["externalId"] == "user_new" && c["name"] == "New"));
}

#[actix_rt::test]
async fn one_hundred_concurrent_first_checks_make_one_customer_request() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    let checks: Vec<_> = (0..100)
        .map(|_| {
            let atlas = atlas.clone();
            actix_rt::spawn(
                async move { atlas.allowed("org_standard_corp", ["data-explorer"]).await },
            )
        })
        .collect();
    for check in checks {
        assert!(check.await.unwrap().unwrap().ok);
    }
    assert_eq!(requests(&emulator, CUSTOMER_ROUTE).await, 1);
    assert_eq!(requests(&emulator, "GET /external/pricingModel").await, 1);
}

#[actix_rt::test]
async fn ids_are_encoded_and_reach_the_platform_intact() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    let tricky = "a/b?c&d#e %2F..";
    let customer = atlas.customer(tricky, None).await.unwrap();
    assert_eq!(customer.external_id, tricky);
    let customers = admin(&emulator, Method::GET, "/__admin/customers", None).await;
    let customers = customers.as_array().unwrap();
    assert_eq!(customers.len(), 5, "one customer created, no other touched");
    assert!(customers.iter().any(|c| c["externalId"] == tricky));

    // An id that would add a query parameter reads nobody's invoices.
    let injected = atlas
        .invoices(
            "x&customer.externalId=org_standard_corp",
            &Pagination::new(),
        )
        .await
        .unwrap();
    assert_eq!(injected.count, 0);
    // One that would climb the path does not reach another route.
    let climbing = atlas
        .credit_usage("../../merchants/me", "cpu_image_credits")
        .await;
    assert!(
        matches!(climbing, Err(AtlasError::Rejected { status: 404, .. })),
        "{climbing:?}"
    );
}

#[actix_rt::test]
async fn billing_reads() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    let org = "org_standard_corp";

    let model = atlas.pricing_model().await.unwrap();
    assert_eq!(model.plans.len(), 4);
    let public = atlas.public_pricing_model(None).await.unwrap();
    assert_eq!(
        public
            .plans
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["plan_free", "plan_pro", "plan_team"]
    );
    let public_json = serde_json::to_string(&public).unwrap();
    assert!(!public_json.contains("crossEnvironmentId") && !public_json.contains("priceId"));
    let for_frank = atlas
        .public_pricing_model(Some("user_frank"))
        .await
        .unwrap();
    assert!(for_frank.plans.iter().any(|p| p.id == "plan_enterprise"));

    let invoices = atlas
        .invoices(org, &Pagination::new().page(1).page_size(2))
        .await
        .unwrap();
    assert_eq!(
        (invoices.count, invoices.pages, invoices.results.len()),
        (3, 2, 2)
    );
    assert_eq!(invoices.results[0].amount, Some(100.25));
    let second = atlas
        .invoices(org, &Pagination::new().page(2).page_size(2))
        .await
        .unwrap();
    assert_eq!(second.results[0].id, "inv_standard_draft");
    assert_eq!(
        requests(&emulator, "GET /external/invoices/amounts").await,
        1,
        "paginated locally"
    );

    let items = atlas
        .invoice_line_items(org, "inv_standard_1")
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    let not_hers = atlas
        .invoice_line_items("user_erin", "inv_standard_1")
        .await
        .unwrap();
    assert!(not_hers.is_empty(), "line items are cached per customer");
    // The other way round (found by the differential test: the official client then serves
    // the owner the `[]` another customer's read left in its cache).
    let named_first = atlas
        .invoice_line_items("user_erin", "inv_standard_draft")
        .await
        .unwrap();
    assert!(named_first.is_empty());
    let owners = atlas
        .invoice_line_items(org, "inv_standard_draft")
        .await
        .unwrap();
    assert_eq!(
        owners.len(),
        2,
        "the owner's read is not the other customer's cached answer"
    );

    let pagination = Pagination::new()
        .page(1)
        .page_size(1)
        .order_by("createdAt")
        .order("desc");
    let transactions = atlas.transactions(org, &pagination).await.unwrap();
    assert_eq!(transactions.results[0].id, "tx_standard_2");
    assert_eq!(transactions.pages, 2);

    let subscription = atlas.subscription("sub_standard_team").await.unwrap();
    assert_eq!(subscription.plan_id, "plan_team");
    assert!(matches!(
        atlas.subscription("sub_nope").await,
        Err(AtlasError::Rejected { status: 404, .. })
    ));

    let credits = atlas.credit_usage(org, "cpu_image_credits").await.unwrap();
    assert_eq!(credits.extra.get("remaining"), Some(serde_json::json!(420)));
}

#[actix_rt::test]
async fn subscribing_cancelling_and_renewing_refresh_the_customer() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    assert!(
        !atlas
            .allowed("user_dave", ["data-explorer"])
            .await
            .unwrap()
            .ok
    );

    let request = SubscribeRequest::new(BillingCadence::Monthly, "https://app.example/done");
    let session = atlas
        .subscribe("user_dave", "plan_pro", &request)
        .await
        .unwrap();
    assert!(session.url.contains("/__checkout/"));
    let path = &session.url[emulator.url().len()..];
    assert_eq!(
        call(emulator.url(), None, Method::GET, path, None)
            .await
            .status,
        302
    );
    // The checkout completed behind the client's back; an explicit invalidation shows it
    // whether or not the platform's push has arrived yet.
    atlas.invalidate_customer("user_dave");
    assert!(
        atlas
            .allowed("user_dave", ["data-explorer"])
            .await
            .unwrap()
            .ok
    );

    let dave = atlas.customer("user_dave", None).await.unwrap();
    let pro = dave.active_subscriptions[0].id.clone();
    atlas
        .cancel_subscription("user_dave", &pro, CancelType::Active)
        .await
        .unwrap();
    assert!(
        !atlas
            .allowed("user_dave", ["data-explorer"])
            .await
            .unwrap()
            .ok,
        "back on Free at once"
    );

    let free = atlas
        .customer("user_dave", None)
        .await
        .unwrap()
        .active_subscriptions[0]
        .id
        .clone();
    let renewed = atlas.renew_subscription("user_dave", &free).await.unwrap();
    assert!(renewed.end_date.is_none());

    let free_plan = request.clone();
    let locked = atlas.subscribe("user_frank", "plan_free", &free_plan).await;
    assert_eq!(
        locked.unwrap_err(),
        AtlasError::SubscriptionChangesNotAllowed
    );
    let quarterly = SubscribeRequest::new(BillingCadence::Quarterly, "https://app.example/done");
    let no_price = atlas.subscribe("user_erin", "plan_nope", &quarterly).await;
    assert!(matches!(
        no_price,
        Err(AtlasError::Rejected { status: 404, .. })
    ));

    let card = atlas
        .update_payment_method("user_erin", "https://app.example/card", None)
        .await
        .unwrap();
    assert_eq!(card.extra.get("mode"), Some(serde_json::json!("setup")));
}

#[actix_rt::test]
async fn usage_events_are_queued_batched_and_flushed() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .events_flush_interval(Duration::from_secs(60))
        .events_flush_at(3)
        .build()
        .unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            atlas.enqueue("org_standard_corp", ["ai-tokens"], bad).await,
            Err(AtlasError::InvalidInput(_))
        ));
    }
    atlas
        .enqueue(
            "org_standard_corp",
            ["ai-tokens", "sso", "image-generation"],
            5.0,
        )
        .await
        .unwrap();
    assert_eq!(atlas.queued_events(), 2, "sso reports no usage");
    atlas.flush().await.unwrap();
    let events = admin(&emulator, Method::GET, "/__admin/events", None).await;
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ent_ai_tokens", "ent_image_credits"]);
    assert_eq!(
        events[0]["customerId"], "cus_standard_corp",
        "the internal id"
    );
    assert_eq!(events[0]["data"]["quantity"], 5);

    // Three queued events reach flush_at: the background flusher sends them.
    atlas
        .enqueue(
            "user_erin",
            ["ai-tokens", "ai-tokens", "image-generation"],
            1.0,
        )
        .await
        .unwrap();
    eventually(
        "the background flush of the batch",
        Duration::from_secs(5),
        || async {
            let events = admin(&emulator, Method::GET, "/__admin/events", None).await;
            (events.as_array().unwrap().len() == 5).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_failed_flush_keeps_its_events_and_retries_with_the_same_keys() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .events_flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    atlas
        .enqueue("user_erin", ["ai-tokens"], 2.0)
        .await
        .unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/event", "status": 503}))
    .await;
    assert!(matches!(
        atlas.flush().await,
        Err(AtlasError::Unavailable(_))
    ));
    assert_eq!(atlas.queued_events(), 1);
    Platform {
        emulator: &emulator,
    }
    .clear_faults()
    .await;
    atlas.flush().await.unwrap();
    assert_eq!(atlas.queued_events(), 0);
    let events = admin(&emulator, Method::GET, "/__admin/events", None).await;
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert!(
        requests(&emulator, "POST /external/event").await >= 4,
        "five attempts, then one"
    );
}

#[actix_rt::test]
async fn shutdown_flushes_and_stops() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .events_flush_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    atlas
        .enqueue("user_erin", ["ai-tokens"], 1.0)
        .await
        .unwrap();
    atlas.shutdown().await.unwrap();
    assert_eq!(
        admin(&emulator, Method::GET, "/__admin/events", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        atlas.allowed("user_erin", ["sso"]).await.unwrap_err(),
        AtlasError::Shutdown
    );
}

#[actix_rt::test]
async fn idempotent_calls_are_retried_and_writes_only_when_unsent() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/customers/external-id", "times": 2, "status": 502}))
    .await;
    assert!(
        atlas
            .allowed("user_erin", ["data-explorer"])
            .await
            .unwrap()
            .ok
    );
    assert_eq!(requests(&emulator, CUSTOMER_ROUTE).await, 3);

    Platform {
        emulator: &emulator,
    }
    .inject_fault(
        json!({"path": "/external/subscriptions/sub_erin_pro/renew", "times": 1, "status": 503}),
    )
    .await;
    let renew = atlas.renew_subscription("user_erin", "sub_erin_pro").await;
    assert!(
        matches!(renew, Err(AtlasError::Unavailable(_))),
        "{renew:?}"
    );
    assert_eq!(
        requests(&emulator, "POST /external/subscriptions/:id/renew").await,
        1,
        "a write that reached the platform is not repeated"
    );

    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/pricingModel", "status": 500}))
    .await;
    atlas.invalidate_plans();
    assert!(matches!(
        atlas.pricing_model().await,
        Err(AtlasError::Unavailable(_))
    ));
    assert_eq!(
        requests(&emulator, "GET /external/pricingModel").await,
        1 + 3,
        "three attempts"
    );
}

#[actix_rt::test]
async fn a_platform_that_never_answers_times_out() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    atlas.status().await.unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/customers", "delayMs": 30000}))
    .await;
    let answer =
        tokio::time::timeout(Duration::from_secs(20), atlas.allowed("user_erin", ["sso"])).await;
    let answer = answer.expect("the client's own timeout ends the call");
    assert!(
        matches!(answer, Err(AtlasError::Unavailable(ref m)) if m.message().contains("did not answer")),
        "{answer:?}"
    );
}

#[actix_rt::test]
async fn garbage_from_the_platform_is_an_outage_not_a_panic() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/customers", "invalidJson": true, "times": 1}))
    .await;
    let answer = atlas.customer("user_erin", None).await;
    assert!(
        matches!(answer, Err(AtlasError::Unavailable(ref m)) if m.message().contains("unexpected JSON")),
        "{answer:?}"
    );
    // The cause is kept, as the error's source chain: the JSON error itself.
    let err = answer.unwrap_err();
    let outage = std::error::Error::source(&err).expect("the outage");
    let cause = outage.source().expect("its cause");
    assert!(cause.is::<serde_json::Error>(), "{cause:?}");
    assert!(
        atlas.customer("user_erin", None).await.is_ok(),
        "nothing bad was cached"
    );
}

#[actix_rt::test]
async fn an_invalidation_during_a_fetch_wins() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).build().unwrap();
    atlas.status().await.unwrap();
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/customers", "delayMs": 400, "times": 1}))
    .await;
    let slow = {
        let atlas = atlas.clone();
        actix_rt::spawn(async move { atlas.allowed("user_dave", ["data-explorer"]).await })
    };
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    // Dave upgrades while his details are on their way, and the platform says so.
    let mut dave = admin(&emulator, Method::GET, "/__admin/customers", None).await[1].clone();
    dave["activeSubscriptions"][0]["planId"] = json!("plan_team");
    admin(
        &emulator,
        Method::PUT,
        "/__admin/customers/user_dave",
        Some(json!({"activeSubscriptions": dave["activeSubscriptions"]})),
    )
    .await;
    atlas.invalidate_customer("user_dave");
    slow.await.unwrap().unwrap();
    assert!(
        atlas
            .allowed("user_dave", ["data-explorer"])
            .await
            .unwrap()
            .ok,
        "the next check sees the new plan"
    );
    assert_eq!(
        requests(&emulator, CUSTOMER_ROUTE).await,
        2,
        "the fetch in flight was not kept as fresh"
    );
}

#[actix_rt::test]
async fn a_platform_down_at_start_is_an_outage_that_heals() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let data = example_data();
    let atlas = Atlas::builder()
        .api_key(&data.api_key)
        .base_url(format!("http://{addr}"))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(matches!(
        atlas.status().await,
        Err(AtlasError::Unavailable(_))
    ));
    assert!(matches!(
        atlas.allowed("user_dave", ["sso"]).await,
        Err(AtlasError::Unavailable(_))
    ));
    let _emulator = Emulator::builder(data).bind(addr).start().unwrap();
    eventually("the client's recovery", Duration::from_secs(10), || async {
        atlas.status().await.ok()
    })
    .await;
    assert!(
        atlas
            .allowed("org_standard_corp", ["sso"])
            .await
            .unwrap()
            .ok
    );
}

#[test]
fn the_builder_needs_a_key() {
    // The check runs in a child process without ATLAS_API_KEY: an environment that sets it
    // cannot make this pass without checking anything.
    if std::env::var_os("ATLAS_TEST_NO_KEY_CHILD").is_some() {
        let missing = Atlas::builder().base_url("http://127.0.0.1:9").build();
        assert!(matches!(
            missing,
            Err(atlas_actix::BuildError::MissingApiKey)
        ));
        // What `main` returning the error prints (`Error: {:?}`): the fix, not the variant.
        let printed = format!("{:?}", missing.unwrap_err());
        assert_eq!(
            printed,
            "no Atlas API key: set ATLAS_API_KEY or call AtlasBuilder::api_key"
        );
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client::the_builder_needs_a_key",
            "--test-threads=1",
        ])
        .env("ATLAS_TEST_NO_KEY_CHILD", "1")
        .env_remove("ATLAS_API_KEY")
        .output()
        .unwrap();
    let output = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{output}");
    assert!(output.contains("1 passed"), "the check ran: {output}");
}
