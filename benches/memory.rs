//! Memory of the client, in a process that runs nothing else: the emulator runs in a child
//! process (this same binary, started with `--emulator`), so its data is not counted.
//!
//! 1. Beyond the bound: a cache of 10,000 entries, 60,000 distinct customers checked one
//!    after the other; resident memory every 10,000. Once the cache is full it must stay flat:
//!    nothing but the caches keeps per-customer state. (First, so the allocator has no freed
//!    memory of the second part to hide growth in.)
//! 2. 100,000 customers cached: resident memory and bytes per cached customer.
//!
//! `cargo bench --bench memory`

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atlas_actix::emulator::{AtlasData, Emulator};
use atlas_actix::Atlas;
use futures_util::StreamExt;

const CUSTOMERS: usize = 100_000;
const BOUNDED_CAPACITY: usize = 10_000;
const BEYOND: usize = 60_000;

/// Resident memory of this process, from /proc (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// The child: an emulator with the example data and `CUSTOMERS` more customers; prints its
/// URL and key, then serves until its input closes.
fn serve_emulator() {
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
    println!("{} {}", emulator.url(), emulator.api_key());
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_line(&mut String::new());
}

fn client(url: &str, key: &str, capacity: usize) -> Atlas {
    Atlas::builder()
        .base_url(url)
        .api_key(key)
        .push_invalidation(false)
        .customer_ttl(Duration::from_secs(3600))
        .cache_capacity(capacity)
        // Bounded by entries here: the byte bound is tested on its own.
        .cache_max_bytes(u64::MAX / 2)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn fetch_all(atlas: &Atlas, ids: impl Iterator<Item = String>) -> usize {
    futures_util::stream::iter(ids)
        .map(|id| {
            let atlas = atlas.clone();
            async move { atlas.customer(&id, None).await }
        })
        .buffer_unordered(256)
        .filter(|result| std::future::ready(result.is_ok()))
        .count()
        .await
}

fn main() {
    if std::env::args().any(|arg| arg == "--emulator") {
        return serve_emulator();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--emulator")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the emulator process starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (url, key) = line.trim().split_once(' ').unwrap();

    actix_rt::System::new().block_on(async {
        let atlas = client(url, key, BOUNDED_CAPACITY);
        atlas.status().await.unwrap();
        println!("1. cache capacity {BOUNDED_CAPACITY} entries, {BEYOND} distinct customers");
        let start = resident_bytes();
        println!("   resident memory at start: {:.1} MiB", mib(start));
        for round in 0..BEYOND / BOUNDED_CAPACITY {
            let from = round * BOUNDED_CAPACITY;
            let ids = (from..from + BOUNDED_CAPACITY).map(|i| format!("mem_{i}"));
            fetch_all(&atlas, ids).await;
            println!(
                "   after {:>6} customers: {:.1} MiB",
                from + BOUNDED_CAPACITY,
                mib(resident_bytes())
            );
        }
        atlas.shutdown().await.unwrap();
        drop(atlas);

        let atlas = client(url, key, CUSTOMERS + CUSTOMERS / 10);
        atlas.status().await.unwrap();
        let before = resident_bytes();
        let start = Instant::now();
        let fetched = fetch_all(&atlas, (0..CUSTOMERS).map(|i| format!("mem_{i}"))).await;
        let filled = start.elapsed();
        let after = resident_bytes();
        // A second pass must be served from the cache: the customers are all still there.
        let start = Instant::now();
        for i in 0..CUSTOMERS {
            atlas.customer(&format!("mem_{i}"), None).await.unwrap();
        }
        let warm = start.elapsed();
        println!(
            "2. cache capacity {} entries per cache",
            CUSTOMERS + CUSTOMERS / 10
        );
        println!(
            "   customers fetched and cached: {fetched} in {:.1} s",
            filled.as_secs_f64()
        );
        println!(
            "   resident memory: {:.1} MiB before, {:.1} MiB after: +{:.1} MiB",
            mib(before),
            mib(after),
            mib(after - before)
        );
        println!(
            "   bytes per cached customer: {}",
            (after - before) / fetched as u64
        );
        println!(
            "   100,000 warm look-ups: {:.1} ms ({:.0} ns each)",
            warm.as_secs_f64() * 1000.0,
            warm.as_nanos() as f64 / CUSTOMERS as f64
        );
        atlas.shutdown().await.unwrap();
    });
    drop(child.stdin.take());
    let _ = child.wait();
}
