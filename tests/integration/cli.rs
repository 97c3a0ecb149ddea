//! `cargo atlas` as an operator runs it (the binary, its output and exit codes): the snapshot
//! pulled from a data file, a customer's decision with its reasons, and a spool left by a
//! killed quickstart inspected and drained exactly once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use actix_web::body::MessageBody;
use atlas_actix::emulator::{AtlasData, Emulator, EmulatorHandle};
use atlas_actix::{Denial, Snapshot};
use serde_json::{json, Value};

use crate::common::{eventually, example_data_path, quickstart_command, Platform, Quickstart};

/// `cargo atlas` with the platform given by the environment: the emulator's URL and key when
/// one is given.
fn cargo_atlas(args: &[&str], platform: Option<&EmulatorHandle>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cargo-atlas-dev"));
    command
        .arg("atlas")
        .args(args)
        .env_remove("ATLAS_API_KEY")
        .env_remove("ATLAS_HOST");
    if let Some(platform) = platform {
        command
            .env("ATLAS_API_KEY", platform.api_key())
            .env("ATLAS_HOST", platform.url());
    }
    command.output().expect("cargo atlas runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atlas-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn pull_writes_a_sorted_snapshot_and_says_what_changed() {
    let dir = temp_dir("pull");
    let out = dir.join("atlas-snapshot.json");
    let data = example_data_path();
    let pull = |data: &Path| {
        cargo_atlas(
            &["pull", "--data-file", path(data), "--out", path(&out)],
            None,
        )
    };

    let first = pull(&data);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("wrote"), "{}", text(&first));
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        written,
        Snapshot::of(&AtlasData::sample().pricing_model).to_json()
    );
    let again = pull(&data);
    assert!(text(&again).contains("is current"), "{}", text(&again));

    // The model changes: sso leaves it.
    let mut model = serde_json::to_value(AtlasData::sample()).unwrap();
    model["pricingModel"]["entitlements"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["slug"] != "sso");
    for plan in model["pricingModel"]["plans"].as_array_mut().unwrap() {
        plan["entitlements"]
            .as_array_mut()
            .unwrap()
            .retain(|grant| grant["id"] != "ent_sso");
    }
    let changed = dir.join("changed.json");
    std::fs::write(&changed, model.to_string()).unwrap();
    let output = pull(&changed);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("1 change(s)"), "{said}");
    assert!(
        said.contains("- sso: was on-off (plan_enterprise, plan_team)"),
        "{said}"
    );

    // A file that is no data file: exit 2, with the line.
    std::fs::write(&changed, "{\n  \"merchant\": [\n").unwrap();
    let refused = cargo_atlas(&["data", "check", path(&changed)], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("changed.json:2:"),
        "{}",
        text(&refused)
    );
    let valid = cargo_atlas(&["data", "check", path(&data), "--json"], None);
    let report: Value = serde_json::from_slice(&valid.stdout).unwrap();
    assert_eq!(report["valid"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The quickstart's handlers are checked against the repository's snapshot: it must be what
/// `cargo atlas pull` makes of the quickstart's data file today.
#[test]
fn the_quickstarts_snapshot_is_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("atlas-snapshot.json");
    let current = Snapshot::of(
        &AtlasData::from_file(example_data_path())
            .unwrap()
            .pricing_model,
    );
    assert_eq!(
        std::fs::read_to_string(&committed).unwrap(),
        current.to_json(),
        "atlas-snapshot.json is stale: run `cargo run -p atlas-actix --features cli --bin cargo-atlas -- pull --data-file examples/atlas-data.json`"
    );
}

#[actix_rt::test]
async fn check_names_the_limit_reached_with_the_numbers_as_the_scope_does() {
    let platform = Emulator::start(AtlasData::sample()).unwrap();
    let args = ["check", "org_standard_corp", "seats", "--quantity", "3"];

    let unknown = cargo_atlas(&args, Some(&platform));
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("limitUnknown"),
        "{}",
        text(&unknown)
    );
    assert!(text(&unknown).contains("--count FEATURE=N"));

    let counted = [&args[..], &["--count", "seats=8"]].concat();
    let denied = cargo_atlas(&counted, Some(&platform));
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        text(&denied).contains("limitReached: You have used 8 of 10 seats"),
        "{}",
        text(&denied)
    );
    let json = cargo_atlas(&[&counted[..], &["--json"]].concat(), Some(&platform));
    let answer: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["features"], json!({"seats": false}));

    // The same reasons, in the same shapes, as a guard's 403 for that check.
    let atlas = crate::common::builder(&platform)
        .limit("seats", |_customer| async { 8 })
        .build()
        .unwrap();
    let allowed = atlas
        .allowed_quantity("org_standard_corp", ["seats"], 3.0)
        .await
        .unwrap();
    let body = Denial::NotEntitled {
        features: allowed.features,
        reasons: allowed.reasons,
    }
    .default_response()
    .into_body()
    .try_into_bytes()
    .unwrap();
    let scope: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["reasons"], scope["reasons"]);

    let allowed = cargo_atlas(
        &["check", "org_standard_corp", "seats", "--count", "seats=2"],
        Some(&platform),
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    let nobody = cargo_atlas(&["check", "user_nobody", "seats"], Some(&platform));
    assert_eq!(nobody.status.code(), Some(2));
    assert!(text(&nobody).contains("no customer \"user_nobody\""));
    let no_platform = cargo_atlas(&["customer", "user_erin"], None);
    assert_eq!(no_platform.status.code(), Some(2));
    assert!(
        text(&no_platform).contains("set ATLAS_API_KEY"),
        "{}",
        text(&no_platform)
    );
    let customer = cargo_atlas(&["customer", "user_erin"], Some(&platform));
    assert!(
        text(&customer).contains("ai-tokens         usage    yes      used 40000 of 1000000"),
        "{}",
        text(&customer)
    );
}

