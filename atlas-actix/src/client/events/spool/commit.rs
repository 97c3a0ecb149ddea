//! Group commit: appends that arrive while a group is being written wait in one queue; the
//! next group writes all of them and syncs once for the lot, and each caller's future
//! completes when the sync covering its events is done. An fsync costs the same for one event
//! as for a hundred, so under load the cost per event falls instead of serialising every
//! request on its own sync.
//!
//! Who writes a group depends on what a sync costs, measured as the spool runs. Where a sync
//! is slow (a real disk: 80 to 200 µs here), the writer thread does, so no Actix worker ever
//! waits on the disk. Where it is cheap (tmpfs, a disk whose cache survives power loss), the
//! request that finds the writer idle leads the group on its own worker, as in MySQL's binlog
//! group commit: it yields once, so that the requests its worker already has reach the spool
//! and join the group, then writes and syncs for all of them. Handing a group to another
//! thread and back costs two wake-ups, more than such a sync, and on a busy machine most of
//! the spool's cost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::client::events::spool::segments::record;

/// A sync cheaper than this (a moving average) is done by the request that needs it.
pub(super) const INLINE_SYNC: Duration = Duration::from_micros(50);
/// How many groups a request leads in a row before leaving the rest to the writer thread: a
/// caller's answer waits for the groups it leads.
const INLINE_GROUPS: usize = 4;

enum Command {
    Append {
        /// Each event's idempotency key and JSON.
        events: Vec<(String, String)>,
        synced: oneshot::Sender<io::Result<()>>,
    },
    Acknowledge {
        keys: Vec<String>,
    },
}

/// The queue and the writer, shared by the callers and the writer thread.
pub(super) struct Committer {
    queue: Mutex<Queue>,
    /// Wakes the writer thread: commands are queued and the writer is free, or the spool closes.
    work: Condvar,
    /// The moving average of a sync's duration, in nanoseconds.
    sync_nanos: AtomicU64,
    /// Syncs cheaper than this are done by the request that needs them.
    inline_below: u64,
}

struct Queue {
    commands: Vec<Command>,
    /// `None` while a group is being written (the writer is with whoever writes it).
    writer: Option<Writer>,
    /// A caller will lead the next group once its worker's ready requests have joined it.
    gathering: bool,
    closed: bool,
}

/// The caller gathering the next group. It writes the group when dropped: after gathering,
/// or when its request is dropped while it gathers, so no group is ever left unwritten.
struct Leader<'a>(&'a Committer);

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.0.lead();
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the spool writer stopped")
}

