//! The feature-id rule and typo hints, shared with the macros: this module is the very code of
//! `atlas-actix-macros/src/rules.rs` (expanded by `__rules!`), which checks the same at compile
//! time, so an id `#[requires_feature]` accepts is one `features/register` and the findings
//! accept too.

atlas_actix_macros::__rules!();
