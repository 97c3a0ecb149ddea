//! The durable event spool (`AtlasBuilder::event_spool`, no feature needed): usage events are
//! on disk before `enqueue` returns, so a crash or `kill -9` loses none. After a restart the
//! events not yet accepted are sent again, with their original idempotency keys (the
//! platform counts each once).
//!
//! Group commit: one writer thread owns the files. Appends that arrive while it syncs wait in
//! its channel; it then writes all of them and syncs once for the lot, and each caller's
//! future completes when the sync covering its events is done. An fsync costs the same for
//! one event as for a hundred, so under load the cost per event falls instead of
//! serialising every request on its own sync, and no Actix worker ever blocks on the disk.
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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::client::events::spool_dir::{open_private, SpoolDir};
use crate::client::keys;
use crate::models::UsageEvent;

const SEGMENTS: [&str; 2] = ["events.0.log", "events.1.log"];
/// Where events the platform refused are kept, one JSON object per line.
const DEAD_LETTER: &str = "dead-letter.jsonl";
/// Each segment's preallocated size; it grows past it only for a backlog that does not fit.
const SEGMENT_SIZE: u64 = 4 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

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

pub(crate) struct Spool {
    dir: PathBuf,
    commands: Option<mpsc::Sender<Command>>,
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
        Self::open_with_segments_of(dir, shared_dir, SEGMENT_SIZE)
    }

    fn open_with_segments_of(
        dir: &Path,
        shared_dir: bool,
        segment_size: u64,
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
        let mut writer = Writer {
            files,
            current,
            epoch: 0,
            next_epoch,
            offset: 0,
            segment_size,
            pending: Pending::default(),
            broken: false,
        };
        for event in &pending {
            writer
                .pending
                .add(event.idempotency_key.clone(), serde_json::to_string(event)?);
        }
        writer.switch_to(current)?;
        if !pending.is_empty() {
            tracing::info!(events = pending.len(), spool = %dir.display(), "usage events from the spool will be sent again");
        }
        let (commands, received) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("atlas-spool".into())
            .spawn(move || writer.run(received))?;
        Ok((
            Self {
                dir: dir.to_owned(),
                commands: Some(commands),
                writer: Some(writer),
                _claimed: claimed,
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
                serde_json::to_string(event).map(|json| (event.idempotency_key.clone(), json))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::from)
            .and_then(|events| self.send(Command::Append { events, synced }));
        async move {
            sent?;
            on_disk.await.unwrap_or_else(|_| Err(writer_gone()))
        }
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

fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !path.exists() && path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    open_private(path, false)?.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Opens a segment for writing, filled with zeros up to `size` and synced when shorter.
fn segment_file(path: &Path, size: u64) -> io::Result<File> {
    let mut file = open_private(path, false)?;
    let mut length = file.seek(SeekFrom::End(0))?;
    if length < size {
        while length < size {
            let chunk = (size - length).min(ZEROS.len() as u64) as usize;
            file.write_all(&ZEROS[..chunk])?;
            length += chunk as u64;
        }
        file.sync_all()?;
    }
    Ok(file)
}

/// The lines of the events not yet acknowledged, in the order they were queued.
#[derive(Default)]
struct Pending {
    events: BTreeMap<u64, String>,
    /// Where each key's events are; one key can be queued twice (a caller's own key reused).
    by_key: HashMap<String, VecDeque<u64>>,
    next: u64,
    bytes: u64,
}

impl Pending {
    fn add(&mut self, key: String, json: String) {
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

struct Writer {
    files: [File; 2],
    current: usize,
    /// The epoch of the current segment's region.
    epoch: u64,
    /// Every switch takes a new epoch, even one that failed half-way.
    next_epoch: u64,
    /// Where the next write goes (over the NUL that ends the region).
    offset: u64,
    segment_size: u64,
    pending: Pending,
    /// A write failed part-way: the region may have a gap, so the next group starts afresh
    /// in the other segment.
    broken: bool,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut waiting = Vec::new();
            let mut lines = Vec::new();
            for command in std::iter::once(first).chain(commands.try_iter()) {
                self.apply(command, &mut lines, &mut waiting);
            }
            let written = if self.broken {
                // The fresh region copies every pending event, this group's included.
                self.switch_to(1 - self.current)
            } else {
                self.write(&lines)
            };
            let written = if waiting.is_empty() {
                written
            } else {
                written.and_then(|()| self.files[self.current].sync_data())
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
    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let file = &mut self.files[self.current];
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(lines.len() + 1);
        bytes.extend_from_slice(lines);
        bytes.push(0);
        file.write_all(&bytes)?;
        self.offset += lines.len() as u64;
        Ok(())
    }

    /// Starts a new region at the start of `segment` with every pending event, synced.
    fn switch_to(&mut self, segment: usize) -> io::Result<()> {
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
            .write(&lines)
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

fn record(lines: &mut Vec<u8>, kind: char, epoch: u64, content: &str) {
    let head = format!("{kind}{epoch}");
    // Writing to a vector cannot fail.
    let _ = writeln!(lines, "{head} {} {content}", checksum(&head, content));
}

/// The first 8 hex digits of the SHA-256 of a record's head and content: tells a line a disk
/// error or an edit changed from one the writer wrote.
fn checksum(head: &str, content: &str) -> String {
    let mut sum = keys::sha256_hex(&[head.as_bytes(), b" ", content.as_bytes()]);
    sum.truncate(8);
    sum
}

enum Record {
    Queued(Box<UsageEvent>),
    Acknowledged(String),
}

/// The events a spool directory holds that the platform has not accepted, oldest first, read
/// without taking the directory (an app may hold it): what `cargo atlas spool inspect` shows.
#[cfg(feature = "cli")]
pub(crate) fn read_pending(dir: &Path) -> io::Result<Vec<UsageEvent>> {
    let mut regions = read_regions(dir)?;
    regions.sort_by_key(|region| region.epoch);
    Ok(pending(
        regions.into_iter().flat_map(|region| region.records),
    ))
}

/// Each segment's valid region.
fn read_regions(dir: &Path) -> io::Result<Vec<Region>> {
    let mut regions = Vec::new();
    for (segment, name) in SEGMENTS.iter().enumerate() {
        if let Some(text) = read_if_present(&dir.join(name))? {
            regions.push(read_region(&text, segment));
        }
    }
    Ok(regions)
}

struct Region {
    segment: usize,
    epoch: u64,
    records: Vec<Record>,
}

/// The valid region of a segment: its lines from the start while they parse and carry the
/// first line's epoch, up to the first NUL.
fn read_region(bytes: &[u8], segment: usize) -> Region {
    let mut region = Region {
        segment,
        epoch: 0,
        records: Vec::new(),
    };
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let mut lines = bytes[..end].split_inclusive(|b| *b == b'\n');
    let mut first = true;
    for line in lines.by_ref() {
        let Some(line) = line.strip_suffix(b"\n") else {
            tracing::warn!("skipping a torn line at the end of the event spool");
            break;
        };
        let (kind, epoch, content) = match parse(line) {
            Parsed::Record(kind, epoch, content) => (kind, epoch, content),
            Parsed::Corrupt => {
                tracing::warn!(
                    segment,
                    "skipping a corrupt record of the event spool (its checksum does not match)"
                );
                continue;
            }
            Parsed::Foreign => break,
        };
        let current = if first {
            region.epoch = epoch;
            true
        } else {
            epoch == region.epoch
        };
        if !current {
            break;
        }
        first = false;
        match kind {
            b'E' => match serde_json::from_str::<UsageEvent>(content) {
                Ok(event) => region.records.push(Record::Queued(Box::new(event))),
                Err(err) => {
                    tracing::warn!(%err, "skipping a record of the event spool that is no event");
                }
            },
            _ => region
                .records
                .push(Record::Acknowledged(content.to_owned())),
        }
    }
    region
}

/// A line of a segment, read.
enum Parsed<'a> {
    /// `E<epoch> <checksum> <content>` or `A<epoch> ...`, its checksum matching.
    Record(u8, u64, &'a str),
    /// A line the writer wrote that was changed since (its checksum does not match, or it is
    /// no longer UTF-8).
    Corrupt,
    /// No record at all: the zeros of a fresh segment, or a torn write's remains.
    Foreign,
}

fn parse(line: &[u8]) -> Parsed<'_> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Parsed::Corrupt;
    };
    let mut fields = line.splitn(3, ' ');
    let (Some(head), Some(sum), Some(content)) = (fields.next(), fields.next(), fields.next())
    else {
        return Parsed::Foreign;
    };
    let kind = head.as_bytes().first().copied().unwrap_or_default();
    let Some(epoch) = head
        .get(1..)
        .and_then(|epoch| epoch.parse().ok())
        .filter(|_| kind == b'E' || kind == b'A')
    else {
        return Parsed::Foreign;
    };
    if checksum(head, content) != sum {
        return Parsed::Corrupt;
    }
    Parsed::Record(kind, epoch, content)
}

/// The events queued and not acknowledged, in order, each once.
fn pending(records: impl Iterator<Item = Record>) -> Vec<UsageEvent> {
    let mut events: Vec<UsageEvent> = Vec::new();
    let mut acknowledged: HashSet<String> = HashSet::new();
    for record in records {
        match record {
            Record::Queued(event) => events.push(*event),
            Record::Acknowledged(key) => {
                acknowledged.insert(key);
            }
        }
    }
    let mut seen = HashSet::new();
    events.retain(|event| {
        !acknowledged.contains(&event.idempotency_key) && seen.insert(event.idempotency_key.clone())
    });
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str) -> UsageEvent {
        UsageEvent::sample(key)
    }

    fn keys(events: &[UsageEvent]) -> Vec<&str> {
        events.iter().map(|e| e.idempotency_key.as_str()).collect()
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("atlas-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    const EVENT: &str = r#"{"customerId":"c","eventName":"e","generatedAt":"t","idempotencyKey":"KEY","data":{"quantity":1}}"#;

    fn line(head: &str, content: &str) -> String {
        format!("{head} {} {content}\n", checksum(head, content))
    }

    fn queued(kind: &str, key: &str) -> String {
        line(kind, &EVENT.replace("KEY", key))
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
        let appends: Vec<_> = (0..200)
            .map(|i| spool.append(&[event(&i.to_string())]))
            .collect();
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

    #[actix_rt::test]
    async fn a_busy_spool_keeps_to_its_segments() {
        let dir = dir("segments");
        let (spool, _) = Spool::open_with_segments_of(&dir, false, 4096).unwrap();
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

    #[test]
    fn a_region_ends_at_a_torn_line_an_older_epoch_or_a_nul() {
        let torn = queued("E3", "a") + &queued("E3", "b")[..40];
        let region = read_region(torn.as_bytes(), 0);
        assert_eq!(keys(&pending(region.records.into_iter())), ["a"]);

        // An older use of the segment lies beyond the current region: not pending.
        let reused = queued("E7", "new") + &line("A7", "new") + &queued("E5", "old");
        let region = read_region(reused.as_bytes(), 1);
        assert_eq!(region.epoch, 7);
        assert!(pending(region.records.into_iter()).is_empty());

        let ended = queued("E2", "a") + "\0" + &queued("E2", "after-the-end");
        let region = read_region(ended.as_bytes(), 0);
        assert_eq!(keys(&pending(region.records.into_iter())), ["a"]);
    }

    #[test]
    fn both_segments_are_read_so_a_torn_switch_loses_nothing() {
        let dir = dir("switch");
        std::fs::create_dir_all(&dir).unwrap();
        // Segment 0 holds a and b; the crash came while segment 1 was receiving the copy.
        let older = queued("E4", "a") + &queued("E4", "b") + "\0";
        let newer = queued("E5", "a") + "E5 {\"customerId\":";
        std::fs::write(dir.join(SEGMENTS[0]), older).unwrap();
        std::fs::write(dir.join(SEGMENTS[1]), newer).unwrap();
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(keys(&pending), ["a", "b"]);
        drop(spool);
        // Reopened: the copy went to segment 0 (segment 1 held the newest region).
        let (spool, pending) = Spool::open(&dir, false).unwrap();
        assert_eq!(keys(&pending), ["a", "b"]);
        drop(spool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_record_is_skipped_and_reading_goes_on() {
        let edited = queued("E3", "a").replace("\"quantity\":1", "\"quantity\":-1000000");
        let region = queued("E3", "first") + &edited + &queued("E3", "after");
        let region = read_region(region.as_bytes(), 0);
        assert_eq!(
            keys(&pending(region.records.into_iter())),
            ["first", "after"],
            "the edited line's checksum does not match"
        );

        let mut bytes = queued("E4", "first").into_bytes();
        bytes.extend_from_slice(b"E4 0000 \xff\xfe not text\n");
        bytes.extend_from_slice(queued("E4", "after").as_bytes());
        let region = read_region(&bytes, 0);
        assert_eq!(
            keys(&pending(region.records.into_iter())),
            ["first", "after"],
            "a line of invalid UTF-8 hides no later event"
        );

        let unsummed = queued("E5", "a") + "E5 {\"customerId\":\"c\"}\n" + &queued("E5", "b");
        let region = read_region(unsummed.as_bytes(), 0);
        assert_eq!(
            keys(&pending(region.records.into_iter())),
            ["a"],
            "no record: the end"
        );
    }
}
