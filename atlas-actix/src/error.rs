//! What can go wrong in the client, typed. How each failure answers over HTTP is the web
//! layer's business: `error_response.rs`.

use std::sync::Arc;

/// An Atlas call failed.
///
/// The HTTP answer of each variant, when a handler returns it, is in the table of
/// [`ResponseError for AtlasError`](#impl-ResponseError-for-AtlasError).
#[derive(Clone, PartialEq, thiserror::Error)]
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
    Unavailable(#[source] PlatformUnavailable),
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
    /// The customer's plan does not allow what was asked: a
    /// [`reserve`](crate::AtlasClient::reserve) whose units do not fit. Answered as the
    /// guards' 403, with the reasons.
    #[error("{}", sentences(reasons))]
    Denied {
        /// Why, one reason per feature denied.
        reasons: Vec<crate::entitlements::reasons::DenialReason>,
    },
    /// The client was shut down.
    #[error("the Atlas client is shut down")]
    Shutdown,
    /// Strict mode: the code names features the pricing model does not configure as it
    /// expects (see [`AtlasClient::findings`](crate::AtlasClient::findings)).
    #[error("the app and the Atlas pricing model disagree: {0}")]
    Misconfigured(String),
}

fn sentences(reasons: &[crate::entitlements::reasons::DenialReason]) -> String {
    let sentences: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    sentences.join("; ")
}

impl AtlasError {
    pub(crate) fn unavailable(reason: impl std::fmt::Display) -> Self {
        Self::Unavailable(PlatformUnavailable {
            message: reason.to_string(),
            source: None,
        })
    }

    /// Unavailable because of `cause`, kept as the error's source; `reason` says what failed
    /// (and, for logs that print only the message, repeats the cause).
    pub(crate) fn unavailable_because(
        reason: impl std::fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable(PlatformUnavailable {
            message: format!("{reason}: {cause}"),
            source: Some(Arc::new(cause)),
        })
    }

    /// Whether the failure is the platform's being down or unreachable, the case outage
    /// policies decide about.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::InvalidApiKey)
    }
}

/// Why the platform is unavailable ([`AtlasError::Unavailable`]): what failed, in words, and
/// the error underneath when there is one, as its [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
pub struct PlatformUnavailable {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl PlatformUnavailable {
    /// What failed, in words (the cause's text included).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for PlatformUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PlatformUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Equal when they say the same: causes are compared by their text.
impl PartialEq for PlatformUnavailable {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

/// The client could not be built: its configuration is incomplete or invalid.
#[derive(thiserror::Error)]
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
    /// The durable event spool could not be opened: its directory is missing and cannot be
    /// made, unsafe (another user's, writable by others), held by another process, or a file
    /// of it cannot be read.
    #[error("the event spool {path}: {source}")]
    Spool {
        /// The spool's directory.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The client's I/O thread could not be started.
    #[error("could not start the Atlas I/O thread: {0}")]
    Io(#[from] std::io::Error),
}

/// `Debug` prints the message: `main` returning one of these errors shows what to fix
/// (`Error: no Atlas API key: set ATLAS_API_KEY ...`) rather than the variant's name.
macro_rules! debug_as_display {
    ($($error:ty),+) => {$(
        impl std::fmt::Debug for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }
    )+};
}
debug_as_display!(AtlasError, BuildError);
