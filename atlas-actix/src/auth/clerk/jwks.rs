//! Clerk's signing keys from its JWKS URL: fetched at start, one fetch at a time (a request
//! naming a key not known yet waits for the fetch under way instead of failing), kept while a
//! refresh fails, and fetched again after a failure with backoff.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use tokio::sync::Mutex;

use crate::client::platform::transport::tls_config;
use crate::client::retry::Backoff;

/// After a fetch, a token naming a key the JWKS did not have fetches again only this much
/// later, so made-up key ids cannot hammer the endpoint.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Attempts of one fetch.
const ATTEMPTS: u32 = 3;
/// The waits between the attempts of one fetch.
const BETWEEN_ATTEMPTS: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// After a fetch failed every attempt, the next one waits this backoff.
const AFTER_FAILURE: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// The longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The keys of one JWKS URL.
pub(crate) struct JwksKeys {
    url: String,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Held while fetching: one fetch at a time, and whoever waits finds what it brought.
    refresh: Mutex<Refresh>,
}

#[derive(Default)]
struct Refresh {
    fetched_at: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl JwksKeys {
    pub(crate) fn new(url: String) -> Arc<Self> {
        Arc::new(Self {
            url,
            keys: RwLock::new(HashMap::new()),
            refresh: Mutex::new(Refresh::default()),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the keys now, on a thread of its own (building a `ClerkAuth` needs no
    /// runtime), so the first requests find them.
    pub(crate) fn prefetch(self: &Arc<Self>) {
        let keys = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("atlas-clerk-jwks".to_owned())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    keys.fetch(None).await;
                });
            });
        if let Err(err) = started {
            tracing::warn!(%err, "could not fetch Clerk's JWKS at start; it is fetched on first use");
        }
    }

    /// The key `kid`: a known one at once, else after a fetch (this one, or the one under way).
    pub(crate) async fn key(&self, kid: &str) -> Option<DecodingKey> {
        match self.known(kid) {
            Some(key) => Some(key),
            None => self.fetch(Some(kid)).await,
        }
    }

    fn known(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the JWKS unless a fetch just did or a failure's backoff runs; the key `kid`
    /// afterwards, if it is known.
    async fn fetch(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let mut refresh = self.refresh.lock().await;
        if let Some(key) = kid.and_then(|kid| self.known(kid)) {
            return Some(key);
        }
        let now = Instant::now();
        let fresh = refresh
            .fetched_at
            .is_some_and(|at| now.duration_since(at) < REFETCH_AFTER);
        if fresh || refresh.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        match fetch_with_retries(&self.url).await {
            Ok(fetched) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fetched;
                *refresh = Refresh {
                    fetched_at: Some(Instant::now()),
                    ..Refresh::default()
                };
                kid.and_then(|kid| self.known(kid))
            }
            Err(err) => {
                refresh.failures += 1;
                let wait = AFTER_FAILURE.delay(refresh.failures - 1);
                refresh.retry_at = Some(Instant::now() + wait);
                tracing::warn!(url = %self.url, %err, ?wait, "could not fetch Clerk's JWKS; the keys already known keep working");
                None
            }
        }
    }
}

async fn fetch_with_retries(url: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let mut attempt = 0;
    loop {
        match fetch_once(url).await {
            Ok(keys) => return Ok(keys),
            Err(err) if attempt + 1 >= ATTEMPTS => return Err(err),
            Err(err) => {
                tracing::debug!(%url, %err, attempt, "fetching Clerk's JWKS failed; trying again");
                actix_rt::time::sleep(BETWEEN_ATTEMPTS.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

async fn fetch_once(url: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let tls = tls_config(&[]).map_err(|err| err.to_string())?;
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(tls))
        .timeout(ATTEMPT_TIMEOUT)
        .finish();
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let set: JwkSet = response
        .json()
        .limit(MAX_JWKS_BYTES)
        .await
        .map_err(|err| err.to_string())?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
        .collect())
}
