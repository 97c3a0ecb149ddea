//! Parsing and checking the macros' input.

use syn::parse::{Parse, ParseStream};
use syn::{Expr, LitStr, Token};

/// Checks a feature id: a non-empty string without whitespace or control characters.
pub(crate) fn feature_id(lit: &LitStr) -> syn::Result<String> {
    let id = lit.value();
    if id.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            "the feature id is empty; give the id of an Atlas feature, such as \"seats\"",
        ));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(syn::Error::new(
            lit.span(),
            "a feature id has no spaces or control characters; give the id shown in the Atlas dashboard, such as \"data-explorer\"",
        ));
    }
    Ok(id)
}

/// `limit!(builder, "feature", callback)`.
pub(crate) struct LimitArgs {
    pub(crate) builder: Expr,
    pub(crate) feature: LitStr,
    pub(crate) callback: Expr,
}

impl Parse for LimitArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        const USAGE: &str =
            "expected `limit!(builder, \"feature-id\", |customer| async move { ... })`";
        if input.is_empty() {
            return Err(input.error(USAGE));
        }
        let builder: Expr = input.parse()?;
        input
            .parse::<Token![,]>()
            .map_err(|err| syn::Error::new(err.span(), USAGE))?;
        let feature: LitStr = match input.parse::<Expr>()? {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(lit),
                ..
            }) => lit,
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "the feature id must be a string literal, such as \"seats\"",
                ))
            }
        };
        feature_id(&feature)?;
        if input.is_empty() {
            return Err(syn::Error::new(
                feature.span(),
                "expected a callback after the feature id: `limit!(builder, \"seats\", |customer| async move { ... })`",
            ));
        }
        input.parse::<Token![,]>()?;
        let callback: Expr = input.parse()?;
        if let Expr::Closure(closure) = &callback {
            if closure.inputs.len() != 1 {
                return Err(syn::Error::new_spanned(
                    &closure.inputs,
                    "a limit callback takes one argument, the customer id: `|customer| async move { ... }`",
                ));
            }
        }
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(input.error("unexpected input after the callback; expected `limit!(builder, \"feature-id\", callback)`"));
        }
        Ok(Self {
            builder,
            feature,
            callback,
        })
    }
}
