//! The durable event spool (`AtlasBuilder::event_spool`, no feature needed): usage events are
//! on disk before `enqueue` returns, so a crash or `kill -9` loses none. After a restart the
//! events not yet accepted are sent again, with their original idempotency keys (the
//! platform counts each once).
//!
//! Group commit (`commit`): appends that arrive while a group is written wait, then are
//! written and synced together; a slow sync is done by a writer thread, a cheap one (tmpfs)
//! by the request that finds the writer idle, on its own worker.
//!
//! The syncs themselves are kept cheap the way database logs keep them: two segment files,
//! `events.0.log` and `events.1.log`, filled with zeros once when created, then overwritten
//! in place. A sync of bytes written over blocks the file already has changes no file
//! metadata, so it costs about half of one that grows the file. Records are lines, `E<n>
//! <checksum> <event JSON>` when an event is queued and `A<n> <checksum> <idempotency key>`
//! when the platform accepted it, where `n` is the epoch of the segment's current use and the
//! checksum the first 8 hex digits of the SHA-256 of the rest; each write ends with a NUL
//! byte, which the next write overwrites. A segment's valid region runs from its start while
//! the lines carry the epoch of its first line, up to the NUL; what lies beyond is an older
//! use, or a write a crash tore before its sync. Inside the region, a line whose checksum
//! does not match (a disk error, an edit) is skipped with a warning and reading goes on.
//!
//! Events the platform refuses are appended to `dead-letter.jsonl`, one JSON object per line
//! (`refusedAt`, `status`, `reason`, `event`), for an operator to correct and replay. When the segment in use has grown past
//! its size, the writer copies the events still pending into the other segment under a new
//! epoch (synced) and goes on there, so the spool stays the size of its backlog.
//!
//! Opening the spool reads both segments' valid regions, oldest epoch first: the pending
//! events are those queued and not acknowledged in either, each once by key. That union is
//! right even after a crash in the middle of a switch, because the older segment is only
//! overwritten after the newer one holds every pending event and was synced.

mod commit;
mod dir;
mod segments;

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::commit::{Committer, Writer, INLINE_SYNC};
use self::dir::{open_private, SpoolDir};
#[cfg(feature = "cli")]
pub(crate) use self::segments::read_pending;
use self::segments::{pending, read_regions, segment_file, SEGMENTS, SEGMENT_SIZE};
use crate::models::UsageEvent;

/// Where events the platform refused are kept, one JSON object per line.
const DEAD_LETTER: &str = "dead-letter.jsonl";

