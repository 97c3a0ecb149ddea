//! Parsing and checking the macros' input: the options, the feature ids and the handler's
//! signature. Everything `expand` receives has been checked here.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, LitStr, PatType, Token};

use crate::rules::{feature_id_problem, nearest};
use crate::snapshot::{Checked, Snapshot};

mod kw {
    syn::custom_keyword!(usage);
    syn::custom_keyword!(shadow);
    syn::custom_keyword!(exclusive);
    syn::custom_keyword!(quantity);
    syn::custom_keyword!(reserve);
}

/// The options of `#[requires_feature]`, for messages and typo hints.
const OPTIONS: [&str; 5] = ["usage", "shadow", "exclusive", "quantity", "reserve"];

/// Checks a feature id literal against the rule the runtime applies too.
pub(crate) fn feature_id(lit: &LitStr) -> syn::Result<String> {
    let id = lit.value();
    match feature_id_problem(&id) {
        Some(problem) => Err(syn::Error::new(lit.span(), problem)),
        None => Ok(id),
    }
}

/// `limit!(builder, "feature", callback)`.
pub(crate) struct LimitArgs {
    pub(crate) builder: Expr,
    pub(crate) feature: LitStr,
    pub(crate) callback: Expr,
    /// The pricing-model snapshot the feature was checked against, if the crate has one.
    pub(crate) snapshot: Option<std::sync::Arc<Snapshot>>,
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
        let snapshot = Snapshot::load(feature.span())?;
        if let Some(snapshot) = &snapshot {
            snapshot.require(&feature, &["limit"], |id, context| {
                format!("`limit!` counts `{id}`, but no plan gives it a limit {context}; the callback would never be used")
            })?;
        }
        Ok(Self {
            builder,
            feature,
            callback,
            snapshot,
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
    /// `reserve = <expr>`: units to hold for the handler to commit.
    pub(crate) reserve: Option<Expr>,
    /// What the features were checked against, when the crate has a pricing-model snapshot.
    pub(crate) checked: Option<Checked>,
}

/// Options as they are read, each at most once.
#[derive(Default)]
struct Options {
    shadow: Option<bool>,
    usage: Option<f64>,
    exclusive: Option<bool>,
    quantity: Option<Expr>,
    reserve: Option<(Expr, Span)>,
    /// Where each option was given, to point at the one that conflicts.
    spans: Vec<(&'static str, Span)>,
}

impl Options {
    fn any(&self) -> bool {
        self.shadow.is_some()
            || self.usage.is_some()
            || self.exclusive.is_some()
            || self.quantity.is_some()
            || self.reserve.is_some()
    }

    /// `reserve` holds what the handler commits: it is the quantity checked, it reports
    /// the usage itself, and its denials must deny.
    fn check_reserve(&self) -> syn::Result<()> {
        let Some((_, reserve)) = &self.reserve else {
            return Ok(());
        };
        for (name, span) in &self.spans {
            let why = match *name {
                "usage" => "`reserve` reports the usage the handler commits; drop `usage`",
                "quantity" => "`reserve` is the quantity checked; drop `quantity`",
                "shadow" => "a reserving guard cannot be in shadow mode: a denied request would have no reservation to commit",
                _ => continue,
            };
            let mut error = syn::Error::new(*span, why);
            error.combine(syn::Error::new(*reserve, "`reserve` is given here"));
            return Err(error);
        }
        Ok(())
    }
}

/// Sets an option that may be given once.
fn once<T>(slot: &mut Option<T>, value: T, span: Span, name: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, format!("`{name}` is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// A flag option: `shadow`, or `shadow = true|false`.
fn flag(name: &str, input: ParseStream<'_>) -> syn::Result<bool> {
    if !input.peek(Token![=]) {
        return Ok(true);
    }
    input.parse::<Token![=]>()?;
    input
        .parse::<syn::LitBool>()
        .map(|value| value.value)
        .map_err(|err| syn::Error::new(err.span(), format!("`{name}` takes `true` or `false`")))
}

/// `= <value>` after an option that needs one.
fn equals(input: ParseStream<'_>, span: Span, missing: &str) -> syn::Result<()> {
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(span, missing));
    }
    input.parse::<Token![=]>().map(drop)
}

impl Parse for RequiresFeatureArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut features: Vec<LitStr> = Vec::new();
        let mut options = Options::default();
        while !input.is_empty() {
            if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                let id = feature_id(&lit)?;
                if options.any() {
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
            } else if input.peek(kw::shadow) {
                let key: kw::shadow = input.parse()?;
                let value = flag("shadow", input)?;
                once(&mut options.shadow, value, key.span, "shadow")?;
                if value {
                    options.spans.push(("shadow", key.span));
                }
            } else if input.peek(kw::exclusive) {
                let key: kw::exclusive = input.parse()?;
                let value = flag("exclusive", input)?;
                once(&mut options.exclusive, value, key.span, "exclusive")?;
            } else if input.peek(kw::usage) {
                let key: kw::usage = input.parse()?;
                equals(input, key.span, "`usage` takes a quantity: `usage = 1`")?;
                let value = usage_quantity(input)?;
                once(&mut options.usage, value, key.span, "usage")?;
                options.spans.push(("usage", key.span));
            } else if input.peek(kw::quantity) {
                let key: kw::quantity = input.parse()?;
                equals(
                    input,
                    key.span,
                    "`quantity` takes an expression over the handler's arguments: `quantity = body.emails.len()`",
                )?;
                let value: Expr = input.parse()?;
                once(&mut options.quantity, value, key.span, "quantity")?;
                options.spans.push(("quantity", key.span));
            } else if input.peek(kw::reserve) {
                let key: kw::reserve = input.parse()?;
                equals(
                    input,
                    key.span,
                    "`reserve` takes an expression over the handler's arguments: `reserve = body.max_tokens`",
                )?;
                let value: Expr = input.parse()?;
                once(&mut options.reserve, (value, key.span), key.span, "reserve")?;
            } else if input.peek(syn::Ident) {
                return Err(unknown_option(input.parse()?, input.peek(Token![=])));
            } else {
                let token: proc_macro2::TokenTree = input.parse()?;
                return Err(syn::Error::new_spanned(
                    token,
                    "expected a feature id string, such as \"data-explorer\", or an option (`usage = 1`, `shadow`, `exclusive`, `quantity = ..`, `reserve = ..`)",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        if features.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "name the features the handler needs: #[requires_feature(\"data-explorer\")]",
            ));
        }
        options.check_reserve()?;
        let checked = check_against_snapshot(&features, &options)?;
        Ok(Self {
            features,
            shadow: options.shadow.unwrap_or(false),
            usage: options.usage,
            exclusive: options.exclusive.unwrap_or(false),
            quantity: options.quantity,
            reserve: options.reserve.map(|(expr, _)| expr),
            checked,
        })
    }
}

/// With a pricing-model snapshot, every feature must be in it, and the options must fit what
/// its plans grant: usage reported only for metered features, a quantity only for features
/// with something to count.
fn check_against_snapshot(features: &[LitStr], options: &Options) -> syn::Result<Option<Checked>> {
    let Some(snapshot) = Snapshot::load(features[0].span())? else {
        return Ok(None);
    };
    let reporting = match (&options.reserve, options.usage) {
        (Some(_), _) => Some("reserve"),
        (None, Some(_)) => Some("usage"),
        (None, None) => None,
    };
    let mut kinds = Vec::with_capacity(features.len());
    for feature in features {
        kinds.push(snapshot.kinds(feature)?.to_vec());
        if let Some(option) = reporting {
            snapshot.require(feature, &["usage", "credit"], |id, context| {
                format!("`{option}` reports usage of `{id}`, but no plan meters it {context}; no event would be sent")
            })?;
        }
        if options.quantity.is_some() {
            snapshot.require(feature, &["limit", "usage", "credit"], |id, context| {
                format!(
                    "`quantity` asks for units of `{id}`, but there is nothing to count {context}"
                )
            })?;
        }
    }
    Ok(Some(Checked { snapshot, kinds }))
}

/// The error for a word that is no option: a typo of one, or a feature id without quotes.
fn unknown_option(word: syn::Ident, has_value: bool) -> syn::Error {
    let name = word.to_string();
    let expected = "expected one of: `usage`, `shadow`, `exclusive`, `quantity`, `reserve`";
    let message = match nearest(&name, &OPTIONS) {
        Some(option) => format!("unknown option `{name}`; did you mean `{option}`? {expected}"),
        None if has_value => format!("unknown option `{name}`; {expected}"),
        None => format!(
            "a feature id is a string: write \"{name}\"; options are `usage = 1`, `shadow`, `exclusive`, `quantity = ..` and `reserve = ..`"
        ),
    };
    syn::Error::new(word.span(), message)
}

/// A usage quantity: a number literal above zero.
fn usage_quantity(input: ParseStream<'_>) -> syn::Result<f64> {
    const MESSAGE: &str = "`usage` takes a number above zero: `usage = 1`";
    let lit: syn::Lit = input
        .parse()
        .map_err(|err| syn::Error::new(err.span(), MESSAGE))?;
    let value = match &lit {
        syn::Lit::Int(int) => int.base10_parse::<u64>().map(|v| v as f64),
        syn::Lit::Float(float) => float.base10_parse::<f64>(),
        _ => Err(syn::Error::new(lit.span(), MESSAGE)),
    };
    match value {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(syn::Error::new(lit.span(), MESSAGE)),
    }
}

/// A handler `#[requires_feature]` can rewrite: an async free function, not generic nor
/// variadic, whose arguments are all typed patterns (extractors).
pub(crate) struct Handler {
    pub(crate) function: ItemFn,
    pub(crate) arguments: Vec<PatType>,
}

impl Parse for Handler {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let function: ItemFn = input.parse().map_err(|err| {
            syn::Error::new(
                err.span(),
                "#[requires_feature] goes on an async handler function",
            )
        })?;
        let sig = &function.sig;
        if sig.asyncness.is_none() {
            return Err(syn::Error::new(
                sig.fn_token.span(),
                "#[requires_feature] needs an async handler: write `async fn`",
            ));
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            return Err(syn::Error::new_spanned(
                &sig.generics,
                "#[requires_feature] does not support generic handlers; write a handler per type",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            return Err(syn::Error::new_spanned(
                variadic,
                "a handler cannot be variadic",
            ));
        }
        let arguments = sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Typed(typed) => Ok(typed.clone()),
                FnArg::Receiver(_) => Err(syn::Error::new_spanned(
                    input,
                    "#[requires_feature] goes on a free function, not a method",
                )),
            })
            .collect::<syn::Result<_>>()?;
        Ok(Self {
            function,
            arguments,
        })
    }
}
