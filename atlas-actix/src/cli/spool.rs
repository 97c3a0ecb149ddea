//! `cargo atlas spool inspect` and `cargo atlas spool drain`: the usage events a spool holds,
//! and sending them once the app that wrote them is gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{block_on, platform, Failure, Outcome, Output};
use crate::client::events::spool::read_pending;
use crate::models::UsageEvent;

/// How many events, the oldest, and the totals per customer and feature (the wire's ids: the
/// spool holds events as the platform takes them).
pub(super) fn inspect(output: &mut Output<'_>, dir: &Path) -> Result<Outcome, Failure> {
    if !dir.is_dir() {
        return Err(Failure(format!(
            "{} is not a directory: give the app's event_spool directory",
            dir.display()
        )));
    }
    let pending = read_pending(dir).map_err(|err| Failure(format!("{}: {err}", dir.display())))?;
    let mut totals: BTreeMap<(&str, &str), (usize, f64)> = BTreeMap::new();
    for event in &pending {
        let total = totals
            .entry((event.customer_id.as_str(), event.event_name.as_str()))
            .or_default();
        total.0 += 1;
        total.1 += event.data.quantity;
    }
    let oldest = pending
        .iter()
        .map(|event| event.generated_at.as_str())
        .min();
    if output.json {
        let totals: Vec<serde_json::Value> = totals
            .iter()
            .map(|((customer, feature), (events, quantity))| {
                json!({"customerId": customer, "eventName": feature, "events": events, "quantity": quantity})
            })
            .collect();
        output.json(&json!({
            "dir": dir,
            "pending": pending.len(),
            "oldest": oldest,
            "totals": totals,
        }))?;
        return Ok(Outcome::Done);
    }
    output.line(format!(
        "{}: {} usage event(s) pending{}",
        dir.display(),
        pending.len(),
        oldest
            .map(|at| format!(", the oldest from {at}"))
            .unwrap_or_default()
    ))?;
    if !totals.is_empty() {
        let rows: Vec<Vec<String>> = totals
            .iter()
            .map(|((customer, feature), (events, quantity))| {
                vec![
                    (*customer).to_owned(),
                    (*feature).to_owned(),
                    events.to_string(),
                    quantity.to_string(),
                ]
            })
            .collect();
        output.table(&["customer", "event", "events", "quantity"], &rows)?;
    }
    Ok(Outcome::Done)
}

/// Opens the spool as an app would (refused while one holds it), sends what it holds with
/// the events' own idempotency keys, and marks them sent; progress goes to `progress`.
pub(super) fn drain(
    output: &mut Output<'_>,
    progress: &mut dyn Write,
    dir: &Path,
    data_file: Option<&Path>,
) -> Result<Outcome, Failure> {
    let pending: Vec<UsageEvent> =
        read_pending(dir).map_err(|err| Failure(format!("{}: {err}", dir.display())))?;
    let (builder, _platform) = platform(data_file)?;
    let atlas = builder.event_spool(dir).build().map_err(|err| {
        Failure(format!(
            "{err}\n(stop the app that holds the spool, or let it send the events itself)"
        ))
    })?;
    let total = pending.len();
    let left = block_on(async {
        let flushed = {
            let flush = std::pin::pin!(atlas.flush());
            let mut flush = flush;
            let mut ticks = actix_rt::time::interval(Duration::from_secs(1));
            loop {
                let tick = std::pin::pin!(ticks.tick());
                match futures_util::future::select(flush, tick).await {
                    futures_util::future::Either::Left((flushed, _)) => break flushed,
                    futures_util::future::Either::Right((_, unfinished)) => {
                        let backlog = atlas.health().await.event_backlog;
                        let _ = writeln!(
                            progress,
                            "sent {} of {total} event(s)",
                            total.saturating_sub(backlog)
                        );
                        flush = unfinished;
                    }
                }
            }
        };
        let backlog = atlas.health().await.event_backlog;
        let stopped = atlas.shutdown().await;
        flushed.and(stopped).map(|()| backlog)
    })
    .map_err(|err| {
        Failure(format!(
            "{err}; the events not sent stay in the spool: run the drain again"
        ))
    })?;
    if output.json {
        output.json(&json!({"dir": dir, "sent": total - left, "pending": left}))?;
    } else {
        output.line(format!(
            "{}: sent {} usage event(s) with their idempotency keys; {left} left",
            dir.display(),
            total - left
        ))?;
    }
    Ok(Outcome::Done)
}
