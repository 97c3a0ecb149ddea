//! The client's HTTP I/O, on a thread of its own.
//!
//! `awc::Client` holds `Rc`s: it is neither `Send` nor `Sync` and is meant to live on one
//! thread, while actix-web runs one single-threaded runtime per worker and the SDK's state is
//! shared by all of them. So every platform call, and every background task (event flushes,
//! feature registration, initialisation retries), runs on one thread the client owns, with its
//! own actix runtime and one connection pool; callers reach it over channels, from any runtime.
//! Cache hits, the hot path, never come here.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use awc::error::SendRequestError;
use awc::http::{header, Method};
use backon::Retryable;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::client::retry::Backoff;
use crate::error::BuildError;

/// The largest platform answer read (a pricing model with many plans stays far below).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A platform API key. Its `Debug` does not show it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    pub(crate) fn new(key: String) -> Self {
        Self(key)
    }

    pub(crate) fn header_value(&self) -> Result<header::HeaderValue, header::InvalidHeaderValue> {
        let mut value = header::HeaderValue::from_str(&self.0)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// When a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The call is safe to repeat: retry on transport errors, timeouts, 5xx and 429.
    Idempotent {
        /// Attempts in all, the first included.
        attempts: u32,
    },
    /// The call changes something and is not idempotent: retry only when the request surely
    /// never reached the platform (the connection could not be made).
    UnlessSent {
        /// Attempts in all, the first included.
        attempts: u32,
    },
}

impl Retry {
    fn attempts(self) -> u32 {
        match self {
            Self::Idempotent { attempts } | Self::UnlessSent { attempts } => attempts,
        }
    }
}

/// One platform call.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Path and query, already percent-encoded.
    pub(crate) path: String,
    /// A JSON body.
    pub(crate) body: Option<Bytes>,
    pub(crate) retry: Retry,
}

/// The platform's answer.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TransportError {
    #[error("could not reach the platform: {0}")]
    Unreachable(String),
    #[error("the platform did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the client is shut down")]
    Shutdown,
}

