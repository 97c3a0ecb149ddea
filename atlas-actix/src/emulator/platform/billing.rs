//! Billing reads: invoices, their line items, credit transactions and credit usage.

use serde_json::{json, Value};

use super::query::{paginate, sort_by};
use super::{to_value, ApiError, Platform, Query, Reply};
use crate::emulator::reply::json_number;
use crate::models::{Invoice, InvoiceLineItem};

impl Platform {
    pub(crate) fn credit_usage(
        &self,
        customer_key: &str,
        unit_id: &str,
    ) -> Result<Reply, ApiError> {
        let customer = self
            .customer(customer_key)
            .or_else(|| self.customers.iter().find(|c| c.id == customer_key))
            .ok_or_else(|| ApiError::not_found("Customer not found"))?;
        if let Some(given) = self
            .credit_usage
            .get(&customer.external_id)
            .and_then(|units| units.get(unit_id))
        {
            return Reply::ok(given);
        }
        let unit = self
            .pricing_model
            .custom_pricing_unit(unit_id)
            .ok_or_else(|| ApiError::not_found("Custom pricing unit not found"))?;
        let balance = customer.balance(unit_id);
        Reply::ok(json!({
            "customPricingUnitId": unit_id,
            "displayName": unit.display_name,
            "totalAllocated": json_number(balance.max(0.0)),
            "totalUsed": 0,
            "remaining": json_number(balance),
            "nextExpiring": null,
        }))
    }

    /// The customer's invoices, each with an amount (the sum of its line items when absent).
    pub(super) fn invoices_of(&self, external_id: &str) -> Vec<Invoice> {
        let Some(invoices) = self.invoices.get(external_id) else {
            return Vec::new();
        };
        invoices
            .iter()
            .map(|invoice| {
                let mut invoice = invoice.clone();
                if invoice.amount.is_none() {
                    let items = self
                        .line_items
                        .get(&invoice.id)
                        .map_or(&[][..], Vec::as_slice);
                    invoice.amount = Some(items.iter().filter_map(|item| item.amount).sum());
                }
                invoice
            })
            .collect()
    }

    pub(crate) fn invoices(&self, query: &Query) -> Result<Reply, ApiError> {
        let external_id = query.required("customer.externalId")?;
        let excluded: Vec<Value> = match query.get("statusNotInList") {
            None => Vec::new(),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|_| ApiError::bad_request("statusNotInList must be a JSON array"))?,
        };
        let invoices: Vec<Value> = self
            .invoices_of(external_id)
            .into_iter()
            .filter(|invoice| {
                let status = invoice.status.clone().map_or(Value::Null, Value::String);
                !excluded.contains(&status)
            })
            .map(to_value)
            .collect();
        Reply::ok(paginate(sort_by(invoices, query)?, query)?)
    }

    pub(crate) fn line_items(&self, query: &Query) -> Result<Reply, ApiError> {
        let invoice_id = query.required("invoiceId")?;
        let external_id = query.required("customer.externalId")?;
        let Some(invoice) = self
            .invoices_of(external_id)
            .into_iter()
            .find(|i| i.id == invoice_id)
        else {
            return Reply::ok(json!([]));
        };
        let items: Vec<InvoiceLineItem> = self
            .line_items
            .get(invoice_id)
            .into_iter()
            .flatten()
            .map(|item| {
                let mut item = item.clone();
                item.invoice.get_or_insert_with(|| invoice.clone());
                item
            })
            .collect();
        Reply::ok(items)
    }

    pub(crate) fn transactions(&self, query: &Query) -> Result<Reply, ApiError> {
        let external_id = query.required("allocationBlock.customer.externalId")?;
        let items = self
            .transactions
            .get(external_id)
            .into_iter()
            .flatten()
            .map(to_value)
            .collect();
        Reply::ok(paginate(sort_by(items, query)?, query)?)
    }
}
