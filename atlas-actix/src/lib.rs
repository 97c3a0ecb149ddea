//! Atlas (runonatlas.com) pricing, entitlements and usage billing for Actix Web.
//!
//! - [`Atlas`]: the platform client — entitlement checks ([`Atlas::allowed`],
//!   [`Atlas::features`]), customers, plans, subscriptions, invoices, usage events — with
//!   bounded caches, request coalescing and retries.
//! - [`entitlements`]: the entitlement rules as pure functions.
//! - [`models`]: the platform's JSON objects as Rust types.
//! - [`emulator`] (feature `emulator`): a local Atlas platform for tests and development.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod cache;
mod client;
mod config;
pub mod entitlements;
mod error;
mod events;
mod limits;
mod registration;

#[cfg(feature = "emulator")]
pub mod emulator;
pub mod models;

pub use client::transport::Backoff;
pub use client::{
    Allowed, Atlas, BillingCadence, CancelType, CustomerInfo, Pagination, Status, SubscribeRequest,
};
pub use config::{AtlasBuilder, DEFAULT_PLATFORM_URL};
pub use entitlements::{CustomerFeature, FeatureType};
pub use error::{AtlasError, BuildError};
pub use limits::{IntoUsage, LimitError};