pub(crate) struct Spool {
    dir: PathBuf,
    committer: Arc<Committer>,
    writer: Option<JoinHandle<()>>,
    /// The directory's lock, released last, once the writer has stopped.
    _claimed: SpoolDir,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`; returns it with the events still pending.
    pub(crate) fn open(dir: &Path, shared_dir: bool) -> io::Result<(Self, Vec<UsageEvent>)> {
        Self::open_with(dir, shared_dir, SEGMENT_SIZE, INLINE_SYNC)
    }

    fn open_with(
        dir: &Path,
        shared_dir: bool,
        segment_size: u64,
        inline_below: Duration,
    ) -> io::Result<(Self, Vec<UsageEvent>)> {
        let claimed = SpoolDir::claim(dir, shared_dir)?;
        let mut regions = read_regions(dir)?;
        let newest = regions.iter().max_by_key(|region| region.epoch);
        // Written next: the segment not holding the newest region, so that region stays
        // intact until the other holds all that is pending.
        let current = newest.map_or(0, |region| 1 - region.segment);
        let next_epoch = regions.iter().map(|r| r.epoch).max().unwrap_or(0) + 1;
        regions.sort_by_key(|region| region.epoch);
        let pending = pending(regions.into_iter().flat_map(|region| region.records));

        let files = [
            segment_file(&dir.join(SEGMENTS[0]), segment_size)?,
            segment_file(&dir.join(SEGMENTS[1]), segment_size)?,
        ];
        File::open(dir)?.sync_all()?;
        let mut writer = Writer::new(files, current, next_epoch, segment_size);
        for event in &pending {
            writer
                .pending
                .add(event.idempotency_key.clone(), serde_json::to_string(event)?);
        }
        // The first sync tells what one costs on this disk, before the first group.
        let started = Instant::now();
        writer.switch_to(current)?;
        let committer = Arc::new(Committer::new(writer, started.elapsed(), inline_below));
        if !pending.is_empty() {
            tracing::info!(events = pending.len(), spool = %dir.display(), "usage events from the spool will be sent again");
        }
        let running = Arc::clone(&committer);
        let writer = std::thread::Builder::new()
            .name("atlas-spool".into())
            .spawn(move || running.run())?;
        Ok((
            Self {
                dir: dir.to_owned(),
                committer,
                writer: Some(writer),
                _claimed: claimed,
            },
            pending,
        ))
    }

    /// Writes the events; completes once they are on disk.
    pub(crate) async fn append(&self, events: &[UsageEvent]) -> io::Result<()> {
        let events = events
            .iter()
            .map(|event| {
                serde_json::to_string(event).map(|json| (event.idempotency_key.clone(), json))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.committer.append(events).await
    }

    /// Appends events the platform refused to `dead-letter.jsonl`, synced.
    pub(crate) fn set_aside(
        &self,
        events: &[UsageEvent],
        status: u16,
        reason: &str,
    ) -> io::Result<()> {
        let refused_at = crate::models::now_iso();
        let mut lines = Vec::new();
        for event in events {
            let entry = serde_json::json!({
                "refusedAt": refused_at,
                "status": status,
                "reason": reason,
                "event": event,
            });
            serde_json::to_writer(&mut lines, &entry)?;
            lines.push(b'\n');
        }
        let mut file = open_private(&self.dir.join(DEAD_LETTER), false)?;
        file.seek(SeekFrom::End(0))?;
        file.write_all(&lines)?;
        file.sync_data()
    }

    /// Records that the platform accepted (or refused for good) these events. Not synced: an
    /// acknowledgement lost in a crash only sends an event again, which the platform
    /// deduplicates.
    pub(crate) fn acknowledge<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        self.committer
            .acknowledge(keys.into_iter().map(str::to_owned).collect());
    }
}

impl Drop for Spool {
    /// Lets the writer finish what it was given, so a reopened spool sees all of it.
    fn drop(&mut self) {
        self.committer.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(events: &[UsageEvent]) -> Vec<&str> {
        events.iter().map(|e| e.idempotency_key.as_str()).collect()
    }

    fn event(key: &str) -> UsageEvent {
        UsageEvent::sample(key)
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atlas-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[actix_rt::test]
    async fn pending_events_survive_a_reopen() {
        let dir = dir("reopen");
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert!(pending.is_empty());
        spool
            .append(&[event("a"), event("b"), event("c")])
            .await
            .unwrap();
        spool.acknowledge(["b"]);
        drop(spool);
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(keys(&pending), ["a", "c"]);
        spool.acknowledge(["a", "c"]);
        drop(spool);
        assert!(Spool::open(&dir, false).unwrap().1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn concurrent_appends_share_syncs_and_all_land() {
        let dir = dir("group");
        let (spool, _) = Spool::open(&dir, false).unwrap();
        let events: Vec<_> = (0..200).map(|i| [event(&i.to_string())]).collect();
        let appends: Vec<_> = events.iter().map(|event| spool.append(event)).collect();
        for appended in futures_util::future::join_all(appends).await {
            appended.unwrap();
        }
        spool.acknowledge(["0", "1"]);
        drop(spool);
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(pending.len(), 198);
        assert_eq!(pending[0].idempotency_key, "2");
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Appends from several threads at once, each group written by its callers (`inline`) or
    /// by the writer thread: every event lands once, in each thread's order.
    fn appends_from_threads_all_land(name: &str, inline_below: Duration) {
        let dir = dir(name);
        let (spool, _) = Spool::open_with(&dir, false, SEGMENT_SIZE, inline_below).unwrap();
        let spool = Arc::new(spool);
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let spool = Arc::clone(&spool);
                std::thread::spawn(move || {
                    actix_rt::System::new().block_on(async move {
                        for i in 0..100 {
                            let key = format!("{thread}-{i}");
                            spool.append(&[event(&key)]).await.unwrap();
                            if i % 10 == 9 {
                                spool.acknowledge([key.as_str()]);
                            }
                        }
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(Arc::into_inner(spool).unwrap());
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(pending.len(), 360);
        for thread in 0..4 {
            let own: Vec<_> = keys(&pending)
                .into_iter()
                .filter(|key| key.starts_with(&format!("{thread}-")))
                .collect();
            let expected: Vec<_> = (0..100)
                .filter(|i| i % 10 != 9)
                .map(|i| format!("{thread}-{i}"))
                .collect();
            assert_eq!(own, expected);
        }
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appends_led_by_their_callers_all_land() {
        appends_from_threads_all_land("inline", Duration::MAX);
    }

    #[test]
    fn appends_written_by_the_writer_thread_all_land() {
        appends_from_threads_all_land("thread", Duration::ZERO);
    }

    #[actix_rt::test]
    async fn a_request_dropped_while_it_gathers_a_group_still_writes_it() {
        use futures_util::FutureExt;

        let dir = dir("dropped-leader");
        let (spool, _) = Spool::open_with(&dir, false, SEGMENT_SIZE, Duration::MAX).unwrap();
        let first = [event("first")];
        // Polled once, the first append leads the group and yields to gather it; then the
        // client goes away and its handler's future is dropped.
        assert!(spool.append(&first).now_or_never().is_none());
        // The group was written, and the next append is not left waiting for a leader.
        let second = [event("second")];
        tokio::time::timeout(Duration::from_secs(10), spool.append(&second))
            .await
            .expect("the next append is not left waiting for a leader")
            .unwrap();
        drop(spool);
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(keys(&pending), ["first", "second"]);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn a_busy_spool_keeps_to_its_segments() {
        let dir = dir("segments");
        let (spool, _) = Spool::open_with(&dir, false, 4096, INLINE_SYNC).unwrap();
        // Under constant load something is always pending; delivered events must not pile up.
        spool.append(&[event("kept")]).await.unwrap();
        for i in 0..500 {
            let key = i.to_string();
            spool.append(&[event(&key)]).await.unwrap();
            spool.acknowledge([key.as_str()]);
        }
        spool.append(&[event("last")]).await.unwrap();
        drop(spool);
        for name in SEGMENTS {
            let size = std::fs::metadata(dir.join(name)).unwrap().len();
            assert!(size < 8192, "{name} grew to {size} bytes");
        }
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(keys(&pending), ["kept", "last"]);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
