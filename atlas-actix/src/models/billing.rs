use serde::{Deserialize, Serialize};

use super::Extra;

/// An invoice (`GET /external/invoices/amounts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Invoice {
    /// Invoice id.
    pub id: String,
    /// `draft`, `open`, `paid`, `void`, `paused`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Total amount; the platform fills it in from the line items when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub amount: Option<f64>,
    /// Fields this type does not name (dates, `vanityId`, `subscriptionId`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A line of an invoice (`GET /external/invoiceLineItems/expanded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InvoiceLineItem {
    /// Line item id.
    pub id: String,
    /// Amount of the line.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::number::serialize_option"
    )]
    pub amount: Option<f64>,
    /// The invoice the line belongs to, as the expanded listing adds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<Invoice>,
    /// Fields this type does not name (`description`, `price`, `details`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A movement of a credit balance (`GET /external/transactions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Transaction {
    /// Transaction id.
    pub id: String,
    /// Fields this type does not name (`amount`, `type`, balances, `allocationBlock`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// How a customer has used a credit currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreditUsage {
    /// The credit currency.
    pub custom_pricing_unit_id: String,
    /// Fields this type does not name (`displayName`, `totalAllocated`, `totalUsed`,
    /// `remaining`, `nextExpiring`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Page<T> {
    /// The items of this page.
    pub results: Vec<T>,
    /// Number of items in all pages.
    pub count: u64,
    /// Number of pages.
    pub pages: u64,
    /// This page's number, from 1.
    pub current_page: u64,
}

/// A Stripe checkout session, or the `{url}` the platform answers when no checkout is needed.
/// Send the customer's browser to [`url`](Self::url) either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckoutSession {
    /// Where the customer goes next.
    pub url: String,
    /// Session id (absent when no checkout is needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Stripe's other fields (`mode`, `status`, `success_url`, `amount_total`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}