impl Committer {
    pub(super) fn new(writer: Writer, first_sync: Duration, inline_below: Duration) -> Self {
        Self {
            queue: Mutex::new(Queue {
                commands: Vec::new(),
                writer: Some(writer),
                gathering: false,
                closed: false,
            }),
            work: Condvar::new(),
            sync_nanos: AtomicU64::new(nanos(first_sync)),
            inline_below: nanos(inline_below),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an acknowledgement: it is written with the next group, not synced for itself.
    pub(super) fn acknowledge(&self, keys: Vec<String>) {
        let mut queue = self.queue();
        queue.commands.push(Command::Acknowledge { keys });
        let idle = queue.writer.is_some() && !queue.gathering;
        drop(queue);
        if idle {
            self.work.notify_one();
        }
    }

    /// Queues the events; completes once they are on disk. When syncs are cheap and no group
    /// is being gathered or written, this caller leads the next group; else whoever does
    /// takes the events with theirs.
    pub(super) async fn append(&self, events: Vec<(String, String)>) -> io::Result<()> {
        let (synced, on_disk) = oneshot::channel();
        let cheap = self.sync_nanos.load(Ordering::Relaxed) < self.inline_below;
        let leader = {
            let mut queue = self.queue();
            queue.commands.push(Command::Append { events, synced });
            if queue.writer.is_none() || queue.gathering {
                None
            } else if cheap {
                queue.gathering = true;
                Some(Leader(self))
            } else {
                drop(queue);
                self.work.notify_one();
                None
            }
        };
        if let Some(leader) = leader {
            // The requests this worker already has join the group: one write and one sync
            // for all of them, and none of them waits on another thread.
            tokio::task::yield_now().await;
            drop(leader);
        }
        on_disk.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Writes the gathered group, and what arrived meanwhile, up to `INLINE_GROUPS` groups;
    /// leaves the rest to the writer thread.
    fn lead(&self) {
        let mut queue = self.queue();
        queue.gathering = false;
        for _ in 0..INLINE_GROUPS {
            // Nothing queued, or the writer thread has the writer: it writes until the queue
            // is empty.
            let Some(relocked) = self.write_group(queue) else {
                return;
            };
            queue = relocked;
        }
        let left = !queue.commands.is_empty();
        drop(queue);
        if left {
            self.work.notify_one();
        }
    }

    /// The writer thread: writes groups until the spool closes and nothing is left.
    pub(super) fn run(&self) {
        let mut queue = self.queue();
        loop {
            if queue.commands.is_empty() && queue.closed {
                return;
            }
            if !queue.commands.is_empty() && queue.writer.is_some() {
                queue = self.write_group(queue).unwrap_or_else(|| self.queue());
                continue;
            }
            queue = self
                .work
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes what is queued as one group, outside the lock; answers the lock taken again
    /// after, or `None` when there was nothing to write or someone else has the writer.
    fn write_group<'a>(
        &'a self,
        mut queue: MutexGuard<'a, Queue>,
    ) -> Option<MutexGuard<'a, Queue>> {
        if queue.commands.is_empty() {
            return None;
        }
        let mut writer = queue.writer.take()?;
        let commands = std::mem::take(&mut queue.commands);
        drop(queue);
        writer.commit(commands, &self.sync_nanos);
        let mut queue = self.queue();
        queue.writer = Some(writer);
        Some(queue)
    }

    /// Lets the writer thread finish what is queued, then stop.
    pub(super) fn close(&self) {
        self.queue().closed = true;
        self.work.notify_one();
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The lines of the events not yet acknowledged, in the order they were queued.
#[derive(Default)]
pub(super) struct Pending {
    events: BTreeMap<u64, String>,
    /// Where each key's events are; one key can be queued twice (a caller's own key reused).
    by_key: HashMap<String, VecDeque<u64>>,
    next: u64,
    bytes: u64,
}

impl Pending {
    pub(super) fn add(&mut self, key: String, json: String) {
        self.bytes += json.len() as u64;
        self.events.insert(self.next, json);
        self.by_key.entry(key).or_default().push_back(self.next);
        self.next += 1;
    }

    fn remove(&mut self, key: &str) {
        let Some(places) = self.by_key.get_mut(key) else {
            return;
        };
        if let Some(json) = places.pop_front().and_then(|at| self.events.remove(&at)) {
            self.bytes -= json.len() as u64;
        }
        if places.is_empty() {
            self.by_key.remove(key);
        }
    }
}

/// The segment files and where writing is: owned by whoever writes the current group.
pub(super) struct Writer {
    files: [File; 2],
    current: usize,
    /// The epoch of the current segment's region.
    epoch: u64,
    /// Every switch takes a new epoch, even one that failed half-way.
    next_epoch: u64,
    /// Where the next write goes (over the NUL that ends the region).
    offset: u64,
    segment_size: u64,
    pub(super) pending: Pending,
    /// A write failed part-way: the region may have a gap, so the next group starts afresh
    /// in the other segment.
    broken: bool,
    /// The group's lines, kept to reuse their allocation.
    lines: Vec<u8>,
}

impl Writer {
    pub(super) fn new(
        files: [File; 2],
        current: usize,
        next_epoch: u64,
        segment_size: u64,
    ) -> Self {
        Self {
            files,
            current,
            epoch: 0,
            next_epoch,
            offset: 0,
            segment_size,
            pending: Pending::default(),
            broken: false,
            lines: Vec::new(),
        }
    }

    /// Writes a group: its records, one sync when an append waits for it, then the answers.
    fn commit(&mut self, commands: Vec<Command>, sync_nanos: &AtomicU64) {
        let mut lines = std::mem::take(&mut self.lines);
        lines.clear();
        let mut waiting = Vec::new();
        for command in commands {
            self.apply(command, &mut lines, &mut waiting);
        }
        let written = if self.broken {
            // The fresh region copies every pending event, this group's included.
            self.switch_to(1 - self.current)
        } else {
            self.write(&mut lines)
        };
        self.lines = lines;
        let written = if waiting.is_empty() {
            written
        } else {
            written.and_then(|()| {
                let started = Instant::now();
                let synced = self.files[self.current].sync_data();
                let took = nanos(started.elapsed());
                let average = sync_nanos.load(Ordering::Relaxed);
                sync_nanos.store(average - average / 8 + took / 8, Ordering::Relaxed);
                synced
            })
        };
        if let Err(err) = &written {
            self.broken = true;
            tracing::error!(%err, "could not write to the event spool");
        }
        for caller in waiting {
            let answer = match &written {
                Ok(()) => Ok(()),
                Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
            };
            let _ = caller.send(answer);
        }
        if written.is_ok()
            && self.offset > self.segment_size
            && self.pending.bytes < self.segment_size / 2
        {
            if let Err(err) = self.switch_to(1 - self.current) {
                tracing::warn!(%err, "could not switch the event spool's segment");
            }
        }
    }

    fn apply(
        &mut self,
        command: Command,
        lines: &mut Vec<u8>,
        waiting: &mut Vec<oneshot::Sender<io::Result<()>>>,
    ) {
        match command {
            Command::Append { events, synced } => {
                waiting.push(synced);
                for (key, json) in events {
                    record(lines, 'E', self.epoch, &json);
                    self.pending.add(key, json);
                }
            }
            Command::Acknowledge { keys } => {
                for key in keys {
                    self.pending.remove(&key);
                    record(lines, 'A', self.epoch, &key);
                }
            }
        }
    }

    /// Writes at the end of the region, followed by the NUL that ends it.
    fn write(&mut self, lines: &mut Vec<u8>) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = &mut self.files[self.current];
        file.seek(SeekFrom::Start(self.offset))?;
        lines.push(0);
        let written = file.write_all(lines);
        lines.pop();
        written?;
        self.offset += lines.len() as u64;
        Ok(())
    }

    /// Starts a new region at the start of `segment` with every pending event, synced.
    pub(super) fn switch_to(&mut self, segment: usize) -> io::Result<()> {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut lines = Vec::with_capacity(self.pending.bytes as usize + 1);
        for json in self.pending.events.values() {
            record(&mut lines, 'E', epoch, json);
        }
        if lines.is_empty() {
            // An empty region still needs its epoch, or the older use of this segment
            // would read as current.
            record(&mut lines, 'A', epoch, "");
        }
        let (previous, previous_offset) = (self.current, self.offset);
        self.current = segment;
        self.offset = 0;
        let switched = self
            .write(&mut lines)
            .and_then(|()| self.files[segment].sync_data());
        match switched {
            Ok(()) => {
                self.epoch = epoch;
                self.broken = false;
                Ok(())
            }
            Err(err) => {
                self.current = previous;
                self.offset = previous_offset;
                Err(err)
            }
        }
    }
}
