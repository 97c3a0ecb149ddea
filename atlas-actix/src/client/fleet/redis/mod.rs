//! The fleet tier on Redis (feature `redis`): a shared cache under each instance's in-process
//! one, and a shared durable queue of usage events ([`stream`]).
//!
//! **The cache.** On an in-process miss, a platform read (customer, pricing model, merchant,
//! billing reads) first looks in Redis; a platform answer is written there for its TTL plus a
//! stale window, so an instance started during an outage can still serve the last known data
//! under `ServeStale`. Concurrent misses of one key across the fleet make one platform request:
//! the first instance takes a short lock, the others wait for its value (bounded), then fetch
//! themselves.
//!
//! **Invalidation without races.** Each value is stored as `<written at> <JSON>`, times taken
//! from Redis's own clock (`TIME`, inside scripts), so instances' clocks never matter. Data
//! about a customer shares one *scope* key, the merchant's data another; invalidating sets the
//! scope's time. A value written before it is no longer read, and a fetch that started before
//! it cannot write its (possibly outdated) answer afterwards: the write script refuses it.
//!
//! **Faults.** Every operation has a short timeout. Redis unreachable at start, killed, slow or
//! answering errors: the tier is skipped (checks go on from the in-process cache and the
//! platform, events to the local queue), with one warning per outage, and tried again with
//! backoff (at most every 10 s). Keys live under `atlas:<fingerprint>`, a SHA-256 of the
//! platform URL and API key: several apps share one Redis, and no key material is stored.

pub(crate) mod ledger;
pub(crate) mod lock;
pub(crate) mod stream;

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::keys;
use crate::client::retry::Backoff;
use crate::error::AtlasError;

/// Each Redis operation's deadline: the tier must never hold a check for long.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
/// While Redis fails, how long the tier is skipped before it is tried again.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
/// How long the instance fetching a key holds the fleet's lock at most.
const LOCK_FOR: Duration = Duration::from_secs(5);
/// How long the others wait for its value before fetching themselves.
const WAIT_AT_MOST: Duration = Duration::from_secs(2);
const POLL_EVERY: Duration = Duration::from_millis(15);
/// At start, how long an operation waits for the first connection attempt: an instance started
/// during a platform outage needs what the fleet knows from its very first call.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// Reads a value, its scope's invalidation time and the time now (ms, Redis's clock).
const READ: &str = r"
local t = redis.call('TIME')
return {redis.call('GET', KEYS[1]) or '', redis.call('GET', KEYS[2]) or '0',
        tostring(t[1] * 1000 + math.floor(t[2] / 1000))}";
/// Writes `<now> <json>` unless the scope was invalidated since the fetch started.
const WRITE: &str = r"
local invalidated = tonumber(redis.call('GET', KEYS[2]) or '0')
if invalidated >= tonumber(ARGV[1]) then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tostring(t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' .. ARGV[2], 'PX', ARGV[3])
return 1";
const INVALIDATE: &str = r"
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tostring(t[1] * 1000 + math.floor(t[2] / 1000)), 'PX', ARGV[1])
return 1";
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// What a tier entry is: its key and the scope that invalidates it.
#[derive(Debug, Clone)]
pub(crate) struct RedisKey {
    key: String,
    scope: String,
}

#[derive(Default)]
struct Gate {
    /// Set while Redis fails: the tier is skipped until then.
    retry_at: Option<Instant>,
    failures: u32,
}

/// The fleet tier: one per client, cheap to share.
pub(crate) struct RedisTier {
    namespace: String,
    /// Where Redis is, for logs: the URL without credentials.
    address: String,
    client: redis::Client,
    connection: OnceLock<ConnectionManager>,
    /// Set once the first connection attempt ended, connected or not.
    first_attempt: tokio::sync::watch::Sender<bool>,
    gate: Mutex<Gate>,
    /// How long values stay after their TTL, for stale-if-error.
    stale_for: Duration,
    pub(crate) events: stream::EventStream,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// Where Redis is: its address, without the URL's credentials.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The tier for the client of `api_key` at `base_url`; it connects in the background
    /// ([`connect`](Self::connect)).
    pub(crate) fn new(
        url: &str,
        base_url: &str,
        api_key: &str,
        stale_for: Duration,
        reclaim_after: Duration,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        let info = client.get_connection_info();
        let address = info.addr().to_string();
        // The platform and key the data belongs to, never the key itself.
        let namespace = format!("atlas:{}", &keys::digest(&[base_url, api_key])[..24]);
        Ok(Self {
            events: stream::EventStream::new(&namespace, reclaim_after),
            namespace,
            address,
            client,
            connection: OnceLock::new(),
            first_attempt: tokio::sync::watch::Sender::new(false),
            gate: Mutex::new(Gate::default()),
            stale_for,
        })
    }

