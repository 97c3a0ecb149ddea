//! The decision log: a built-in [`AtlasHook`] that writes every denial, every usage event and
//! a sample of the allowed checks as JSON lines, off the request path. A request serialises
//! its line and hands it to a bounded channel; a thread of the log's own writes, flushes and
//! rotates the file. A full channel drops the line (counted in
//! `atlas_decision_log_dropped_total`) and never waits: the log must not slow the app.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::client::hooks::{AtlasHook, CheckDecision, CheckRecord, UsageRecord, UsageStage};
use crate::client::telemetry;
use crate::entitlements::LimitOutcome;

/// The decision log's defaults: 1 % of allowed checks, 64 MiB a file, 10,000 lines waiting.
const DEFAULT_SAMPLE: f64 = 0.01;
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
const DEFAULT_CAPACITY: usize = 10_000;

/// A decision log: register it with [`AtlasBuilder::hook`](crate::AtlasBuilder::hook).
///
/// Each line is a JSON object with at least `kind` (`check` or `usage`), `at` (RFC 3339),
/// `customer`, `features`, `decision` (checks: `allowed`, `denied` or `unavailable`; usage:
/// the event's stage, `queued`, `streamed`, `sent`, `refused` or `dropped`), `reasons`,
/// `provenance` and `request_id`; checks add `quantity`, `limits`, `route`, `latency_us`,
/// `shadow` and `error`, usage events `quantity` and `idempotency_key` (their `customer` and
/// `features` are the platform's internal ids, which the event carries).
///
/// ```no_run
/// use atlas_actix::{Atlas, DecisionLog};
///
/// let log = DecisionLog::builder().sample(0.05).max_bytes(16 << 20).open("decisions.jsonl")?;
/// let atlas = Atlas::builder().hook(log).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DecisionLog {
    lines: SyncSender<String>,
    sample: f64,
    dropped: Arc<AtomicU64>,
}

/// How a [`DecisionLog`] is made.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` or `to_writer`"]
pub struct DecisionLogBuilder {
    sample: f64,
    max_bytes: u64,
    capacity: usize,
}

impl DecisionLog {
    /// A builder: 1 % of allowed checks, files rotated at 64 MiB, 10,000 lines waiting at most.
    pub fn builder() -> DecisionLogBuilder {
        DecisionLogBuilder {
            sample: DEFAULT_SAMPLE,
            max_bytes: DEFAULT_MAX_BYTES,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: Value) {
        let mut text = line.to_string();
        text.push('\n');
        match self.lines.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                telemetry::decision_log_dropped();
            }
            // The writer stopped (its file failed for good): said once, when it stopped.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl DecisionLogBuilder {
    /// The fraction of allowed checks logged, from 0 to 1 (default 0.01). Denials,
    /// unavailable checks and usage events are always logged.
    pub fn sample(mut self, fraction: f64) -> Self {
        self.sample = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            DEFAULT_SAMPLE
        };
        self
    }

    /// The size at which the file is rotated (default 64 MiB): renamed with `.1` appended
    /// (replacing the previous one), and a new file started.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// How many lines may wait for the writer (default 10,000); more are dropped and counted.
    pub fn capacity(mut self, lines: usize) -> Self {
        self.capacity = lines.max(1);
        self
    }

    /// A log appended to the file at `path` (made when missing), rotated by size.
    pub fn open(self, path: impl Into<PathBuf>) -> io::Result<DecisionLog> {
        let path = path.into();
        let file = append(&path)?;
        let written = file.metadata()?.len();
        let sink = Rotating {
            out: BufWriter::new(file),
            path,
            written,
            max_bytes: self.max_bytes,
        };
        self.start(sink)
    }

    /// A log written to any writer, never rotated (a socket, a pipe, a test's buffer).
    pub fn to_writer(self, writer: impl Write + Send + 'static) -> io::Result<DecisionLog> {
        self.start(Plain(writer))
    }

    fn start(self, mut sink: impl Sink) -> io::Result<DecisionLog> {
        let (lines, received) = sync_channel(self.capacity);
        std::thread::Builder::new()
            .name("atlas-decision-log".into())
            .spawn(move || write_lines(&received, &mut sink))?;
        Ok(DecisionLog {
            lines,
            sample: self.sample,
            dropped: Arc::default(),
        })
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Where the writer thread puts lines.
trait Sink: Send + 'static {
    fn write_line(&mut self, line: &str) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

struct Plain<W>(W);

impl<W: Write + Send + 'static> Sink for Plain<W> {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.0.write_all(line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

struct Rotating {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    max_bytes: u64,
}

impl Sink for Rotating {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.out.flush()?;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
            self.out = BufWriter::new(append(&self.path)?);
            self.written = 0;
        }
        self.out.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes what arrives, flushing whenever the channel is empty; ends when every sender is
/// gone, or at the first write that fails (logged: the log is off from then on).
fn write_lines(received: &Receiver<String>, sink: &mut impl Sink) {
    while let Ok(first) = received.recv() {
        let written = std::iter::once(first)
            .chain(received.try_iter())
            .try_for_each(|line| sink.write_line(&line))
            .and_then(|()| sink.flush());
        if let Err(err) = written {
            tracing::error!(%err, "the decision log cannot write: it is off from now on");
            return;
        }
    }
    let _ = sink.flush();
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn limit_json(outcome: &LimitOutcome) -> Value {
    match outcome {
        LimitOutcome::Usage(count) => json!({"counted": count}),
        LimitOutcome::Failed => json!("failed"),
        LimitOutcome::TimedOut => json!("timedOut"),
        LimitOutcome::NoCallback => json!("noCallback"),
    }
}

impl AtlasHook for DecisionLog {
    fn on_check(&self, check: &CheckRecord<'_>) {
        if check.decision == CheckDecision::Allowed
            && (self.sample <= 0.0 || (self.sample < 1.0 && fastrand::f64() >= self.sample))
        {
            return;
        }
        let limits: serde_json::Map<String, Value> = check
            .limits
            .iter()
            .map(|(feature, outcome)| (feature.clone(), limit_json(outcome)))
            .collect();
        self.send(json!({
            "kind": "check",
            "at": now(),
            "customer": check.customer,
            "features": check.features,
            "quantity": check.quantity,
            "decision": check.decision.as_str(),
            "reasons": check.reasons,
            "provenance": check.provenance,
            "limits": limits,
            "request_id": check.request_id,
            "route": check.route,
            "latency_us": check.latency.as_micros() as u64,
            "shadow": check.shadow,
            "error": check.error,
        }));
    }

    fn on_usage(&self, usage: &UsageRecord<'_>) {
        let event = usage.event;
        let reasons = match &usage.stage {
            UsageStage::Refused { status, reason } => json!([{"status": status, "reason": reason}]),
            UsageStage::Dropped { why } => json!([{"reason": why}]),
            _ => json!([]),
        };
        self.send(json!({
            "kind": "usage",
            "at": now(),
            "customer": event.customer_id,
            "features": [event.event_name],
            "decision": usage.stage.as_str(),
            "reasons": reasons,
            "provenance": Value::Null,
            "request_id": Value::Null,
            "quantity": event.data.quantity,
            "idempotency_key": event.idempotency_key,
        }));
    }
}
