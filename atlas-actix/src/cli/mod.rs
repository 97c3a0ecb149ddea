//! `cargo atlas`, the operator's command (feature `cli`): the `cargo-atlas` binary runs
//! [`run`], which an app may also call from an admin binary of its own.
//!
//! | command | does |
//! |---|---|
//! | `pull [--data-file FILE] [--out FILE]` | writes the pricing-model snapshot (`atlas-snapshot.json`) from the platform or a data file, and says what changed |
//! | `customer ID` | the customer's plans and features, with limits and usage |
//! | `check ID FEATURE... [--quantity N] [--count FEATURE=N]` | the decision the SDK would make, with the reasons; exit 0 allowed, 1 denied |
//! | `spool inspect DIR` | the usage events a spool holds: how many, the oldest, totals per customer and feature |
//! | `spool drain DIR` | sends them with their idempotency keys (refused while an app holds the spool) |
//! | `data check FILE` | validates an emulator data file, naming each error's line |
//!
//! The platform is `ATLAS_API_KEY` at `ATLAS_HOST`, or with `--data-file` an emulator started
//! in-process from that file. `--json` prints JSON for scripts. Exit codes: 0 success (or
//! allowed), 1 denied, 2 an error.

mod lookup;
mod pull;
mod spool;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::emulator::{Emulator, EmulatorHandle};
use crate::web::atlas::Atlas;
use crate::web::builder::AtlasBuilder;

/// What `cargo atlas` was asked.
#[derive(Debug, Parser)]
#[command(
    name = "cargo-atlas",
    bin_name = "cargo atlas",
    version,
    about = "Atlas pricing for Rust apps: the pricing-model snapshot, customers, decisions, event spools"
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the pricing-model snapshot the macros check feature ids against.
    Pull {
        /// Read the pricing model from an emulator data file instead of the platform.
        #[arg(long)]
        data_file: Option<PathBuf>,
        /// Where to write it.
        #[arg(long, default_value = "atlas-snapshot.json")]
        out: PathBuf,
    },
    /// Show a customer's plans and features, with limits and usage.
    Customer {
        /// The customer's id in the app (a user or organisation id).
        id: String,
        /// Run against an emulator seeded from this data file instead of the platform.
        #[arg(long)]
        data_file: Option<PathBuf>,
    },
    /// Show the decision the SDK would make for a customer, with the reasons.
    Check {
        /// The customer's id in the app.
        id: String,
        /// The feature ids to check together.
        #[arg(required = true)]
        features: Vec<String>,
        /// Units asked for at once (seats to add, tokens to spend).
        #[arg(long, default_value_t = 1.0)]
        quantity: f64,
        /// What the app's limit callback would count, as FEATURE=N (limits are the app's code,
        /// so without it a limit is reported as unknown).
        #[arg(long = "count", value_name = "FEATURE=N", value_parser = parse_count)]
        counts: Vec<(String, f64)>,
        /// Run against an emulator seeded from this data file instead of the platform.
        #[arg(long)]
        data_file: Option<PathBuf>,
    },
    /// Inspect or drain a durable event spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Emulator data files.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// The events a spool directory holds: how many, the oldest, totals per customer and
    /// feature. Reads without taking the directory.
    Inspect {
        /// The spool directory (the app's `event_spool`).
        dir: PathBuf,
    },
    /// Send the events a spool holds to the platform with their idempotency keys, then mark
    /// them sent. Refused while an app holds the directory.
    Drain {
        /// The spool directory (the app's `event_spool`).
        dir: PathBuf,
        /// Send to an emulator seeded from this data file instead of the platform.
        #[arg(long)]
        data_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Validate an emulator data file.
    Check {
        /// The data file.
        file: PathBuf,
    },
}

fn parse_count(text: &str) -> Result<(String, f64), String> {
    let (feature, count) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not FEATURE=N"))?;
    let count: f64 = count
        .parse()
        .ok()
        .filter(|count: &f64| count.is_finite() && *count >= 0.0)
        .ok_or_else(|| format!("{count:?} is not a count of at least zero"))?;
    Ok((feature.to_owned(), count))
}

/// What a command ends with: success, a denial (`check`), or an error to print.
#[derive(Debug)]
enum Outcome {
    Done,
    Denied,
}

/// A command's failure, said in words that tell what to do.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        Self(err.to_string())
    }
}

/// Where a command writes, and how.
struct Output<'a> {
    out: &'a mut dyn Write,
    json: bool,
}

impl Output<'_> {
    fn line(&mut self, text: impl std::fmt::Display) -> Result<(), Failure> {
        writeln!(self.out, "{text}").map_err(Failure::from)
    }

    fn json(&mut self, value: &serde_json::Value) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)?;
        self.line(text)
    }

    /// Rows under a header, each column as wide as its widest cell.
    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> Result<(), Failure> {
        let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let render = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        self.line(render(header.to_vec()))?;
        for row in rows {
            self.line(render(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

/// Runs `cargo atlas` with `args` (the program's name first; a leading `atlas`, as cargo
/// passes it to a `cargo-atlas` subcommand, is skipped). Writes results to `out`, errors and
/// progress to `err`; answers the exit code: 0 success or allowed, 1 denied, 2 an error.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let args = args
        .iter()
        .enumerate()
        .filter(|(at, arg)| !(*at == 1 && *arg == "atlas"))
        .map(|(_, arg)| arg.clone());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(usage) => {
            let _ = write!(err, "{}", usage.render());
            return if usage.use_stderr() { 2 } else { 0 };
        }
    };
    let mut output = Output {
        out,
        json: cli.json,
    };
    let outcome = match cli.command {
        Command::Pull { data_file, out } => pull::pull(&mut output, data_file.as_deref(), &out),
        Command::Data {
            command: DataCommand::Check { file },
        } => pull::check_data(&mut output, &file),
        Command::Spool {
            command: SpoolCommand::Inspect { dir },
        } => spool::inspect(&mut output, &dir),
        Command::Spool {
            command: SpoolCommand::Drain { dir, data_file },
        } => spool::drain(&mut output, err, &dir, data_file.as_deref()),
        Command::Customer { id, data_file } => {
            lookup::customer(&mut output, &id, data_file.as_deref())
        }
        Command::Check {
            id,
            features,
            quantity,
            counts,
            data_file,
        } => lookup::check(
            &mut output,
            &id,
            &features,
            quantity,
            &counts,
            data_file.as_deref(),
        ),
    };
    match outcome {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::Denied) => 1,
        Err(Failure(message)) => {
            let _ = writeln!(err, "error: {message}");
            2
        }
    }
}

/// The platform a command talks to: `ATLAS_API_KEY` at `ATLAS_HOST`, or an emulator seeded
/// from `data_file` (kept running while the handle lives).
fn platform(data_file: Option<&Path>) -> Result<(AtlasBuilder, Option<EmulatorHandle>), Failure> {
    let builder = Atlas::builder().push_invalidation(false);
    match data_file {
        None => {
            if std::env::var_os("ATLAS_API_KEY").is_none_or(|key| key.is_empty()) {
                return Err(Failure(
                    "no platform: set ATLAS_API_KEY (and ATLAS_HOST for another platform than the public one), or give --data-file".to_owned(),
                ));
            }
            Ok((builder, None))
        }
        Some(file) => {
            let emulator = Emulator::from_file(file)?.start()?;
            let builder = builder.base_url(emulator.url()).api_key(emulator.api_key());
            Ok((builder, Some(emulator)))
        }
    }
}

/// Runs a command's async part on a runtime of its own.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    actix_rt::System::new().block_on(work)
}
