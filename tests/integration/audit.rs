//! Decisions you can audit: hooks see every check and usage event once, with where the data
//! came from; a panicking hook changes no answer; the decision log writes JSON lines off the
//! request path, rotates, and drops (counting) rather than slow a request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{get, App, HttpResponse};
use atlas_actix::emulator::{AtlasData, Emulator};
use atlas_actix::{
    requires_feature, AtlasHook, CheckDecision, CheckRecord, DecisionLog, Entitlements,
    OutagePolicy, Provenance, UsageRecord,
};
use serde_json::{json, Value};

use crate::common::{builder, eventually, header_user, Platform};

/// What a hook saw: each check and each usage stage, in order.
#[derive(Default)]
struct Seen {
    checks: Mutex<Vec<SeenCheck>>,
    usage: Mutex<Vec<(String, &'static str)>>,
}

/// A check as the recorder keeps it: customer, features, decision, provenance, route and id.
type SeenCheck = (
    String,
    String,
    CheckDecision,
    Option<Provenance>,
    Option<String>,
);

#[derive(Clone, Default)]
struct Recorder(Arc<Seen>);

impl AtlasHook for Recorder {
    fn on_check(&self, check: &CheckRecord<'_>) {
        self.0.checks.lock().unwrap().push((
            check.customer.to_owned(),
            check.features.join(","),
            check.decision,
            check.provenance,
            check
                .route
                .map(|route| format!("{route} {}", check.request_id.unwrap_or("-"))),
        ));
    }

    fn on_usage(&self, usage: &UsageRecord<'_>) {
        self.0
            .usage
            .lock()
            .unwrap()
            .push((usage.event.idempotency_key.clone(), usage.stage.as_str()));
    }
}

struct Panics;

impl AtlasHook for Panics {
    fn on_check(&self, _: &CheckRecord<'_>) {
        panic!("a hook's bug");
    }

    fn on_usage(&self, _: &UsageRecord<'_>) {
        panic!("another");
    }
}

#[get("/explorer")]
#[requires_feature("data-explorer")]
async fn explorer() -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[get("/plan")]
async fn plan(entitlements: Entitlements) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "provenance": entitlements.provenance }))
}

