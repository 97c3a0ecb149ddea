//! The fleet's durable queue of usage events: a Redis stream every instance writes and
//! drains.
//!
//! An event is in the stream (`XADD`, with its idempotency key) before `enqueue` returns. Each
//! instance reads with one consumer group, so an entry goes to one instance; it is
//! acknowledged and deleted only once the platform accepted it (or refused it for good, as the
//! local queue does). Entries an instance read and did not acknowledge (its send failed, or it
//! died) stay pending: the instance retries its own at its next drain, and after
//! `reclaim_after` of idleness any instance claims them (`XAUTOCLAIM`) and sends them, with
//! the same keys. Nothing is lost, and the platform counts each key once.
//!
//! Consumers do not pile up in the group: an instance that shuts down with nothing pending
//! leaves it, and the instance that reclaims removes consumers idle past `reclaim_after` that
//! hold no entries (one script each, so an entry read meanwhile is never orphaned).

use std::sync::LazyLock;
use std::time::Duration;

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;

use super::RedisTier;
use crate::client::hooks::{Hooks, UsageStage};
use crate::client::platform::api::PlatformApi;
use crate::client::telemetry;
use crate::error::AtlasError;
use crate::models::UsageEvent;

const GROUP: &str = "atlas-actix";
/// Removes the consumer `ARGV[2]` of group `ARGV[1]` unless it holds pending entries: 1 when
/// removed, 0 when it holds some.
const LEAVE: &str = r"
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1";
static LEAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(LEAVE));
/// Removes the consumers of group `ARGV[1]`, other than `ARGV[2]`, idle for at least `ARGV[3]`
/// ms and holding no pending entries; their number.
const REMOVE_IDLE: &str = r"
local removed = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] ~= ARGV[2] and fields['pending'] == 0
      and fields['idle'] >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed";
static REMOVE_IDLE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(REMOVE_IDLE));
/// At most this many events go in one platform request, as from the local queue.
pub(crate) const BATCH: usize = 500;

/// The stream's names, and who this instance is in the group.
#[derive(Debug)]
pub(crate) struct EventStream {
    key: String,
    consumer: String,
    reclaim_after: Duration,
}

impl EventStream {
    pub(super) fn new(namespace: &str, reclaim_after: Duration) -> Self {
        Self {
            key: format!("{namespace}:events"),
            consumer: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            reclaim_after,
        }
    }

    /// Creates the group (and the stream) unless they exist.
    pub(crate) async fn prepare(&self, fleet: &RedisTier) {
        let key = self.key.clone();
        fleet
            .run(|mut connection| async move {
                let created: redis::RedisResult<()> =
                    connection.xgroup_create_mkstream(&key, GROUP, "0").await;
                match created {
                    Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
                    other => other,
                }
            })
            .await;
    }

    /// Adds the events, all or none, in one round trip; `false` when the tier is unavailable
    /// (the caller keeps them in the local queue).
    pub(crate) async fn append(&self, fleet: &RedisTier, events: &[UsageEvent]) -> bool {
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for event in events {
            let Ok(json) = serde_json::to_string(event) else {
                return false;
            };
            pipeline
                .cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("key")
                .arg(&event.idempotency_key)
                .arg("event")
                .arg(json)
                .ignore();
        }
        fleet
            .run(|mut connection| async move { pipeline.query_async::<()>(&mut connection).await })
            .await
            .is_some()
    }

