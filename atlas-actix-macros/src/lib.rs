//! Procedural macros of [`atlas-actix`](https://docs.rs/atlas-actix); use them through it
//! (`atlas_actix::limit!`), which re-exports them.
//!
//! Each macro parses its input in `parse`, reports misuse as a `syn::Error` spanned on the
//! offending tokens, and generates code in `expand` that names only
//! `::atlas_actix::__private` paths, so users need no other dependency.

use proc_macro::TokenStream;

mod expand;
mod parse;

/// Registers the usage callback of a limited feature on an `AtlasBuilder`, and returns the
/// builder:
///
/// ```no_run
/// use atlas_actix::{limit, Atlas};
/// # async fn count_seats(_: &str) -> Result<u32, std::io::Error> { Ok(1) }
///
/// let builder = limit!(Atlas::builder(), "seats", |customer| async move {
///     count_seats(&customer).await // a number, or a Result of one
/// });
/// ```
///
/// The feature id must be a non-empty string literal without spaces; the callback takes the
/// customer id (`String`) and returns a future of a count. See `AtlasBuilder::limit`.
#[proc_macro]
pub fn limit(input: TokenStream) -> TokenStream {
    match syn::parse::<parse::LimitArgs>(input) {
        Ok(args) => expand::limit(args).into(),
        Err(err) => err.to_compile_error().into(),
    }
}
