//! Usage events survive the process: a graceful stop sends the queue, and with the durable
//! spool a `kill -9` loses nothing. These run the quickstart binary against the emulator.

use std::time::Duration;

use atlas_actix::emulator::EmulatorHandle;
use awc::http::Method;
use serde_json::Value;

use crate::common::{eventually, start_emulator, Platform, Quickstart};

async fn events(emulator: &EmulatorHandle) -> Vec<Value> {
    let events = Platform { emulator }
        .admin(Method::GET, "/__admin/events", None)
        .await
        .body;
    events.as_array().cloned().unwrap_or_default()
}

/// The keys of the events the spool holds and the platform has not accepted, each once: in
/// each segment, the lines of its region (up to the NUL that ends it, while they carry the
/// epoch of the first: `E<epoch> <event>` queued, `A<epoch> <key>` accepted).
fn spooled_keys(spool: &std::path::Path) -> Vec<String> {
    let (mut queued, mut accepted) = (Vec::new(), Vec::new());
    for segment in ["events.0.log", "events.1.log"] {
        let bytes = std::fs::read(spool.join(segment)).unwrap_or_default();
        let region = bytes.split(|byte| *byte == 0).next().unwrap_or_default();
        let mut epoch = None;
        for line in String::from_utf8_lossy(region).lines() {
            // `<kind><epoch> <checksum> <content>`
            let mut fields = line.splitn(3, ' ');
            let (Some(head), Some(_checksum), Some(content)) =
                (fields.next(), fields.next(), fields.next())
            else {
                break;
            };
            let (kind, this_epoch) = head.split_at(1);
            if *epoch.get_or_insert(this_epoch.to_owned()) != this_epoch {
                break;
            }
            match kind {
                "E" => {
                    let event: Value = serde_json::from_str(content).unwrap();
                    let key = event["idempotencyKey"].as_str().unwrap().to_owned();
                    if !queued.contains(&key) {
                        queued.push(key);
                    }
                }
                _ => accepted.push(content.to_owned()),
            }
        }
    }
    queued.retain(|key| !accepted.contains(key));
    queued
}

#[actix_rt::test]
async fn a_graceful_stop_sends_the_queued_events() {
    let emulator = start_emulator();
    let quickstart = Quickstart::start(&emulator, None);
    let token = quickstart.token("Erin Pro").await;
    assert_eq!(quickstart.complete(&token).await, 200);
    // A guard answers once its usage is queued; the flush interval (3 s) has not passed.
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
    let keys = eventually("5 events on disk", Duration::from_secs(5), || async {
        let keys = spooled_keys(&spool);
        (keys.len() == 5).then_some(keys)
    })
    .await;
    quickstart.signal("-KILL");
    quickstart.wait();
    assert!(
        events(&emulator).await.is_empty(),
        "killed before any flush"
    );

    let restarted = Quickstart::start(&emulator, Some(spool.as_path()));
    let received = eventually(
        "5 events at the platform",
        Duration::from_secs(10),
        || async {
            let received = events(&emulator).await;
            (received.len() >= 5).then_some(received)
        },
    )
    .await;
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
