//! Atlas (runonatlas.com) pricing, entitlements and usage billing for Actix Web.
//!
//! - [`models`]: the platform's JSON objects as Rust types.
//! - [`emulator`] (feature `emulator`): a local Atlas platform for tests and development.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "emulator")]
pub mod emulator;
pub mod models;
