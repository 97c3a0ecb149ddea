use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::models::{
    CreditUsage, Customer, Invoice, InvoiceLineItem, Merchant, PricingModel, Transaction,
};

/// The state of an Atlas platform: what the emulator serves, read from an "Atlas data file"
/// (the format of the conformance fixtures). Other top-level keys, such as a fixture's
/// `scenario`, are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtlasData {
    /// The API key the platform accepts in `x-api-key`.
    pub api_key: String,
    /// The merchant; its `id` becomes the `merchantId` of what the emulator creates.
    pub merchant: Merchant,
    /// Plans and features.
    pub pricing_model: PricingModel,
    /// Customers exactly as the platform returns them.
    pub customers: Vec<Customer>,
    /// Invoices by customer external id, in listing order.
    #[serde(default)]
    pub invoices: HashMap<String, Vec<Invoice>>,
    /// Line items by invoice id.
    #[serde(default)]
    pub invoice_line_items: HashMap<String, Vec<InvoiceLineItem>>,
    /// Credit transactions by customer external id, in listing order.
    #[serde(default)]
    pub transactions: HashMap<String, Vec<Transaction>>,
    /// Credit usage by customer external id, then by custom pricing unit id.
    #[serde(default)]
    pub credit_usage: HashMap<String, HashMap<String, CreditUsage>>,
    /// Usage metering: absent, usage events are stored and change nothing; present, each is
    /// applied to the customer's usage or credits after the delay, as the platform aggregates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metering: Option<Metering>,
}

/// How the emulator meters usage events (the data file's `"metering"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metering {
    /// How long after it arrives an event is applied, in milliseconds.
    pub delay_ms: u64,
}

/// Why a data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or not of the data file's shape.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The data is well-formed but inconsistent.
    #[error("{origin}: {problems}")]
    Invalid {
        /// The file, or `<inline data>`.
        origin: String,
        /// Every problem found, separated by `; `.
        problems: String,
    },
}

impl AtlasData {
    /// Reads and checks a data file. Errors name the file, and the line and column where the
    /// JSON or its shape is wrong.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DataFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DataFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The sample data file shipped with the crate (the quickstart's): a merchant with Free, Pro
    /// and Team plans, on/off, limit, usage- and credit-based features, individual users
    /// (`user_dave` on Free, `user_erin` on Pro, ...) and an organisation, Standard Corp
    /// (`org_standard_corp`), whose members share its plan.
    ///
    /// ```
    /// let data = atlas_actix::emulator::AtlasData::sample();
    /// let platform = atlas_actix::emulator::Emulator::start(data)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sample() -> Self {
        const SAMPLE: &str = include_str!("../../data/atlas-data.json");
        // Checked by this crate's tests: a sample that does not parse never ships.
        Self::parse(SAMPLE, Path::new("atlas-actix/data/atlas-data.json"))
            .unwrap_or_else(|err| unreachable!("the shipped sample data is valid: {err}"))
    }

    /// Parses and checks a data file's text; errors name it `<inline data>`.
    pub fn from_json(text: &str) -> Result<Self, DataFileError> {
        Self::parse(text, Path::new("<inline data>"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self, DataFileError> {
        let data: Self = serde_json::from_str(text).map_err(|err| DataFileError::Parse {
            path: path.to_owned(),
            line: err.line(),
            column: err.column(),
            message: strip_position(&err.to_string()),
        })?;
        data.check(&path.display().to_string(), text)?;
        Ok(data)
    }

    /// Checks what the types cannot: a non-empty key, unique customer external ids, and that
    /// every reference leads somewhere (a plan's grant to a feature, a subscription to a plan
    /// and to its customer, invoices and credit data to a customer), each broken one named
    /// with its line in `text`. A conformance fixture (a file with a top-level `scenario`)
    /// breaks references on purpose, to test the SDK: those are logged, not refused.
    pub(crate) fn check(&self, origin: &str, text: &str) -> Result<(), DataFileError> {
        let mut problems = Vec::new();
        let broken = self.broken_references(text);
        let fixture = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .is_ok_and(|top| top.contains_key("scenario"));
        if fixture {
            for reference in &broken {
                tracing::warn!(file = %origin, "{reference} (kept: the file is a conformance fixture)");
            }
        } else {
            problems.extend(broken);
        }
        if self.api_key.is_empty() {
            problems.push("apiKey must be a non-empty string".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, customer) in self.customers.iter().enumerate() {
            if !seen.insert(customer.external_id.as_str()) {
                problems.push(format!(
                    "customers[{i}]: duplicate externalId {:?}",
                    customer.external_id
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DataFileError::Invalid {
                origin: origin.to_owned(),
                problems: problems.join("; "),
            })
        }
    }
}

impl AtlasData {
    /// Every reference that leads nowhere, as `line N: ...`.
    fn broken_references(&self, text: &str) -> Vec<String> {
        let mut broken = Vec::new();
        let model = &self.pricing_model;
        for plan in &model.plans {
            for grant in &plan.entitlements {
                if model.entitlement(&grant.id).is_none() {
                    broken.push(format!(
                        "line {}: plan {:?} grants {:?}, which pricingModel.entitlements does not define",
                        line_of(text, &plan.id, &grant.id),
                        plan.id,
                        grant.id
                    ));
                }
            }
        }
        for customer in &self.customers {
            for subscription in customer.subscriptions() {
                if model.plan(&subscription.plan_id).is_none() {
                    broken.push(format!(
                        "line {}: subscription {:?} of customer {:?} is to plan {:?}, which pricingModel.plans does not have",
                        line_of(text, &subscription.id, &subscription.plan_id),
                        subscription.id,
                        customer.external_id,
                        subscription.plan_id
                    ));
                }
                let owner = subscription.extra.get("customerId");
                let owner = owner.as_ref().and_then(|id| id.as_str());
                if let Some(owner) = owner.filter(|owner| *owner != customer.id) {
                    broken.push(format!(
                        "line {}: subscription {:?} is listed under customer {:?} but names customerId {owner:?}",
                        line_of(text, &subscription.id, owner),
                        subscription.id,
                        customer.id
                    ));
                }
            }
        }
        let known = |external_id: &str| self.customers.iter().any(|c| c.external_id == external_id);
        for (section, keys) in [
            ("invoices", self.invoices.keys().collect::<Vec<_>>()),
            ("transactions", self.transactions.keys().collect()),
            ("creditUsage", self.credit_usage.keys().collect()),
        ] {
            for key in keys.into_iter().filter(|key| !known(key)) {
                broken.push(format!(
                    "line {}: {section} lists customer {key:?}, which customers does not have",
                    line_of(text, section, key)
                ));
            }
        }
        broken
    }
}

/// The line (from 1) of the first `"needle"` after the first `"anchor"` in `text`: where a
/// reference is written, for an error message. 0 when it cannot be found.
fn line_of(text: &str, anchor: &str, needle: &str) -> usize {
    let quoted = |s: &str| format!("\"{s}\"");
    let from = text.find(&quoted(anchor)).unwrap_or(0);
    text[from..]
        .find(&quoted(needle))
        .map_or(0, |at| text[..from + at].matches('\n').count() + 1)
}

/// serde_json ends its messages with " at line L column C", which the error already says.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
