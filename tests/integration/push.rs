//! Push invalidation over socket.io: changes show on the next request, the link survives the
//! platform restarting, and a wrong key is not retried in a hot loop.

use std::future::Future;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use atlas_actix::emulator::{Emulator, EmulatorHandle};
use atlas_actix::{Atlas, Provenance, PushLink, RequireFeatures};
use awc::http::Method;
use serde_json::json;

use crate::common::builder;
use crate::common::{
    call, eventually, example_data, header_user, requests, start_emulator, Platform,
};

/// Waits (up to 10 s) for `condition`: pushes are asynchronous.
async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, Duration::from_secs(10), || {
        let met = condition();
        async move { met.await.then_some(()) }
    })
    .await;
}

async fn connected(atlas: &Atlas) {
    until("the push link to connect", || async {
        atlas.push_link() == PushLink::Connected
    })
    .await;
}

/// A client whose caches would stay fresh for minutes: only pushes can explain a refresh.
fn long_lived(emulator: &EmulatorHandle) -> Atlas {
    builder(emulator)
        .customer_ttl(Duration::from_secs(600))
        .pricing_model_ttl(Duration::from_secs(600))
        .user_resolver(header_user)
        .build()
        .unwrap()
}

#[actix_rt::test]
async fn an_upgrade_through_the_scope_unlocks_the_next_guarded_request() {
    let emulator = start_emulator();
    let atlas = long_lived(&emulator);
    connected(&atlas).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(atlas.clone()))
            .service(atlas.scope())
            .service(
                web::scope("/explore")
                    .wrap(RequireFeatures::new(["data-explorer"]))
                    .route("", web::get().to(HttpResponse::Ok)),
            ),
    )
    .await;
    let explore = || {
        TestRequest::get()
            .uri("/explore")
            .insert_header(("x-test-user", "user_dave"))
            .to_request()
    };
    assert_eq!(test::call_service(&app, explore()).await.status(), 403);

    let subscribe = TestRequest::post()
        .uri("/atlas-api/plans/plan_pro/subscribe")
        .insert_header(("x-test-user", "user_dave"))
        .set_json(json!({"billingCadence": "monthly", "successUrl": "https://app.example/done"}))
        .to_request();
    let session: serde_json::Value = test::call_and_read_body_json(&app, subscribe).await;
    // Checked again before paying: the cache holds Dave on Free once more.
    assert_eq!(test::call_service(&app, explore()).await.status(), 403);

    let checkout = &session["url"].as_str().unwrap()[emulator.url().len()..];
    assert_eq!(
        call(emulator.url(), None, Method::GET, checkout, None)
            .await
            .status,
        302
    );
    // The platform pushes invalidateCustomer as the checkout completes.
    until("the upgrade to show", || async {
        test::call_service(&app, explore()).await.status() == 200
    })
    .await;
}

/// A check of Dave's `data-explorer`, run on its own task.
fn check_dave(atlas: &Atlas) -> actix_rt::task::JoinHandle<atlas_actix::Allowed> {
    let atlas = atlas.clone();
    actix_rt::spawn(async move { atlas.allowed("user_dave", ["data-explorer"]).await.unwrap() })
}

#[actix_rt::test]
async fn checks_during_a_pushed_refetch_are_answered_from_before_the_push_and_the_first_waits() {
    let emulator = start_emulator();
    let atlas = long_lived(&emulator);
    connected(&atlas).await;
    let before = check_dave(&atlas).await.unwrap();
    assert!(!before.ok, "Dave is on Free");
    // Every customer fetch now takes 400 ms: a refetch stays in flight long enough to see
    // what the checks that come meanwhile are answered.
    emulator
        .inject_fault(
            serde_json::from_value(json!({"path": "/external/customers", "delayMs": 400})).unwrap(),
        )
        .unwrap();
    emulator.set_plan("user_dave", "plan_pro").unwrap();
    let first = loop {
        let first = check_dave(&atlas);
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        if !first.is_finished() {
            break first;
        }
        let answer = first.await.unwrap();
        assert!(
            !answer.ok && matches!(answer.provenance, Provenance::Cached { .. }),
            "before the push arrives: {answer:?}"
        );
    };
    let meanwhile = check_dave(&atlas).await.unwrap();
    assert!(!meanwhile.ok, "answered from before the push");
    assert!(
        matches!(meanwhile.provenance, Provenance::Revalidating { .. }),
        "{meanwhile:?}"
    );
    let first = first.await.unwrap();
    assert!(
        first.ok,
        "the first check after the push waited for the platform"
    );
    assert_eq!(first.provenance, Provenance::Fetched);

    // The app's own invalidation (a change it made) is never answered from before it.
    emulator.set_plan("user_dave", "plan_free").unwrap();
    until("the downgrade to show", || async {
        !check_dave(&atlas).await.unwrap().ok
    })
    .await;
    atlas.invalidate_customer("user_dave");
    let first = check_dave(&atlas);
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let meanwhile = check_dave(&atlas).await.unwrap();
    assert_eq!(meanwhile.provenance, Provenance::Fetched, "it waited");
    assert!(!first.await.unwrap().ok && !meanwhile.ok);
    emulator.clear_faults();
}