#[actix_rt::test]
async fn a_hook_sees_every_check_and_usage_event_once_with_its_provenance() {
    let platform = Emulator::start(AtlasData::sample()).unwrap();
    let recorder = Recorder::default();
    let atlas = builder(&platform)
        .user_resolver(header_user)
        .timeout(Duration::from_millis(400))
        .push_invalidation(false)
        .outage_policy(OutagePolicy::ServeStale {
            max_age: Duration::from_secs(3600),
        })
        .feature_outage_policy("sso", OutagePolicy::FailOpen)
        .hook(Panics)
        .hook(recorder.clone())
        .build()
        .unwrap();

    assert!(
        atlas
            .allowed("user_erin", ["data-explorer"])
            .await
            .unwrap()
            .ok
    );
    let cached = atlas.allowed("user_erin", ["data-explorer"]).await.unwrap();
    assert!(
        matches!(cached.provenance, Provenance::Cached { .. }),
        "{cached:?}"
    );
    let denied = atlas.allowed("user_dave", ["data-explorer"]).await.unwrap();
    assert!(!denied.ok, "a panicking hook changes no answer");

    // The platform fails: Erin's entitlements from the last known data, Dave's sso open.
    Platform {
        emulator: &platform,
    }
    .inject_fault(json!({"path": "/external/customers", "status": 503}))
    .await;
    atlas.invalidate_customer("user_erin");
    atlas.invalidate_customer("user_dave");
    let stale = atlas.allowed("user_erin", ["data-explorer"]).await.unwrap();
    assert!(stale.ok);
    let open = atlas.allowed("user_dave", ["sso"]).await.unwrap();
    assert!(open.ok);
    let closed = atlas.allowed("user_frank", ["data-explorer"]).await;
    assert!(closed.is_err(), "never seen: nothing stale to serve");
    Platform {
        emulator: &platform,
    }
    .clear_faults()
    .await;

    // A guard's check names its route and the request's id.
    let app = test::init_service(
        App::new()
            .configure(atlas.configure())
            .service(explorer)
            .service(plan),
    )
    .await;
    let request = TestRequest::get()
        .uri("/explorer")
        .insert_header(("x-test-user", "user_erin"))
        .insert_header(("x-request-id", "req-42"))
        .to_request();
    assert_eq!(test::call_service(&app, request).await.status(), 200);

    // What the Entitlements extractor used says where it came from too: the guard's fetch,
    // cached.
    let request = TestRequest::get()
        .uri("/plan")
        .insert_header(("x-test-user", "user_erin"))
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, request).await;
    assert_eq!(body["provenance"]["source"], "cached", "{body}");

    let checks = recorder.0.checks.lock().unwrap().clone();
    let seen: Vec<(&str, &str, CheckDecision, Option<&str>)> = checks
        .iter()
        .map(|(customer, features, decision, provenance, _)| {
            let source = provenance.map(|p| match p {
                Provenance::Fetched => "fetched",
                Provenance::Fleet => "fleet",
                Provenance::Cached { .. } => "cached",
                Provenance::Stale { age_ms: Some(_) } => "stale",
                Provenance::Stale { age_ms: None } => "stale from the fleet",
                Provenance::FailOpen => "fail-open",
                _ => "other",
            });
            (customer.as_str(), features.as_str(), *decision, source)
        })
        .collect();
    use CheckDecision::{Allowed, Denied, Unavailable};
    assert_eq!(
        seen,
        [
            ("user_erin", "data-explorer", Allowed, Some("fetched")),
            ("user_erin", "data-explorer", Allowed, Some("cached")),
            ("user_dave", "data-explorer", Denied, Some("fetched")),
            ("user_erin", "data-explorer", Allowed, Some("stale")),
            ("user_dave", "sso", Allowed, Some("fail-open")),
            ("user_frank", "data-explorer", Unavailable, None),
            ("user_erin", "data-explorer", Allowed, Some("fetched")),
        ]
    );
    assert_eq!(
        checks.last().unwrap().4.as_deref(),
        Some("GET /explorer req-42")
    );

    // Usage: each event queued once, then sent once.
    atlas
        .enqueue("user_erin", ["ai-tokens", "image-generation"], 2.0)
        .await
        .unwrap();
    atlas.flush().await.unwrap();
    let usage = recorder.0.usage.lock().unwrap().clone();
    let mut keys: Vec<&String> = usage.iter().map(|(key, _)| key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2);
    assert_eq!(platform.events().len(), 2);
    for key in keys {
        let stages: Vec<&str> = usage
            .iter()
            .filter(|(seen, _)| seen == key)
            .map(|(_, stage)| *stage)
            .collect();
        assert_eq!(stages, ["queued", "sent"], "{key}");
    }
}

/// A writer that blocks until its sender is dropped: a disk that hangs.
struct Blocked(std::sync::mpsc::Receiver<()>);

