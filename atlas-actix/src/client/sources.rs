//! Where a check's customer and pricing model come from: the cache, or on a miss the fleet's
//! tier or the platform, with one fetch per key however many callers miss at once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::client::fleet::FleetKey;
use crate::client::hooks::Provenance;
use crate::client::{check_id, AtlasClient};
use crate::error::AtlasError;
use crate::models::{Customer, CustomerInfo, PricingModel};

/// Where a customer came from, as its fetch saw it.
const WAITED: u8 = 0;
const FROM_TIER: u8 = 1;
const FROM_PLATFORM: u8 = 2;

impl AtlasClient {
    /// The customer's details, created on the platform (with `info`) when it has none.
    pub async fn customer(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<Arc<Customer>, AtlasError> {
        self.customer_sourced(customer_id, info, &mut Instant::now())
            .await
            .map(|(customer, _)| customer)
    }

    /// The customer, and where it came from: the cache (with its age), the fleet's Redis tier,
    /// or the platform (for this call, or a concurrent one it waited for). The cache is read
    /// at `clock`, the caller's reading of the clock, which a wait (for initialisation, for a
    /// fetch) moves on to its end.
    pub(super) async fn customer_sourced(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
        clock: &mut Instant,
    ) -> Result<(Arc<Customer>, Provenance), AtlasError> {
        check_id("customer id", customer_id)?;
        let initialising = !self.inner.ready.load(Ordering::Acquire);
        self.ensure_ready().await?;
        if initialising {
            // The wait for initialisation moved the clock on.
            *clock = Instant::now();
        }
        if let Some((customer, age)) = self.inner.customers.get_fresh_aged(customer_id, *clock) {
            let age_ms = age.as_millis() as u64;
            return Ok((customer, Provenance::Cached { age_ms }));
        }
        if let Some((customer, age)) = self.inner.customers.get_revalidating(customer_id) {
            let age_ms = age.as_millis() as u64;
            return Ok((customer, Provenance::Revalidating { age_ms }));
        }
        // Boxed: a cache miss is rare, and its fetch inline would grow every check's future
        // (a few KB, allocated and moved per request) for the hits.
        let fetched = Box::pin(self.fetch_customer(customer_id, info)).await;
        *clock = Instant::now();
        fetched
    }

    /// A cache miss: the customer from the fleet's tier or the platform, created there when
    /// the platform does not know it; one fetch however many callers miss at once.
    async fn fetch_customer(
        &self,
        customer_id: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<(Arc<Customer>, Provenance), AtlasError> {
        let api = Arc::clone(&self.inner.api);
        let shared = Arc::clone(&self.inner.fleet);
        let external_id = customer_id.to_owned();
        let info = info.cloned().unwrap_or_default();
        let ttl = self.inner.customers.ttl();
        // Set by this call's fetch: from the tier unless it reached the platform. Left unset
        // when a concurrent call's fetch answered.
        let source = Arc::new(AtomicU8::new(WAITED));
        let fetched = Arc::clone(&source);
        let customer = self
            .inner
            .customers
            .get_or_fetch(customer_id.to_owned(), move || async move {
                fetched.store(FROM_TIER, Ordering::Relaxed);
                let key = FleetKey::customer(&external_id, "customer", "");
                shared
                    .read_through(key, ttl, || async {
                        fetched.store(FROM_PLATFORM, Ordering::Relaxed);
                        if let Some(customer) = api.customer(&external_id).await? {
                            return Ok(customer);
                        }
                        tracing::info!(customer = ?external_id, "creating the customer on the Atlas platform");
                        api.create_customer(&external_id, &info).await
                    })
                    .await
            })
            .await?;
        let provenance = match source.load(Ordering::Relaxed) {
            FROM_TIER if self.inner.fleet.is_shared() => Provenance::Fleet,
            _ => Provenance::Fetched,
        };
        Ok((customer, provenance))
    }

    pub(super) async fn fetch_pricing_model(&self) -> Result<Arc<PricingModel>, AtlasError> {
        self.pricing_model_at(&mut Instant::now()).await
    }

    /// The pricing model, the cache read at `clock` (as [`customer_sourced`] reads it).
    ///
    /// [`customer_sourced`]: Self::customer_sourced
    pub(super) async fn pricing_model_at(
        &self,
        clock: &mut Instant,
    ) -> Result<Arc<PricingModel>, AtlasError> {
        if let Some((model, _)) = self.inner.pricing_model.get_fresh_aged(&(), *clock) {
            return Ok(model);
        }
        let api = Arc::clone(&self.inner.api);
        let shared = Arc::clone(&self.inner.fleet);
        let ttl = self.inner.pricing_model.ttl();
        // Boxed, as a customer's fetch is.
        let fetched = Box::pin(
            self.inner
                .pricing_model
                .get_or_fetch((), move || async move {
                    shared
                        .read_through(FleetKey::merchant("pricing_model", ""), ttl, || {
                            api.pricing_model()
                        })
                        .await
                }),
        )
        .await;
        *clock = Instant::now();
        fetched
    }

    /// The merchant's whole pricing model.
    pub async fn pricing_model(&self) -> Result<Arc<PricingModel>, AtlasError> {
        self.status().await?;
        self.fetch_pricing_model().await
    }
}
