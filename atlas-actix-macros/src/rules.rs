// The rules the macros check at compile time and the runtime checks again at run time, written
// once: the macro crate compiles this file as its `rules` module, and the runtime crate gets
// the very same items from `atlas_actix_macros::__rules!()`, which expands to this file's
// text. Pure functions of strings only: no `crate::` paths, so it means the same in both.

/// The longest feature id there is.
pub(crate) const MAX_FEATURE_ID: usize = 128;

/// What is wrong with `id` as an Atlas feature id, if anything: an id is 1 to
/// [`MAX_FEATURE_ID`] ASCII letters, digits and `-`, `_`, `.`, `:` (what the platform's slugs
/// are made of).
pub(crate) fn feature_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some(
            "the feature id is empty; give the id of an Atlas feature, such as \"seats\""
                .to_owned(),
        );
    }
    if id.len() > MAX_FEATURE_ID {
        return Some(format!(
            "a feature id has at most {MAX_FEATURE_ID} characters; this one has {}",
            id.len()
        ));
    }
    let bad = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))?;
    Some(format!(
        "a feature id holds only letters, digits and `-_.:`, not {bad:?}; give the id shown in the Atlas dashboard, such as \"data-explorer\""
    ))
}

/// The candidate closest to `word`, if it is close enough to be a typo of it: at most a third
/// of its length away (two edits for short words), by Levenshtein distance; ties go to the
/// first-sorted candidate.
pub(crate) fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let most = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= most)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Runs in both crates: the macro crate's unit tests and, through `__rules!`, the runtime's.
#[cfg(test)]
mod rule_tests {
    use super::*;

    /// Ids and whether they are feature ids.
    pub(crate) const IDS: [(&str, bool); 12] = [
        ("seats", true),
        ("data-explorer", true),
        ("ai_tokens.v2", true),
        ("org:seats", true),
        ("A1", true),
        ("", false),
        ("seats!", false),
        ("data explorer", false),
        ("séats", false),
        ("line\nbreak", false),
        ("a/b", false),
        ("quote\"", false),
    ];

    #[test]
    fn feature_ids_follow_one_rule() {
        for (id, valid) in IDS {
            assert_eq!(feature_id_problem(id).is_none(), valid, "{id:?}");
        }
        assert!(feature_id_problem(&"a".repeat(MAX_FEATURE_ID)).is_none());
        assert!(feature_id_problem(&"a".repeat(MAX_FEATURE_ID + 1)).is_some());
    }

    #[test]
    fn typos_find_their_word() {
        assert_eq!(
            nearest("analytcs", &["analytics", "seats"]),
            Some("analytics")
        );
        assert_eq!(
            nearest("exclusiv", &["usage", "exclusive"]),
            Some("exclusive")
        );
        assert_eq!(nearest("billing", &["analytics", "seats"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
