//! Mistakes that used to be silent: feature ids the pricing model lacks, limits on on/off
//! features, usage on features no plan meters; each is named at start, in `status()` and in
//! `/atlas-api/status`, and strict mode refuses to run with them.

use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpResponse};
use atlas_actix::{AtlasError, RequireFeatures};
use awc::http::Method;
use serde_json::Value;

use crate::common::{
    builder, call, captured_logs, eventually, example_data_path, header_user, json_body,
    quickstart_command, start_emulator, Quickstart,
};

#[actix_rt::test]
async fn typos_limits_and_usage_are_named_with_the_fix() {
    let logs = captured_logs();
    let emulator = start_emulator();
    // `AtlasBuilder::limit`, not `limit!`: with the repository's pricing-model snapshot, the
    // macro refuses both mistakes at compile time (its trybuild cases); the runtime names them
    // for code compiled without a snapshot.
    let atlas = builder(&emulator)
        .limit("sets", |_| async { 1_u32 })
        .limit("data-explorer", |_| async { 1_u32 })
        .user_resolver(header_user)
        .build()
        .unwrap();
    let status = atlas.status().await.unwrap();
    let problems: Vec<&str> = status.findings.iter().map(|f| f.problem.as_str()).collect();
    assert!(
        problems.contains(
            &"`sets` is not a feature of the pricing model: every check of it is denied; did you mean `seats`?"
        ),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"a limit callback is registered for `data-explorer`, but no plan gives it a limit: the callback is never used"),
        "{problems:?}"
    );

    // Middleware built after the pricing model loaded is checked at its first request.
    let app = test::init_service(
        App::new()
            .configure(atlas.configure())
            .service(
                web::scope("/insights")
                    .wrap(RequireFeatures::new(["analytcs-insights"]))
                    .route("", web::get().to(HttpResponse::Ok)),
            )
            .service(
                web::scope("/sso-metered")
                    .wrap(RequireFeatures::new(["sso"]).report_usage(1.0))
                    .route("", web::get().to(HttpResponse::Ok)),
            ),
    )
    .await;
    let denied = test::call_service(
        &app,
        TestRequest::get()
            .uri("/insights")
            .insert_header(("x-test-user", "org_standard_corp"))
            .to_request(),
    )
    .await;
    let (status_code, body) = json_body(denied).await;
    assert_eq!(status_code, 403);
    assert_eq!(body["reasons"][0]["reason"], "unknownFeature");
    let findings = atlas.findings();
    let features: Vec<&str> = findings.iter().map(|f| f.feature.as_str()).collect();
    assert!(features.contains(&"analytcs-insights"), "{features:?}");
    assert!(
        findings.iter().any(|f| f.feature == "sso"
            && f.problem
                .starts_with("usage is reported for `sso`, but no plan meters it")),
        "{findings:?}"
    );

    // /atlas-api/status lists them, and each was logged.
    let (_, status) = json_body(
        test::call_service(
            &app,
            TestRequest::get().uri("/atlas-api/status").to_request(),
        )
        .await,
    )
    .await;
    let listed: Vec<&str> = status["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    for feature in ["sets", "data-explorer", "analytcs-insights", "sso"] {
        assert!(listed.contains(&feature), "{feature} not in {status}");
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.lines().any(|line| line.contains("WARN")
            && line.contains("did you mean `seats`?")
            && line.contains("limit! callback")),
        "{text}"
    );
}

#[actix_rt::test]
async fn strict_mode_refuses_to_run_with_a_finding() {
    let emulator = start_emulator();
    let atlas = builder(&emulator)
        .limit("data-explorer", |_| async { 1_u32 })
        .strict(true)
        .build()
        .unwrap();
    let refused = atlas.status().await.unwrap_err();
    assert!(
        matches!(refused, AtlasError::Misconfigured(_)),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("no plan gives it a limit"),
        "{refused}"
    );
    assert!(
        matches!(
            atlas.allowed("user_erin", ["sso"]).await,
            Err(AtlasError::Misconfigured(_))
        ),
        "every call fails while strict mode's findings stand"
    );
}