    /// Sends one batch from the stream to the platform: this instance's own pending entries
    /// first, then entries idle too long under another (dead) instance, then new ones. Returns
    /// how many it handled; `Ok(0)` when there was nothing, or the tier is unavailable.
    pub(crate) async fn drain_once(
        &self,
        fleet: &RedisTier,
        api: &PlatformApi,
        hooks: &Hooks,
    ) -> Result<usize, AtlasError> {
        let Some(entries) = self.next_batch(fleet).await else {
            return Ok(0);
        };
        if entries.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = entries.iter().map(|entry| entry.id.clone()).collect();
        let events: Vec<UsageEvent> = entries
            .iter()
            .filter_map(|entry| {
                let json: String = entry.get("event")?;
                match serde_json::from_str(&json) {
                    Ok(event) => Some(event),
                    Err(err) => {
                        tracing::error!(entry = %entry.id, %err, "an unreadable usage event in the Redis stream; dropping it");
                        None
                    }
                }
            })
            .collect();
        let sent = if events.is_empty() {
            Ok(())
        } else {
            api.send_events(&events).await
        };
        match sent {
            Ok(()) => {
                telemetry::events_sent(events.len());
                hooks.usage(&events, || UsageStage::Sent);
            }
            Err(AtlasError::Rejected { status, message }) => {
                telemetry::events_set_aside(events.len());
                hooks.usage(&events, || UsageStage::Refused {
                    status,
                    reason: message.clone(),
                });
                tracing::error!(
                    status,
                    reason = %message,
                    events = %serde_json::to_string(&events).unwrap_or_default(),
                    "the Atlas platform rejected a batch of usage events as invalid; it is not retried"
                );
            }
            // Left pending: retried at the next drain, or by another instance.
            Err(err) => {
                telemetry::events_failed(events.len());
                return Err(err);
            }
        }
        let key = self.key.clone();
        let done = ids.clone();
        fleet
            .run(|mut connection| async move {
                redis::pipe()
                    .atomic()
                    .xack(&key, GROUP, &done)
                    .ignore()
                    .xdel(&key, &done)
                    .ignore()
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await;
        tracing::debug!(
            events = events.len(),
            "usage events from the Redis stream sent"
        );
        Ok(ids.len())
    }

    async fn next_batch(&self, fleet: &RedisTier) -> Option<Vec<StreamId>> {
        let own = self.read(fleet, "0").await?;
        if !own.is_empty() {
            return Some(own);
        }
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        let idle = self.reclaim_after.as_millis() as u64;
        let claimed: StreamAutoClaimReply = fleet
            .run(|mut connection| async move {
                connection
                    .xautoclaim_options(
                        &key,
                        GROUP,
                        &consumer,
                        idle,
                        "0-0",
                        StreamAutoClaimOptions::default().count(BATCH),
                    )
                    .await
            })
            .await?;
        self.remove_idle_consumers(fleet).await;
        if !claimed.claimed.is_empty() {
            tracing::info!(
                events = claimed.claimed.len(),
                "claimed usage events another instance read and did not send"
            );
            return Some(claimed.claimed);
        }
        self.read(fleet, ">").await
    }

    /// Reads entries for this consumer: `0` its pending ones, `>` new ones.
    async fn read(&self, fleet: &RedisTier, from: &str) -> Option<Vec<StreamId>> {
        let (key, consumer, from) = (self.key.clone(), self.consumer.clone(), from.to_owned());
        let reply: StreamReadReply = fleet
            .run(|mut connection| async move {
                connection
                    .xread_options(
                        &[&key],
                        &[&from],
                        &StreamReadOptions::default()
                            .group(GROUP, &consumer)
                            .count(BATCH),
                    )
                    .await
            })
            .await?;
        Some(reply.keys.into_iter().flat_map(|key| key.ids).collect())
    }

    /// Removes the consumers that dead or stopped instances left in the group.
    async fn remove_idle_consumers(&self, fleet: &RedisTier) {
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        let idle = self.reclaim_after.as_millis() as u64;
        let removed: Option<usize> = fleet
            .run(|mut connection| async move {
                REMOVE_IDLE_SCRIPT
                    .key(&key)
                    .arg(GROUP)
                    .arg(&consumer)
                    .arg(idle)
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
        if let Some(removed @ 1..) = removed {
            tracing::info!(
                consumers = removed,
                "removed idle consumers with nothing pending from the Redis event stream's group"
            );
        }
    }

    /// Leaves the group, unless this instance still holds entries (another instance reclaims
    /// them after `reclaim_after`, then removes this consumer).
    pub(crate) async fn leave(&self, fleet: &RedisTier) {
        let (key, consumer) = (self.key.clone(), self.consumer.clone());
        let left: Option<usize> = fleet
            .run(|mut connection| async move {
                LEAVE_SCRIPT
                    .key(&key)
                    .arg(GROUP)
                    .arg(&consumer)
                    .invoke_async(&mut connection)
                    .await
            })
            .await;
        if left == Some(0) {
            tracing::warn!("this instance leaves usage events pending in the Redis stream: another instance sends them after the reclaim time");
        }
    }

    /// Entries in the stream, not yet sent: each is deleted once the platform took it (a
    /// gauge for operators).
    pub(crate) async fn len(&self, fleet: &RedisTier) -> Option<usize> {
        let key = self.key.clone();
        fleet
            .run(|mut connection| async move { connection.xlen(&key).await })
            .await
    }
}
