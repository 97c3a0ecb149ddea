//! The platform down, failing, slow or answering garbage: no hang, no panic, the outage
//! policy holds, and the app recovers by itself.

use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use atlas_actix::emulator::EmulatorHandle;
use atlas_actix::{Atlas, OutagePolicy, RequireFeatures, UnrecordableUsage};

use crate::common::builder;
use crate::common::{eventually, header_user, start_emulator, Platform};

/// The faults a platform can have, as the emulator injects them.
const FAULTS: [(&str, &str); 3] = [
    ("answering 500", r#"{"status": 500}"#),
    ("answering after the timeout", r#"{"delayMs": 5000}"#),
    ("answering invalid JSON", r#"{"invalidJson": true}"#),
];

fn atlas(emulator: &EmulatorHandle, policy: OutagePolicy) -> Atlas {
    builder(emulator)
        .user_resolver(header_user)
        .timeout(Duration::from_millis(400))
        .customer_ttl(Duration::from_millis(50))
        .pricing_model_ttl(Duration::from_millis(50))
        .push_invalidation(false)
        .outage_policy(policy)
        .feature_outage_policy("sso", OutagePolicy::FailOpen)
        .build()
        .unwrap()
}

macro_rules! guarded_app {
    ($atlas:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($atlas.clone()))
                .service($atlas.scope())
                .service(
                    web::scope("/explore")
                        .wrap(RequireFeatures::new(["data-explorer"]))
                        .route("", web::get().to(HttpResponse::Ok)),
                )
                .service(
                    web::scope("/sso")
                        .wrap(RequireFeatures::new(["sso"]))
                        .route("", web::get().to(HttpResponse::Ok)),
                ),
        )
        .await
    };
}

async fn status(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    path: &str,
    user: &str,
) -> u16 {
    let request = TestRequest::get()
        .uri(path)
        .insert_header(("x-test-user", user))
        .to_request();
    // No request may hang: the client's timeout (400 ms) ends every call long before this.
    let response = tokio::time::timeout(Duration::from_secs(10), test::call_service(app, request))
        .await
        .expect("the request did not hang");
    response.status().as_u16()
}

async fn fault(emulator: &EmulatorHandle, fault: &str) {
    let body: serde_json::Value = serde_json::from_str(fault).unwrap();
    Platform { emulator }.inject_fault(body).await;
}

async fn expire_caches() {
    actix_rt::time::sleep(Duration::from_millis(80)).await;
}

#[actix_rt::test]
async fn fail_closed_answers_503_under_every_fault_and_recovers() {
    let emulator = start_emulator();
    let atlas = atlas(&emulator, OutagePolicy::FailClosed);
    let app = guarded_app!(atlas);
    assert_eq!(status(&app, "/explore", "user_erin").await, 200);
    for (what, body) in FAULTS {
        fault(&emulator, body).await;
        expire_caches().await;
        assert_eq!(status(&app, "/explore", "user_erin").await, 503, "{what}");
        assert_eq!(
            status(&app, "/atlas-api/features", "user_erin").await,
            503,
            "{what}: the scope answers 503"
        );
        assert_eq!(
            status(&app, "/sso", "org_standard_corp").await,
            200,
            "{what}: sso fails open"
        );
        Platform {
            emulator: &emulator,
        }
        .clear_faults()
        .await;
        assert_eq!(
            status(&app, "/explore", "user_erin").await,
            200,
            "{what}: recovered by itself"
        );
    }
}

#[actix_rt::test]
async fn serve_stale_uses_the_last_known_entitlements_for_a_while() {
    let emulator = start_emulator();
    let atlas = atlas(
        &emulator,
        OutagePolicy::ServeStale {
            max_age: Duration::from_secs(60),
        },
    );
    let app = guarded_app!(atlas);
    assert_eq!(status(&app, "/explore", "user_erin").await, 200);
    assert_eq!(status(&app, "/explore", "user_dave").await, 403);
    for (what, body) in FAULTS {
        fault(&emulator, body).await;
        expire_caches().await;
        assert_eq!(
            status(&app, "/explore", "user_erin").await,
            200,
            "{what}: Erin's last known plan has it"
        );
        assert_eq!(
            status(&app, "/explore", "user_dave").await,
            403,
            "{what}: Dave's does not"
        );
        assert_eq!(
            status(&app, "/atlas-api/features", "user_erin").await,
            200,
            "{what}: the features too"
        );
        assert_eq!(
            status(&app, "/explore", "org_standard_corp").await,
            503,
            "{what}: never seen, nothing to serve"
        );
        Platform {
            emulator: &emulator,
        }
        .clear_faults()
        .await;
    }

    let short = crate::common::builder(&emulator)
        .user_resolver(header_user)
        .customer_ttl(Duration::from_millis(10))
        .outage_policy(OutagePolicy::ServeStale {
            max_age: Duration::from_millis(30),
        })
        .build()
        .unwrap();
    assert!(
        short
            .allowed("user_erin", ["data-explorer"])
            .await
            .unwrap()
            .ok
    );
    fault(&emulator, r#"{"status": 503}"#).await;
    actix_rt::time::sleep(Duration::from_millis(60)).await;
    assert!(
        short.allowed("user_erin", ["data-explorer"]).await.is_err(),
        "too old to serve"
    );
}

#[actix_rt::test]
async fn fail_open_allows_while_the_platform_is_stopped() {
    let emulator = start_emulator();
    let atlas = atlas(&emulator, OutagePolicy::FailOpen);
    let app = guarded_app!(atlas);
    assert_eq!(
        status(&app, "/explore", "user_dave").await,
        403,
        "while up, the plan decides"
    );
    emulator.stop();
    expire_caches().await;
    assert_eq!(status(&app, "/explore", "user_dave").await, 200);
    assert_eq!(status(&app, "/explore", "a_stranger").await, 200);
    assert_eq!(
        status(&app, "/atlas-api/features", "user_dave").await,
        503,
        "listing features is no check to open"
    );
}

#[actix_rt::test]
async fn an_outage_at_start_follows_the_policy_too() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let atlas = Atlas::builder()
        .api_key("sk_test")
        .base_url(url)
        .timeout(Duration::from_millis(300))
        .feature_outage_policy("sso", OutagePolicy::FailOpen)
        .build()
        .unwrap();
    assert!(atlas.allowed("anyone", ["sso"]).await.unwrap().ok);
    assert!(atlas
        .allowed("anyone", ["sso", "data-explorer"])
        .await
        .is_err());
    assert!(
        matches!(atlas.flush().await, Ok(())),
        "nothing queued, nothing to fail"
    );
}

/// Work done during an outage is billed: the usage of a guarded handler is built at the check
/// from the entitlements it decided on (here the last known ones), so it is queued although
/// the platform cannot be asked for the customer afterwards. Where nothing is known of the
/// customer (fail open), the work is refused before it runs, unless the app chose to serve
/// it unbilled.
#[actix_rt::test]
async fn usage_of_work_done_in_an_outage_is_billed_or_the_work_refused() {
    let emulator = start_emulator();
    let with = |unrecordable: UnrecordableUsage| {
        builder(&emulator)
            .user_resolver(header_user)
            .timeout(Duration::from_millis(400))
            .customer_ttl(Duration::from_millis(50))
            .pricing_model_ttl(Duration::from_millis(50))
            .push_invalidation(false)
            .events_flush_interval(Duration::from_secs(3600))
            .outage_policy(OutagePolicy::ServeStale {
                max_age: Duration::from_secs(60),
            })
            .feature_outage_policy("ai-tokens", OutagePolicy::FailOpen)
            .unrecordable_usage(unrecordable)
            .build()
            .unwrap()
    };
    let atlas = with(UnrecordableUsage::Refuse);
    let app = test::init_service(
        App::new().app_data(web::Data::new(atlas.clone())).service(
            web::scope("/complete")
                .wrap(RequireFeatures::new(["ai-tokens"]).report_usage(1.0))
                .route("", web::post().to(HttpResponse::Ok)),
        ),
    )
    .await;
    let post = |user: &str| {
        TestRequest::post()
            .uri("/complete")
            .insert_header(("x-test-user", user))
            .to_request()
    };
    assert_eq!(
        test::call_service(&app, post("user_erin")).await.status(),
        200
    );
    fault(&emulator, r#"{"status": 503}"#).await;
    expire_caches().await;
    for _ in 0..10 {
        assert_eq!(
            test::call_service(&app, post("user_erin")).await.status(),
            200
        );
    }
    eventually("11 queued events", Duration::from_secs(5), || async {
        (atlas.queued_events() == 11).then_some(())
    })
    .await;

    // Fail open for a customer never seen: no event can be built, so no work is done.
    let refused = test::call_service(&app, post("user_frank")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
    assert_eq!(atlas.queued_events(), 11);

    let serving = with(UnrecordableUsage::Serve);
    let lenient = test::init_service(
        App::new()
            .app_data(web::Data::new(serving.clone()))
            .service(
                web::scope("/complete")
                    .wrap(RequireFeatures::new(["ai-tokens"]).report_usage(1.0))
                    .route("", web::post().to(HttpResponse::Ok)),
            ),
    )
    .await;
    assert_eq!(
        test::call_service(&lenient, post("user_frank"))
            .await
            .status(),
        200,
        "served unbilled, as configured"
    );
    assert_eq!(serving.queued_events(), 0);

    Platform {
        emulator: &emulator,
    }
    .clear_faults()
    .await;
    atlas.flush().await.unwrap();
    let events = emulator.events();
    assert_eq!(events.len(), 11, "every request billed: {events:?}");
}
