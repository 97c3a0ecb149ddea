//! Procedural macros of [`atlas-actix`](https://docs.rs/atlas-actix); use them through it
//! (`atlas_actix::limit!`), which re-exports them.
//!
//! Each macro parses and checks its input in `parse` (options, feature ids, the handler's
//! signature), reports misuse as a `syn::Error` spanned on the offending tokens, and generates
//! code in `expand` that names only the runtime crate's `__private` paths (under the name the
//! app gave the dependency), so users need no other dependency. `rules` holds what the runtime
//! checks too (the feature-id rule, typo hints); [`__rules!`] hands it the same code.

use proc_macro::TokenStream;

mod expand;
mod parse;
mod rules;
mod snapshot;

/// Guards an async actix-web handler: the request's user must have every feature named, or
/// the handler does not run. Without a user the answer is 401; when the plan lacks a feature,
/// 403 `{"error": ..., "features": {"<id>": <allowed>}, "reasons": [...]}` (or the app's custom
/// answer). The
/// handler's own extractors run only after the check passed, so a denied request never has
/// its body read.
///
/// ```no_run
/// # extern crate atlas as atlas_actix; // the dev-dependency's name in this crate
/// use actix_web::{get, web, HttpResponse};
/// use atlas_actix::requires_feature;
///
/// #[get("/api/data-explorer")]
/// #[requires_feature("data-explorer")]
/// async fn data_explorer(query: web::Query<std::collections::HashMap<String, String>>) -> HttpResponse {
///     HttpResponse::Ok().finish()
/// }
/// ```
///
/// Options, after the feature ids: `usage = <quantity>` reports that usage of the features
/// when the handler answers 2xx (for usage- and credit-based features); `shadow` runs the
/// check and logs a would-be denial but lets the request through, to roll gating out safely;
/// `exclusive` runs the check and the handler as one step per customer and features, so a
/// handler that adds to a limited feature (`#[requires_feature("seats", exclusive)]`) holds
/// the limit under concurrent requests (see `RequireFeatures::exclusive`); `quantity = <expr>`
/// asks for that many units at once, computed from the handler's arguments by their names
/// (`quantity = body.emails.len()`), so the arguments are extracted before the check;
/// `reserve = <expr>` (over the arguments likewise) checks and holds that many units of a
/// metered quota for work whose cost is known afterwards, which the handler commits through
/// its `atlas_actix::Reserved` argument (released if it does not, or answers non-2xx); it
/// goes with neither `usage`, `quantity` nor `shadow`.
/// With a pricing-model snapshot (`atlas-snapshot.json` at the crate's root, or the file
/// `ATLAS_SNAPSHOT` names, written by `cargo atlas pull`), every id must be in it (the error
/// names the nearest one), `usage` and `reserve` need a metered feature and `quantity` one
/// with something to count.
/// It works stacked above or below a route attribute and with `web::resource(..).to(..)`.
/// The app needs its `Atlas` client where the guards find it: `App::configure(atlas.configure())`.
#[proc_macro_attribute]
pub fn requires_feature(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    let expanded = syn::parse::<parse::RequiresFeatureArgs>(attr).and_then(|args| {
        let handler = syn::parse::<parse::Handler>(item)?;
        Ok(expand::requires_feature(args, handler))
    });
    match expanded {
        Ok(tokens) => tokens.into(),
        // The item as written, plus one error: no cascade of errors about a missing handler.
        Err(err) => {
            let error = err.to_compile_error();
            quote::quote!(#original #error).into()
        }
    }
}

/// Registers the usage callback of a limited feature on an `AtlasBuilder`, and returns the
/// builder:
///
/// ```no_run
/// # extern crate atlas as atlas_actix; // the dev-dependency's name in this crate
/// use atlas_actix::{limit, Atlas};
/// # async fn count_seats(_: &str) -> Result<u32, std::io::Error> { Ok(1) }
///
/// let builder = limit!(Atlas::builder(), "seats", |customer| async move {
///     count_seats(&customer).await // a number, or a Result of one
/// });
/// ```
///
/// The feature id must be a non-empty string literal without spaces; the callback takes the
/// customer id (`String`) and returns a future of a count. See `AtlasBuilder::limit`. With a
/// pricing-model snapshot (`atlas-snapshot.json` at the crate's root, or the file
/// `ATLAS_SNAPSHOT` names), the feature must be in it and some plan must give it a limit.
#[proc_macro]
pub fn limit(input: TokenStream) -> TokenStream {
    match syn::parse::<parse::LimitArgs>(input) {
        Ok(args) => expand::limit(args).into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// The rules the runtime crate shares with the macros (the feature-id rule, typo hints), as
/// items: `atlas-actix` expands this once, so a rule checked at compile time and at run time is
/// one piece of code. Not public API.
#[doc(hidden)]
#[proc_macro]
pub fn __rules(_input: TokenStream) -> TokenStream {
    match include_str!("rules.rs").parse::<TokenStream>() {
        Ok(items) => items,
        Err(err) => {
            let message = format!("atlas-actix-macros: rules.rs does not lex: {err}");
            quote::quote!(::core::compile_error!(#message);).into()
        }
    }
}
