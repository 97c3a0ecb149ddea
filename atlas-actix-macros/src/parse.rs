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

/// `#[requires_feature("a", "b", usage = 1, shadow, exclusive, quantity = expr)]`.
pub(crate) struct RequiresFeatureArgs {
    pub(crate) features: Vec<LitStr>,
    pub(crate) shadow: bool,
    pub(crate) usage: Option<f64>,
    pub(crate) exclusive: bool,
    /// How many units the request needs, computed from the handler's arguments.
    pub(crate) quantity: Option<Expr>,
}

const OPTIONS: &str = "expected one of: `usage`, `shadow`, `exclusive`, `quantity`";

/// A flag option: `shadow`, or `shadow = true|false`.
fn flag(name: &syn::Ident, input: ParseStream<'_>) -> syn::Result<bool> {
    if !input.peek(Token![=]) {
        return Ok(true);
    }
    input.parse::<Token![=]>()?;
    input
        .parse::<syn::LitBool>()
        .map(|value| value.value)
        .map_err(|err| syn::Error::new(err.span(), format!("`{name}` takes `true` or `false`")))
}

impl Parse for RequiresFeatureArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut features: Vec<LitStr> = Vec::new();
        let mut shadow: Option<(proc_macro2::Span, bool)> = None;
        let mut usage: Option<(proc_macro2::Span, f64)> = None;
        let mut exclusive: Option<bool> = None;
        let mut units: Option<Expr> = None;
        while !input.is_empty() {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                let id = feature_id(&lit)?;
                if shadow.is_some() || usage.is_some() || exclusive.is_some() || units.is_some() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "feature ids come first, options after them",
                    ));
                }
                if features.iter().any(|other| other.value() == id) {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("feature \"{id}\" is listed twice"),
                    ));
                }
                features.push(lit);
            } else if input.peek(syn::Ident) {
                let key: syn::Ident = input.parse()?;
                match key.to_string().as_str() {
                    "shadow" => {
                        if shadow.is_some() {
                            return Err(syn::Error::new(key.span(), "`shadow` is given twice"));
                        }
                        shadow = Some((key.span(), flag(&key, input)?));
                    }
                    "quantity" => {
                        if units.is_some() {
                            return Err(syn::Error::new(key.span(), "`quantity` is given twice"));
                        }
                        if !input.peek(Token![=]) {
                            return Err(syn::Error::new(
                                key.span(),
                                "`quantity` takes an expression over the handler's arguments: `quantity = body.emails.len()`",
                            ));
                        }
                        input.parse::<Token![=]>()?;
                        units = Some(input.parse()?);
                    }
                    "exclusive" => {
                        if exclusive.is_some() {
                            return Err(syn::Error::new(key.span(), "`exclusive` is given twice"));
                        }
                        exclusive = Some(flag(&key, input)?);
                    }
                    "usage" => {
                        if usage.is_some() {
                            return Err(syn::Error::new(key.span(), "`usage` is given twice"));
                        }
                        if !input.peek(Token![=]) {
                            return Err(syn::Error::new(
                                key.span(),
                                "`usage` takes a quantity: `usage = 1`",
                            ));
                        }
                        input.parse::<Token![=]>()?;
                        usage = Some((key.span(), quantity(input)?));
                    }
                    other if !input.peek(Token![=]) => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!("a feature id is a string: write \"{other}\"; options are `usage = 1`, `shadow`, `exclusive` and `quantity = ..`"),
                        ));
                    }
                    other => {
                        let hint = closest(other)
                            .map(|o| format!(" (did you mean `{o}`?)"))
                            .unwrap_or_default();
                        return Err(syn::Error::new(
                            key.span(),
                            format!("unknown option `{other}`{hint}; {OPTIONS}"),
                        ));
                    }
                }
            } else {
                let token: proc_macro2::TokenTree = input.parse()?;
                return Err(syn::Error::new_spanned(
                    token,
                    "expected a feature id string, such as \"data-explorer\", or an option (`usage = 1`, `shadow`, `exclusive`, `quantity = ..`)",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        if features.is_empty() {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                "name the features the handler needs: #[requires_feature(\"data-explorer\")]",
            ));
        }
        Ok(Self {
            features,
            shadow: shadow.is_some_and(|(_, value)| value),
            usage: usage.map(|(_, value)| value),
            exclusive: exclusive.unwrap_or(false),
            quantity: units,
        })
    }
}

/// A usage quantity: a number literal above zero.
fn quantity(input: ParseStream<'_>) -> syn::Result<f64> {
    let lit: syn::Lit = input.parse().map_err(|err| {
        syn::Error::new(err.span(), "`usage` takes a number above zero: `usage = 1`")
    })?;
    let value = match &lit {
        syn::Lit::Int(int) => int.base10_parse::<u64>().map(|v| v as f64),
        syn::Lit::Float(float) => float.base10_parse::<f64>(),
        _ => Err(syn::Error::new(lit.span(), "")),
    };
    match value {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(syn::Error::new(
            lit.span(),
            "`usage` takes a number above zero: `usage = 1`",
        )),
    }
}

/// The option a misspelt one most likely meant.
fn closest(name: &str) -> Option<&'static str> {
    ["usage", "shadow", "exclusive", "quantity"]
        .into_iter()
        .find(|option| {
            let shared = option.chars().filter(|c| name.contains(*c)).count();
            shared + 1 >= option.len() && name.len().abs_diff(option.len()) <= 2
        })
}
