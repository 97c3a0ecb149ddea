//! Attacks replayed against the quickstart process, as a hostile page in the victim's browser
//! or an anonymous caller would send them: each is refused with a 4xx and changes nothing.

use std::time::Duration;

use atlas_actix::emulator::EmulatorHandle;
use awc::http::Method;
use serde_json::{json, Value};

use crate::common::{eventually, quickstart_command, start_emulator, Platform, Quickstart};

const EVIL: &str = "https://evil.example";

/// Sends a request with exactly these headers and this body; the status and the JSON answer.
async fn raw(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut request = client.request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request
        .send_body(body.to_owned())
        .await
        .expect("the quickstart answers");
    let bytes = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A JSON `POST` with no credentials, as an anonymous caller sends it.
async fn anonymous_post(base: &str, path: &str, body: &Value) -> u16 {
    let json = [("content-type", "application/json")];
    raw(base, Method::POST, path, &json, &body.to_string())
        .await
        .0
}

async fn admin(emulator: &EmulatorHandle, path: &str) -> Value {
    Platform { emulator }
        .admin(Method::GET, path, None)
        .await
        .body
}

#[actix_rt::test]
async fn cross_site_requests_with_the_victims_cookie_change_nothing() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    let cookie = format!("__session={}", quickstart.token("Alice").await);
    let erin = format!("__session={}", quickstart.token("Erin Pro").await);
    let before = admin(&emulator, "/__admin/customers").await;
    let subscribe = "/atlas-api/plans/plan_free/subscribe";
    let body = r#"{"billingCadence":"monthly","successUrl":"https://evil.example/done"}"#;

    // A "simple" request: no preflight, so CORS never had a say.
    let (status, answer) = raw(
        base,
        Method::POST,
        subscribe,
        &[
            ("cookie", &cookie),
            ("origin", EVIL),
            ("content-type", "text/plain"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("JSON"));
    let form = [
        ("cookie", cookie.as_str()),
        ("origin", EVIL),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let cancel = "/atlas-api/subscriptions/sub_standard_team/cancel";
    assert_eq!(
        raw(base, Method::POST, cancel, &form, "type=active")
            .await
            .0,
        415
    );

    // JSON, or no body at all, from a foreign origin, from `null`, or with no origin.
    for origin in [Some(EVIL), Some("null"), None] {
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend(origin.map(|origin| ("origin", origin)));
        let (status, answer) = raw(base, Method::POST, subscribe, &headers, body).await;
        assert_eq!(status, 403, "origin {origin:?}: {answer}");
        assert_eq!(
            answer["error"],
            "cross-site request refused: the origin is not allowed"
        );
        let renew = "/atlas-api/subscriptions/sub_standard_team/renew";
        let no_body = [("cookie", cookie.as_str())];
        let mut headers = no_body.to_vec();
        headers.extend(origin.map(|origin| ("origin", origin)));
        assert_eq!(raw(base, Method::POST, renew, &headers, "").await.0, 403);
    }
    // A referer from another site is no better.
    let referer = [
        ("cookie", cookie.as_str()),
        ("content-type", "application/json"),
        ("referer", "https://evil.example/https://127.0.0.1/"),
    ];
    assert_eq!(
        raw(base, Method::POST, subscribe, &referer, body).await.0,
        403
    );

    // A guard that reports usage bills the customer: not from another site either.
    let complete = [
        ("cookie", erin.as_str()),
        ("origin", EVIL),
        ("content-type", "application/json"),
    ];
    let (status, _) = raw(
        base,
        Method::POST,
        "/api/ai/complete",
        &complete,
        r#"{"prompt":"x"}"#,
    )
    .await;
    assert_eq!(status, 403);

    // The app's own pages may, with the cookie.
    let own = [
        ("cookie", erin.as_str()),
        ("origin", base),
        ("content-type", "application/json"),
    ];
    let (status, _) = raw(
        base,
        Method::POST,
        "/api/ai/complete",
        &own,
        r#"{"prompt":"x"}"#,
    )
    .await;
    assert_eq!(status, 200);

    // The shutdown sends every event there is; then nothing else can land.
    quickstart.signal("-TERM");
    quickstart.wait();
    assert_eq!(
        admin(&emulator, "/__admin/customers").await,
        before,
        "no plan moved"
    );
    let events = admin(&emulator, "/__admin/events").await;
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(1),
        "only the same-origin completion was billed: {events}"
    );
}

#[actix_rt::test]
async fn organisation_members_without_a_billing_role_cannot_change_the_plan() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    let before = admin(&emulator, "/__admin/customers").await;
    let bob = format!("Bearer {}", quickstart.token("Bob").await);
    let headers = [
        ("authorization", bob.as_str()),
        ("content-type", "application/json"),
    ];
    let subscribe = raw(
        base,
        Method::POST,
        "/atlas-api/plans/plan_free/subscribe",
        &headers,
        r#"{"billingCadence":"monthly","successUrl":"https://app.example.com/done"}"#,
    );
    assert_eq!(subscribe.await.0, 403);
    let cancel = raw(
        base,
        Method::POST,
        "/atlas-api/subscriptions/sub_standard_team/cancel",
        &headers,
        r#"{"type":"active"}"#,
    );
    assert_eq!(cancel.await.0, 403);
    assert_eq!(admin(&emulator, "/__admin/customers").await, before);

    // Alice administers Standard Corp.
    let alice = format!("Bearer {}", quickstart.token("Alice").await);
    let (status, session) = raw(
        base,
        Method::POST,
        "/atlas-api/user/payment-method",
        &[
            ("authorization", &alice),
            ("content-type", "application/json"),
        ],
        r#"{"successUrl":"https://app.example.com/done"}"#,
    )
    .await;
    assert_eq!(status, 200, "{session}");
}

#[actix_rt::test]
async fn anonymous_feature_registration_is_bounded_and_never_wedges() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    let register = |body: Value| async move {
        anonymous_post(base, "/atlas-api/features/register", &body).await
    };
    assert_eq!(
        register(json!({"features": ["fine", "not\nan id"]})).await,
        400
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("f{i}")).collect();
    assert_eq!(register(json!({ "features": too_many })).await, 400);

    // The flood: unique ids, as fast as the caller can. The allowance is 30 a minute.
    let mut statuses = Vec::new();
    for round in 0..38 {
        let slugs: Vec<String> = (0..100).map(|i| format!("junk-{round}-{i}")).collect();
        statuses.push(register(json!({ "features": slugs })).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        28,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        10,
        "{statuses:?}"
    );

    // A legitimate registration still arrives: the guard's own check of data-explorer.
    let dave = format!("Bearer {}", quickstart.token("Dave Free").await);
    let (status, _) = raw(
        base,
        Method::GET,
        "/api/data-explorer",
        &[("authorization", &dave)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let registered = eventually(
        "the app's own registration of data-explorer",
        Duration::from_secs(10),
        || async {
            let registered = admin(&emulator, "/__admin/registrations")
                .await
                .as_array()
                .cloned()
                .unwrap_or_default();
            registered
                .iter()
                .any(|slug| slug == "data-explorer")
                .then_some(registered)
        },
    )
    .await;
    assert!(
        registered.len() <= 1_000 + 10,
        "caller-sent ids are capped: {} arrived",
        registered.len()
    );
    let requests = admin(&emulator, "/__admin/requests").await;
    let registrations = requests["PUT /external/billables/register"]
        .as_u64()
        .unwrap();
    assert!(
        registrations >= 10,
        "sent in chunks of at most 100: {registrations} requests"
    );
}

#[actix_rt::test]
async fn sdk_version_reports_make_a_handful_of_platform_calls_at_most() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    let report = |library: &str, version: &str| {
        let body = json!({"library": library, "version": version});
        async move { anonymous_post(base, "/atlas-api/sdk-version", &body).await }
    };
    assert_eq!(report("evil\nFORGED log line", "1.0.0").await, 400);
    assert_eq!(report("made-up-sdk", "1.0.0").await, 400);
    assert_eq!(report("react", "2.8.0\u{1b}[31m").await, 400);
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(report("react", &format!("2.{i}.0")).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        27,
        "{statuses:?}"
    );
    assert!(statuses.ends_with(&[429; 13]), "{statuses:?}");

    // 16 distinct versions at most in the process's life, the SDK's own report included.
    let calls = || async {
        admin(&emulator, "/__admin/requests").await["POST /external/sdk/version"].as_u64()
    };
    eventually("16 version reports", Duration::from_secs(10), || async {
        calls().await.filter(|calls| *calls >= 16)
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(calls().await, Some(16), "platform calls");
    let reported = admin(&emulator, "/__admin/sdk-versions").await;
    assert!(
        !reported.to_string().contains("made-up"),
        "unknown libraries are not relayed: {reported}"
    );
}

#[actix_rt::test]
async fn two_hundred_concurrent_seat_requests_end_at_exactly_the_limit() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let alice = format!("Bearer {}", quickstart.token("Alice").await);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let requests = (0..200).map(|i| {
        let request = client
            .post(format!("{}/api/seats", quickstart.base))
            .insert_header(("authorization", alice.as_str()))
            .send_json(&json!({"email": format!("seat{i}@standard.example")}));
        async move {
            let mut response = request.await.expect("answered");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let created: Vec<u64> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body["seats"].as_u64().unwrap())
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    // Standard Corp's Team plan has 10 seats; Alice, Bob and Carol hold 3.
    assert_eq!(created.len(), 7, "seats created: {created:?}; {statuses:?}");
    assert_eq!(created.iter().max(), Some(&10));
    assert!(
        statuses
            .iter()
            .all(|status| *status == 201 || *status == 403),
        "{statuses:?}"
    );
}

#[test]
fn demo_mode_refuses_to_listen_beyond_loopback() {
    let emulator = start_emulator();
    let output = quickstart_command(&emulator)
        .env("BIND", "0.0.0.0")
        .output()
        .expect("the quickstart runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ATLAS_DEMO_PUBLIC=1"), "{stderr}");
}

/// DNS rebinding: a page of another site whose name resolves to this machine asks for the demo
/// tokens with its own name in `Host`. Only the machine's own names get them.
#[actix_rt::test]
async fn demo_tokens_answer_only_for_the_machines_own_host_names() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    let port = base.rsplit(':').next().unwrap();
    let get = |host: String, path: &'static str| async move {
        let (status, _) = raw(base, Method::GET, path, &[("host", host.as_str())], "").await;
        status
    };
    for host in [
        "rebind.attacker.example",
        "rebind.attacker.example:80",
        "10.0.0.1",
    ] {
        assert_eq!(get(host.to_owned(), "/demo/tokens").await, 404, "{host}");
        assert_eq!(get(host.to_owned(), "/").await, 404, "{host}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        assert_eq!(get(host.clone(), "/demo/tokens").await, 200, "{host}");
    }
}

/// What only operators should see is not on the app's port: `/metrics` and the full health
/// report are on the metrics address (loopback); `/readyz` says ready or not, and why in words.
#[actix_rt::test]
async fn the_app_port_shows_no_figures() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let base = quickstart.base.as_str();
    assert_eq!(raw(base, Method::GET, "/metrics", &[], "").await.0, 404);
    assert_eq!(raw(base, Method::GET, "/health", &[], "").await.0, 404);
    let ready = eventually("readiness", Duration::from_secs(10), || async {
        let answer = raw(base, Method::GET, "/readyz", &[], "").await;
        (answer.0 == 200).then_some(answer.1)
    })
    .await;
    assert_eq!(ready, json!({"status": "ready"}));
    assert!(quickstart.metrics.starts_with("http://127.0.0.1:"));
    let (status, report) = raw(&quickstart.metrics, Method::GET, "/health", &[], "").await;
    assert_eq!(status, 200);
    assert!(report["eventBacklog"].is_number(), "{report}");
    let (status, _) = raw(&quickstart.metrics, Method::GET, "/metrics", &[], "").await;
    assert_eq!(status, 200);
}

/// The longest `Idempotency-Key` a guard takes (255 characters) is billed like any other: the
/// key namespaced by customer is hashed, so it always fits the platform's 255.
#[actix_rt::test]
async fn the_longest_idempotency_key_is_billed() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let erin = format!("Bearer {}", quickstart.token("Erin Pro").await);
    let key = "k".repeat(255);
    let headers = [
        ("authorization", erin.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    let body = r#"{"prompt":"count these words"}"#;
    let (status, _) = raw(
        &quickstart.base,
        Method::POST,
        "/api/ai/complete",
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = raw(
        &quickstart.base,
        Method::POST,
        "/api/ai/complete",
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200);
    quickstart.signal("-TERM");
    quickstart.wait();
    let events = admin(&emulator, "/__admin/events").await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "billed once for the one key: {events:?}");
    assert!(events[0]["idempotencyKey"].as_str().unwrap().len() <= 255);
}

/// The spool's files are the billing data of work already done: a second process, a directory
/// others may write to, a symbolic link planted in it are refused at start, with the reason.
#[actix_rt::test]
async fn the_spool_refuses_a_second_process_shared_directories_and_links() {
    use std::os::unix::fs::PermissionsExt;

    let emulator = start_emulator();
    let dir = std::env::temp_dir().join(format!("atlas-attack-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = Quickstart::start(&emulator, Some(dir.as_path()));
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the spool directory is the user's alone");
    let refused = |dir: &std::path::Path| {
        let output = quickstart_command(&emulator)
            .env("ATLAS_EVENT_SPOOL", dir)
            .output()
            .expect("the quickstart runs");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let second = refused(&dir);
    assert!(second.contains("in use by another process"), "{second}");
    drop(first);

    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let answer = refused(&shared);
    assert!(answer.contains("writable by other users"), "{answer}");

    let linked = dir.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = dir.join("victim.txt");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, linked.join("events.0.log")).unwrap();
    let answer = refused(&linked);
    assert!(answer.contains("symbolic link"), "{answer}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bob trickles the body of an exclusive request (`Content-Length: 99`, a byte every second):
/// his lock is held while the handler reads it, but Alice, of the same organisation, is not
/// held past the wait: 503 with `Retry-After`, nothing done.
#[actix_rt::test]
async fn a_trickling_body_holds_no_other_request_past_the_wait() {
    use std::io::Write;

    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let alice = format!("Bearer {}", quickstart.token("Alice").await);
    let bob = quickstart.token("Bob").await;
    let address = quickstart.base.trim_start_matches("http://").to_owned();
    let trickle = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let head = format!(
            "POST /api/seats HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {bob}\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        for _ in 0..12 {
            if stream.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Once Bob's head has arrived, his request holds the lock (its check runs before the
    // body is read); until then Alice may still get in, so she tries until she meets it.
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let retry_after = eventually(
        "Alice meeting Bob's lock",
        Duration::from_secs(20),
        || async {
            let response = client
                .post(format!("{}/api/seats", quickstart.base))
                .insert_header(("authorization", alice.as_str()))
                .insert_header(("content-type", "application/json"))
                .send_body(r#"{"email":"alice2@example.com"}"#)
                .await
                .expect("answered before the client's own timeout");
            (response.status().as_u16() == 503).then(|| {
                response
                    .headers()
                    .get("retry-after")
                    .map(|value| value.to_str().unwrap().to_owned())
            })
        },
    )
    .await;
    assert_eq!(retry_after.as_deref(), Some("1"));
    trickle.join().unwrap();
}

/// A small tmpfs, unmounted when dropped: a disk that fills up.
#[cfg(can_mount_tmpfs)]
struct SmallDisk(std::path::PathBuf);

#[cfg(can_mount_tmpfs)]
impl SmallDisk {
    fn mount(name: &str, size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("atlas-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"));
        let mut mount = std::process::Command::new(if root { "mount" } else { "sudo" });
        if !root {
            mount.args(["-n", "mount"]);
        }
        let status = mount
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "could not mount a tmpfs on {}",
            dir.display()
        );
        Self(dir)
    }
}

#[cfg(can_mount_tmpfs)]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The spool on a disk that fills up (its two 4 MiB segments and hardly more): the events it
/// cannot write are kept in memory and all billed, and readiness fails with the reason until
/// the spool writes again.
#[cfg_attr(not(can_mount_tmpfs), ignore = "mounts a tmpfs: run as root (CI does)")]
#[actix_rt::test]
async fn a_full_disk_under_the_spool_loses_no_usage_and_fails_readiness() {
    #[cfg(can_mount_tmpfs)]
    {
        use futures_util::future::join_all;

        let emulator = start_emulator();
        let disk = SmallDisk::mount("full-disk", "8200k");
        let atlas = crate::common::builder(&emulator)
            .event_spool(disk.0.join("spool"))
            .events_flush_interval(Duration::from_secs(3600))
            .events_flush_at(usize::MAX)
            .events_queue_capacity(100_000)
            .build()
            .unwrap();
        const EVENTS: usize = 40_000;
        for chunk in 0..EVENTS / 500 {
            let enqueues = (0..500).map(|i| {
                let key = format!("job-{}", chunk * 500 + i);
                let atlas = atlas.clone();
                async move {
                    atlas
                        .enqueue_with(
                            "user_erin",
                            ["ai-tokens"],
                            atlas_actix::UsageOptions::new().idempotency_key(key),
                        )
                        .await
                }
            });
            for queued in join_all(enqueues).await {
                queued.expect("every event is taken, on disk or in memory");
            }
        }
        assert_eq!(atlas.queued_events(), EVENTS);
        let health = atlas.health().await;
        assert!(!health.usage_durable, "{health:?}");
        assert!(!health.ready, "{health:?}");
        assert!(
            health
                .failing
                .iter()
                .any(|reason| reason.contains("event spool cannot write")
                    && reason.contains("No space left on device")),
            "{health:?}"
        );

        atlas.flush().await.unwrap();
        assert_eq!(emulator.events().len(), EVENTS, "every event billed");
        atlas
            .enqueue_with("user_erin", ["ai-tokens"], atlas_actix::UsageOptions::new())
            .await
            .unwrap();
        let health = atlas.health().await;
        assert!(health.usage_durable, "the spool writes again: {health:?}");
        assert!(health.ready, "{health:?}");
    }
}

/// One `Idempotency-Key` for 50 different prompts: the first is done and billed, the other 49
/// answer 422 and do nothing; the first prompt sent again gets its first answer back.
#[actix_rt::test]
async fn one_idempotency_key_buys_one_request_not_fifty() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let erin = format!("Bearer {}", quickstart.token("Erin Pro").await);
    let headers = [
        ("authorization", erin.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "one-key-for-everything"),
    ];
    let complete = |i: usize| {
        let prompt = json!({ "prompt": format!("prompt number {i}") }).to_string();
        let (base, headers) = (&quickstart.base, &headers);
        async move { raw(base, Method::POST, "/api/ai/complete", headers, &prompt).await }
    };
    let (status, first) = complete(0).await;
    assert_eq!(status, 200, "{first}");
    for i in 1..50 {
        let (status, body) = complete(i).await;
        assert_eq!(status, 422, "prompt {i}: {body}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("different request"));
    }
    let (status, again) = complete(0).await;
    assert_eq!(
        (status, &again),
        (200, &first),
        "the first answer, replayed"
    );
    quickstart.signal("-TERM");
    quickstart.wait();
    let events = admin(&emulator, "/__admin/events").await;
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
}

/// A customer asking for invoices, credit units and subscriptions that do not exist: each
/// absence is remembered and each customer may meet 30 a minute, so 2,000 requests make a
/// few dozen platform calls, ids past 256 bytes are refused, and the app's memory stays put.
#[actix_rt::test]
async fn looking_up_things_that_do_not_exist_is_bounded_per_customer() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let mallory = format!("Bearer {}", quickstart.token("Dave Free").await);
    let alice = format!("Bearer {}", quickstart.token("Alice").await);
    let headers = [("authorization", mallory.as_str())];
    let get = |path: String, headers: &[(&str, &str)]| {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let base = quickstart.base.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            raw(&base, Method::GET, &path, &headers, "").await.0
        }
    };
    let long = "x".repeat(257);
    assert_eq!(
        get(
            format!("/atlas-api/invoices/{long}/invoice-line-items"),
            &headers
        )
        .await,
        400,
        "ids are at most 256 bytes"
    );
    // Warm up, so what follows measures the flood and not the first requests' allocations.
    get(
        "/atlas-api/invoices/in_warm/invoice-line-items".into(),
        &headers,
    )
    .await;
    let before = quickstart.resident_kib();
    let lines_route = "GET /external/invoiceLineItems/expanded";
    let lines_before = crate::common::requests(&emulator, lines_route).await;
    let mut refused = 0;
    for i in 0..2_000 {
        let id = format!("in_{i:0>250}");
        let path = match i % 3 {
            0 => format!("/atlas-api/invoices/{id}/invoice-line-items"),
            1 => format!("/atlas-api/credit-usage/{id}"),
            _ => format!("/atlas-api/subscriptions/{id}"),
        };
        match get(path, &headers).await {
            429 => refused += 1,
            200 | 404 => {}
            other => panic!("request {i}: {other}"),
        }
    }
    assert!(refused >= 1_900, "{refused} of 2,000 refused");
    let lines = crate::common::requests(&emulator, lines_route).await - lines_before;
    assert!(lines <= 31, "{lines} platform calls for line items");
    let after = quickstart.resident_kib();
    assert!(
        after < before + 16 * 1024,
        "resident memory {before} KiB before, {after} KiB after"
    );
    // Another customer is not held back.
    assert_eq!(
        get(
            "/atlas-api/invoices/in_other/invoice-line-items".into(),
            &[("authorization", alice.as_str())]
        )
        .await,
        200
    );
}

/// The quickstart under `serve-stale`, the customer endpoint failing and Erin's cached
/// customer invalidated (so the check decides from the last known one): every completion it
/// serves is billed, none lost because the platform could not be asked afterwards.
#[actix_rt::test]
async fn work_served_from_stale_entitlements_is_billed() {
    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    command.env("ATLAS_OUTAGE_POLICY", "serve-stale");
    let quickstart = Quickstart::spawn(command);
    let erin = quickstart.token("Erin Pro").await;
    assert_eq!(quickstart.complete(&erin).await, 200);
    let platform = Platform {
        emulator: &emulator,
    };
    platform
        .inject_fault(json!({"path": "/external/customers/external-id", "status": 503}))
        .await;
    platform
        .admin(
            Method::POST,
            "/__admin/invalidate",
            Some(json!({"customer": "user_erin"})),
        )
        .await;
    let served = std::cell::Cell::new(1);
    // Until a check has decided from the last known entitlements, then ten more.
    eventually(
        "a check from stale entitlements",
        Duration::from_secs(10),
        || {
            let (quickstart, erin, served) = (&quickstart, &erin, &served);
            async move {
                assert_eq!(quickstart.complete(erin).await, 200);
                served.set(served.get() + 1);
                quickstart
                    .output()
                    .contains("deciding from the last known entitlements")
                    .then_some(())
            }
        },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(quickstart.complete(&erin).await, 200);
        served.set(served.get() + 1);
    }
    platform.clear_faults().await;
    quickstart.signal("-TERM");
    quickstart.wait();
    let events = admin(&emulator, "/__admin/events").await;
    assert_eq!(
        events.as_array().unwrap().len(),
        served.get(),
        "one event per completion served: {events}"
    );
}
