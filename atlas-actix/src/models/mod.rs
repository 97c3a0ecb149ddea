//! The platform's JSON objects as typed Rust values.
//!
//! Every type here matches what the Atlas platform sends and receives (camelCase JSON) and
//! keeps the fields it does not name in `extra` (an [`Extra`], compact), so an object read from the platform or
//! from a data file is written back unchanged: the platform adds fields freely, and the
//! frontend reads some that the SDK never looks at.

mod billing;
mod customer;
mod date;
mod event;
mod extra;
mod pricing;
pub(crate) mod push;

pub use billing::{CheckoutSession, CreditUsage, Invoice, InvoiceLineItem, Page, Transaction};
pub use customer::{
    BillableAccess, Customer, CustomerBalance, CustomerInfo, PrivatePlan, Subscription,
    SubscriptionPlan,
};
pub use event::{EventData, UsageEvent};
pub use extra::Extra;
pub use pricing::{
    CustomPricingUnit, Entitlement, EntitlementPrice, Merchant, Plan, PlanEntitlement, PlanPrice,
    PriceKind, PricingModel,
};
pub use push::Push;

/// The time now as the platform writes dates: `2024-01-15T08:30:00.000Z`.
pub(crate) fn now_iso() -> String {
    iso(time::OffsetDateTime::now_utc())
}

/// A time as the platform writes dates, in UTC: `2024-01-15T08:30:00.000Z`.
pub(crate) fn iso(at: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    // Formatting a UTC date with these fields cannot fail.
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_default()
}

/// Reads a list into a vector of exactly its length: serde grows vectors by doubling, so a
/// customer's one subscription would otherwise hold the room of four, in every cached
/// customer.
pub(crate) fn exact_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let mut items = <Vec<T> as serde::Deserialize>::deserialize(deserializer)?;
    items.shrink_to_fit();
    Ok(items)
}

/// Writes whole numbers held as `f64` without a fraction (`29`, not `29.0`), so numbers read
/// from the platform are written back as they came.
pub(crate) mod number {
    use serde::Serializer;

    // 2^53: every integer up to here is exact in an f64.
    const EXACT: f64 = 9_007_199_254_740_992.0;

    pub(crate) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.fract() == 0.0 && value.abs() <= EXACT {
            // In range and whole: the cast is exact.
            #[allow(clippy::cast_possible_truncation)]
            serializer.serialize_i64(*value as i64)
        } else {
            serializer.serialize_f64(*value)
        }
    }

    pub(crate) fn serialize_option<S: Serializer>(
        value: &Option<f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }
}
