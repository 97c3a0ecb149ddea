//! Usage and reports: usage events (queued, flushed in batches), feature registrations and SDK
//! version reports, each bounded.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::client::hooks::UsageStage;
use crate::client::keys;
use crate::client::telemetry;
use crate::client::{AtlasClient, UsageOptions};
use crate::entitlements::quota::quota_of;
use crate::entitlements::usage_event_name;
use crate::error::AtlasError;
use crate::models::{iso, now_iso, EventData, UsageEvent};

/// The SDK's name in the platform's SDK version reports.
pub(super) const SDK_LIBRARY: &str = "actix";
/// The most distinct SDK versions reported in a process's life: there are a few SDKs, each
/// at one version, so more is a caller making them up.
const MAX_SDK_VERSIONS: usize = 16;
/// The most feature ids registered at one platform request, far below its body limit.
const REGISTRATION_CHUNK: usize = 100;

impl AtlasClient {
    /// Queues a usage event for each feature the customer has that reports usage
    /// (usage-based and credit-based ones; others are skipped), sent in batches by the
    /// background flusher. Returns once queued. `quantity` must be finite and above zero.
    pub async fn enqueue<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
        quantity: f64,
    ) -> Result<(), AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.enqueue_with(
            customer_id,
            feature_ids,
            UsageOptions::new().quantity(quantity),
        )
        .await
    }

    /// Queues usage as [`enqueue`](Self::enqueue) does, with the caller's options: a quantity
    /// (default 1, as the official client), an idempotency key so that a job the app retries
    /// bills once, and the time the usage happened.
    ///
    /// With a key, the event of a single feature carries it as it is; with several features,
    /// each event carries `<key>:<feature id>`. The platform counts an event once per key.
    ///
    /// ```no_run
    /// # async fn demo(atlas: atlas_actix::AtlasClient) -> Result<(), atlas_actix::AtlasError> {
    /// use atlas_actix::UsageOptions;
    ///
    /// let usage = UsageOptions::new().quantity(1200.0).idempotency_key("job-7f3a-attempt");
    /// atlas.enqueue_with("org_42", ["ai-tokens"], usage).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_with<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
        usage: UsageOptions,
    ) -> Result<(), AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let feature_ids: Vec<S> = feature_ids.into_iter().collect();
        let events = self.usage_events(customer_id, &feature_ids, &usage).await?;
        // Counted before it is queued, so that the platform's acceptance finds it.
        self.count_pending(customer_id, &feature_ids, &events).await;
        let queued = self.queue_usage(customer_id, events.clone()).await;
        if queued.is_err() {
            self.forget_pending(&events).await;
        }
        queued
    }

    /// Usage counted as pending that could not be queued: it will never be counted.
    pub(crate) async fn forget_pending(&self, events: &[UsageEvent]) {
        self.inner.pending.refused(events).await;
    }

    /// Usage queued without a check's hold counts against the quota features' pending usage
    /// like held usage does, until the platform counts it.
    async fn count_pending<S: AsRef<str>>(
        &self,
        customer_id: &str,
        features: &[S],
        events: &[UsageEvent],
    ) {
        let (Some(customer), Some(model)) = (
            self.inner.customers.latest(&customer_id.to_owned()),
            self.inner.pricing_model.latest(&()),
        ) else {
            return;
        };
        let now = time::OffsetDateTime::now_utc();
        for feature in features.iter().map(AsRef::as_ref) {
            if quota_of(&customer, &model, now, feature).is_none() {
                continue;
            }
            let name = usage_event_name(&customer, &model, now, feature);
            if let Some(event) = events
                .iter()
                .find(|event| Some(event.event_name.as_str()) == name)
            {
                self.inner
                    .pending
                    .report(customer_id, feature, None, event)
                    .await;
            }
        }
    }

    /// The usage events `enqueue_with` would queue, built now: what a guard prepares before
    /// the handler runs, so that the usage of work done never depends on reaching the
    /// platform afterwards. During an outage they are built from the last customer and
    /// pricing model this instance or the fleet knew, however old (billing follows the plan
    /// the customer had); with neither, the outage is the answer. Refused with
    /// [`AtlasError::QueueFull`] when the queue has no room for them.
    pub(crate) async fn usage_events<I, S>(
        &self,
        customer_id: &str,
        feature_ids: I,
        usage: &UsageOptions,
    ) -> Result<Vec<UsageEvent>, AtlasError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        usage.check()?;
        let feature_ids: Vec<S> = feature_ids.into_iter().collect();
        let fetched = async {
            let customer = self.customer(customer_id, None).await?;
            Ok::<_, AtlasError>((customer, self.fetch_pricing_model().await?))
        };
        let (customer, model) = match fetched.await {
            Err(err) if err.is_outage() => {
                match self.stale_data(customer_id, Duration::MAX).await {
                    Some((customer, model, _)) => {
                        tracing::warn!(customer = ?customer_id, %err, "Atlas unavailable: usage events built from the last known customer and pricing model");
                        (customer, model)
                    }
                    None => return Err(err),
                }
            }
            other => other?,
        };
        let now = time::OffsetDateTime::now_utc();
        let reported: Vec<(&str, &str)> = feature_ids
            .iter()
            .filter_map(|slug| {
                usage_event_name(&customer, &model, now, slug.as_ref())
                    .map(|event_name| (slug.as_ref(), event_name))
            })
            .collect();
        let generated_at = usage.at.map_or_else(now_iso, iso);
        let several = reported.len() > 1;
        let events: Vec<UsageEvent> = reported
            .into_iter()
            .map(|(feature, event_name)| UsageEvent {
                customer_id: customer.id.clone(),
                event_name: event_name.to_owned(),
                generated_at: generated_at.clone(),
                idempotency_key: match &usage.idempotency_key {
                    // One key per feature, never one another list of parts makes.
                    Some(key) if several => keys::digest(&[key, feature]),
                    Some(key) => key.clone(),
                    None => keys::random_key(),
                },
                data: EventData {
                    quantity: usage.quantity,
                    extra: Default::default(),
                },
                extra: Default::default(),
            })
            .collect();
        self.inner.events.check_room(events.len())?;
        Ok(events)
    }

    /// Queues events built by [`usage_events`](Self::usage_events): on the fleet's stream,
    /// else in this instance's queue (and spool).
    pub(crate) async fn queue_usage(
        &self,
        customer_id: &str,
        events: Vec<UsageEvent>,
    ) -> Result<(), AtlasError> {
        if events.is_empty() {
            return Ok(());
        }
        if self.inner.fleet.append_events(&events).await {
            // On the fleet's stream, the events are as good as sent.
            self.inner.hooks.usage(&events, || UsageStage::Streamed);
            self.inner.pending.accepted(&events).await;
            return Ok(());
        }
        let count = events.len();
        self.inner.events.push(events).await.inspect_err(|err| {
            tracing::error!(customer = ?customer_id, %err, count, "usage events refused");
        })
    }

    /// Sends every queued usage event now, after a flush under way, and returns once the
    /// platform accepted them. With the Redis tier, events queued locally while Redis was
    /// unavailable move to the fleet's stream, and the stream is drained.
    pub async fn flush(&self) -> Result<(), AtlasError> {
        let api = &self.inner.api;
        let shared = &self.inner.fleet;
        let pending = &self.inner.pending;
        let hooks = &self.inner.hooks;
        self.inner
            .events
            .flush(|batch| async move {
                let streamed = shared.append_events(&batch).await;
                let sent = if streamed {
                    Ok(())
                } else {
                    api.send_events(&batch).await
                };
                if sent.is_ok() {
                    if streamed {
                        hooks.usage(&batch, || UsageStage::Streamed);
                    } else {
                        telemetry::events_sent(batch.len());
                        hooks.usage(&batch, || UsageStage::Sent);
                    }
                }
                match &sent {
                    Ok(()) => pending.accepted(&batch).await,
                    // A refused event alone is set aside: it will never count.
                    Err(AtlasError::Rejected { .. }) if batch.len() == 1 => {
                        pending.refused(&batch).await
                    }
                    Err(_) => {}
                }
                sent
            })
            .await?;
        shared.drain(api, hooks, usize::MAX).await.map(drop)
    }

    /// Sends the pending registrations, in requests well under the platform's body limit. A
    /// chunk the platform refuses (4xx) is dropped with an error log: sending it again would
    /// be refused again, forever.
    pub(super) async fn send_registrations(&self) -> Result<(), AtlasError> {
        let slugs = self.inner.registrations.take();
        if let Some(model) = self.inner.pricing_model.latest(&()) {
            // As the official client: a registered feature the pricing model does not configure
            // is most likely a typo, or a feature to add in the dashboard.
            for slug in slugs
                .iter()
                .filter(|slug| !model.entitlements.iter().any(|e| &e.slug == *slug))
            {
                tracing::warn!(feature = ?slug, "a feature registered with Atlas is not configured in the pricing model");
            }
        }
        let mut chunks = slugs.chunks(REGISTRATION_CHUNK);
        while let Some(chunk) = chunks.next() {
            match self.inner.api.register_features(chunk).await {
                Ok(()) => {
                    tracing::debug!(features = ?chunk, "features registered with Atlas");
                }
                Err(AtlasError::Rejected { status, message }) => {
                    tracing::error!(status, message = ?message, features = ?chunk, "the Atlas platform refused a feature registration; not retrying it");
                }
                Err(err) => {
                    let unsent = chunk.iter().chain(chunks.flatten()).cloned().collect();
                    self.inner.registrations.put_back(unsent);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Reports an SDK's version to the platform, once per library and version (the scope's
    /// `sdk-version` route relays the frontend's).
    ///
    /// At most 16 distinct versions are reported in a process's life; later ones are
    /// ignored, with one warning, so a caller making versions up cannot turn them into
    /// platform calls.
    pub fn report_sdk_version(&self, library: &str, version: &str) {
        {
            let mut reported = self
                .inner
                .sdk_versions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (library.to_owned(), version.to_owned());
            if reported.contains(&key) {
                return;
            }
            if reported.len() >= MAX_SDK_VERSIONS {
                if reported.len() == MAX_SDK_VERSIONS {
                    tracing::warn!(
                        library = ?library,
                        version = ?version,
                        "more SDK versions than any app has were reported; ignoring this and later ones"
                    );
                    // One more entry marks the warning as given.
                    reported.insert(key);
                }
                return;
            }
            reported.insert(key);
        }
        let api = Arc::clone(&self.inner.api);
        let (library, version) = (library.to_owned(), version.to_owned());
        self.transport().spawn(move || async move {
            if let Err(err) = api.report_sdk_version(&library, &version).await {
                tracing::warn!(library = ?library, version = ?version, %err, "could not report the SDK version to Atlas");
            }
        });
    }

    /// Notes features the frontend checks, for the platform's dashboard (sent debounced).
    ///
    /// The ids come from callers the app does not control (the scope's `features/register`
    /// relays the browser's), so their number is bounded: past 1,000 ids in a process's life,
    /// only ids of the pricing model's features are still taken.
    pub fn register_features<I, S>(&self, features: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let features: Vec<S> = features.into_iter().collect();
        let model = self.inner.pricing_model.latest(&());
        let in_model = |slug: &str| {
            model
                .as_ref()
                .is_some_and(|model| model.entitlements.iter().any(|e| e.slug == slug))
        };
        self.inner.registrations.register_requested(
            features.iter().map(AsRef::as_ref).filter(|f| !f.is_empty()),
            in_model,
        );
    }

    /// Number of usage events queued and not yet accepted by the platform.
    pub fn queued_events(&self) -> usize {
        self.inner.events.len()
    }
}