#[actix_rt::test]
async fn plan_and_merchant_pushes_refresh_the_model_and_initialisation() {
    let emulator = start_emulator();
    let atlas = long_lived(&emulator);
    connected(&atlas).await;
    atlas.pricing_model().await.unwrap();
    let platform = Platform {
        emulator: &emulator,
    };
    let before = requests(&emulator, "GET /external/pricingModel").await;
    let pushed = platform
        .admin(
            Method::POST,
            "/__admin/invalidate",
            Some(json!({"plans": true})),
        )
        .await;
    assert_eq!(pushed.body["sockets"], 1);
    until("the pricing model to be refetched", || async {
        atlas.pricing_model().await.unwrap();
        requests(&emulator, "GET /external/pricingModel").await > before
    })
    .await;

    let merchants = requests(&emulator, "GET /external/merchants/me").await;
    platform
        .admin(
            Method::POST,
            "/__admin/invalidate",
            Some(json!({"merchant": true})),
        )
        .await;
    until("initialisation to run again", || async {
        requests(&emulator, "GET /external/merchants/me").await > merchants
    })
    .await;
    assert!(atlas.status().await.is_ok());
}

#[actix_rt::test]
async fn a_dropped_link_reconnects_and_invalidations_flow_again() {
    let first = start_emulator();
    let addr = first.addr();
    let atlas = long_lived(&first);
    connected(&atlas).await;
    first.stop();
    until("the link to notice", || async {
        matches!(
            atlas.push_link(),
            PushLink::Disconnected { .. } | PushLink::Connecting
        )
    })
    .await;

    let second = Emulator::builder(example_data())
        .bind(addr)
        .start()
        .unwrap();
    connected(&atlas).await;
    atlas.allowed("user_erin", ["sso"]).await.unwrap();
    assert_eq!(requests(&second, crate::common::CUSTOMER_ROUTE).await, 1);
    let pushed = Platform { emulator: &second }
        .admin(
            Method::POST,
            "/__admin/invalidate",
            Some(json!({"customer": "user_erin"})),
        )
        .await;
    assert_eq!(pushed.body["sockets"], 1);
    until("the customer to be refetched", || async {
        atlas.allowed("user_erin", ["sso"]).await.unwrap();
        requests(&second, crate::common::CUSTOMER_ROUTE).await == 2
    })
    .await;
}

#[actix_rt::test]
async fn a_wrong_key_is_refused_and_not_retried_in_a_hot_loop() {
    let emulator = start_emulator();
    let atlas = builder(&emulator).api_key("sk_wrong").build().unwrap();
    until("the link to be refused", || async {
        atlas.push_link() == PushLink::Refused
    })
    .await;
    // A hot loop would make dozens of handshakes in this second; the backoff makes none.
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        requests(&emulator, "GET /socket.io/").await,
        1,
        "one handshake, then the longest backoff"
    );
}

#[actix_rt::test]
async fn shutting_down_closes_the_link() {
    let emulator = start_emulator();
    let atlas = long_lived(&emulator);
    connected(&atlas).await;
    atlas.shutdown().await.unwrap();
    let platform = Platform {
        emulator: &emulator,
    };
    until("the emulator to see the link closed", || async {
        platform
            .admin(
                Method::POST,
                "/__admin/invalidate",
                Some(json!({"plans": true})),
            )
            .await
            .body["sockets"]
            == 0
    })
    .await;
    let quiet = builder(&emulator).push_invalidation(false).build().unwrap();
    assert!(matches!(quiet.push_link(), PushLink::Disconnected { .. }));
}
