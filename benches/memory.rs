//! Memory: resident memory of the client with 100,000 customers cached, and bytes per cached
//! customer. The emulator runs in this process too, so its data (allocated before the first
//! measurement) is not counted, but what the allocator keeps of the serving work is: the
//! figure is an upper bound.
//!
//! `cargo bench --bench memory`

use std::time::{Duration, Instant};

use atlas_actix::emulator::{AtlasData, Emulator};
use atlas_actix::Atlas;
use futures_util::StreamExt;

const CUSTOMERS: usize = 100_000;

/// Resident memory of this process, from /proc (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    actix_rt::System::new().block_on(async {
        let mut data = AtlasData::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/atlas-data.json"
        ))
        .unwrap();
        let template = data
            .customers
            .iter()
            .find(|c| c.external_id == "user_erin")
            .unwrap()
            .clone();
        for i in 0..CUSTOMERS {
            let mut customer = template.clone();
            customer.id = format!("cus_mem_{i}");
            customer.external_id = format!("mem_{i}");
            data.customers.push(customer);
        }
        let emulator = Emulator::start(data).unwrap();
        let atlas = Atlas::builder()
            .base_url(emulator.url())
            .api_key(emulator.api_key())
            .push_invalidation(false)
            .customer_ttl(Duration::from_secs(3600))
            .cache_capacity(CUSTOMERS + CUSTOMERS / 10)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        atlas.status().await.unwrap();
        let before = resident_bytes();
        let start = Instant::now();
        let fetched = futures_util::stream::iter(0..CUSTOMERS)
            .map(|i| {
                let atlas = atlas.clone();
                async move { atlas.customer(&format!("mem_{i}"), None).await }
            })
            .buffer_unordered(256)
            .filter(|result| std::future::ready(result.is_ok()))
            .count()
            .await;
        let filled = start.elapsed();
        let after = resident_bytes();
        // A second pass must be served from the cache: the customers are all still there.
        let start = Instant::now();
        for i in 0..CUSTOMERS {
            atlas.customer(&format!("mem_{i}"), None).await.unwrap();
        }
        let warm = start.elapsed();
        println!(
            "cache capacity: {} entries per cache",
            CUSTOMERS + CUSTOMERS / 10
        );
        println!(
            "customers fetched and cached: {fetched} in {:.1} s",
            filled.as_secs_f64()
        );
        println!(
            "resident memory: {:.1} MiB before, {:.1} MiB after: +{:.1} MiB",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            (after - before) as f64 / 1048576.0
        );
        println!(
            "bytes per cached customer: {}",
            (after - before) / fetched as u64
        );
        println!(
            "100,000 warm look-ups: {:.1} ms ({:.0} ns each)",
            warm.as_secs_f64() * 1000.0,
            warm.as_nanos() as f64 / CUSTOMERS as f64
        );
    });
}
