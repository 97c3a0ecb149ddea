//! Generating the macros' code.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, Pat, PatType, ReturnType};

use crate::parse::{Handler, LimitArgs, RequiresFeatureArgs};

/// The runtime crate's `__private` module, under whatever name the app depends on it: an app
/// may rename it (`atlas = { package = "atlas-actix" }`), and Cargo tells us how through its
/// manifest (`proc-macro-crate`). When the manifest cannot be read, the crate's own name.
/// Spanned at `span`, so an error about an item of it lands on the user's tokens there.
fn private_at(span: Span) -> TokenStream {
    use proc_macro_crate::{crate_name, FoundCrate};
    let name = match crate_name("atlas-actix") {
        Ok(FoundCrate::Name(name)) => name,
        // The runtime crate's own doctests and examples see it by its name.
        Ok(FoundCrate::Itself) | Err(_) => "atlas_actix".to_owned(),
    };
    let name = Ident::new(&name, span);
    quote_spanned!(span=> ::#name::__private)
}

fn private() -> TokenStream {
    private_at(Span::call_site())
}

pub(crate) fn limit(args: LimitArgs) -> TokenStream {
    let private = private();
    let LimitArgs {
        builder,
        feature,
        mut callback,
        snapshot,
    } = args;
    let tracked = snapshot.map(|snapshot| snapshot.tracked());
    // The customer id is a String: say so, so the closure needs no annotation.
    if let Expr::Closure(closure) = &mut callback {
        if let Some(input) = closure.inputs.first_mut() {
            if !matches!(input, Pat::Type(_)) {
                *input = Pat::Type(PatType {
                    attrs: Vec::new(),
                    pat: Box::new(input.clone()),
                    colon_token: Default::default(),
                    ty: Box::new(syn::parse_quote!(::std::string::String)),
                });
            }
        }
    }
    // Checked on its own and spanned at the callback, so a callback of the wrong type is
    // reported there.
    let at_callback = private_at(callback.span());
    let callback = quote_spanned! {callback.span()=> #at_callback::limit_callback(#callback)};
    quote! {{
        #tracked
        #private::register_limit(#builder, #feature, #callback)
    }}
}

/// Rewrites an async handler so the entitlement check runs first: the new handler takes the
/// request and the payload, checks, and only then runs the original extractors, one after
/// the other, and the original body (kept as an inner function), so a denied request has
/// neither its body read nor a costly extractor called.
pub(crate) fn requires_feature(args: RequiresFeatureArgs, handler: Handler) -> TokenStream {
    let private = private();
    let Handler {
        function:
            ItemFn {
                attrs,
                vis,
                sig,
                block,
            },
        arguments,
    } = handler;
    let name = &sig.ident;
    let output = &sig.output;
    let inputs = &sig.inputs;
    let mut arg_names = Vec::new();
    let mut extractions = Vec::new();
    // For `quantity`: each argument's pattern, bound to a reference to its extracted value.
    let mut bindings = Vec::new();
    for (index, typed) in arguments.iter().enumerate() {
        let ty = &typed.ty;
        let arg = format_ident!("__atlas_arg{}", index);
        // Spanned at the argument's type, so a type that is no extractor is reported there.
        let at_type = private_at(ty.span());
        extractions.push(quote_spanned! {ty.span()=>
            let #arg = match <#ty as #at_type::FromRequest>::from_request(
                &__atlas_request,
                &mut __atlas_payload,
            )
            .await
            {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(error) => {
                    return #private::extraction_error(error);
                }
            };
        });
        bindings.push(binding(&typed.pat, &arg));
        arg_names.push(arg);
    }
    let features = &args.features;
    let shadow = args.shadow;
    let exclusive = args.exclusive;
    let reports_usage = args.usage.is_some() || args.reserve.is_some();
    let usage = match args.usage {
        Some(quantity) => {
            let quantity = Literal::f64_suffixed(quantity);
            quote!(::core::option::Option::Some(#quantity))
        }
        None => quote!(::core::option::Option::None),
    };
    let options = quote!(#private::GuardOptions::new(#shadow, #usage, #exclusive));
    let (tracked, checked_kinds) = match &args.checked {
        Some(checked) => {
            let kinds = checked.kinds.iter().map(|kinds| quote!(&[#(#kinds),*]));
            (Some(checked.snapshot.tracked()), quote!(&[#(#kinds),*]))
        }
        None => (None, quote!(&[])),
    };
    let check = |options: TokenStream| {
        quote! {
            let __atlas_granted = match #private::check_guard(
                &__atlas_request,
                __atlas_fingerprint,
                &[#(#features),*],
                #options,
            )
            .await
            {
                ::core::result::Result::Ok(granted) => granted,
                ::core::result::Result::Err(refusal) => return refusal,
            };
        }
    };
    // Without `quantity`, the check comes first and a denied request's extractors never run.
    // With it, the quantity is read from the arguments, so they are extracted first.
    // Like `quantity`, `reserve` reads the arguments, so they are extracted first.
    let read_from_arguments = match (&args.quantity, &args.reserve) {
        (Some(quantity), _) => Some((quantity, quote!(with_quantity))),
        (None, Some(reserve)) => Some((reserve, quote!(with_reservation))),
        (None, None) => None,
    };
    let checked = match read_from_arguments {
        None => {
            let check = check(options);
            quote! {
                #check
                #(#extractions)*
            }
        }
        Some((quantity, with)) => {
            let at_quantity = private_at(quantity.span());
            let quantity_value = quote_spanned! {quantity.span()=>
                #at_quantity::quantity(#quantity)
            };
            let check = check(quote!(#options.#with(__atlas_quantity)));
            quote! {
                #(#extractions)*
                let __atlas_quantity: f64 = {
                    #(#bindings)*
                    #quantity_value
                };
                #check
            }
        }
    };
    let respond = match output {
        ReturnType::Type(_, ty) => quote_spanned! {ty.span()=> __atlas_granted.respond},
        ReturnType::Default => quote!(__atlas_granted.respond),
    };
    quote! {
        #(#attrs)*
        #vis async fn #name(
            __atlas_request: #private::HttpRequest,
            __atlas_payload: #private::Payload,
        ) -> #private::HttpResponse {
            // Registered at link time, so the feature ids are checked against the pricing model
            // when it loads, before any request.
            #[#private::linkme::distributed_slice(#private::GUARD_SITES)]
            #[linkme(crate = #private::linkme)]
            static __ATLAS_GUARD_SITE: #private::GuardSite =
                #private::GuardSite {
                    handler: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                    features: &[#(#features),*],
                    reports_usage: #reports_usage,
                    checked_kinds: #checked_kinds,
                };
            #tracked
            async fn __atlas_handler(#inputs) #output #block
            let mut __atlas_payload = __atlas_payload.into_inner();
            // Read only for a request with an `Idempotency-Key` to a guard that bills, to bind
            // the key to the body; put back for the extractors.
            let __atlas_fingerprint = match #private::fingerprint_body(
                &__atlas_request,
                &mut __atlas_payload,
                #reports_usage,
            )
            .await
            {
                ::core::result::Result::Ok(fingerprint) => fingerprint,
                ::core::result::Result::Err(refusal) => return refusal,
            };
            #checked
            #respond(&__atlas_request, __atlas_handler(#(#arg_names),*).await).await
        }
    }
}

/// `let <pattern> = &<argument>;`, so a `quantity` expression reads the handler's arguments by
/// the names the handler gives them, without taking them. `mut` is dropped: a shared reference
/// cannot be changed.
fn binding(pattern: &Pat, argument: &syn::Ident) -> TokenStream {
    let mut pattern = pattern.clone();
    if let Pat::Ident(ident) = &mut pattern {
        ident.mutability = None;
        ident.by_ref = None;
    }
    quote! {
        #[allow(unused_variables)]
        let #pattern = &#argument;
    }
}
