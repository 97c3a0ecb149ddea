//! The workspace's integration tests, in one binary (each `tests/*.rs` file would be a link of
//! its own, slow on small machines).

mod attacks;
mod audit;
mod clerk;
mod cli;
mod client;
mod cold_path;
mod common;
mod crash;
mod demo_page;
mod emulator;
mod fleet;
mod fleet_limits;
mod guard;
mod layers;
mod misconfiguration;
mod observability;
mod outage;
mod push;
mod quotas;
mod reasons;
mod redis_server;
mod scope;
mod security;
mod tls;
