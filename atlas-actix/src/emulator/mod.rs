//! A local Atlas platform, for tests, examples and development without network or API key,
//! as stripe-mock and the Firebase emulators serve their users. Needs the `emulator` feature.
//!
//! It is seeded from an [`AtlasData`] file (merchant, pricing model, customers with their
//! subscriptions, invoices, line items, transactions, credit usage) and serves:
//!
//! - the platform API the SDK calls, `/external/*`, with the behaviour of the real platform:
//!   subscribing to a free plan activates it; subscribing to a paid plan answers a checkout
//!   session whose `url` is a page of the emulator that completes the purchase when visited;
//!   cancel, renew, customer creation; usage events deduplicated by idempotency key, as a
//!   billing platform must. Every request needs the `x-api-key` header (401 otherwise). Bad
//!   input answers a 4xx with `{"error": ...}`.
//! - checkout pages, `GET /__checkout/{id}`, which need no key (a browser visits them).
//! - an admin API, `/__admin/*`, which needs no key: **never expose it**; the emulator binds
//!   127.0.0.1 unless told otherwise.
//!
//! | admin route | does |
//! |---|---|
//! | `GET /__admin/events` | usage events received, in order (a repeated idempotency key is stored once) |
//! | `GET /__admin/registrations` | feature slugs registered, in order |
//! | `GET /__admin/sdk-versions` | SDK versions reported |
//! | `GET /__admin/customers` | every customer in its current state |
//! | `PUT /__admin/customers/{externalId}` | shallow-merges the body into the customer (created when absent); pushes nothing |
//! | `POST /__admin/invalidate` | `{"customer": id}`, `{"plans": true}` or `{"merchant": true}`: sends that push |
//! | `GET /__admin/requests` | requests received per `"METHOD /route/:template"` |
//! | `POST /__admin/reset` | reloads the data file and forgets everything else |
//! | `POST /__admin/faults` | injects a [`Fault`]: the next requests answer an error, late, or not JSON |
//! | `GET /__admin/faults`, `DELETE /__admin/faults` | lists, clears the faults |
//!
//! In-process, from Rust:
//!
//! ```no_run
//! use atlas_actix::emulator::Emulator;
//!
//! let emulator = Emulator::from_file("examples/atlas-data.json")?.start()?;
//! println!("Atlas platform at {} (key {})", emulator.url(), emulator.api_key());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! As a program: `ATLAS_FIXTURE=examples/atlas-data.json cargo run -p atlas-actix --features
//! emulator --bin atlas-emulator` prints `listening <port>` once it accepts connections.

mod data;
mod faults;
mod platform;
mod reply;
mod router;
mod server;
mod shared;
mod socketio;

pub use data::{AtlasData, DataFileError};
pub use faults::Fault;
pub use platform::Push;
pub use server::{Emulator, EmulatorBuilder, EmulatorHandle};
