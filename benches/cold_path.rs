//! The cold path: first requests, which must go upstream. 1,000 concurrent first checks for
//! one customer (coalesced into one customer request), and first checks for 1,000 distinct
//! customers; the upstream requests are counted by the emulator.
//!
//! `cargo bench --bench cold_path`

use std::time::{Duration, Instant};

use atlas_actix::emulator::Emulator;
use atlas_actix::Atlas;
use futures_util::future::join_all;

const CUSTOMER_ROUTE: &str =
    "GET /external/customers/external-id/:id/with-active-and-upcoming-subscriptions";

async fn upstream(emulator: &str) -> serde_json::Value {
    let mut response = awc::Client::default()
        .get(format!("{emulator}/__admin/requests"))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    actix_rt::System::new().block_on(async {
        let data = atlas_actix::emulator::AtlasData::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/atlas-data.json")).unwrap();
        let emulator = Emulator::start(data).unwrap();
        let atlas = Atlas::builder()
            .base_url(emulator.url())
            .api_key(emulator.api_key())
            .push_invalidation(false)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        atlas.status().await.unwrap();

        let start = Instant::now();
        let checks = (0..1000).map(|_| atlas.allowed("org_standard_corp", ["data-explorer"]));
        let answers = join_all(checks).await;
        let one_customer = start.elapsed();
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.ok)));
        let counts = upstream(emulator.url()).await;
        println!(
            "1,000 concurrent first checks of one customer: {:.1} ms, {} customer request(s) upstream",
            one_customer.as_secs_f64() * 1000.0,
            counts[CUSTOMER_ROUTE]
        );

        let start = Instant::now();
        let ids: Vec<String> = (0..1000).map(|i| format!("cold_{i}")).collect();
        let checks = ids.iter().map(|id| atlas.allowed(id, ["data-explorer"]));
        let answers = join_all(checks).await;
        let distinct = start.elapsed();
        assert!(answers.iter().all(Result::is_ok));
        let counts = upstream(emulator.url()).await;
        println!(
            "first checks of 1,000 distinct (new) customers, all at once: {:.1} ms, {} customer look-ups and {} creations upstream",
            distinct.as_secs_f64() * 1000.0,
            counts[CUSTOMER_ROUTE].as_u64().unwrap_or(0) - 1,
            counts["POST /external/customers"]
        );
    });
}
