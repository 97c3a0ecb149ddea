//! The workspace's integration tests, in one binary (each `tests/*.rs` file would be a link of
//! its own, slow on small machines).

mod clerk;
mod client;
mod common;
mod emulator;
mod guard;
mod push;
mod scope;
mod tls;
