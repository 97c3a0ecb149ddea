//! The fleet tier on a real Redis: a shared cache, one platform request per customer for the
//! fleet, stale data for an instance started during an outage, a shared event queue that
//! survives a killed instance, and Redis faults that fail no request.

use std::time::{Duration, Instant};

use atlas_actix::emulator::EmulatorHandle;
use atlas_actix::{Atlas, BuildError, Pagination, TierHealth};
use awc::http::Method;
use serde_json::json;

use crate::common::{
    builder, eventually, quickstart_command, requests, start_emulator, Platform, Quickstart,
    CUSTOMER_ROUTE,
};
use crate::observability::{metric, scrape};
use crate::redis_server::RedisServer;

/// An instance of the app: a client on the shared Redis, connected.
async fn instance(emulator: &EmulatorHandle, redis: &RedisServer) -> Atlas {
    let atlas = builder(emulator)
        .push_invalidation(false)
        .redis_url(redis.url())
        .build()
        .unwrap();
    wait_for_tier(&atlas, TierHealth::Up).await;
    atlas.status().await.unwrap();
    atlas
}

/// `GET path` as the bearer of `token`: the status and body.
async fn get(base: &str, token: &str, path: &str) -> (u16, String) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(40))
        .finish();
    let mut response = client
        .get(format!("{base}{path}"))
        .insert_header(("authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("answered");
    let body = response.body().await.unwrap_or_default();
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Redis, the platform, and three instances sharing the one through the other.
async fn three_instances() -> (RedisServer, EmulatorHandle, Vec<Atlas>) {
    let redis = RedisServer::start();
    let emulator = start_emulator();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(instance(&emulator, &redis).await);
    }
    (redis, emulator, fleet)
}

async fn wait_for_tier(atlas: &Atlas, state: TierHealth) {
    eventually(
        &format!("the Redis tier going {state}"),
        Duration::from_secs(20),
        || async { (atlas.health().await.redis == Some(state)).then_some(()) },
    )
    .await;
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn a_customer_checked_on_each_instance_is_fetched_once_for_the_fleet() {
    let (redis, emulator, fleet) = three_instances().await;
    for atlas in &fleet {
        assert!(
            atlas
                .allowed("user_erin", ["data-explorer"])
                .await
                .unwrap()
                .ok
        );
    }
    assert_eq!(requests(&emulator, CUSTOMER_ROUTE).await, 1);

    // Without the tier, each instance asks the platform.
    let mut islands = Vec::new();
    for _ in 0..3 {
        islands.push(builder(&emulator).push_invalidation(false).build().unwrap());
    }
    for atlas in &islands {
        assert!(
            !atlas
                .allowed("user_dave", ["data-explorer"])
                .await
                .unwrap()
                .ok
        );
    }
    assert_eq!(requests(&emulator, CUSTOMER_ROUTE).await, 1 + 3);

    // Namespaced, and no key material.
    let stored = redis.dump();
    assert!(
        !stored.contains(emulator.api_key()),
        "the API key is in Redis"
    );
    assert!(
        stored
            .lines()
            .next()
            .is_some_and(|key| key.starts_with("atlas:")),
        "{stored}"
    );
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn fifty_concurrent_first_checks_on_each_of_three_instances_make_one_request() {
    let (_redis, emulator, fleet) = three_instances().await;
    let checks = fleet.iter().flat_map(|atlas| {
        (0..50).map(move |_| atlas.allowed("org_standard_corp", ["data-explorer"]))
    });
    for check in futures_util::future::join_all(checks).await {
        assert!(check.unwrap().ok);
    }
    let fetched = requests(&emulator, CUSTOMER_ROUTE).await;
    eprintln!("150 concurrent first checks on 3 instances: {fetched} platform customer request(s)");
    assert!(fetched <= 3, "{fetched} customer requests");
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn an_instance_started_during_an_outage_serves_what_the_fleet_knew() {
    let redis = RedisServer::start();
    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    command
        .env("ATLAS_REDIS_URL", redis.url())
        .env("ATLAS_OUTAGE_POLICY", "serve-stale");
    let first = Quickstart::spawn(command);
    let erin = first.token("Erin Pro").await;
    assert_eq!(get(&first.base, &erin, "/api/data-explorer").await.0, 200);

    // The 4th instance points at the same (now dead) platform.
    let mut command = quickstart_command(&emulator);
    command
        .env("ATLAS_REDIS_URL", redis.url())
        .env("ATLAS_OUTAGE_POLICY", "serve-stale");
    emulator.stop();
    let late = Quickstart::spawn(command);
    let erin = late.token("Erin Pro").await;
    let dave = late.token("Dave Free").await;
    let (status, body) = get(&late.base, &erin, "/api/data-explorer").await;
    assert_eq!(
        status,
        200,
        "a customer the fleet had seen: {body}\n{}",
        late.output()
    );
    let (status, body) = get(&late.base, &dave, "/api/data-explorer").await;
    assert_eq!(status, 503, "a customer never seen: {body}");
}

/// The fleet's event stream, once an instance made it.
fn event_stream(redis: &RedisServer) -> Option<String> {
    let keys = redis
        .command(&["--scan", "--pattern", "atlas:*:events"])
        .unwrap_or_default();
    keys.lines().next().map(str::to_owned)
}

fn pending_in_group(redis: &RedisServer) -> usize {
    let Some(stream) = event_stream(redis) else {
        return 0;
    };
    let stream = stream.as_str();
    let summary = redis
        .command(&["XPENDING", stream, "atlas-actix"])
        .unwrap_or_default();
    summary
        .lines()
        .next()
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn an_event_read_by_an_instance_killed_before_sending_it_is_sent_once_by_another() {
    let redis = RedisServer::start();
    let emulator = start_emulator();
    let platform = Platform {
        emulator: &emulator,
    };
    platform
        .inject_fault(json!({"path": "/external/event", "status": 503}))
        .await;
    let start = || {
        let mut command = quickstart_command(&emulator);
        command.env("ATLAS_REDIS_URL", redis.url());
        Quickstart::spawn(command)
    };
    let first = start();
    let token = first.token("Erin Pro").await;
    assert_eq!(first.complete(&token).await, 200);
    // Read by the first instance, whose send fails: pending under it.
    eventually(
        "the first instance's read of the event",
        Duration::from_secs(20),
        || async { (pending_in_group(&redis) == 1).then_some(()) },
    )
    .await;
    first.signal("-KILL");
    first.wait();
    platform.clear_faults().await;

    let killed_at = Instant::now();
    let second = start();
    eventually(
        "the event's arrival at the platform",
        Duration::from_secs(30),
        || async {
            let events = platform
                .admin(Method::GET, "/__admin/events", None)
                .await
                .body;
            events
                .as_array()
                .is_some_and(|events| !events.is_empty())
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "the event reached the platform {:?} after the kill",
        killed_at.elapsed()
    );
    // A graceful stop sends whatever the stream still holds: a duplicate would land by then.
    second.signal("-TERM");
    second.wait();
    let events = platform
        .admin(Method::GET, "/__admin/events", None)
        .await
        .body;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "exactly once: {events:?}");
    assert_eq!(events[0]["customerId"], "cus_erin");
    assert_eq!(pending_in_group(&redis), 0);
    // The killed instance's consumer was removed by the one that reclaimed its event, and the
    // stopped one left: nothing piles up in the group.
    assert_eq!(consumers_in_group(&redis), Some(0));
}

/// How many consumers the stream's group has (`XINFO GROUPS`).
fn consumers_in_group(redis: &RedisServer) -> Option<usize> {
    let stream = event_stream(redis)?;
    let info = redis.command(&["XINFO", "GROUPS", &stream])?;
    let mut lines = info.lines().map(str::trim);
    lines.find(|line| *line == "consumers")?;
    lines.next()?.parse().ok()
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn a_fleet_instance_counts_the_events_it_sent_through_the_stream() {
    let redis = RedisServer::start();
    let emulator = start_emulator();
    let mut command = quickstart_command(&emulator);
    command.env("ATLAS_REDIS_URL", redis.url());
    let quickstart = Quickstart::spawn(command);
    let erin = quickstart.token("Erin Pro").await;
    for _ in 0..3 {
        assert_eq!(quickstart.complete(&erin).await, 200);
    }
    let text = eventually(
        "3 events sent through the stream",
        Duration::from_secs(20),
        || async {
            let text = scrape(&quickstart).await;
            (metric(&text, "atlas_events_sent_total", &[]) == Some(3.0)
                && metric(&text, "atlas_events_stream_pending", &[]) == Some(0.0))
            .then_some(text)
        },
    )
    .await;
    assert_eq!(emulator.events().len(), 3);
    // The stream is not the spool: this instance has none.
    assert_eq!(metric(&text, "atlas_events_spooled", &[]), None, "{text}");
    assert_eq!(metric(&text, "atlas_events_queued", &[]), Some(0.0));

    // The platform refuses events for now: the stream's backlog and the failures show it.
    Platform {
        emulator: &emulator,
    }
    .inject_fault(json!({"path": "/external/event", "status": 503}))
    .await;
    assert_eq!(quickstart.complete(&erin).await, 200);
    eventually(
        "a failed send and one event waiting in the stream",
        Duration::from_secs(20),
        || async {
            let text = scrape(&quickstart).await;
            (metric(&text, "atlas_events_failed_total", &[]).is_some_and(|failed| failed >= 1.0)
                && metric(&text, "atlas_events_stream_pending", &[]) == Some(1.0))
            .then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn redis_killed_mid_run_fails_no_request_and_is_used_again_once_back() {
    let mut redis = RedisServer::start();
    let emulator = start_emulator();
    let a = instance(&emulator, &redis).await;
    let b = instance(&emulator, &redis).await;

    redis.kill();
    // Checks and usage go on: from the platform, and into the local queue.
    assert!(a.allowed("user_erin", ["data-explorer"]).await.unwrap().ok);
    assert!(b.allowed("user_erin", ["data-explorer"]).await.unwrap().ok);
    a.enqueue("user_erin", ["ai-tokens"], 3.0).await.unwrap();
    assert_eq!(a.queued_events(), 1);
    wait_for_tier(&a, TierHealth::Down).await;

    redis.restart();
    wait_for_tier(&a, TierHealth::Up).await;
    wait_for_tier(&b, TierHealth::Up).await;
    // The event queued meanwhile reaches the platform (through the stream).
    a.flush().await.unwrap();
    assert_eq!(a.queued_events(), 0);
    let events = Platform {
        emulator: &emulator,
    }
    .admin(Method::GET, "/__admin/events", None)
    .await
    .body;
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    // The tier is shared again: what one instance fetches, the other reads from Redis.
    let before = requests(&emulator, CUSTOMER_ROUTE).await;
    // Frank's Pro plan has the data explorer, whichever instance answers.
    assert!(a.allowed("user_frank", ["data-explorer"]).await.unwrap().ok);
    assert!(b.allowed("user_frank", ["data-explorer"]).await.unwrap().ok);
    assert_eq!(requests(&emulator, CUSTOMER_ROUTE).await, before + 1);
}

#[test]
fn a_redis_url_that_does_not_parse_is_refused() {
    let emulator = start_emulator();
    let err = builder(&emulator)
        .redis_url("http://not-redis")
        .build()
        .expect_err("refused");
    assert!(
        matches!(
            err,
            BuildError::InvalidOption {
                option: "redis_url",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Customer ids may hold `:` (a resolver may return `tenant:123`). Two customers whose ids and
/// item ids joined with `:` would make one Redis key (`mallory` asking for the line items of
/// invoice `x:invoices:`, and `mallory:line_items:x` listing its invoices) get keys of their
/// own: Mallory reads nothing of the victim's, and writes nothing over it.
#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn ids_with_colons_never_share_a_redis_key() {
    let redis = RedisServer::start();
    let mut data = crate::common::example_data();
    let victim = "mallory:line_items:x";
    let invoices = data
        .invoices
        .remove("org_standard_corp")
        .expect("the sample's invoices");
    data.invoices.insert(victim.to_owned(), invoices);
    for customer in &mut data.customers {
        if customer.external_id == "org_standard_corp" {
            customer.external_id = victim.to_owned();
        }
    }
    let emulator = atlas_actix::emulator::Emulator::start(data).unwrap();
    let (a, b) = (
        instance(&emulator, &redis).await,
        instance(&emulator, &redis).await,
    );
    let first = a.invoices(victim, &Pagination::new()).await.unwrap();
    assert!(!first.results.is_empty(), "the victim has invoices");
    let stolen = b
        .invoice_line_items("mallory", "x:invoices:")
        .await
        .unwrap();
    assert!(stolen.is_empty(), "Mallory reads nothing: {stolen:?}");
    // Neither instance's later reads see anything Mallory's request wrote.
    a.invalidate_customer("mallory");
    for instance in [&a, &b] {
        let again = instance.invoices(victim, &Pagination::new()).await.unwrap();
        assert_eq!(again.results.len(), first.results.len());
    }
    assert!(
        !redis.dump().contains(":customer:mallory:line_items"),
        "keys carry each part's length"
    );
}

/// Ids that do not exist leave nothing in Redis: 200 line-item reads of invoices that are not
/// the customer's, on two instances, add no key (a caller making ids up cannot grow Redis).
#[actix_rt::test]
#[cfg_attr(
    not(has_redis_server),
    ignore = "redis-server is not installed (.ci/run installs it)"
)]
async fn ids_that_do_not_exist_write_nothing_to_redis() {
    let redis = RedisServer::start();
    let emulator = crate::common::start_emulator();
    let (a, b) = (
        instance(&emulator, &redis).await,
        instance(&emulator, &redis).await,
    );
    // A real read first, so the keys a customer always has are there.
    a.invoices("user_dave", &Pagination::new()).await.unwrap();
    let keys_before = redis.command(&["DBSIZE"]).unwrap();
    for i in 0..100 {
        for instance in [&a, &b] {
            let items = instance
                .invoice_line_items("user_dave", &format!("in_made_up_{i}"))
                .await
                .unwrap();
            assert!(items.is_empty());
        }
    }
    assert_eq!(
        redis.command(&["DBSIZE"]).unwrap(),
        keys_before,
        "{}",
        redis.dump()
    );
}
