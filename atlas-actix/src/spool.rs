//! The durable event spool (`AtlasBuilder::event_spool`, no feature needed): usage events are
//! on disk before `enqueue` returns, so a crash or `kill -9` loses none. After a restart the
//! events not yet accepted are sent again, with their original idempotency keys (the
//! platform counts each once).
//!
//! One append-only file, `events.log` in the spool directory: `E <event JSON>` when an event
//! is queued, `A <idempotency key>` when the platform accepted it. Opening the spool reads
//! the pending events (queued, not accepted; a torn last line from a crash is skipped) and
//! rewrites the file with just those, through a synced temporary file renamed over it.
//!
//! Group commit: one writer thread owns the file. Appends that arrive while it syncs wait in
//! its channel; it then writes all of them and syncs once for the lot, and each caller's
//! future completes when the sync covering its events is done. An fsync costs the same for
//! one event as for a hundred, so under load the cost per event falls instead of
//! serialising every request on its own sync, and no Actix worker ever blocks on the disk.
//! The writer keeps the lines of the events still pending: it empties the file when none
//! are, and under constant load (when that never happens) rewrites the file with just them
//! once it has grown past [`COMPACT_AT`], so the spool stays as small as the backlog.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::models::UsageEvent;

const FILE: &str = "events.log";
/// The file size past which the writer rewrites it with only the pending events.
const COMPACT_AT: u64 = 8 << 20;

enum Command {
    Append {
        /// Each event's idempotency key and line.
        events: Vec<(String, Vec<u8>)>,
        synced: oneshot::Sender<io::Result<()>>,
    },
    Acknowledge {
        keys: Vec<String>,
    },
}

