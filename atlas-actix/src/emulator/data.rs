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
        data.check(&path.display().to_string())?;
        Ok(data)
    }

    /// Checks what the types cannot: a non-empty key and unique customer external ids.
    pub(crate) fn check(&self, origin: &str) -> Result<(), DataFileError> {
        let mut problems = Vec::new();
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

/// serde_json ends its messages with " at line L column C", which the error already says.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
