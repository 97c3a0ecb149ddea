//! `cargo atlas pull` and `cargo atlas data check`: the pricing model, from the platform or a
//! data file.

use std::path::Path;

use serde_json::json;

use super::{block_on, platform, Failure, Outcome, Output};
use crate::emulator::AtlasData;
use crate::entitlements::snapshot::Snapshot;

/// Writes the snapshot of the platform's (or the data file's) pricing model to `out`, and says
/// what changed since the snapshot there before.
pub(super) fn pull(
    output: &mut Output<'_>,
    data_file: Option<&Path>,
    out: &Path,
) -> Result<Outcome, Failure> {
    let model = match data_file {
        Some(file) => AtlasData::from_file(file)?.pricing_model,
        None => {
            let (builder, _platform) = platform(None)?;
            let atlas = builder.build()?;
            let model = block_on(async {
                let model = atlas.pricing_model().await;
                let _ = atlas.shutdown().await;
                model
            })?;
            (*model).clone()
        }
    };
    let snapshot = Snapshot::of(&model);
    let previous = match std::fs::read_to_string(out) {
        Ok(text) => Some(Snapshot::from_json(&text).map_err(|err| {
            Failure(format!(
                "{} is not a snapshot ({err}); move it away to write a new one",
                out.display()
            ))
        })?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(Failure(format!("{}: {err}", out.display()))),
    };
    let changes = previous
        .as_ref()
        .map(|previous| snapshot.changes_since(previous));
    if changes.as_ref().is_none_or(|changes| !changes.is_empty()) {
        std::fs::write(out, snapshot.to_json())
            .map_err(|err| Failure(format!("{}: {err}", out.display())))?;
    }
    if output.json {
        return output
            .json(&json!({
                "path": out,
                "features": snapshot.features.len(),
                "written": changes.as_ref().is_none_or(|changes| !changes.is_empty()),
                "changes": changes.clone().unwrap_or_default(),
            }))
            .map(|()| Outcome::Done);
    }
    match changes {
        None => output.line(format!(
            "wrote {} ({} features); commit it: the macros check feature ids against it",
            out.display(),
            snapshot.features.len()
        ))?,
        Some(changes) if changes.is_empty() => output.line(format!(
            "{} is current ({} features): nothing changed",
            out.display(),
            snapshot.features.len()
        ))?,
        Some(changes) => {
            output.line(format!(
                "wrote {}: {} change(s) since the last pull",
                out.display(),
                changes.len()
            ))?;
            for change in changes {
                output.line(format!("  {change}"))?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// Validates an emulator data file: each problem with its line, or a summary of what it holds.
pub(super) fn check_data(output: &mut Output<'_>, file: &Path) -> Result<Outcome, Failure> {
    let data = AtlasData::from_file(file).map_err(|err| {
        Failure(format!(
            "{err}\n(the format is in the atlas_actix::emulator docs)"
        ))
    })?;
    let (features, plans, customers) = (
        data.pricing_model.entitlements.len(),
        data.pricing_model.plans.len(),
        data.customers.len(),
    );
    if output.json {
        output.json(&json!({
            "file": file,
            "valid": true,
            "features": features,
            "plans": plans,
            "customers": customers,
        }))?;
    } else {
        output.line(format!(
            "{}: valid ({features} features, {plans} plans, {customers} customers)",
            file.display()
        ))?;
    }
    Ok(Outcome::Done)
}