pub(crate) struct Spool {
    path: PathBuf,
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`; returns it with the events still pending.
    pub(crate) fn open(dir: &Path) -> io::Result<(Self, Vec<UsageEvent>)> {
        Self::open_compacting_at(dir, COMPACT_AT)
    }

    fn open_compacting_at(dir: &Path, compact_at: u64) -> io::Result<(Self, Vec<UsageEvent>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let pending = match File::open(&path) {
            Ok(file) => pending(BufReader::new(file))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(err),
        };
        let temporary = dir.join(format!("{FILE}.tmp"));
        {
            let mut rewritten = File::create(&temporary)?;
            for event in &pending {
                rewritten.write_all(&line('E', &serde_json::to_string(event)?))?;
            }
            rewritten.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        // The rename itself must survive a crash.
        File::open(dir)?.sync_all()?;
        let file = OpenOptions::new().append(true).open(&path)?;
        if !pending.is_empty() {
            tracing::info!(events = pending.len(), spool = %path.display(), "usage events from the spool will be sent again");
        }
        let mut writer = Writer {
            dir: dir.to_owned(),
            compact_at,
            file,
            size: 0,
            pending: Pending::default(),
        };
        for event in &pending {
            let line = line('E', &serde_json::to_string(event)?);
            writer.size += line.len() as u64;
            writer.pending.add(event.idempotency_key.clone(), line);
        }
        let (commands, received) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("atlas-spool".into())
            .spawn(move || writer.run(received))?;
        Ok((
            Self {
                path,
                commands: Some(commands),
                writer: Some(writer),
            },
            pending,
        ))
    }

    /// Writes the events; the future completes once they are on disk.
    pub(crate) fn append(
        &self,
        events: &[UsageEvent],
    ) -> impl std::future::Future<Output = io::Result<()>> {
        let (synced, on_disk) = oneshot::channel();
        let sent = events
            .iter()
            .map(|event| {
                serde_json::to_string(event)
                    .map(|json| (event.idempotency_key.clone(), line('E', &json)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::from)
            .and_then(|events| self.send(Command::Append { events, synced }));
        async move {
            sent?;
            on_disk.await.unwrap_or_else(|_| Err(writer_gone()))
        }
    }

    /// Records that the platform accepted (or refused for good) these events. Not synced: an
    /// acknowledgement lost in a crash only sends an event again, which the platform
    /// deduplicates.
    pub(crate) fn acknowledge<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let keys = keys.into_iter().map(str::to_owned).collect();
        if let Err(err) = self.send(Command::Acknowledge { keys }) {
            tracing::warn!(%err, "could not record delivered events in the spool");
        }
    }

    fn send(&self, command: Command) -> io::Result<()> {
        self.commands
            .as_ref()
            .and_then(|commands| commands.send(command).ok())
            .ok_or_else(writer_gone)
    }
}

impl Drop for Spool {
    /// Lets the writer finish what it was given, so a reopened spool sees all of it.
    fn drop(&mut self) {
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the spool writer stopped")
}

/// The lines of the events not yet acknowledged, in the order they were queued.
#[derive(Default)]
struct Pending {
    lines: BTreeMap<u64, Vec<u8>>,
    /// Where each key's lines are; one key can be queued twice (a caller's own key reused).
    by_key: HashMap<String, VecDeque<u64>>,
    next: u64,
    bytes: u64,
}

impl Pending {
    fn add(&mut self, key: String, line: Vec<u8>) {
        self.bytes += line.len() as u64;
        self.lines.insert(self.next, line);
        self.by_key.entry(key).or_default().push_back(self.next);
        self.next += 1;
    }

    fn remove(&mut self, key: &str) {
        let Some(places) = self.by_key.get_mut(key) else {
            return;
        };
        if let Some(line) = places
            .pop_front()
            .and_then(|place| self.lines.remove(&place))
        {
            self.bytes -= line.len() as u64;
        }
        if places.is_empty() {
            self.by_key.remove(key);
        }
    }
}

struct Writer {
    dir: PathBuf,
    compact_at: u64,
    file: File,
    size: u64,
    pending: Pending,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut waiting = Vec::new();
            let mut written = Ok(());
            for command in std::iter::once(first).chain(commands.try_iter()) {
                let result = self.apply(command, &mut waiting);
                if written.is_ok() {
                    written = result;
                }
            }
            if let Err(err) = self.tidy() {
                tracing::warn!(%err, spool = %self.dir.display(), "could not compact the event spool");
            }
            if waiting.is_empty() {
                if let Err(err) = written.and_then(|()| self.file.flush()) {
                    tracing::warn!(%err, "could not record delivered events in the spool");
                }
                continue;
            }
            let synced = written.and_then(|()| self.file.sync_data());
            for caller in waiting {
                let answer = match &synced {
                    Ok(()) => Ok(()),
                    Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
                };
                let _ = caller.send(answer);
            }
        }
    }

    fn apply(
        &mut self,
        command: Command,
        waiting: &mut Vec<oneshot::Sender<io::Result<()>>>,
    ) -> io::Result<()> {
        match command {
            Command::Append { events, synced } => {
                waiting.push(synced);
                let mut lines = Vec::new();
                for (key, line) in events {
                    lines.extend_from_slice(&line);
                    self.pending.add(key, line);
                }
                self.size += lines.len() as u64;
                self.file.write_all(&lines)
            }
            Command::Acknowledge { keys } => {
                let mut lines = Vec::new();
                for key in keys {
                    self.pending.remove(&key);
                    lines.extend(line('A', &key));
                }
                self.size += lines.len() as u64;
                self.file.write_all(&lines)
            }
        }
    }

    /// Empties the file when nothing is pending, or rewrites it with just the pending events
    /// once it has grown large with delivered ones.
    fn tidy(&mut self) -> io::Result<()> {
        if self.pending.lines.is_empty() {
            if self.size > 0 {
                self.file.set_len(0)?;
                self.size = 0;
            }
            return Ok(());
        }
        if self.size < self.compact_at || self.pending.bytes * 2 > self.size {
            return Ok(());
        }
        let path = self.dir.join(FILE);
        let temporary = self.dir.join(format!("{FILE}.tmp"));
        let mut rewritten = File::create(&temporary)?;
        for line in self.pending.lines.values() {
            rewritten.write_all(line)?;
        }
        rewritten.sync_all()?;
        // Opened before the rename: once renamed, this handle is the spool's file.
        let appending = OpenOptions::new().append(true).open(&temporary)?;
        std::fs::rename(&temporary, &path)?;
        self.file = appending;
        self.size = self.pending.bytes;
        File::open(&self.dir)?.sync_all()
    }
}

fn line(kind: char, content: &str) -> Vec<u8> {
    format!("{kind} {content}\n").into_bytes()
}

/// The events queued and not acknowledged, in order, each once.
fn pending(reader: impl BufRead) -> io::Result<Vec<UsageEvent>> {
    let mut events: Vec<UsageEvent> = Vec::new();
    let mut acknowledged: HashSet<String> = HashSet::new();
    for line in reader.lines() {
        let line = line?;
        match line.split_once(' ') {
            Some(("E", json)) => match serde_json::from_str::<UsageEvent>(json) {
                Ok(event) => events.push(event),
                Err(err) => tracing::warn!(%err, "skipping a torn line of the event spool"),
            },
            Some(("A", key)) => {
                acknowledged.insert(key.to_owned());
            }
            _ if line.is_empty() => {}
            _ => tracing::warn!("skipping a torn line of the event spool"),
        }
    }
    let mut seen = HashSet::new();
    events.retain(|event| {
        !acknowledged.contains(&event.idempotency_key) && seen.insert(event.idempotency_key.clone())
    });
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(key: &str) -> UsageEvent {
        serde_json::from_value(
            json!({"customerId": "c", "eventName": "e", "generatedAt": "2026-01-01T00:00:00Z",
            "idempotencyKey": key, "data": {"quantity": 1}}),
        )
        .unwrap()
    }

    fn keys(events: &[UsageEvent]) -> Vec<&str> {
        events.iter().map(|e| e.idempotency_key.as_str()).collect()
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atlas-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[actix_rt::test]
    async fn pending_events_survive_a_reopen() {
        let dir = dir("reopen");
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert!(pending.is_empty());
        spool
            .append(&[event("a"), event("b"), event("c")])
            .await
            .unwrap();
        spool.acknowledge(["b"]);
        drop(spool);
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert_eq!(keys(&pending), ["a", "c"]);
        spool.acknowledge(["a", "c"]);
        drop(spool);
        assert_eq!(std::fs::metadata(dir.join(FILE)).unwrap().len(), 0);
        assert!(Spool::open(&dir).unwrap().1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn concurrent_appends_share_syncs_and_all_land() {
        let dir = dir("group");
        let (spool, _) = Spool::open(&dir).unwrap();
        let appends: Vec<_> = (0..200)
            .map(|i| spool.append(&[event(&i.to_string())]))
            .collect();
        for appended in futures_util::future::join_all(appends).await {
            appended.unwrap();
        }
        // Acknowledging some keeps the file: the others are still pending.
        spool.acknowledge(["0", "1"]);
        drop(spool);
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert_eq!(pending.len(), 198);
        assert_eq!(pending[0].idempotency_key, "2");
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_rt::test]
    async fn a_busy_spool_is_compacted_to_its_backlog() {
        let dir = dir("compact");
        let (spool, _) = Spool::open_compacting_at(&dir, 4096).unwrap();
        // Under constant load something is always pending; delivered lines must not pile up.
        spool.append(&[event("kept")]).await.unwrap();
        for i in 0..200 {
            let key = i.to_string();
            spool.append(&[event(&key)]).await.unwrap();
            spool.acknowledge([key.as_str()]);
        }
        spool.append(&[event("last")]).await.unwrap();
        let size = std::fs::metadata(dir.join(FILE)).unwrap().len();
        assert!(size < 8192, "the spool grew to {size} bytes");
        drop(spool);
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert_eq!(keys(&pending), ["kept", "last"]);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let text = "E {\"customerId\":\"c\",\"eventName\":\"e\",\"generatedAt\":\"t\",\"idempotencyKey\":\"a\",\"data\":{\"quantity\":1}}\nE {\"customerId\":\"c\",\"even";
        let events = pending(text.as_bytes()).unwrap();
        assert_eq!(keys(&events), ["a"]);
    }
}
