//! What an operator sees: the quickstart's `/metrics` after a scripted session, and `/healthz`
//! and `/readyz` while the platform fails, dies and comes back. Each quickstart is a process
//! of its own, so its counters move only with what the test sends.

use std::time::Duration;

use atlas_actix::emulator::Emulator;
use awc::http::Method;
use serde_json::json;

use crate::common::{call, eventually, example_data, start_emulator, Platform, Quickstart};

/// The value of the series `name` whose labels are exactly `labels`, in any order.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    wanted.sort();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut found: Vec<String> = series_labels
                .split(',')
                .filter(|label| !label.is_empty())
                .map(str::to_owned)
                .collect();
            found.sort();
            (series_name == name && found == wanted).then(|| value.parse().ok())?
        })
        .next()
}

pub(crate) async fn scrape(quickstart: &Quickstart) -> String {
    call(&quickstart.metrics, None, Method::GET, "/metrics", None)
        .await
        .text
}

async fn get(quickstart: &Quickstart, path: &str, token: &str) -> u16 {
    awc::Client::default()
        .get(format!("{}{path}", quickstart.base))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_rt::test]
async fn the_metrics_count_what_happened() {
    let emulator = start_emulator();
    let spool = std::env::temp_dir().join(format!("atlas-metrics-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let quickstart = Quickstart::start(&emulator, Some(spool.as_path()));
    let alice = quickstart.token("Alice").await;
    let dave = quickstart.token("Dave Free").await;
    let erin = quickstart.token("Erin Pro").await;
    for _ in 0..5 {
        assert_eq!(get(&quickstart, "/api/data-explorer", &alice).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&quickstart, "/api/data-explorer", &dave).await, 403);
    }
    for _ in 0..3 {
        assert_eq!(quickstart.complete(&erin).await, 200);
    }
    assert_eq!(
        get(&quickstart, "/api/data-explorer", "not-a-token").await,
        401
    );

    // The usage is sent within the flush interval (3 s). The sent counter moves when the
    // platform answers, the queue's gauges when the batch then leaves the queue and the spool:
    // a scrape in between sees both, so the wait is for the state after the batch.
    let text = eventually(
        "3 events sent and out of the queue and the spool, push connected",
        Duration::from_secs(10),
        || async {
            let text = scrape(&quickstart).await;
            (metric(&text, "atlas_events_sent_total", &[]) == Some(3.0)
                && metric(&text, "atlas_events_queued", &[]) == Some(0.0)
                && metric(&text, "atlas_events_spooled", &[]) == Some(0.0)
                && metric(&text, "atlas_push_connected", &[]) == Some(1.0))
            .then_some(text)
        },
    )
    .await;
    let checks = |result| {
        metric(
            &text,
            "atlas_checks_total",
            &[("feature", "data-explorer"), ("result", result)],
        )
    };
    assert_eq!(checks("allowed"), Some(5.0), "{text}");
    assert_eq!(checks("denied"), Some(2.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "atlas_checks_total",
            &[("feature", "ai-tokens"), ("result", "allowed")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "atlas_events_sent_total", &[]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "atlas_clerk_refusals_total",
            &[("cause", "malformed")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "atlas_events_queued", &[]), Some(0.0));
    assert_eq!(metric(&text, "atlas_events_spooled", &[]), Some(0.0));
    assert_eq!(metric(&text, "atlas_push_connected", &[]), Some(1.0));
    assert!(
        metric(
            &text,
            "atlas_cache_requests_total",
            &[("cache", "customer"), ("result", "hit")]
        )
        .is_some_and(|hits| hits >= 7.0),
        "{text}"
    );
    assert!(metric(
        &text,
        "atlas_cache_requests_total",
        &[("cache", "customer"), ("result", "miss")]
    )
    .is_some_and(|misses| misses >= 3.0));
    assert_eq!(
        metric(
            &text,
            "atlas_platform_requests_total",
            &[("operation", "merchant"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert!(metric(
        &text,
        "atlas_platform_request_duration_seconds_bucket",
        &[("operation", "customer"), ("le", "+Inf")]
    )
    .is_some_and(|count| count >= 3.0));
    assert!(
        metric(&text, "atlas_last_platform_success_timestamp_seconds", &[])
            .is_some_and(|at| at > 1.7e9)
    );

    // A platform fault: Frank, never seen, cannot be checked; the default policy fails closed.
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/customers", "status": 503}))
    .await;
    let frank = quickstart.token("Frank Locked").await;
    assert_eq!(get(&quickstart, "/api/data-explorer", &frank).await, 503);
    let text = scrape(&quickstart).await;
    assert_eq!(
        metric(
            &text,
            "atlas_outage_decisions_total",
            &[("policy", "fail_closed"), ("decision", "unavailable")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(checks_in(&text, "unavailable"), Some(1.0));
    assert!(metric(
        &text,
        "atlas_platform_requests_total",
        &[("operation", "customer"), ("status", "503")]
    )
    .is_some());

    // Usage events the platform refuses to take for now: counted as failed, kept queued.
    let platform = Platform {
        emulator: &emulator,
    };
    platform.clear_faults().await;
    platform
        .inject_fault(json!({"path": "/external/event", "status": 503}))
        .await;
    assert_eq!(quickstart.complete(&erin).await, 200);
    let text = eventually(
        "a failed event in the metrics",
        Duration::from_secs(10),
        || async {
            let text = scrape(&quickstart).await;
            metric(&text, "atlas_events_failed_total", &[])
                .is_some_and(|failed| failed >= 1.0)
                .then_some(text)
        },
    )
    .await;
    assert_eq!(metric(&text, "atlas_events_queued", &[]), Some(1.0));
    assert_eq!(metric(&text, "atlas_events_spooled", &[]), Some(1.0));
    drop(quickstart);
    let _ = std::fs::remove_dir_all(&spool);
}

fn checks_in(text: &str, result: &str) -> Option<f64> {
    metric(
        text,
        "atlas_checks_total",
        &[("feature", "data-explorer"), ("result", result)],
    )
}

/// The full health report, on the metrics address.
async fn report(quickstart: &Quickstart) -> (u16, serde_json::Value) {
    let answer = call(&quickstart.metrics, None, Method::GET, "/health", None).await;
    (answer.status.as_u16(), answer.body)
}

/// Polls the health report until it answers `status`, for at most `within`; checks that the
/// app port's `/readyz` answers the same status, with no figures.
async fn wait_ready(quickstart: &Quickstart, status: u16, within: Duration) -> serde_json::Value {
    let body = eventually(
        &format!("the health report answering {status}"),
        within,
        || async {
            let (now, body) = report(quickstart).await;
            (now == status).then_some(body)
        },
    )
    .await;
    let public = call(&quickstart.base, None, Method::GET, "/readyz", None).await;
    if public.status.as_u16() == status {
        let keys: Vec<&String> = public.body.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|key| *key == "status" || *key == "failing"),
            "/readyz shows only the status and what fails: {}",
            public.body
        );
    }
    body
}

#[actix_rt::test]
async fn readiness_follows_the_platform_down_and_back() {
    let emulator = start_emulator();
    let addr = emulator.addr();
    let quickstart = Quickstart::start(&emulator, None);
    let alive = call(&quickstart.base, None, Method::GET, "/healthz", None).await;
    assert_eq!(alive.status.as_u16(), 200);
    let body = wait_ready(&quickstart, 200, Duration::from_secs(10)).await;
    assert_eq!(body["status"], "ready");

    // The platform answers errors: unready, saying why; back when it answers again.
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"status": 503}))
    .await;
    let body = wait_ready(&quickstart, 503, Duration::from_secs(20)).await;
    assert_eq!(body["status"], "unready");
    assert!(body["failing"]
        .as_array()
        .unwrap()
        .contains(&json!("the Atlas platform does not answer")));
    Platform {
        emulator: &emulator,
    }
    .clear_faults()
    .await;
    wait_ready(&quickstart, 200, Duration::from_secs(20)).await;

    // The platform dies, and comes back on the same address.
    emulator.stop();
    let body = wait_ready(&quickstart, 503, Duration::from_secs(20)).await;
    assert_eq!(body["status"], "unready");
    let emulator = Emulator::builder(example_data())
        .bind(addr)
        .start()
        .expect("the emulator starts again on its address");
    let body = wait_ready(&quickstart, 200, Duration::from_secs(30)).await;
    assert_eq!(body["pushLink"], "connected", "{body}");
    let text = scrape(&quickstart).await;
    assert_eq!(metric(&text, "atlas_push_connected", &[]), Some(1.0));
    emulator.stop();
}
