//! The durable event spool (`AtlasBuilder::event_spool`, no feature needed): usage events are
//! on disk before `enqueue`
//! returns, so a crash or `kill -9` loses none. After a restart the events not yet accepted
//! are sent again, with their original idempotency keys (the platform counts each once).
//!
//! One append-only file, `events.log` in the spool directory: `E <event JSON>` when an event
//! is queued (synced to disk before `enqueue` returns), `A <idempotency key>` when the
//! platform accepted it. Opening the spool reads the pending events (queued, not accepted;
//! a torn last line from a crash is skipped) and rewrites the file with just those, through a
//! synced temporary file renamed over it. Once nothing is pending the file is emptied.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::models::UsageEvent;

const FILE: &str = "events.log";

pub(crate) struct Spool {
    path: PathBuf,
    file: Mutex<File>,
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
        Ok((
            Self {
                path,
                file: Mutex::new(file),
            },
            pending,
        ))
    }

    fn file(&self) -> std::sync::MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the events and waits until they are on disk.
    pub(crate) fn append(&self, events: &[UsageEvent]) -> io::Result<()> {
        let mut lines = Vec::new();
        for event in events {
            lines.extend(line('E', &serde_json::to_string(event)?));
        }
        let mut file = self.file();
        file.write_all(&lines)?;
        file.sync_data()
    }

    /// Records that the platform accepted (or refused for good) these events; with nothing
    /// left pending, empties the file.
    pub(crate) fn acknowledge<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
        nothing_pending: bool,
    ) -> io::Result<()> {
        let mut file = self.file();
        if nothing_pending {
            file.set_len(0)?;
            return file.sync_data();
        }
        let lines: Vec<u8> = keys.into_iter().flat_map(|key| line('A', key)).collect();
        file.write_all(&lines)?;
        // An acknowledgement lost in a crash only sends an event again, which the platform
        // deduplicates: no sync needed.
        file.flush()
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

    #[test]
    fn pending_events_survive_a_reopen() {
        let dir = dir("reopen");
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert!(pending.is_empty());
        spool.append(&[event("a"), event("b"), event("c")]).unwrap();
        spool.acknowledge(["b"], false).unwrap();
        drop(spool);
        let (spool, pending) = Spool::open(&dir).unwrap();
        assert_eq!(keys(&pending), ["a", "c"]);
        spool.acknowledge(["a", "c"], true).unwrap();
        drop(spool);
        assert!(Spool::open(&dir).unwrap().1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let text = "E {\"customerId\":\"c\",\"eventName\":\"e\",\"generatedAt\":\"t\",\"idempotencyKey\":\"a\",\"data\":{\"quantity\":1}}\nE {\"customerId\":\"c\",\"even";
        let events = pending(text.as_bytes()).unwrap();
        assert_eq!(keys(&events), ["a"]);
    }
}
