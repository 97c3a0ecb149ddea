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
//!
//! # The data file
//!
//! One JSON object; every object may carry more fields than these, which the emulator serves
//! back unchanged.
//!
//! | key | holds |
//! |---|---|
//! | `apiKey` | the key the platform accepts in `x-api-key` (`ATLAS_API_KEY` overrides it) |
//! | `merchant` | `mode` (`test`/`live`), `isStripeConfigured`, `trialDurationInDays`, `defaultPlanId` (the plan a cancellation falls back to), `id` |
//! | `pricingModel.entitlements` | the features: `id` (internal, named by plans and usage events) and `slug` (the id the code checks, such as `seats`) |
//! | `pricingModel.plans` | `id`, `name`, `status` (`available` plans are public), `entitlements`: the grants, below |
//! | `customers` | `id`, `externalId` (the app's user or organisation id), `activeSubscriptions` and `upcomingSubscriptions` (`id`, `planId`, `startDate`, `endDate`, `allowCustomerChanges`, `customerId`), `conditionalBillableAccess` (usage-based access: `billableId`, `subscriptionId`, `access`, `currentUsage`), `customPricingUnits` (credit balances: `customPricingUnitId`, `balance`) |
//! | `invoices`, `transactions`, `creditUsage` | by customer `externalId` (credit usage then by unit id); `invoiceLineItems` by invoice id |
//! | `metering` | optional, `{"delayMs": N}`: usage events move usage and balances (below) |
//!
//! Without `metering`, usage events are stored (`GET /__admin/events`) and change nothing, as
//! the conformance fixtures expect. With `{"delayMs": N}`, each event stored (after
//! de-duplication by idempotency key) is applied N ms after it arrived, as the platform's
//! aggregation would: for a usage-based feature, the `conditionalBillableAccess` entry of the
//! customer's subscription that grants it (made when missing) gets `currentUsage += quantity`
//! and `updatedAt`, and `access: false` once its `maxUsage` is reached; for a credit-based
//! feature, the balance of its unit in `customPricingUnits` goes down by the quantity (below
//! zero too, as overage does), and the `creditUsage` figures `totalUsed` and `remaining` follow.
//! Then `invalidateCustomer` is pushed, and `GET /__admin/customers` shows the metered state.
//!
//! A grant is `{"id": <entitlement id>, "included": bool}` plus what makes it more than on/off;
//! the feature's type follows from its price:
//!
//! | grant | type | allowed when |
//! |---|---|---|
//! | no `price` | on/off | `included` |
//! | `price` of `unit` or `tier`, no `customPricingUnitId` | usage-based (report usage) | the customer's access entry does not say `access: false`; `maxUsage` caps a quantity |
//! | `price` with a `customPricingUnitId` | credit-based (report usage) | credits are left, when `blockOverage` |
//! | another `price` (`none`, `fixed`) and a `limit` | limit (the app counts with `limit!`) | the count is below `limit` |
//!
//! Loading refuses a file whose references lead nowhere (a plan granting an undefined feature,
//! a subscription to a missing plan or listed under another customer, invoices of an unknown
//! customer), naming the file, the line and the id. A minimal file with two plans:
//!
//! ```
//! use atlas_actix::emulator::{AtlasData, Emulator};
//!
//! let data = AtlasData::from_json(r#"{
//!   "apiKey": "sk_test_two_plans",
//!   "merchant": {"id": "mer_1", "mode": "test", "isStripeConfigured": true,
//!                "trialDurationInDays": 0, "defaultPlanId": "plan_free"},
//!   "pricingModel": {
//!     "entitlements": [
//!       {"id": "ent_reports", "slug": "reports"},
//!       {"id": "ent_seats", "slug": "seats"},
//!       {"id": "ent_calls", "slug": "api-calls"}
//!     ],
//!     "plans": [
//!       {"id": "plan_free", "name": "Free", "status": "available",
//!        "entitlements": [
//!          {"id": "ent_seats", "included": true, "limit": 1, "price": {"priceType": "none"}},
//!          {"id": "ent_calls", "included": true, "maxUsage": 1000,
//!           "price": {"priceType": "unit", "price": 0}}
//!        ]},
//!       {"id": "plan_pro", "name": "Pro", "status": "available",
//!        "entitlements": [
//!          {"id": "ent_reports", "included": true},
//!          {"id": "ent_seats", "included": true, "limit": 10, "price": {"priceType": "none"}},
//!          {"id": "ent_calls", "included": true,
//!           "price": {"priceType": "unit", "price": 0.001}}
//!        ]}
//!     ]
//!   },
//!   "customers": [
//!     {"id": "cus_ada", "externalId": "user_ada", "name": "Ada",
//!      "activeSubscriptions": [
//!        {"id": "sub_ada", "planId": "plan_pro", "customerId": "cus_ada",
//!         "startDate": "2026-01-01T00:00:00.000Z", "endDate": null,
//!         "allowCustomerChanges": true}
//!      ]},
//!     {"id": "cus_bob", "externalId": "user_bob", "name": "Bob",
//!      "activeSubscriptions": [
//!        {"id": "sub_bob", "planId": "plan_free", "customerId": "cus_bob",
//!         "startDate": "2026-01-01T00:00:00.000Z", "endDate": null,
//!         "allowCustomerChanges": true}
//!      ]}
//!   ]
//! }"#)?;
//! let platform = Emulator::start(data)?;
//! # actix_web::rt::System::new().block_on(async {
//! let atlas = atlas_actix::Atlas::builder()
//!     .base_url(platform.url())
//!     .api_key(platform.api_key())
//!     .build()?;
//! assert!(atlas.allowed("user_ada", ["reports", "api-calls"]).await?.ok);
//! assert!(!atlas.allowed("user_bob", ["reports"]).await?.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod data;
mod faults;
mod platform;
mod recorded;
mod reply;
mod router;
mod server;
mod socketio;
mod state;

pub use crate::models::Push;
pub use data::{AtlasData, DataFileError, Metering};
pub use faults::Fault;
pub use recorded::RecordedUsage;
pub use server::{Emulator, EmulatorBuilder, EmulatorError, EmulatorHandle};
