//! Billing: invoices, line items, transactions, subscriptions and credit usage (cached
//! reads), subscription changes, payment methods, and forgetting what changed.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::client::cache::Cache;
use crate::client::fleet::FleetKey;
use crate::client::platform::api::{Pagination, PlatformApi};
use crate::client::{check_id, AtlasClient, CancelType, ChangeOptions, SubscribeRequest};
use crate::error::AtlasError;
use crate::models::{
    CheckoutSession, CreditUsage, CustomerInfo, Invoice, InvoiceLineItem, Page, Subscription,
    Transaction,
};

impl AtlasClient {
    /// A billing read through its cache, once the client is initialised: `fetch` runs with the
    /// platform API and the key on a miss, shared by every concurrent caller of the same key,
    /// and, with a `shared` key, by the fleet's instances.
    async fn cached_read<K, V, F, Fut>(
        &self,
        cache: &Cache<K, V>,
        key: K,
        shared: Option<FleetKey>,
        fetch: F,
    ) -> Result<Arc<V>, AtlasError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(Arc<PlatformApi>, K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, AtlasError>> + Send + 'static,
    {
        self.status().await?;
        let api = Arc::clone(&self.inner.api);
        let fleet = Arc::clone(&self.inner.fleet);
        let fetched_key = key.clone();
        let ttl = cache.ttl();
        cache
            .get_or_fetch(key, move || async move {
                match shared {
                    Some(shared) => {
                        fleet
                            .read_through(shared, ttl, || fetch(api, fetched_key))
                            .await
                    }
                    None => fetch(api, fetched_key).await,
                }
            })
            .await
    }

    /// The customer's invoices (void and paused ones left out), a page of them: the
    /// pagination's `page` from 1 (default 1), `page_size` items (default 10), in the
    /// platform's order (the ordering options are for transactions). All are fetched once and
    /// cached.
    pub async fn invoices(
        &self,
        customer_id: &str,
        pagination: &Pagination,
    ) -> Result<Page<Invoice>, AtlasError> {
        check_id("customer id", customer_id)?;
        let invoices = self
            .cached_read(
                &self.inner.invoices,
                customer_id.to_owned(),
                Some(FleetKey::customer(customer_id, "invoices", "")),
                |api, id| async move { api.invoices(&id).await },
            )
            .await?;
        Ok(paginate(&invoices, pagination.page, pagination.page_size))
    }

    /// The line items of one of the customer's invoices (empty when the invoice is not the
    /// customer's).
    pub async fn invoice_line_items(
        &self,
        customer_id: &str,
        invoice_id: &str,
    ) -> Result<Arc<Vec<InvoiceLineItem>>, AtlasError> {
        check_id("customer id", customer_id)?;
        check_id("invoice id", invoice_id)?;
        let key = (customer_id.to_owned(), invoice_id.to_owned());
        self.cached_read(
            &self.inner.line_items,
            key,
            Some(FleetKey::customer(customer_id, "line_items", invoice_id)),
            |api, (id, invoice)| async move { api.line_items(&id, &invoice).await },
        )
        .await
    }

    /// The customer's credit transactions, a page of them.
    pub async fn transactions(
        &self,
        customer_id: &str,
        pagination: &Pagination,
    ) -> Result<Page<Transaction>, AtlasError> {
        check_id("customer id", customer_id)?;
        self.status().await?;
        self.inner.api.transactions(customer_id, pagination).await
    }

    /// A subscription, with its plan. Any customer's: check ownership before showing it to a
    /// user (the Atlas scope does).
    pub async fn subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Arc<Subscription>, AtlasError> {
        check_id("subscription id", subscription_id)?;
        let key = subscription_id.to_owned();
        // Not shared: any customer's change forgets every cached subscription.
        self.cached_read(&self.inner.subscriptions, key, None, |api, id| async move {
            api.subscription(&id).await
        })
        .await
    }

    /// The customer's usage of a credit currency.
    pub async fn credit_usage(
        &self,
        customer_id: &str,
        unit_id: &str,
    ) -> Result<Arc<CreditUsage>, AtlasError> {
        check_id("customer id", customer_id)?;
        check_id("custom pricing unit id", unit_id)?;
        let key = (customer_id.to_owned(), unit_id.to_owned());
        self.cached_read(
            &self.inner.credit_usage,
            key,
            Some(FleetKey::customer(customer_id, "credit_usage", unit_id)),
            |api, (id, unit)| async move { api.credit_usage(&id, &unit).await },
        )
        .await
    }

    /// Checks that none of the customer's subscriptions forbids changes by the customer,
    /// unless the change is the app's own.
    pub(super) async fn check_changes_allowed(
        &self,
        customer_id: &str,
        changes: ChangeOptions,
    ) -> Result<(), AtlasError> {
        let customer = self.customer(customer_id, None).await?;
        if changes.ignore_allow_subscription_changes {
            return Ok(());
        }
        // As the official client: only an explicit `allowCustomerChanges: true` allows.
        if customer
            .subscriptions()
            .all(|subscription| subscription.allow_customer_changes == Some(true))
        {
            Ok(())
        } else {
            Err(AtlasError::SubscriptionChangesNotAllowed)
        }
    }

    /// Subscribes the customer to a plan: a checkout session to send the customer to, or, when
    /// no payment is needed (a free plan, a downgrade), `{url: success_url}`.
    pub async fn subscribe(
        &self,
        customer_id: &str,
        plan_id: &str,
        request: &SubscribeRequest,
    ) -> Result<CheckoutSession, AtlasError> {
        check_id("plan id", plan_id)?;
        self.check_changes_allowed(customer_id, request.changes)
            .await?;
        let body = json!({
            "billingCadence": request.billing_cadence,
            "email": request.email,
            "id": customer_id,
            "name": request.name,
            "successUrl": request.success_url,
        });
        let result = self.inner.api.subscribe(plan_id, body).await;
        // The customer may change before the checkout completes: refetch it next time.
        self.invalidate_customer(customer_id);
        result
    }

    /// Cancels one of the customer's subscriptions.
    pub async fn cancel_subscription(
        &self,
        customer_id: &str,
        subscription_id: &str,
        kind: CancelType,
    ) -> Result<(), AtlasError> {
        self.cancel_subscription_with(customer_id, subscription_id, kind, ChangeOptions::default())
            .await
    }

    /// Cancels one of the customer's subscriptions, as the app itself (a back office) may:
    /// see [`ChangeOptions`].
    pub async fn cancel_subscription_with(
        &self,
        customer_id: &str,
        subscription_id: &str,
        kind: CancelType,
        changes: ChangeOptions,
    ) -> Result<(), AtlasError> {
        check_id("subscription id", subscription_id)?;
        self.check_changes_allowed(customer_id, changes).await?;
        let body = json!({"externalCustomerId": customer_id, "type": kind});
        let result = self.inner.api.cancel(subscription_id, body).await;
        self.invalidate_customer(customer_id);
        result
    }

    /// Renews one of the customer's subscriptions that was set to end.
    pub async fn renew_subscription(
        &self,
        customer_id: &str,
        subscription_id: &str,
    ) -> Result<Subscription, AtlasError> {
        self.renew_subscription_with(customer_id, subscription_id, ChangeOptions::default())
            .await
    }

    /// Renews one of the customer's subscriptions, as the app itself (a back office) may:
    /// see [`ChangeOptions`].
    pub async fn renew_subscription_with(
        &self,
        customer_id: &str,
        subscription_id: &str,
        changes: ChangeOptions,
    ) -> Result<Subscription, AtlasError> {
        check_id("subscription id", subscription_id)?;
        self.check_changes_allowed(customer_id, changes).await?;
        let body = json!({"externalCustomerId": customer_id});
        let result = self.inner.api.renew(subscription_id, body).await;
        self.invalidate_customer(customer_id);
        result
    }

    /// A checkout session in which the customer sets a new payment method.
    pub async fn update_payment_method(
        &self,
        customer_id: &str,
        success_url: &str,
        info: Option<&CustomerInfo>,
    ) -> Result<CheckoutSession, AtlasError> {
        check_id("customer id", customer_id)?;
        self.status().await?;
        let info = info.cloned().unwrap_or_default();
        let body = json!({"email": info.email, "name": info.name, "successUrl": success_url});
        self.inner.api.payment_method(customer_id, body).await
    }

    /// Forgets what is cached about the customer (details, invoices, line items, credit
    /// usage, subscriptions): the next call refetches it, and every call waits for it.
    pub fn invalidate_customer(&self, customer_id: &str) {
        self.inner.customers.invalidate(&customer_id.to_owned());
        self.forget_customer_details(customer_id);
    }

    /// What a push that the customer changed does: as
    /// [`invalidate_customer`](Self::invalidate_customer), except that while the first check
    /// after it refetches the customer, checks that come meanwhile (within the push
    /// revalidation grace) are answered from the customer as it was before the push.
    pub(crate) fn revalidate_customer(&self, customer_id: &str) {
        let grace = self.inner.push_revalidation;
        self.inner
            .customers
            .revalidate(&customer_id.to_owned(), grace);
        self.forget_customer_details(customer_id);
    }

    fn forget_customer_details(&self, customer_id: &str) {
        let inner = &self.inner;
        inner.invoices.invalidate(&customer_id.to_owned());
        inner
            .line_items
            .invalidate_where(|(customer, _)| customer == customer_id);
        inner
            .credit_usage
            .invalidate_where(|(customer, _)| customer == customer_id);
        inner.subscriptions.invalidate_all();
        if inner.fleet.state().is_some() {
            let shared = Arc::clone(&inner.fleet);
            let customer_id = customer_id.to_owned();
            self.transport().spawn(move || async move {
                shared.invalidate_customer(&customer_id).await;
            });
        }
    }

    /// Forgets the cached pricing model: the next call refetches it.
    pub fn invalidate_plans(&self) {
        self.inner.pricing_model.invalidate(&());
        if self.inner.fleet.state().is_some() {
            let shared = Arc::clone(&self.inner.fleet);
            self.transport().spawn(move || async move {
                shared.invalidate_merchant().await;
            });
        }
    }
}

/// A page of `items`: `page` from 1 (default 1), `page_size` items (default 10).
fn paginate<T: Clone>(items: &[T], page: Option<u32>, page_size: Option<u32>) -> Page<T> {
    let page = page.filter(|p| *p > 0).unwrap_or(1);
    let page_size = page_size.filter(|s| *s > 0).unwrap_or(10);
    let start = (page as usize - 1).saturating_mul(page_size as usize);
    Page {
        results: items
            .iter()
            .skip(start)
            .take(page_size as usize)
            .cloned()
            .collect(),
        count: items.len() as u64,
        pages: (items.len() as u64).div_ceil(u64::from(page_size)),
        current_page: u64::from(page),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn paginates_locally() {
        let items: Vec<u32> = (1..=23).collect();
        let page = paginate(&items, Some(3), Some(10));
        assert_eq!(page.results, [21, 22, 23]);
        assert_eq!((page.count, page.pages, page.current_page), (23, 3, 3));
        let default = paginate(&items, None, Some(0));
        assert_eq!(default.results.len(), 10);
        assert_eq!(default.current_page, 1);
        assert!(paginate(&items, Some(9), None).results.is_empty());
    }
}
