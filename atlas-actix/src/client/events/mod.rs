//! Usage events: a bounded queue, flushed in batches by size or after an interval, one flush
//! at a time, optionally backed by a durable spool on disk. Events are billing data, so nothing is dropped silently: a full queue refuses
//! new events with an error, a failed flush puts its batch back (with the same idempotency
//! keys) for the next one, and only a batch the platform rejects as invalid is dropped, with
//! an error log that carries every event.

pub(crate) mod spool;
mod spool_dir;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::client::events::spool::Spool;
use crate::client::telemetry;
use crate::error::AtlasError;
use crate::models::UsageEvent;

/// At most this many events go in one request.
const MAX_BATCH: usize = 500;

#[derive(Default)]
struct Queued {
    events: VecDeque<UsageEvent>,
    /// When the oldest queued event was queued (or put back after a failed flush).
    since: Option<Instant>,
    /// Room taken by events being written to the spool.
    reserved: usize,
}

pub(crate) struct EventQueue {
    queued: Mutex<Queued>,
    capacity: usize,
    flush_at: usize,
    interval: Duration,
    wake: Arc<Notify>,
    flushing: tokio::sync::Mutex<()>,
    spool: Option<Spool>,
    gauges: telemetry::QueueGauges,
}

impl EventQueue {
    /// A queue; with a spool, its pending events are queued first.
    pub(crate) fn new(
        capacity: usize,
        flush_at: usize,
        interval: Duration,
        spool: Option<(Spool, Vec<UsageEvent>)>,
    ) -> Self {
        let (spool, pending) = match spool {
            Some((spool, pending)) => (Some(spool), pending),
            None => (None, Vec::new()),
        };
        let queued = Queued {
            since: (!pending.is_empty()).then(Instant::now),
            events: pending.into(),
            reserved: 0,
        };
        Self {
            gauges: telemetry::QueueGauges::new(spool.is_some()),
            spool,
            queued: Mutex::new(queued),
            capacity,
            flush_at: flush_at.max(1),
            interval,
            wake: Arc::new(Notify::new()),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    fn queued(&self) -> MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the flusher when a flush becomes due sooner.
    pub(crate) fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Number of events waiting to be sent.
    pub(crate) fn len(&self) -> usize {
        self.queued().events.len()
    }

    /// Queues the events, all or none; with a spool, returns once they are on disk.
    pub(crate) async fn push(&self, events: Vec<UsageEvent>) -> Result<(), AtlasError> {
        if events.is_empty() {
            return Ok(());
        }
        let count = events.len();
        let spooled = {
            let mut queued = self.queued();
            if queued.events.len() + queued.reserved + count > self.capacity {
                return Err(AtlasError::QueueFull {
                    capacity: self.capacity,
                });
            }
            match &self.spool {
                // Room is held while the write is under way, so concurrent pushes cannot
                // overfill the queue; the events join it only once on disk, so an event the
                // caller is told failed is never sent.
                Some(spool) => {
                    queued.reserved += count;
                    Some(spool.append(&events))
                }
                None => None,
            }
        };
        if let Some(on_disk) = spooled {
            let written = on_disk.await;
            let mut queued = self.queued();
            queued.reserved -= count;
            written.map_err(|err| {
                AtlasError::Storage(format!("could not write usage events to the spool: {err}"))
            })?;
        }
        let mut queued = self.queued();
        queued.events.extend(events);
        queued.since.get_or_insert_with(Instant::now);
        self.gauges.set(queued.events.len());
        drop(queued);
        self.wake.notify_one();
        Ok(())
    }

    /// When the next flush is due: `None` while nothing is queued; now once `flush_at` events
    /// wait or the interval is zero; else the interval after the oldest event.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        let queued = self.queued();
        let since = queued.since?;
        if self.interval.is_zero() || queued.events.len() >= self.flush_at {
            Some(Instant::now())
        } else {
            Some(since + self.interval)
        }
    }

    /// Removes delivered (or refused) events from the spool.
    fn acknowledge(&self, batch: &[UsageEvent]) {
        if let Some(spool) = &self.spool {
            spool.acknowledge(batch.iter().map(|e| e.idempotency_key.as_str()));
        }
    }

    /// Sends every event queued when the flush starts, waiting first for a flush under way.
    /// On failure the unsent events go back to the front of the queue, in order.
    pub(crate) async fn flush<F, Fut>(&self, send: F) -> Result<(), AtlasError>
    where
        F: Fn(Vec<UsageEvent>) -> Fut,
        Fut: Future<Output = Result<(), AtlasError>>,
    {
        let _one_at_a_time = self.flushing.lock().await;
        let mut left = self.len();
        let mut rejected = None;
        while left > 0 {
            let batch: Vec<UsageEvent> = {
                let mut queued = self.queued();
                let take = left.min(MAX_BATCH).min(queued.events.len());
                let batch = queued.events.drain(..take).collect();
                if queued.events.is_empty() {
                    queued.since = None;
                }
                batch
            };
            if batch.is_empty() {
                break;
            }
            left -= batch.len();
            let sent = send(batch.clone()).await;
            self.gauges.set(self.len());
            match sent {
                Ok(()) => {
                    telemetry::events_sent(batch.len());
                    self.acknowledge(&batch);
                }
                Err(AtlasError::Rejected { status, message }) => {
                    self.acknowledge(&batch);
                    tracing::error!(
                        status,
                        reason = %message,
                        events = %serde_json::to_string(&batch).unwrap_or_default(),
                        "the Atlas platform rejected a batch of usage events as invalid; it is not retried"
                    );
                    rejected = Some(AtlasError::Rejected { status, message });
                }
                Err(err) => {
                    telemetry::events_failed(batch.len());
                    let mut queued = self.queued();
                    for event in batch.into_iter().rev() {
                        queued.events.push_front(event);
                    }
                    queued.since = Some(Instant::now());
                    self.gauges.set(queued.events.len());
                    return Err(err);
                }
            }
        }
        rejected.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn event(key: &str) -> UsageEvent {
        UsageEvent::sample(key)
    }

    fn keys(events: &[UsageEvent]) -> Vec<String> {
        events.iter().map(|e| e.idempotency_key.clone()).collect()
    }

    #[actix_rt::test]
    async fn refuses_what_does_not_fit_whole() {
        let queue = EventQueue::new(3, 20, Duration::from_secs(3), None);
        queue.push(vec![event("a"), event("b")]).await.unwrap();
        assert_eq!(
            queue.push(vec![event("c"), event("d")]).await,
            Err(AtlasError::QueueFull { capacity: 3 })
        );
        assert_eq!(queue.len(), 2);
    }

    #[actix_rt::test]
    async fn due_by_size_interval_or_at_once() {
        let queue = EventQueue::new(100, 2, Duration::from_secs(60), None);
        assert!(queue.due_at().is_none());
        queue.push(vec![event("a")]).await.unwrap();
        assert!(queue.due_at().unwrap() > Instant::now() + Duration::from_secs(50));
        queue.push(vec![event("b")]).await.unwrap();
        assert!(queue.due_at().unwrap() <= Instant::now());
        let eager = EventQueue::new(100, 20, Duration::ZERO, None);
        eager.push(vec![event("a")]).await.unwrap();
        assert!(eager.due_at().unwrap() <= Instant::now());
    }

    #[actix_rt::test]
    async fn a_failed_flush_keeps_the_batch_in_order() {
        let queue = EventQueue::new(100, 20, Duration::from_secs(3), None);
        queue.push(vec![event("a"), event("b")]).await.unwrap();
        let failed = queue
            .flush(|_| async { Err(AtlasError::unavailable("down")) })
            .await;
        assert!(failed.is_err());
        queue.push(vec![event("c")]).await.unwrap();
        let sent = Mutex::new(Vec::new());
        queue
            .flush(|batch| {
                sent.lock().unwrap().extend(batch);
                async { Ok(()) }
            })
            .await
            .unwrap();
        assert_eq!(keys(&sent.lock().unwrap()), ["a", "b", "c"]);
        assert_eq!(queue.len(), 0);
        assert!(queue.due_at().is_none());
    }

    #[actix_rt::test]
    async fn a_rejected_batch_is_dropped_and_reported() {
        let queue = EventQueue::new(2000, 20, Duration::from_secs(3), None);
        queue
            .push((0..1200).map(|i| event(&i.to_string())).collect())
            .await
            .unwrap();
        let calls = AtomicUsize::new(0);
        let result = queue
            .flush(|_| {
                let call = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if call == 1 {
                        Err(AtlasError::Rejected {
                            status: 400,
                            message: "bad event".into(),
                        })
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "batches of at most 500");
        assert!(matches!(
            result,
            Err(AtlasError::Rejected { status: 400, .. })
        ));
        assert_eq!(queue.len(), 0);
    }
}