impl Write for Blocked {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_rt::test]
async fn the_decision_log_writes_json_lines_rotates_and_drops_rather_than_wait() {
    let dir = std::env::temp_dir().join(format!("atlas-decision-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("decisions.jsonl");
    let platform = Emulator::start(AtlasData::sample()).unwrap();
    let log = DecisionLog::builder()
        .sample(1.0)
        .max_bytes(4096)
        .open(&path)
        .unwrap();
    let atlas = builder(&platform).hook(log).build().unwrap();
    for _ in 0..20 {
        assert!(
            !atlas
                .allowed("user_dave", ["data-explorer"])
                .await
                .unwrap()
                .ok
        );
        assert!(
            atlas
                .allowed("user_erin", ["data-explorer"])
                .await
                .unwrap()
                .ok
        );
    }
    atlas
        .enqueue("user_erin", ["ai-tokens"], 3.0)
        .await
        .unwrap();
    atlas.flush().await.unwrap();
    let rotated = dir.join("decisions.jsonl.1");
    let lines = eventually(
        "the usage event's lines",
        Duration::from_secs(5),
        || async {
            let text = std::fs::read_to_string(&path).ok()?;
            text.contains("\"sent\"").then_some(text)
        },
    )
    .await;
    assert!(rotated.exists(), "rotated past 4096 bytes");
    assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
    let all: Vec<Value> = std::fs::read_to_string(&rotated)
        .unwrap()
        .lines()
        .chain(lines.lines())
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    for line in &all {
        for field in [
            "kind",
            "at",
            "customer",
            "features",
            "decision",
            "reasons",
            "provenance",
            "request_id",
        ] {
            assert!(line.get(field).is_some(), "{field} in {line}");
        }
    }
    let denial = all
        .iter()
        .find(|line| line["decision"] == "denied")
        .expect("a denial");
    assert_eq!(denial["customer"], "user_dave");
    assert_eq!(denial["reasons"][0]["reason"], "notIncluded");
    assert_eq!(denial["provenance"]["source"], "cached");
    let usage: Vec<&Value> = all.iter().filter(|line| line["kind"] == "usage").collect();
    let stages: Vec<&str> = usage
        .iter()
        .map(|line| line["decision"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["queued", "sent"]);
    assert_eq!(usage[0]["customer"], "cus_erin");

    // A writer that hangs: requests go on at full speed, the lines are dropped and counted.
    let (held, gate) = std::sync::mpsc::channel();
    let log = DecisionLog::builder()
        .sample(1.0)
        .capacity(4)
        .to_writer(Blocked(gate))
        .unwrap();
    let log = Arc::new(log);
    let atlas = builder(&platform)
        .hook(SharedLog(Arc::clone(&log)))
        .build()
        .unwrap();
    for _ in 0..50 {
        assert!(
            !atlas
                .allowed("user_dave", ["data-explorer"])
                .await
                .unwrap()
                .ok
        );
    }
    assert!(log.dropped() >= 40, "dropped {}", log.dropped());
    drop(held);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The log behind an `Arc`, so the test reads its dropped count.
struct SharedLog(Arc<DecisionLog>);

impl AtlasHook for SharedLog {
    fn on_check(&self, check: &CheckRecord<'_>) {
        self.0.on_check(check);
    }

    fn on_usage(&self, usage: &UsageRecord<'_>) {
        self.0.on_usage(usage);
    }
}

#[actix_rt::test]
async fn the_quickstart_writes_its_decision_log_where_atlas_decision_log_says() {
    let emulator = crate::common::start_emulator();
    let path = std::env::temp_dir().join(format!(
        "atlas-quickstart-decisions-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let mut command = crate::common::quickstart_command(&emulator);
    command
        .env("ATLAS_DECISION_LOG", &path)
        .env("ATLAS_DECISION_LOG_SAMPLE", "1");
    let quickstart = crate::common::Quickstart::spawn(command);
    let get = |token: String| {
        let url = format!("{}/api/data-explorer", quickstart.base);
        async move {
            awc::Client::default()
                .get(url)
                .insert_header(("authorization", format!("Bearer {token}")))
                .insert_header(("x-request-id", "support-ticket-7"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (dave, erin) = (
        quickstart.token("Dave Free").await,
        quickstart.token("Erin Pro").await,
    );
    assert_eq!(get(dave).await, 403);
    assert_eq!(get(erin.clone()).await, 200);
    assert_eq!(quickstart.complete(&erin).await, 200);
    let lines: Vec<Value> = eventually(
        "a denial, an allowed check and a usage event",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&path).ok()?;
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            let has = |kind: &str, decision: &str| {
                lines
                    .iter()
                    .any(|l| l["kind"] == kind && l["decision"] == decision)
            };
            (has("check", "denied") && has("check", "allowed") && has("usage", "sent"))
                .then_some(lines)
        },
    )
    .await;
    let denial = lines
        .iter()
        .find(|line| line["decision"] == "denied")
        .unwrap();
    assert_eq!(denial["customer"], "user_dave");
    assert_eq!(denial["route"], "GET /api/data-explorer");
    assert_eq!(denial["request_id"], "support-ticket-7");
    assert_eq!(denial["reasons"][0]["reason"], "notIncluded");
    let _ = std::fs::remove_file(&path);
}
