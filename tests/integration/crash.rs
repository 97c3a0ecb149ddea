//! Usage events survive the process: a graceful stop sends the queue, and with the durable
//! spool a `kill -9` loses nothing. These run the quickstart binary against the emulator.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use atlas_actix::emulator::EmulatorHandle;
use awc::http::Method;
use serde_json::Value;

use crate::common::{call, start_emulator, Platform};

/// The quickstart built beside this test binary (`cargo test` builds the examples).
fn quickstart_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "no {}: `cargo test --workspace` builds the examples",
        binary.display()
    );
    binary
}

struct Quickstart {
    child: Child,
    base: String,
}

impl Quickstart {
    /// Starts the quickstart against the emulator (as if it were the platform) and waits
    /// until it listens.
    fn start(emulator: &EmulatorHandle, spool: Option<&std::path::Path>) -> Self {
        let mut command = Command::new(quickstart_binary());
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("ATLAS_API_KEY", emulator.api_key())
            .env("ATLAS_HOST", emulator.url())
            .env("PORT", "0")
            .env("RUST_LOG", "warn")
            .env_remove("CLERK_JWT_KEY")
            .env_remove("CLERK_JWKS_URL")
            .env_remove("ATLAS_EVENT_SPOOL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(spool) = spool {
            command.env("ATLAS_EVENT_SPOOL", spool);
        }
        let mut child = command.spawn().expect("the quickstart starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the quickstart printed its address")
                .unwrap();
            if let Some(base) = line.strip_prefix("listening ") {
                break base.to_owned();
            }
        };
        // Keep reading its output, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    async fn token(&self, user: &str) -> String {
        let tokens = call(&self.base, None, Method::GET, "/demo/tokens", None)
            .await
            .body;
        tokens[user].as_str().unwrap().to_owned()
    }

    async fn complete(&self, token: &str) -> u16 {
        let client = awc::Client::default();
        let response = client
            .post(format!("{}/api/ai/complete", self.base))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send_json(&serde_json::json!({"prompt": "count these words"}))
            .await
            .unwrap();
        response.status().as_u16()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self) {
        for _ in 0..200 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the quickstart did not stop");
    }
}

async fn events(emulator: &EmulatorHandle) -> Vec<Value> {
    let events = Platform { emulator }
        .admin(Method::GET, "/__admin/events", None)
        .await
        .body;
    events.as_array().cloned().unwrap_or_default()
}

fn spooled_keys(spool: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(spool.join("events.log")).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("E "))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .map(|event| event["idempotencyKey"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_rt::test]
async fn a_graceful_stop_sends_the_queued_events() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let token = quickstart.token("Erin Pro").await;
    assert_eq!(quickstart.complete(&token).await, 200);
    // The usage is queued right after the answer; the flush interval (3 s) has not passed.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(events(&emulator).await.is_empty());
    quickstart.signal("-TERM");
    quickstart.wait();
    let events = events(&emulator).await;
    assert_eq!(events.len(), 1, "sent on the way out");
    assert_eq!(events[0]["customerId"], "cus_erin");
}

#[actix_rt::test]
async fn kill_9_with_events_queued_loses_none_and_sends_each_once() {
    let emulator = start_emulator();
    let spool = std::env::temp_dir().join(format!("atlas-crash-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);

    let quickstart = Quickstart::start(&emulator, Some(spool.as_path()));
    let token = quickstart.token("Erin Pro").await;
    for _ in 0..5 {
        assert_eq!(quickstart.complete(&token).await, 200);
    }
    for _ in 0..100 {
        if spooled_keys(&spool).len() == 5 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = spooled_keys(&spool);
    assert_eq!(keys.len(), 5, "every event is on disk");
    quickstart.signal("-KILL");
    quickstart.wait();
    assert!(
        events(&emulator).await.is_empty(),
        "killed before any flush"
    );

    let restarted = Quickstart::start(&emulator, Some(spool.as_path()));
    let mut received = Vec::new();
    for _ in 0..200 {
        received = events(&emulator).await;
        if received.len() >= 5 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sent: Vec<String> = received
        .iter()
        .map(|e| e["idempotencyKey"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(sent, expected, "the same events, with their original keys");
    restarted.signal("-TERM");
    restarted.wait();
    assert_eq!(events(&emulator).await.len(), 5, "each exactly once");
    assert!(
        spooled_keys(&spool).is_empty(),
        "the spool is empty once the platform has them"
    );
    std::fs::remove_dir_all(&spool).unwrap();
}