/// What the I/O thread needs to call the platform.
pub(crate) struct TransportConfig {
    pub(crate) base_url: String,
    pub(crate) api_key: ApiKey,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

enum Job {
    Call(Request, oneshot::Sender<Result<Response, TransportError>>),
    Spawn(Task),
    Stop,
}

/// A handle to the I/O thread.
pub(crate) struct Transport {
    jobs: mpsc::UnboundedSender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Starts the I/O thread.
    pub(crate) fn start(config: TransportConfig) -> std::io::Result<Self> {
        let key = config
            .api_key
            .header_value()
            .map_err(|_| std::io::Error::other("the API key is not a valid header value"))?;
        let (jobs, mut inbox) = mpsc::unbounded_channel::<Job>();
        let timeout = config.timeout;
        let thread = std::thread::Builder::new()
            .name("atlas-io".to_owned())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let io = Rc::new(Io::new(config, key));
                    while let Some(job) = inbox.recv().await {
                        match job {
                            Job::Call(request, reply) => {
                                let io = Rc::clone(&io);
                                actix_rt::spawn(async move {
                                    // The caller may have given up; its loss.
                                    let _ = reply.send(io.execute(request).await);
                                });
                            }
                            Job::Spawn(task) => {
                                actix_rt::spawn(task());
                            }
                            Job::Stop => break,
                        }
                    }
                });
            })?;
        Ok(Self {
            jobs,
            thread: Mutex::new(Some(thread)),
            timeout,
        })
    }

    /// Sends a request and waits for the answer.
    pub(crate) async fn call(&self, request: Request) -> Result<Response, TransportError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Call(request, reply))
            .map_err(|_| TransportError::Shutdown)?;
        answer.await.map_err(|_| TransportError::Shutdown)?
    }

    /// Runs a background task on the I/O thread; it ends when the client shuts down.
    pub(crate) fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let task: Task = Box::new(move || Box::pin(task()));
        if self.jobs.send(Job::Spawn(task)).is_err() {
            tracing::debug!("a background task was not started: the client is shut down");
        }
    }

    /// Stops the I/O thread: calls under way and background tasks end.
    pub(crate) fn stop(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // The loop ends, then the runtime and its tasks are dropped with it.
            let _ = self.jobs.send(Job::Stop);
            if std::thread::current().id() != thread.thread().id() && thread.join().is_err() {
                tracing::error!("the Atlas I/O thread panicked");
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The I/O thread's state.
struct Io {
    client: awc::Client,
    base_url: String,
    timeout: Duration,
    backoff: Backoff,
}

/// One failed attempt.
#[derive(Debug)]
enum AttemptError {
    /// No connection was made: the platform never saw the request.
    Connect(String),
    /// The request may have reached the platform.
    Sent(String),
    Timeout,
    /// An answer that calls for a retry (5xx, 429).
    Status(Response),
}

impl Io {
    fn new(config: TransportConfig, key: header::HeaderValue) -> Self {
        let connector = awc::Connector::new()
            .rustls_0_23(config.tls)
            .timeout(config.timeout);
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(config.timeout)
            .add_default_header(("x-api-key", key))
            .add_default_header((
                header::USER_AGENT,
                concat!("atlas-actix/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        Self {
            client,
            base_url: config.base_url,
            timeout: config.timeout,
            backoff: config.backoff,
        }
    }

    /// Runs a request with its retries, within the client's timeout in all.
    async fn execute(&self, request: Request) -> Result<Response, TransportError> {
        let deadline = Instant::now() + self.timeout;
        let attempts = request.retry.attempts().max(1);
        let attempt = || self.attempt(&request, deadline);
        let retried = attempt
            .retry(self.backoff.delays(attempts - 1))
            .when(|err| match (request.retry, err) {
                (_, AttemptError::Connect(_)) => true,
                (Retry::Idempotent { .. }, _) => true,
                (Retry::UnlessSent { .. }, _) => false,
            })
            .notify(|err, wait| {
                tracing::debug!(method = %request.method, path = %template(&request.path), ?err, ?wait, "retrying an Atlas call");
            });
        match tokio::time::timeout_at(deadline.into(), retried).await {
            Err(_) | Ok(Err(AttemptError::Timeout)) => Err(TransportError::Timeout(self.timeout)),
            Ok(Ok(response)) | Ok(Err(AttemptError::Status(response))) => Ok(response),
            Ok(Err(AttemptError::Connect(reason) | AttemptError::Sent(reason))) => {
                Err(TransportError::Unreachable(reason))
            }
        }
    }

    async fn attempt(
        &self,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, AttemptError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AttemptError::Timeout);
        }
        let url = format!("{}{}", self.base_url, request.path);
        let builder = self
            .client
            .request(request.method.clone(), url)
            .timeout(remaining);
        let sent = match &request.body {
            Some(body) => {
                builder
                    .insert_header((header::CONTENT_TYPE, "application/json"))
                    .send_body(body.clone())
                    .await
            }
            None => builder.send().await,
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(SendRequestError::Connect(err)) => {
                return Err(AttemptError::Connect(err.to_string()))
            }
            Err(SendRequestError::Timeout) => return Err(AttemptError::Timeout),
            Err(err) => return Err(AttemptError::Sent(err.to_string())),
        };
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|err| AttemptError::Sent(format!("reading the answer: {err}")))?;
        let response = Response { status, body };
        if status >= 500 || status == 429 {
            Err(AttemptError::Status(response))
        } else {
            Ok(response)
        }
    }
}

/// rustls with the ring provider, trusting the webpki roots and `extra_roots` (DER): the one
/// TLS set-up of every connection the SDK makes.
pub(crate) fn tls_config(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|err| BuildError::InvalidOption {
                option: "add_root_certificate",
                reason: err.to_string(),
            })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| BuildError::InvalidOption {
            option: "tls",
            reason: err.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The path without its query, for logs: ids in queries are the caller's data.
pub(crate) fn template(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug() {
        let key = ApiKey::new("sk_live_secret".to_owned());
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert!(key.header_value().unwrap().is_sensitive());
    }
}