#[actix_rt::test]
async fn a_killed_quickstarts_spool_is_inspected_then_drained_exactly_once() {
    let platform = Emulator::start(AtlasData::sample()).unwrap();
    let admin = Platform {
        emulator: &platform,
    };
    admin
        .inject_fault(json!({"path": "/external/event", "status": 503}))
        .await;
    let spool = temp_dir("spool");
    let first = Quickstart::start(&platform, Some(&spool));
    let erin = first.token("Erin Pro").await;
    for _ in 0..3 {
        assert_eq!(first.complete(&erin).await, 200);
    }
    let inspect = || cargo_atlas(&["spool", "inspect", path(&spool), "--json"], None);
    let report = eventually(
        "three events in the spool",
        Duration::from_secs(10),
        || async {
            let report: Value = serde_json::from_slice(&inspect().stdout).ok()?;
            (report["pending"] == 3).then_some(report)
        },
    )
    .await;
    assert_eq!(
        report["totals"],
        json!([{"customerId": "cus_erin", "eventName": "ent_ai_tokens", "events": 3, "quantity": 3.0}])
    );

    // While the quickstart holds the spool, neither another instance nor a drain may open it.
    let second = quickstart_command(&platform)
        .env("ATLAS_EVENT_SPOOL", &spool)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another process"), "{said}");
    let busy = cargo_atlas(&["spool", "drain", path(&spool)], Some(&platform));
    assert_eq!(busy.status.code(), Some(2));
    assert!(
        text(&busy).contains("in use by another process"),
        "{}",
        text(&busy)
    );

    first.signal("-KILL");
    first.wait();
    admin.clear_faults().await;
    assert!(platform.events().is_empty());
    let drained = cargo_atlas(&["spool", "drain", path(&spool)], Some(&platform));
    assert!(drained.status.success(), "{}", text(&drained));
    assert!(
        text(&drained).contains("sent 3 usage event(s)"),
        "{}",
        text(&drained)
    );
    let events = platform.usage();
    assert_eq!(events.len(), 3, "each once: {events:?}");
    assert!(events.iter().all(
        |event| (event.customer.as_str(), event.feature.as_str()) == ("user_erin", "ai-tokens")
    ));
    let report: Value = serde_json::from_slice(&inspect().stdout).unwrap();
    assert_eq!(report["pending"], 0);
    // Drained twice: nothing more reaches the platform.
    let again = cargo_atlas(&["spool", "drain", path(&spool)], Some(&platform));
    assert!(again.status.success());
    assert_eq!(platform.events().len(), 3);
    std::fs::remove_dir_all(&spool).unwrap();
}
