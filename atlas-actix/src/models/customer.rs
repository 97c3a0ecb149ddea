use serde::{Deserialize, Serialize};

use super::Extra;

/// A customer with its subscriptions and balances, as
/// `GET /external/customers/external-id/{id}/with-active-and-upcoming-subscriptions` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Customer {
    /// Internal Atlas id; usage events name the customer by it.
    pub id: String,
    /// The id the app knows the customer by (a user or organisation id).
    pub external_id: String,
    /// Email, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subscriptions in force. The platform does not filter out those whose `endDate` has
    /// passed: see [`Subscription::is_valid_at`].
    #[serde(default, deserialize_with = "super::exact_vec")]
    pub active_subscriptions: Vec<Subscription>,
    /// Subscriptions that start later (a scheduled downgrade, say).
    #[serde(default, deserialize_with = "super::exact_vec")]
    pub upcoming_subscriptions: Vec<Subscription>,
    /// Per subscription and usage-based feature: whether the customer may go on using it.
    #[serde(default, deserialize_with = "super::exact_vec")]
    pub conditional_billable_access: Vec<BillableAccess>,
    /// Balances in the merchant's credit currencies.
    #[serde(default, deserialize_with = "super::exact_vec")]
    pub custom_pricing_units: Vec<CustomerBalance>,
    /// Private plans this customer may see and buy.
    #[serde(default, deserialize_with = "super::exact_vec")]
    pub customer_private_plans: Vec<PrivatePlan>,
    /// Fields this type does not name (`status`, `merchantId`, dates, `stripeId`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Customer {
    /// Active and upcoming subscriptions, in that order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.active_subscriptions
            .iter()
            .chain(&self.upcoming_subscriptions)
    }

    /// A copy with what the entitlement rules read, for a projection they evaluate and
    /// nothing shows (the customer once its pending usage counts): without the `extra` fields,
    /// contact details, private plans and plan summaries. Cloning those maps of JSON values
    /// was most of what a quota check cost.
    pub(crate) fn rules_copy(&self) -> Self {
        let subscription = |s: &Subscription| Subscription {
            id: s.id.clone(),
            allow_customer_changes: s.allow_customer_changes,
            status: s.status.clone(),
            start_date: s.start_date.clone(),
            end_date: s.end_date.clone(),
            plan_id: s.plan_id.clone(),
            plan: None,
            extra: Extra::default(),
        };
        Self {
            id: self.id.clone(),
            external_id: self.external_id.clone(),
            email: None,
            name: None,
            active_subscriptions: self.active_subscriptions.iter().map(subscription).collect(),
            upcoming_subscriptions: self
                .upcoming_subscriptions
                .iter()
                .map(subscription)
                .collect(),
            conditional_billable_access: self
                .conditional_billable_access
                .iter()
                .map(|entry| BillableAccess {
                    billable_id: entry.billable_id.clone(),
                    subscription_id: entry.subscription_id.clone(),
                    access: entry.access,
                    current_usage: entry.current_usage,
                    extra: Extra::default(),
                })
                .collect(),
            custom_pricing_units: self
                .custom_pricing_units
                .iter()
                .map(|balance| CustomerBalance {
                    custom_pricing_unit_id: balance.custom_pricing_unit_id.clone(),
                    balance: balance.balance,
                    extra: Extra::default(),
                })
                .collect(),
            customer_private_plans: Vec::new(),
            extra: Extra::default(),
        }
    }

    /// The customer's balance in a credit currency (0 when it has none).
    pub fn balance(&self, unit_id: &str) -> f64 {
        self.custom_pricing_units
            .iter()
            .find(|b| b.custom_pricing_unit_id == unit_id)
            .map_or(0.0, |b| b.balance)
    }

    /// Counts `units` of usage on the access entry of `billable_id` in `subscription` (made
    /// when the customer has none yet), which loses its access once `max_usage` is reached, as
    /// the platform's aggregation does. Answers the usage now counted.
    pub(crate) fn count_usage(
        &mut self,
        subscription: &str,
        billable_id: &str,
        max_usage: Option<f64>,
        units: f64,
    ) -> f64 {
        let access = self.access_entry(subscription, billable_id);
        let usage = access.current_usage.unwrap_or(0.0) + units;
        access.current_usage = Some(usage);
        if max_usage.is_some_and(|max| usage >= max) {
            access.access = Some(false);
        }
        usage
    }

    /// The access entry of `billable_id` in `subscription`, made (with access and no usage)
    /// when the customer has none yet.
    pub(crate) fn access_entry(
        &mut self,
        subscription: &str,
        billable_id: &str,
    ) -> &mut BillableAccess {
        let at = match self
            .conditional_billable_access
            .iter()
            .position(|a| a.subscription_id == subscription && a.billable_id == billable_id)
        {
            Some(at) => at,
            None => {
                self.conditional_billable_access.push(BillableAccess {
                    billable_id: billable_id.to_owned(),
                    subscription_id: subscription.to_owned(),
                    access: Some(true),
                    current_usage: Some(0.0),
                    extra: Default::default(),
                });
                self.conditional_billable_access.len() - 1
            }
        };
        &mut self.conditional_billable_access[at]
    }

    /// Takes `units` off the balance of credit `unit` (made at zero when the customer has
    /// none): below zero too, as overage does. Answers the balance left.
    pub(crate) fn spend_credits(&mut self, unit: &str, units: f64) -> f64 {
        let balance = self.balance_entry(unit);
        balance.balance -= units;
        balance.balance
    }

    /// The customer's balance entry of credit `unit`, made at zero when it has none.
    pub(crate) fn balance_entry(&mut self, unit: &str) -> &mut CustomerBalance {
        let at = match self
            .custom_pricing_units
            .iter()
            .position(|b| b.custom_pricing_unit_id == unit)
        {
            Some(at) => at,
            None => {
                self.custom_pricing_units.push(CustomerBalance {
                    custom_pricing_unit_id: unit.to_owned(),
                    balance: 0.0,
                    extra: Default::default(),
                });
                self.custom_pricing_units.len() - 1
            }
        };
        &mut self.custom_pricing_units[at]
    }

    /// About the bytes this customer holds, for caches bounded in bytes: its own size, its
    /// lists' and strings' heap (each allocation counted at least 16 bytes, as allocators
    /// round up).
    pub(crate) fn footprint(&self) -> usize {
        fn text(text: &str) -> usize {
            if text.is_empty() {
                0
            } else {
                text.len().max(16)
            }
        }
        fn list<T>(items: &[T], each: impl Fn(&T) -> usize) -> usize {
            std::mem::size_of_val(items) + items.iter().map(each).sum::<usize>()
        }
        let optional = |value: &Option<String>| value.as_deref().map_or(0, text);
        let subscription = |s: &Subscription| {
            text(&s.id)
                + text(&s.plan_id)
                + optional(&s.status)
                + optional(&s.start_date)
                + optional(&s.end_date)
                + s.plan.as_ref().map_or(0, |plan| {
                    std::mem::size_of::<SubscriptionPlan>()
                        + text(&plan.id)
                        + optional(&plan.name)
                        + plan.extra.heap_size()
                })
                + s.extra.heap_size()
        };
        std::mem::size_of::<Self>()
            + text(&self.id)
            + text(&self.external_id)
            + optional(&self.email)
            + optional(&self.name)
            + list(&self.active_subscriptions, subscription)
            + list(&self.upcoming_subscriptions, subscription)
            + list(&self.conditional_billable_access, |a| {
                text(&a.billable_id) + text(&a.subscription_id) + a.extra.heap_size()
            })
            + list(&self.custom_pricing_units, |b| {
                text(&b.custom_pricing_unit_id) + b.extra.heap_size()
            })
            + list(&self.customer_private_plans, |p| {
                text(&p.plan_id) + p.extra.heap_size()
            })
            + self.extra.heap_size()
    }

    /// Whether this customer may see and buy a private plan.
    pub fn has_private_plan(&self, plan_id: &str) -> bool {
        self.customer_private_plans
            .iter()
            .any(|p| p.plan_id == plan_id)
    }
}

