//! The platform's JSON objects as typed Rust values.
//!
//! Every type here matches what the Atlas platform sends and receives (camelCase JSON) and
//! keeps the fields it does not name in an `extra` map, so an object read from the platform or
//! from a data file is written back unchanged: the platform adds fields freely, and the
//! frontend reads some that the SDK never looks at.

mod billing;
mod customer;
mod event;
mod pricing;

pub use billing::{CheckoutSession, CreditUsage, Invoice, InvoiceLineItem, Page, Transaction};
pub use customer::{
    BillableAccess, Customer, CustomerBalance, PrivatePlan, Subscription, SubscriptionPlan,
};
pub use event::{EventData, UsageEvent};
pub use pricing::{
    CustomPricingUnit, Entitlement, EntitlementPrice, Merchant, Plan, PlanEntitlement, PlanPrice,
    PriceKind, PricingModel,
};

/// Fields of a platform object that its Rust type does not name, kept as they came.
pub type Extra = serde_json::Map<String, serde_json::Value>;
