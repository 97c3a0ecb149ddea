//! The pricing-model snapshot the macros check feature ids and options against: the file
//! `ATLAS_SNAPSHOT` names at build time (relative to the crate's manifest), else
//! `atlas-snapshot.json` beside the crate's `Cargo.toml`. Without one, nothing is checked
//! beyond an id's form. `cargo atlas pull` writes it (the runtime's `Snapshot` holds the
//! format: `{"format": 1, "features": [{"id", "kinds", "plans"}]}`).
//!
//! The expansion includes the file (`include_bytes!`), so changing it rebuilds the crates
//! that use it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

use crate::rules::nearest;

const FILE: &str = "atlas-snapshot.json";

/// A snapshot as the macros read it: each feature id with the kinds of grant plans give it.
pub(crate) struct Snapshot {
    path: PathBuf,
    features: Vec<(String, Vec<String>)>,
}

/// The last snapshot read, by path and modification: an IDE's macro server lives across edits.
type Cached = (PathBuf, Option<SystemTime>, Arc<Snapshot>);
static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

impl Snapshot {
    /// The crate's snapshot, if it has one; an error (at `span`) when one is named but cannot
    /// be read.
    pub(crate) fn load(span: Span) -> syn::Result<Option<Arc<Self>>> {
        let Some(path) = Self::path() else {
            return Ok(None);
        };
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, at, snapshot)) = &*cache {
            if *cached == path && *at == modified && modified.is_some() {
                return Ok(Some(Arc::clone(snapshot)));
            }
        }
        let snapshot =
            Arc::new(Self::read(path.clone()).map_err(|err| syn::Error::new(span, err))?);
        *cache = Some((path, modified, Arc::clone(&snapshot)));
        Ok(Some(snapshot))
    }

    /// Where the snapshot is: `ATLAS_SNAPSHOT` (checked even when missing, so a wrong path is
    /// an error, not checks silently off), else `atlas-snapshot.json` if present.
    fn path() -> Option<PathBuf> {
        let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
        match std::env::var_os("ATLAS_SNAPSHOT").filter(|value| !value.is_empty()) {
            Some(named) => Some(manifest.join(named)),
            None => Some(manifest.join(FILE)).filter(|path| path.is_file()),
        }
    }

    fn read(path: PathBuf) -> Result<Self, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("the pricing-model snapshot {shown} cannot be read: {err}"))?;
        let invalid = |why: String| {
            format!("the pricing-model snapshot {shown} is not one `cargo atlas pull` writes: {why}; pull it again")
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        if json["format"] != 1 {
            return Err(invalid(format!(
                "format {} (this version reads format 1)",
                json["format"]
            )));
        }
        let features = json["features"]
            .as_array()
            .ok_or_else(|| invalid("no `features` list".to_owned()))?
            .iter()
            .map(|feature| {
                let id = feature["id"]
                    .as_str()
                    .ok_or_else(|| invalid("a feature without an `id`".to_owned()))?;
                let kinds = feature["kinds"]
                    .as_array()
                    .ok_or_else(|| invalid(format!("`{id}` has no `kinds` list")))?
                    .iter()
                    .map(|kind| kind.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| invalid(format!("`{id}` has a kind that is not a string")))?;
                Ok((id.to_owned(), kinds))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { path, features })
    }

    /// The file's name, for messages.
    fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || FILE.to_owned(),
            |name| name.to_string_lossy().into_owned(),
        )
    }

    /// The kinds of the feature `lit` names; an error on it, with the nearest id, when the
    /// snapshot lacks it.
    pub(crate) fn kinds(&self, lit: &LitStr) -> syn::Result<&[String]> {
        let id = lit.value();
        if let Some((_, kinds)) = self.features.iter().find(|(known, _)| *known == id) {
            return Ok(kinds);
        }
        let ids: Vec<&str> = self.features.iter().map(|(id, _)| id.as_str()).collect();
        let hint = match nearest(&id, &ids) {
            Some(near) => format!("; did you mean `{near}`?"),
            None => "; if it is new, run `cargo atlas pull` to update the snapshot".to_owned(),
        };
        Err(syn::Error::new(
            lit.span(),
            format!(
                "`{id}` is not a feature of the pricing model snapshot ({}){hint}",
                self.name()
            ),
        ))
    }

    /// Checks that the feature `lit` names has one of the kinds `wanted`; else the error
    /// `problem` writes from the id and where the snapshot says what it is, on the id.
    pub(crate) fn require(
        &self,
        lit: &LitStr,
        wanted: &[&str],
        problem: impl FnOnce(&str, &str) -> String,
    ) -> syn::Result<()> {
        let kinds = self.kinds(lit)?;
        if kinds.iter().any(|kind| wanted.contains(&kind.as_str())) {
            return Ok(());
        }
        let has = if kinds.is_empty() {
            "no plan grants it".to_owned()
        } else {
            format!("it is {}", kinds.join(", "))
        };
        let context = format!("in the pricing model snapshot ({}: {has})", self.name());
        Err(syn::Error::new(lit.span(), problem(&lit.value(), &context)))
    }

    /// Makes the crate depend on the file, so editing or pulling it again rebuilds the code.
    pub(crate) fn tracked(&self) -> TokenStream {
        let path = self.path.display().to_string();
        quote!(
            const _: &[u8] = ::core::include_bytes!(#path);
        )
    }
}

/// What a guard's features were checked against: the snapshot, and each feature's kinds.
pub(crate) struct Checked {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) kinds: Vec<Vec<String>>,
}
