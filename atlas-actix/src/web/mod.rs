//! The web layer: everything that speaks Actix Web. [`Atlas`](atlas::Atlas) (the client plus
//! the web settings) and its builder; the `/atlas-api` scope the React SDK calls; the guards
//! (`#[requires_feature]`, `RequireFeatures`, `Entitlements`) with their denials and exclusive
//! locks; cross-site checks and rate limits; probes; and, in one place, the HTTP answer of
//! every error.

pub(crate) mod absent;
pub(crate) mod atlas;
pub(crate) mod builder;
pub(crate) mod csrf;
pub(crate) mod error_response;
pub(crate) mod guard;
pub mod probes;
pub(crate) mod scope;
pub(crate) mod throttle;
