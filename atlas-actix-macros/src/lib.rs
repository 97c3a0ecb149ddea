//! Procedural macros of [`atlas-actix`](https://docs.rs/atlas-actix).
//!
//! Use them through `atlas-actix`, which re-exports them; this crate has no public items yet.
