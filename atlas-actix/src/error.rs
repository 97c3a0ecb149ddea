//! What can go wrong in the client, typed. How each failure answers over HTTP is the web
//! layer's business: `error_response.rs`.

/// An Atlas call failed.
///
/// The HTTP answer of each variant, when a handler returns it, is in the table of
/// [`ResponseError for AtlasError`](#impl-ResponseError-for-AtlasError).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AtlasError {
    /// The platform refused the API key (401 or 403 on the merchant check). Every call returns
    /// this until the key changes; fix `ATLAS_API_KEY`.
    #[error("Invalid API key")]
    InvalidApiKey,
    /// The platform could not be reached, did not answer in time, failed (5xx, 429 after
    /// retries) or answered something that is not the expected JSON. Initialisation keeps
    /// retrying in the background; later calls recover by themselves.
    #[error("the Atlas platform is unavailable: {0}")]
    Unavailable(String),
    /// The platform refused the request (a 4xx other than an invalid key): a billing cadence it
    /// does not offer, a private plan, an unknown subscription, ...
    #[error("{message}")]
    Rejected {
        /// The platform's status code.
        status: u16,
        /// The platform's reason.
        message: String,
    },
    /// Some of the customer's subscriptions do not allow changes by the customer.
    #[error("Subscription changes are not allowed")]
    SubscriptionChangesNotAllowed,
    /// The caller's input is invalid; nothing was sent.
    #[error("{0}")]
    InvalidInput(String),
    /// The usage event queue is full: the platform has been unreachable for long enough that
    /// the bounded queue filled up. The events of this call were not queued.
    #[error("the usage event queue is full ({capacity} events); the events were not queued")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The client was shut down.
    #[error("the Atlas client is shut down")]
    Shutdown,
    /// Strict mode: the code names features the pricing model does not configure as it
    /// expects (see [`AtlasClient::findings`](crate::AtlasClient::findings)).
    #[error("the app and the Atlas pricing model disagree: {0}")]
    Misconfigured(String),
    /// The durable event spool could not be written; the events were not queued.
    #[error("{0}")]
    Storage(String),
}

impl AtlasError {
    pub(crate) fn unavailable(reason: impl std::fmt::Display) -> Self {
        Self::Unavailable(reason.to_string())
    }

    /// Whether the failure is the platform's being down or unreachable, the case outage
    /// policies decide about.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::InvalidApiKey)
    }
}

/// The client could not be built: its configuration is incomplete or invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No API key was given and `ATLAS_API_KEY` is not set.
    #[error("no Atlas API key: set ATLAS_API_KEY or call AtlasBuilder::api_key")]
    MissingApiKey,
    /// The platform URL is not an absolute http(s) URL.
    #[error("invalid Atlas platform URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The client's I/O thread could not be started.
    #[error("could not start the Atlas I/O thread: {0}")]
    Io(#[from] std::io::Error),
}
