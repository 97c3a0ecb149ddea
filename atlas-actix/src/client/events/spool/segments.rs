//! The spool's files: two segments of lines, `E<n> <checksum> <event JSON>` when an event is
//! queued and `A<n> <checksum> <idempotency key>` when the platform accepted it, and how their
//! valid regions are read back (see the parent module for the format's reasons).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::client::events::spool::dir::open_private;
use crate::client::keys;
use crate::models::UsageEvent;

pub(super) const SEGMENTS: [&str; 2] = ["events.0.log", "events.1.log"];
/// Each segment's preallocated size; it grows past it only for a backlog that does not fit.
pub(super) const SEGMENT_SIZE: u64 = 4 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn read_if_present(path: &Path) -> io::Result<Option<Vec<u8>>> {
    if !path.exists() && path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    open_private(path, false)?.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Opens a segment for writing, filled with zeros up to `size` and synced when shorter.
pub(super) fn segment_file(path: &Path, size: u64) -> io::Result<File> {
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

pub(super) fn record(lines: &mut Vec<u8>, kind: char, epoch: u64, content: &str) {
    // Byte by byte: this runs for every usage event, and `format!` with hex digits written
    // one `{:02x}` at a time took about 5 % of the spool route's time.
    let start = lines.len();
    lines.push(kind as u8);
    lines.extend_from_slice(keys::decimal(epoch, &mut [0; 20]));
    let sum = checksum(&lines[start..], content.as_bytes());
    lines.push(b' ');
    lines.extend_from_slice(&sum);
    lines.push(b' ');
    lines.extend_from_slice(content.as_bytes());
    lines.push(b'\n');
}

/// The first 8 hex digits of the SHA-256 of a record's head and content: tells a line a disk
/// error or an edit changed from one the writer wrote.
fn checksum(head: &[u8], content: &[u8]) -> [u8; 8] {
    let digest = keys::sha256(&[head, b" ", content]);
    let mut sum = [0; 8];
    keys::hex_into(&digest, &mut sum);
    sum
}

pub(super) enum Record {
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
pub(super) fn read_regions(dir: &Path) -> io::Result<Vec<Region>> {
    let mut regions = Vec::new();
    for (segment, name) in SEGMENTS.iter().enumerate() {
        if let Some(text) = read_if_present(&dir.join(name))? {
            regions.push(read_region(&text, segment));
        }
    }
    Ok(regions)
}

pub(super) struct Region {
    pub(super) segment: usize,
    pub(super) epoch: u64,
    pub(super) records: Vec<Record>,
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
    if checksum(head.as_bytes(), content.as_bytes()) != sum.as_bytes() {
        return Parsed::Corrupt;
    }
    Parsed::Record(kind, epoch, content)
}

/// The events queued and not acknowledged, in order, each once.
pub(super) fn pending(records: impl Iterator<Item = Record>) -> Vec<UsageEvent> {
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
    use crate::client::events::spool::Spool;

    fn keys(events: &[UsageEvent]) -> Vec<&str> {
        events.iter().map(|e| e.idempotency_key.as_str()).collect()
    }

    const EVENT: &str = r#"{"customerId":"c","eventName":"e","generatedAt":"t","idempotencyKey":"KEY","data":{"quantity":1}}"#;

    fn line(head: &str, content: &str) -> String {
        let sum = checksum(head.as_bytes(), content.as_bytes());
        format!("{head} {} {content}\n", String::from_utf8_lossy(&sum))
    }

    fn queued(kind: &str, key: &str) -> String {
        line(kind, &EVENT.replace("KEY", key))
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

    #[test]
    fn both_segments_are_read_so_a_torn_switch_loses_nothing() {
        let dir = std::env::temp_dir().join(format!("atlas-spool-switch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
}