/// A customer's subscription to a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Subscription {
    /// Subscription id.
    pub id: String,
    /// Whether the customer may change or cancel it from the app; only an explicit `false`
    /// forbids it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_customer_changes: Option<bool>,
    /// `active`, `ended`, `pendingActivation`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When it started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// When it ends (ISO-8601), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// The plan subscribed to.
    pub plan_id: String,
    /// A summary of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<SubscriptionPlan>,
    /// Fields this type does not name (`customerId`, `merchantId`, `isTrial`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Subscription {
    /// Whether the subscription is in force at `now`: it has no end date (absent or empty, as
    /// the official client's `!endDate`), or one after `now`, read as JavaScript's `Date` reads
    /// it (dates alone, offsets without a colon, minutes without seconds; a date-time without
    /// an offset is UTC). An end date that cannot be read is not in force: it never grants
    /// (`new Date(text) > now` is false for it in the official client too).
    pub fn is_valid_at(&self, now: time::OffsetDateTime) -> bool {
        match self.end_date.as_deref() {
            None | Some("") => true,
            Some(end) => super::date::parse_instant(end).is_some_and(|end| end > now),
        }
    }
}

/// The plan summary inside a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SubscriptionPlan {
    /// Plan id.
    pub id: String,
    /// Plan name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Whether a customer may use a usage-based feature under a subscription, and how much it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BillableAccess {
    /// The [`Entitlement::id`](super::Entitlement::id) of the feature.
    pub billable_id: String,
    /// The subscription it applies to.
    pub subscription_id: String,
    /// `Some(false)` when the customer has used up what it may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<bool>,
    /// Usage in the current period.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub current_usage: Option<f64>,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A customer's balance in one credit currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CustomerBalance {
    /// The [`CustomPricingUnit::id`](super::CustomPricingUnit::id).
    pub custom_pricing_unit_id: String,
    /// Credits left; may be negative after overage.
    #[serde(default, serialize_with = "super::number::serialize")]
    pub balance: f64,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A private plan offered to one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PrivatePlan {
    /// The plan's id.
    pub plan_id: String,
    /// Fields this type does not name.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Customer details sent when the platform creates a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CustomerInfo {
    /// The customer's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The customer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CustomerInfo {
    /// No details: the platform creates the customer with its id alone.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the customer's email.
    #[must_use]
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// With the customer's name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}
