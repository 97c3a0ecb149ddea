//! Generating the macros' code.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Pat, PatType};

use crate::parse::LimitArgs;

pub(crate) fn limit(args: LimitArgs) -> TokenStream {
    let LimitArgs {
        builder,
        feature,
        mut callback,
    } = args;
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
    let callback =
        quote_spanned! {callback.span()=> ::atlas_actix::__private::limit_callback(#callback)};
    quote! {
        ::atlas_actix::__private::register_limit(#builder, #feature, #callback)
    }
}
