//! Usage events: a bounded queue, flushed in batches by size or after an interval, one flush
//! at a time, optionally backed by a durable spool on disk. Events are billing data, so
//! nothing is dropped silently:
//! - an event the platform would refuse is refused at `push`, with the reason, so it never
//!   travels in a batch with good ones; a full queue refuses new events with an error;
//! - a failed flush puts its batch back (with the same idempotency keys) for the next one;
//! - a batch the platform refuses anyway is halved until the events it refuses are alone:
//!   those are set aside (an error log carrying each, a counter, and with a spool its
//!   `dead-letter.jsonl`), and the others are sent;
//! - events the spool cannot write (a full disk) are kept in memory and sent, and the queue
//!   reports the fault, so readiness fails until the spool writes again.

pub(crate) mod spool;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::client::events::spool::Spool;
use crate::client::hooks::{Hooks, UsageStage};
use crate::client::telemetry;
use crate::error::AtlasError;
use crate::models::UsageEvent;

/// At most this many events go in one request.
const MAX_BATCH: usize = 500;

#[derive(Default)]
struct Queued {
    /// Why the spool's last write failed, while it has not written since: the queued events
    /// are then in memory only.
    spool_fault: Option<String>,
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
    hooks: Hooks,
}

impl EventQueue {
    /// A queue; with a spool, its pending events are queued first.
    pub(crate) fn new(
        capacity: usize,
        flush_at: usize,
        interval: Duration,
        spool: Option<(Spool, Vec<UsageEvent>)>,
        hooks: Hooks,
    ) -> Self {
        let (spool, pending) = match spool {
            Some((spool, pending)) => (Some(spool), pending),
            None => (None, Vec::new()),
        };
        let (pending, invalid): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|event| event.problem().is_none());
        let queued = Queued {
            spool_fault: None,
            since: (!pending.is_empty()).then(Instant::now),
            events: pending.into(),
            reserved: 0,
        };
        let queue = Self {
            gauges: telemetry::QueueGauges::new(spool.is_some()),
            spool,
            queued: Mutex::new(queued),
            capacity,
            flush_at: flush_at.max(1),
            interval,
            wake: Arc::new(Notify::new()),
            flushing: tokio::sync::Mutex::new(()),
            hooks,
        };
        // A record edited by hand, or one the platform's rules refuse: never sent.
        for event in &invalid {
            let problem = event.problem().unwrap_or_default();
            queue.set_aside(std::slice::from_ref(event), 400, &problem);
        }
        queue
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

    /// Why the spool cannot write, while it cannot: events are then kept in memory only.
    pub(crate) fn spool_fault(&self) -> Option<String> {
        self.queued().spool_fault.clone()
    }

