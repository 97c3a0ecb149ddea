//! The entitlement check on a warm cache, with no network in the measured loop, and the
//! entitlement engine alone.
//!
//! `cargo bench --bench entitlements`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use atlas_actix::emulator::{AtlasData, Emulator};
use atlas_actix::entitlements::{customer_features, is_allowed, LimitOutcome};
use atlas_actix::{limit, Atlas};
use criterion::{criterion_group, criterion_main, Criterion};

/// The example data plus a customer with ten subscriptions.
fn data() -> AtlasData {
    let mut data = AtlasData::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/atlas-data.json"
    ))
    .unwrap();
    let template = data
        .customers
        .iter()
        .find(|c| c.external_id == "user_erin")
        .unwrap()
        .clone();
    let plans = ["plan_free", "plan_pro", "plan_team"];
    let mut ten = template.clone();
    ten.id = "cus_ten".to_owned();
    ten.external_id = "user_ten".to_owned();
    ten.active_subscriptions = (0..10)
        .map(|i| {
            let mut subscription = template.active_subscriptions[0].clone();
            subscription.id = format!("sub_ten_{i}");
            subscription.plan_id = plans[i % plans.len()].to_owned();
            subscription.end_date = Some("2099-01-01T00:00:00.000Z".to_owned());
            subscription
        })
        .collect();
    data.customers.push(ten);
    data
}

fn engine(c: &mut Criterion) {
    let data = data();
    let now = time::OffsetDateTime::now_utc();
    let limits: HashMap<&str, LimitOutcome> =
        [("seats", LimitOutcome::Usage(3.0))].into_iter().collect();
    for (name, id) in [
        ("1 subscription", "user_erin"),
        ("10 subscriptions", "user_ten"),
    ] {
        let customer = data.customers.iter().find(|c| c.external_id == id).unwrap();
        c.bench_function(&format!("engine/features/{name}"), |b| {
            b.iter(|| {
                customer_features(
                    black_box(customer),
                    &data.pricing_model,
                    now,
                    false,
                    &limits,
                )
            })
        });
        c.bench_function(&format!("engine/is_allowed/{name}"), |b| {
            b.iter(|| {
                is_allowed(
                    black_box(customer),
                    &data.pricing_model,
                    now,
                    "data-explorer",
                    false,
                    LimitOutcome::NoCallback,
                    1.0,
                )
            })
        });
    }
    // A larger pricing model: every plan grants 40 features, and the one checked is the last.
    let (model, feature) = forty_features(&data);
    let customer = data
        .customers
        .iter()
        .find(|c| c.external_id == "user_erin")
        .unwrap();
    c.bench_function("engine/is_allowed/40 features, the last one", |b| {
        b.iter(|| {
            is_allowed(
                black_box(customer),
                &model,
                now,
                black_box(&feature),
                false,
                LimitOutcome::NoCallback,
                1.0,
            )
        })
    });
}

/// The example's pricing model with 35 more features, each granted by every plan, and the slug
/// of the last one.
fn forty_features(data: &AtlasData) -> (atlas_actix::models::PricingModel, String) {
    let mut model = data.pricing_model.clone();
    let template = model.entitlements[0].clone();
    let mut last = String::new();
    for i in 0..35 {
        let mut feature = template.clone();
        feature.id = format!("ent_more_{i:02}");
        feature.slug = format!("more-{i:02}");
        for plan in &mut model.plans {
            let mut grant = plan.entitlements[0].clone();
            grant.id = feature.id.clone();
            grant.included = true;
            plan.entitlements.push(grant);
        }
        last = feature.slug.clone();
        model.entitlements.push(feature);
    }
    (model, last)
}