    /// Connects, retrying with backoff until Redis answers; run on the client's I/O thread,
    /// whose runtime then drives the connection.
    pub(crate) async fn connect(&self) {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OPERATION_TIMEOUT))
            .set_response_timeout(Some(OPERATION_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let mut failures = 0;
        loop {
            match redis::aio::ConnectionManager::new_with_config(
                self.client.clone(),
                config.clone(),
            )
            .await
            {
                Ok(connection) => {
                    let _ = self.connection.set(connection);
                    self.first_attempt.send_replace(true);
                    if failures > 0 {
                        tracing::info!(redis = %self.address, "the Redis tier is connected");
                    }
                    self.events.prepare(self).await;
                    return;
                }
                Err(err) => {
                    self.first_attempt.send_replace(true);
                    if failures == 0 {
                        tracing::warn!(redis = %self.address, %err, "Redis is unreachable: going on without the fleet tier (exclusive guards and quotas held by each instance alone), and retrying");
                    }
                    actix_rt::time::sleep(RETRY.delay(failures)).await;
                    failures += 1;
                }
            }
        }
    }

    /// Whether the tier is in use: connected, and not failing.
    pub(crate) fn is_up(&self) -> bool {
        self.connection.get().is_some()
            && self
                .gate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retry_at
                .is_none()
    }

    /// Runs a Redis operation with a deadline, unless the tier is being skipped; `None` when it
    /// was skipped or failed (the first failure of an outage is logged).
    pub(crate) async fn run<T, F, Fut>(&self, operation: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.connection.get().is_none() {
            let mut attempted = self.first_attempt.subscribe();
            let _ =
                tokio::time::timeout(FIRST_CONNECTION_WAIT, attempted.wait_for(|done| *done)).await;
        }
        let connection = self.connection.get()?.clone();
        {
            let gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            if gate.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
        }
        let outcome = tokio::time::timeout(OPERATION_TIMEOUT, operation(connection)).await;
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(Ok(value)) => {
                if gate.retry_at.take().is_some() {
                    tracing::info!(redis = %self.address, "the Redis tier is back");
                }
                gate.failures = 0;
                Some(value)
            }
            Ok(Err(err)) => {
                self.failed(&mut gate, &err.to_string());
                None
            }
            Err(_) => {
                self.failed(&mut gate, "no answer in time");
                None
            }
        }
    }

    fn failed(&self, gate: &mut Gate, err: &str) {
        if gate.retry_at.is_none() {
            tracing::warn!(redis = %self.address, err, "the Redis tier failed: going on without it until it answers again (usage events to the local queue; exclusive guards and quotas held by each instance alone)");
        }
        gate.retry_at = Some(Instant::now() + RETRY.delay(gate.failures));
        gate.failures = gate.failures.saturating_add(1);
    }

    /// The key of the data of one customer (`kind` names the read, `id` the item).
    pub(crate) fn customer_key(&self, customer_id: &str, kind: &str, id: &str) -> RedisKey {
        RedisKey {
            key: format!(
                "{}:customer:{}",
                self.namespace,
                keys::compose(&[customer_id, kind, id])
            ),
            scope: self.customer_scope(customer_id),
        }
    }

    /// The scope every key of one customer's data is invalidated by.
    fn customer_scope(&self, customer_id: &str) -> String {
        format!(
            "{}:scope:customer:{}",
            self.namespace,
            keys::compose(&[customer_id])
        )
    }

    /// The key of merchant-wide data (the merchant, the pricing model, subscriptions).
    pub(crate) fn merchant_key(&self, kind: &str, id: &str) -> RedisKey {
        RedisKey {
            key: format!("{}:merchant:{}", self.namespace, keys::compose(&[kind, id])),
            scope: format!("{}:scope:merchant", self.namespace),
        }
    }

    /// Makes every instance stop reading what the tier holds about a customer.
    pub(crate) async fn invalidate_customer(&self, customer_id: &str) {
        self.invalidate(self.customer_scope(customer_id)).await;
    }

    /// Makes every instance stop reading the merchant-wide data.
    pub(crate) async fn invalidate_merchant(&self) {
        self.invalidate(format!("{}:scope:merchant", self.namespace))
            .await;
    }

    async fn invalidate(&self, scope: String) {
        let keep = self.stale_for.as_millis() as u64 + 86_400_000;
        self.run(|mut connection| async move {
            redis::Script::new(INVALIDATE)
                .key(&scope)
                .arg(keep)
                .invoke_async::<i64>(&mut connection)
                .await
        })
        .await;
    }

    /// The value (if any, and not invalidated) with its age, and Redis's time now; `None` when
    /// the tier is not available.
    async fn read<T: DeserializeOwned>(
        &self,
        key: &RedisKey,
    ) -> Option<(Option<(T, Duration)>, u64)> {
        let (stored, invalidated, now): (String, String, String) = self
            .run(|mut connection| async move {
                redis::Script::new(READ)
                    .key(&key.key)
                    .key(&key.scope)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        let now: u64 = now.parse().ok()?;
        let invalidated: u64 = invalidated.parse().unwrap_or(0);
        let value = stored.split_once(' ').and_then(|(written, json)| {
            let written: u64 = written.parse().ok()?;
            if written <= invalidated {
                return None;
            }
            let value = serde_json::from_str(json).ok()?;
            Some((value, Duration::from_millis(now.saturating_sub(written))))
        });
        Some((value, now))
    }

    async fn write<T: Serialize>(&self, key: &RedisKey, value: &T, started: u64, ttl: Duration) {
        let Ok(json) = serde_json::to_string(value) else {
            return;
        };
        // What any id that does not exist gets (the line items of an invoice that is not the
        // customer's, no such customer): not worth a key, and a caller making ids up would
        // otherwise grow Redis by one key per id.
        if json == "[]" || json == "null" {
            return;
        }
        let keep = (ttl + self.stale_for).as_millis() as u64;
        self.run(|mut connection| async move {
            redis::Script::new(WRITE)
                .key(&key.key)
                .key(&key.scope)
                .arg(started)
                .arg(json)
                .arg(keep)
                .invoke_async::<i64>(&mut connection)
                .await
        })
        .await;
    }

    /// A platform read through the tier: a fresh value from Redis, else `fetch` by one
    /// instance of the fleet at a time, its answer written for the others.
    pub(crate) async fn read_through<T, F, Fut>(
        &self,
        key: RedisKey,
        ttl: Duration,
        fetch: F,
    ) -> Result<T, AtlasError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AtlasError>>,
    {
        let Some((stored, started)) = self.read::<T>(&key).await else {
            return fetch().await;
        };
        if let Some((value, age)) = stored {
            if age < ttl {
                return Ok(value);
            }
        }
        let lock = format!("{}:lock", key.key);
        let token = uuid::Uuid::new_v4().to_string();
        let locked = self
            .run(|mut connection| {
                let (lock, token) = (lock.clone(), token.clone());
                async move {
                    redis::cmd("SET")
                        .arg(lock)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(LOCK_FOR.as_millis() as u64)
                        .query_async::<Option<String>>(&mut connection)
                        .await
                }
            })
            .await;
        if locked == Some(None) {
            // Another instance is fetching it: wait for its answer, a while.
            let deadline = Instant::now() + WAIT_AT_MOST;
            while Instant::now() < deadline {
                actix_rt::time::sleep(POLL_EVERY).await;
                match self.read::<T>(&key).await {
                    Some((Some((value, age)), _)) if age < ttl => return Ok(value),
                    Some(_) => {}
                    None => break,
                }
            }
        }
        let fetched = fetch().await;
        if let Ok(value) = &fetched {
            self.write(&key, value, started, ttl).await;
        }
        if locked == Some(Some("OK".to_owned())) {
            self.run(|mut connection| async move {
                redis::Script::new(UNLOCK)
                    .key(&lock)
                    .arg(&token)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await;
        }
        fetched
    }

    /// The value however old, within the stale window, for stale-if-error.
    pub(crate) async fn read_stale<T: DeserializeOwned>(
        &self,
        key: &RedisKey,
        max_age: Duration,
    ) -> Option<T> {
        match self.read::<T>(key).await? {
            (Some((value, age)), _) if age < max_age => Some(value),
            _ => None,
        }
    }
}