    /// `Ok` when `count` more events fit in the queue now.
    pub(crate) fn check_room(&self, count: usize) -> Result<(), AtlasError> {
        let queued = self.queued();
        if queued.events.len() + queued.reserved + count > self.capacity {
            return Err(AtlasError::QueueFull {
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Queues the events, all or none; with a spool, returns once they are on disk, or once
    /// kept in memory when the spool cannot write them. An event the platform would refuse
    /// refuses the lot, with the reason.
    pub(crate) async fn push(&self, events: Vec<UsageEvent>) -> Result<(), AtlasError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some((index, problem)) = events
            .iter()
            .enumerate()
            .find_map(|(index, event)| event.problem().map(|problem| (index, problem)))
        {
            return Err(AtlasError::InvalidInput(format!(
                "usage event {index} would be refused by the platform: {problem}"
            )));
        }
        let count = events.len();
        {
            let mut queued = self.queued();
            if queued.events.len() + queued.reserved + count > self.capacity {
                return Err(AtlasError::QueueFull {
                    capacity: self.capacity,
                });
            }
            // Room is held while the write is under way, so concurrent pushes cannot overfill
            // the queue; the events join it only once on disk, so an event the caller is told
            // failed is never sent.
            if self.spool.is_some() {
                queued.reserved += count;
            }
        }
        // Outside the queue's lock: the append may write its group on this thread.
        let written = match &self.spool {
            Some(spool) => Some(spool.append(&events).await),
            None => None,
        };
        self.hooks.usage(&events, || UsageStage::Queued);
        let mut queued = self.queued();
        match written {
            Some(Ok(())) => {
                queued.reserved -= count;
                if let Some(fault) = queued.spool_fault.take() {
                    tracing::info!(was = %fault, "the event spool writes again");
                }
            }
            Some(Err(err)) => {
                // The work is done: losing its usage to a full disk would be worse than
                // losing it to a crash while the disk is full, so it is kept in memory.
                queued.reserved -= count;
                telemetry::events_unspooled(count);
                tracing::error!(%err, count, "the event spool could not write usage events: they are kept in memory and sent, but a crash now would lose them; readiness fails until the spool writes again");
                queued.spool_fault = Some(err.to_string());
            }
            None => {}
        }
        let was_empty = queued.events.is_empty();
        queued.events.extend(events);
        queued.since.get_or_insert_with(Instant::now);
        let due_now = self.due_now(&queued);
        self.gauges.set(queued.events.len());
        drop(queued);
        // The flusher sleeps until the oldest event's interval ends: only a first event (which
        // sets that time) or a full batch changes when it must run. Waking it for every event
        // cost a wake-up of the I/O thread per usage request.
        if was_empty || due_now {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// When the next flush is due: `None` while nothing is queued; now once `flush_at` events
    /// wait or the interval is zero; else the interval after the oldest event.
    pub(crate) fn due_at(&self) -> Option<Instant> {
        let queued = self.queued();
        let since = queued.since?;
        if self.due_now(&queued) {
            Some(Instant::now())
        } else {
            Some(since + self.interval)
        }
    }

    /// Whether what is queued is to be sent at once rather than at the interval's end.
    fn due_now(&self, queued: &Queued) -> bool {
        self.interval.is_zero() || queued.events.len() >= self.flush_at
    }

    /// Removes delivered (or refused) events from the spool.
    fn acknowledge(&self, batch: &[UsageEvent]) {
        if let Some(spool) = &self.spool {
            spool.acknowledge(batch.iter().map(|e| e.idempotency_key.as_str()));
        }
    }

    /// Sends every event queued when the flush starts, waiting first for a flush under way.
    /// On failure the unsent events go back to the front of the queue, in order. Events the
    /// platform refused are set aside; the flush then answers the refusal, after sending the
    /// others.
    pub(crate) async fn flush<F, Fut>(&self, send: F) -> Result<(), AtlasError>
    where
        F: Fn(Vec<UsageEvent>) -> Fut,
        Fut: Future<Output = Result<(), AtlasError>>,
    {
        let _one_at_a_time = self.flushing.lock().await;
        let mut left = self.len();
        let mut refused = None;
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
            if let Some(refusal) = self.deliver(&send, batch).await? {
                refused = Some(refusal);
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Sends one batch. A part the platform refuses is halved, and the halves sent, until
    /// each refused event is alone: a bad event costs about two requests per halving
    /// (18 for one in 500) and never takes good events down with it. Returns the platform's
    /// refusal when it set events aside; on any other failure, the unsent parts go back to
    /// the front of the queue, in order.
    async fn deliver<F, Fut>(
        &self,
        send: &F,
        batch: Vec<UsageEvent>,
    ) -> Result<Option<AtlasError>, AtlasError>
    where
        F: Fn(Vec<UsageEvent>) -> Fut,
        Fut: Future<Output = Result<(), AtlasError>>,
    {
        let mut refused = None;
        // Parts to send, the next one last.
        let mut parts = vec![batch];
        while let Some(mut part) = parts.pop() {
            let sent = send(part.clone()).await;
            match sent {
                Ok(()) => self.acknowledge(&part),
                Err(AtlasError::Rejected { .. }) if part.len() > 1 => {
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
                Err(AtlasError::Rejected { status, message }) => {
                    self.set_aside(&part, status, &message);
                    refused = Some(AtlasError::Rejected { status, message });
                }
                Err(err) => {
                    let unsent = part.len() + parts.iter().map(Vec::len).sum::<usize>();
                    telemetry::events_failed(unsent);
                    let mut queued = self.queued();
                    let in_order = std::iter::once(part).chain(parts.into_iter().rev());
                    for event in in_order.flatten().collect::<Vec<_>>().into_iter().rev() {
                        queued.events.push_front(event);
                    }
                    queued.since = Some(Instant::now());
                    self.gauges.set(queued.events.len());
                    return Err(err);
                }
            }
            self.gauges.set(self.len());
        }
        Ok(refused)
    }

    /// Events the platform refused, one by one: never sent again (they would be refused
    /// again, forever), never dropped without a trace. Each is in an error log line, counted,
    /// and with a spool written to its dead-letter file, from which an operator can correct
    /// and replay them.
    fn set_aside(&self, events: &[UsageEvent], status: u16, reason: &str) {
        telemetry::events_set_aside(events.len());
        self.hooks.usage(events, || UsageStage::Refused {
            status,
            reason: reason.to_owned(),
        });
        tracing::error!(
            status,
            reason = %reason,
            events = %serde_json::to_string(events).unwrap_or_default(),
            "usage events the platform refuses are set aside, not sent again"
        );
        if let Some(spool) = &self.spool {
            if let Err(err) = spool.set_aside(events, status, reason) {
                tracing::error!(%err, "could not write refused usage events to the spool's dead-letter file; the log line above holds them");
            }
        }
        self.acknowledge(events);
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
        let queue = EventQueue::new(3, 20, Duration::from_secs(3), None, Hooks::default());
        queue.push(vec![event("a"), event("b")]).await.unwrap();
        assert_eq!(
            queue.push(vec![event("c"), event("d")]).await,
            Err(AtlasError::QueueFull { capacity: 3 })
        );
        assert_eq!(queue.len(), 2);
    }

    #[actix_rt::test]
    async fn due_by_size_interval_or_at_once() {
        let queue = EventQueue::new(100, 2, Duration::from_secs(60), None, Hooks::default());
        assert!(queue.due_at().is_none());
        queue.push(vec![event("a")]).await.unwrap();
        assert!(queue.due_at().unwrap() > Instant::now() + Duration::from_secs(50));
        queue.push(vec![event("b")]).await.unwrap();
        assert!(queue.due_at().unwrap() <= Instant::now());
        let eager = EventQueue::new(100, 20, Duration::ZERO, None, Hooks::default());
        eager.push(vec![event("a")]).await.unwrap();
        assert!(eager.due_at().unwrap() <= Instant::now());
    }

    #[actix_rt::test]
    async fn a_failed_flush_keeps_the_batch_in_order() {
        let queue = EventQueue::new(100, 20, Duration::from_secs(3), None, Hooks::default());
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

    /// A platform that refuses any batch holding an event whose key starts with `bad`, as
    /// the real one refuses a batch with one event it cannot take.
    fn refusing_bad<'a>(
        calls: &'a AtomicUsize,
        accepted: &'a Mutex<Vec<String>>,
    ) -> impl Fn(Vec<UsageEvent>) -> std::future::Ready<Result<(), AtlasError>> + 'a {
        move |batch| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(
                if batch.iter().any(|e| e.idempotency_key.starts_with("bad")) {
                    Err(AtlasError::Rejected {
                        status: 400,
                        message: "event 3: customerId is unknown".into(),
                    })
                } else {
                    accepted.lock().unwrap().extend(keys(&batch));
                    Ok(())
                },
            )
        }
    }

    #[actix_rt::test]
    async fn a_refused_batch_is_split_and_only_the_bad_events_set_aside() {
        let queue = EventQueue::new(2000, 20, Duration::from_secs(3), None, Hooks::default());
        let mut events: Vec<UsageEvent> = (0..1200).map(|i| event(&i.to_string())).collect();
        events[700] = event("bad-700");
        queue.push(events).await.unwrap();
        let (calls, accepted) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        let result = queue.flush(refusing_bad(&calls, &accepted)).await;
        assert!(matches!(
            result,
            Err(AtlasError::Rejected { status: 400, .. })
        ));
        let accepted = accepted.into_inner().unwrap();
        assert_eq!(accepted.len(), 1199, "every good event is sent");
        assert!(!accepted.iter().any(|key| key == "bad-700"));
        let calls = calls.into_inner();
        assert!(
            calls <= 3 + 2 * 9,
            "halving costs about two requests a level: {calls}"
        );
        assert_eq!(queue.len(), 0, "nothing is retried forever");
    }

    #[actix_rt::test]
    async fn the_spool_keeps_refused_events_in_its_dead_letter_file() {
        let dir = std::env::temp_dir().join(format!("atlas-dead-letter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir, false).unwrap();
        let queue = EventQueue::new(
            100,
            20,
            Duration::from_secs(3),
            Some(spool),
            Hooks::default(),
        );
        queue
            .push(vec![event("good-1"), event("bad-1"), event("good-2")])
            .await
            .unwrap();
        let (calls, accepted) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        assert!(queue.flush(refusing_bad(&calls, &accepted)).await.is_err());
        assert_eq!(accepted.into_inner().unwrap(), ["good-1", "good-2"]);
        let dead = std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap();
        let entries: Vec<serde_json::Value> = dead
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(entries.len(), 1, "{dead}");
        assert_eq!(entries[0]["event"]["idempotencyKey"], "bad-1");
        assert_eq!(entries[0]["status"], 400);
        assert_eq!(entries[0]["reason"], "event 3: customerId is unknown");
        drop(queue);
        let (_spool, pending) = Spool::open(&dir, false).unwrap();
        assert!(pending.is_empty(), "none is sent again after a restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn an_event_the_platform_would_refuse_is_refused_at_push() {
        let queue = EventQueue::new(100, 20, Duration::from_secs(3), None, Hooks::default());
        let mut empty = event("k");
        empty.customer_id.clear();
        let refused = queue.push(vec![event("a"), empty]).await;
        assert_eq!(
            refused,
            Err(AtlasError::InvalidInput(
                "usage event 1 would be refused by the platform: customerId must be a non-empty string"
                    .into()
            ))
        );
        assert_eq!(queue.len(), 0, "all or none");
    }

    #[actix_rt::test]
    async fn events_recovered_from_the_spool_that_the_platform_would_refuse_are_set_aside() {
        let dir = std::env::temp_dir().join(format!("atlas-recover-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, _) = Spool::open(&dir, false).unwrap();
        let mut negative = event("negative");
        negative.data.quantity = -1_000_000.0;
        spool.append(&[event("fine"), negative]).await.unwrap();
        drop(spool);
        let queue = EventQueue::new(
            100,
            20,
            Duration::from_secs(3),
            Some(Spool::open(&dir, false).unwrap()),
            Hooks::default(),
        );
        assert_eq!(queue.len(), 1, "only the good event is queued");
        let dead = std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap();
        assert!(dead.contains("\"negative\""), "{dead}");
        drop(queue);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