fn allowed(c: &mut Criterion) {
    let emulator = Emulator::start(data()).unwrap();
    let atlas = limit!(
        Atlas::builder()
            .base_url(emulator.url())
            .api_key(emulator.api_key()),
        "seats",
        |_| async { 3 }
    )
    .push_invalidation(false)
    .customer_ttl(Duration::from_secs(3600))
    // The quota case's usage stays pending (queued, not yet metered) through the run.
    .events_flush_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Erin's Pro plan has a maximum of AI tokens: every check of it counts the usage queued
    // since the platform's last figure against that maximum.
    runtime
        .block_on(atlas.enqueue("user_erin", ["ai-tokens"], 500.0))
        .unwrap();
    let cases = [
        (
            "allowed/boolean feature/1 subscription",
            "user_erin",
            "data-explorer",
        ),
        (
            "allowed/boolean feature/10 subscriptions",
            "user_ten",
            "data-explorer",
        ),
        (
            "allowed/quota feature, a maximum and pending usage/1 subscription",
            "user_erin",
            "ai-tokens",
        ),
        (
            "allowed/limit feature, callback at once/1 subscription",
            "org_standard_corp",
            "seats",
        ),
        (
            "allowed/limit feature, callback at once/10 subscriptions",
            "user_ten",
            "seats",
        ),
    ];
    for (name, customer, feature) in cases {
        // Warm: the customer and the pricing model are cached; nothing below leaves the process.
        assert!(
            runtime
                .block_on(atlas.allowed(customer, [feature]))
                .unwrap()
                .ok,
            "{name}"
        );
        c.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        black_box(atlas.allowed(black_box(customer), [feature]).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
    }
}

async fn report() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().body("report")
}

#[atlas_actix::requires_feature("data-explorer")]
async fn guarded_report() -> actix_web::HttpResponse {
    report().await
}

/// A whole request through actix-web's test service (no socket): the same handler with and
/// without the guard, the user named by a header or by a Clerk token (verified once, cached).
fn guard(c: &mut Criterion) {
    use actix_web::{test, web, App};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::Generate;

    let emulator = Emulator::start(data()).unwrap();
    let private_key = rsa::PrivateKey::generate();
    let public_pem = private_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let signing = jsonwebtoken::EncodingKey::from_rsa_pem(
        private_key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"sub": "user_erin", "sid": "sess", "iat": now, "nbf": now, "exp": now + 3600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &signing,
    )
    .unwrap();
    let clients = [
        (
            "header user",
            Atlas::builder().user_resolver(|request: actix_web::HttpRequest| async move {
                request
                    .headers()
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            }),
        ),
        (
            "Clerk token",
            Atlas::builder().user_resolver(atlas_actix::ClerkAuth::from_pem(&public_pem).unwrap()),
        ),
    ];
    let system = actix_rt::System::new();
    for (who, builder) in clients {
        let atlas = builder
            .base_url(emulator.url())
            .api_key(emulator.api_key())
            .push_invalidation(false)
            .customer_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        let app = system.block_on(test::init_service(
            App::new()
                .app_data(web::Data::new(atlas.clone()))
                .route("/open", web::get().to(report))
                .route("/guarded", web::get().to(guarded_report)),
        ));
        for path in ["/open", "/guarded"] {
            let request = || {
                test::TestRequest::get()
                    .uri(path)
                    .insert_header(("x-user", "user_erin"))
                    .insert_header(("authorization", format!("Bearer {token}")))
                    .to_request()
            };
            assert_eq!(
                system
                    .block_on(test::call_service(&app, request()))
                    .status(),
                200,
                "{who} {path}"
            );
            let name = format!(
                "request/{}/{who}",
                if path == "/open" {
                    "unguarded"
                } else {
                    "guarded"
                }
            );
            c.bench_function(&name, |b| {
                b.iter_custom(|iterations| {
                    let requests: Vec<_> = (0..iterations).map(|_| request()).collect();
                    system.block_on(async {
                        let start = Instant::now();
                        for request in requests {
                            black_box(test::call_service(&app, request).await);
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = engine, allowed, guard
}
criterion_main!(benches);
