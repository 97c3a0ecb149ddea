//! `ATLAS_*` variables in the environment that nothing reads. A typo (`ATLAS_URL` for
//! `ATLAS_HOST`) would otherwise send the client to the public platform without a word.

use crate::entitlements::rules::nearest;

/// The `ATLAS_*` variables this crate reads: the client's, the emulator's, and the snapshot
/// the macros read at build time.
const CRATE_VARIABLES: [&str; 5] = [
    "ATLAS_API_KEY",
    "ATLAS_HOST",
    "ATLAS_FIXTURE",
    "ATLAS_DATA_FILE",
    "ATLAS_SNAPSHOT",
];

/// Warns once for each `ATLAS_*` variable set in the environment that neither this crate nor
/// the app (`app_variables`) reads, naming the known one it most likely meant.
pub(crate) fn warn_unknown_variables(app_variables: &[String]) {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for (name, meant) in unknown_variables(names, app_variables) {
        match meant {
            Some(meant) => tracing::warn!(
                variable = ?name,
                "the environment sets {name:?}, which nothing reads; did you mean {meant}? (the Atlas SDK reads ATLAS_API_KEY and ATLAS_HOST; list your app's own ATLAS_* variables with AtlasBuilder::app_variables)"
            ),
            None => tracing::warn!(
                variable = ?name,
                "the environment sets {name:?}, which nothing reads (the Atlas SDK reads ATLAS_API_KEY and ATLAS_HOST; list your app's own ATLAS_* variables with AtlasBuilder::app_variables)"
            ),
        }
    }
}

/// The unknown `ATLAS_*` names among `names`, each with the known variable it most likely
/// means: the nearest by spelling, else the one whose meaning its name says (an address or a
/// secret).
fn unknown_variables(
    names: impl Iterator<Item = String>,
    app_variables: &[String],
) -> Vec<(String, Option<String>)> {
    let known: Vec<&str> = CRATE_VARIABLES
        .into_iter()
        .chain(app_variables.iter().map(String::as_str))
        .collect();
    let mut unknown: Vec<(String, Option<String>)> = names
        .filter(|name| name.starts_with("ATLAS_") && !known.contains(&name.as_str()))
        .map(|name| {
            let meant = nearest(&name, &known)
                .or_else(|| meant_by_meaning(&name))
                .map(str::to_owned);
            (name, meant)
        })
        .collect();
    unknown.sort();
    unknown
}

fn meant_by_meaning(name: &str) -> Option<&'static str> {
    let words: Vec<&str> = name.split('_').skip(1).collect();
    let says = |options: &[&str]| words.iter().any(|word| options.contains(word));
    if says(&[
        "URL", "URI", "HOST", "ENDPOINT", "ADDR", "ADDRESS", "SERVER", "BASE",
    ]) {
        Some("ATLAS_HOST")
    } else if says(&["KEY", "SECRET", "TOKEN", "APIKEY"]) {
        Some("ATLAS_API_KEY")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(names: &[&str], app: &[&str]) -> Vec<(String, Option<String>)> {
        let app: Vec<String> = app.iter().map(|name| (*name).to_owned()).collect();
        unknown_variables(names.iter().map(|name| (*name).to_owned()), &app)
    }

    #[test]
    fn unknown_atlas_variables_are_named_with_the_one_meant() {
        let found = unknown(
            &[
                "ATLAS_URL",
                "ATLAS_API_KYE",
                "ATLAS_SECRET",
                "ATLAS_REDIS_URL",
                "ATLAS_COLOUR",
                "ATLAS_HOST",
                "PATH",
                "MY_ATLAS_URL",
            ],
            &["ATLAS_REDIS_URL"],
        );
        let expected = [
            ("ATLAS_API_KYE", Some("ATLAS_API_KEY")),
            ("ATLAS_COLOUR", None),
            ("ATLAS_SECRET", Some("ATLAS_API_KEY")),
            ("ATLAS_URL", Some("ATLAS_HOST")),
        ];
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(name, meant)| ((*name).to_owned(), meant.map(str::to_owned)))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn an_app_variable_misspelt_is_matched_to_the_app_one() {
        let found = unknown(&["ATLAS_REDIS_UR"], &["ATLAS_REDIS_URL"]);
        assert_eq!(
            found,
            vec![(
                "ATLAS_REDIS_UR".to_owned(),
                Some("ATLAS_REDIS_URL".to_owned())
            )]
        );
    }
}
