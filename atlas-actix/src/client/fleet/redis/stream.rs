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

use std::time::Duration;

use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::AsyncCommands;

use super::RedisTier;
use crate::client::platform::api::PlatformApi;
use crate::error::AtlasError;
use crate::models::UsageEvent;

const GROUP: &str = "atlas-actix";
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
            Ok(()) => {}
            Err(AtlasError::Rejected { status, message }) => {
                tracing::error!(
                    status,
                    reason = %message,
                    events = %serde_json::to_string(&events).unwrap_or_default(),
                    "the Atlas platform rejected a batch of usage events as invalid; it is not retried"
                );
            }
            // Left pending: retried at the next drain, or by another instance.
            Err(err) => return Err(err),
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

    /// Entries in the stream, sent or not yet (a gauge for operators).
    pub(crate) async fn len(&self, fleet: &RedisTier) -> Option<usize> {
        let key = self.key.clone();
        fleet
            .run(|mut connection| async move { connection.xlen(&key).await })
            .await
    }
}