#[actix_rt::test]
async fn the_quickstart_names_a_feature_its_data_file_lacks_at_start() {
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(example_data_path()).unwrap()).unwrap();
    let model = &mut data["pricingModel"];
    model["entitlements"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["slug"] != "data-explorer");
    for plan in model["plans"].as_array_mut().unwrap() {
        plan["entitlements"]
            .as_array_mut()
            .unwrap()
            .retain(|grant| grant["id"] != "ent_data_explorer");
    }
    let file = std::env::temp_dir().join(format!("atlas-no-explorer-{}.json", std::process::id()));
    std::fs::write(&file, data.to_string()).unwrap();

    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    command
        .env_remove("ATLAS_API_KEY")
        .env_remove("ATLAS_HOST")
        .env("ATLAS_DATA_FILE", &file);
    let quickstart = Quickstart::spawn(command);
    let status: Value = eventually(
        "the status with findings",
        Duration::from_secs(10),
        || async {
            let status = call(
                &quickstart.base,
                None,
                Method::GET,
                "/atlas-api/status",
                None,
            )
            .await
            .body;
            status["findings"].is_array().then_some(status)
        },
    )
    .await;
    let findings = status["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().any(|f| f["feature"] == "data-explorer"
            && f["site"].as_str().unwrap().contains("data_explorer")),
        "{status}"
    );
    let warned = |output: &str| {
        output.lines().any(|line| {
            line.contains("WARN")
                && line.contains("`data-explorer` is not a feature of the pricing model")
        })
    };
    // Its output is read on a thread of its own: give the line a moment to arrive.
    eventually(
        "the warning in the output",
        Duration::from_secs(10),
        || async { warned(&quickstart.output()).then_some(()) },
    )
    .await;
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn the_quickstart_names_an_unknown_unrecordable_usage_choice() {
    let emulator = start_emulator();
    let output = quickstart_command(&emulator)
        .env("ATLAS_UNRECORDABLE_USAGE", "bill-later")
        .output()
        .expect("the quickstart runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ATLAS_UNRECORDABLE_USAGE: `bill-later` is neither `refuse` nor `serve`"),
        "{stderr}"
    );
}

#[actix_rt::test]
async fn a_misspelt_atlas_variable_is_named_and_the_start_up_line_says_what_runs() {
    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    command
        .env("RUST_LOG", "info")
        .env("ATLAS_URL", "http://127.0.0.1:9")
        .env("ATLAS_OUTAGE_POLICY", "serve-stale:600");
    let quickstart = Quickstart::spawn(command);
    let output = eventually("the start-up line", Duration::from_secs(10), || async {
        let output = quickstart.output();
        output
            .contains("Atlas client initialised")
            .then_some(output)
    })
    .await;
    let warning = output
        .lines()
        .find(|line| line.contains("WARN") && line.contains("ATLAS_URL"))
        .unwrap_or_else(|| panic!("no warning about ATLAS_URL:\n{output}"));
    assert!(warning.contains("did you mean ATLAS_HOST?"), "{warning}");
    // The quickstart's own variables are not reported.
    assert!(
        !output.contains("\"ATLAS_OUTAGE_POLICY\", which nothing reads"),
        "{output}"
    );
    let started = output
        .lines()
        .find(|line| line.contains("Atlas client initialised"))
        .map(without_colours)
        .unwrap();
    for field in [
        format!("platform={}", emulator.url()),
        "outage_policy=serve-stale:600".to_owned(),
        "tiers=memory only".to_owned(),
        "findings=0".to_owned(),
    ] {
        assert!(started.contains(&field), "{field} in {started}");
    }
}

/// The line without its terminal colour codes (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The handlers of this binary were compiled against the repository's pricing-model snapshot,
/// where `data-explorer` is on/off. A platform whose model made it a limit since is a finding
/// that says so, with the fix.
#[actix_rt::test]
async fn a_feature_whose_type_changed_since_the_snapshot_is_a_finding() {
    let mut data = serde_json::to_value(atlas_actix::emulator::AtlasData::sample()).unwrap();
    for plan in data["pricingModel"]["plans"].as_array_mut().unwrap() {
        for grant in plan["entitlements"].as_array_mut().unwrap() {
            if grant["id"] == "ent_data_explorer" {
                grant["limit"] = serde_json::json!(100);
            }
        }
    }
    let data: atlas_actix::emulator::AtlasData = serde_json::from_value(data).unwrap();
    let emulator = atlas_actix::emulator::Emulator::start(data).unwrap();
    let atlas = builder(&emulator).build().unwrap();
    let status = atlas.status().await.unwrap();
    let changed: Vec<&str> = status
        .findings
        .iter()
        .filter(|finding| finding.feature == "data-explorer")
        .map(|finding| finding.problem.as_str())
        .collect();
    assert!(
        changed.contains(&"`data-explorer` was on-off in the pricing-model snapshot the code was compiled against, and the pricing model now makes it limit: check the code still fits, then run `cargo atlas pull` and rebuild"),
        "{changed:?}"
    );
}
