//! Limit callbacks: how the app tells Atlas how much of a limited feature a customer uses
//! (seats taken, projects created, ...). Atlas knows the limit; only the app knows the count.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::entitlements::LimitOutcome;

/// Why a limit callback could not count.
pub type LimitError = Box<dyn std::error::Error + Send + Sync>;

type LimitFuture = Pin<Box<dyn Future<Output = Result<f64, LimitError>> + Send>>;

/// What a limit callback may return: a count (any integer or float type), or a `Result` of a
/// count and any error.
#[diagnostic::on_unimplemented(
    message = "a limit callback must return a count or a Result of one, not `{Self}`",
    label = "this callback's future returns `{Self}`",
    note = "return the usage as a number (`u32`, `i64`, `f64`, ...) or a `Result<number, E>`"
)]
pub trait IntoUsage {
    /// The usage as a number, or why there is none.
    fn into_usage(self) -> Result<f64, LimitError>;
}

/// What a guard's `quantity` option may compute to: any number type. Not public API: the
/// macros' expansions name it.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a quantity must be a number, not `{Self}`",
    label = "this quantity is a `{Self}`",
    note = "compute the number of units the request needs, such as `body.emails.len()`"
)]
pub trait Quantity {
    /// The number as Atlas counts it.
    fn into_quantity(self) -> f64;
}

/// Every number type is a count and a quantity, converted in one place.
macro_rules! numbers {
    ($($number:ty),*) => {$(
        impl Quantity for $number {
            fn into_quantity(self) -> f64 {
                // Counts far beyond 2^53 lose precision as f64, as they do in JavaScript.
                #[allow(clippy::cast_precision_loss, clippy::cast_lossless)]
                {
                    self as f64
                }
            }
        }

        impl IntoUsage for $number {
            fn into_usage(self) -> Result<f64, LimitError> {
                Ok(self.into_quantity())
            }
        }
    )*};
}

numbers!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

impl<T: IntoUsage, E: Into<LimitError>> IntoUsage for Result<T, E> {
    fn into_usage(self) -> Result<f64, LimitError> {
        self.map_err(Into::into)?.into_usage()
    }
}

/// A registered limit callback.
#[derive(Clone)]
pub(crate) struct LimitCallback(Arc<dyn Fn(String) -> LimitFuture + Send + Sync>);

impl std::fmt::Debug for LimitCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LimitCallback")
    }
}

impl LimitCallback {
    pub(crate) fn new<F, Fut>(callback: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoUsage,
    {
        Self(Arc::new(move |customer| {
            let usage = callback(customer);
            Box::pin(async move { usage.await.into_usage() })
        }))
    }
}

/// The callbacks by feature slug.
#[derive(Clone, Default)]
pub(crate) struct Limits {
    callbacks: HashMap<String, LimitCallback>,
    timeout: Duration,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut features: Vec<&String> = self.callbacks.keys().collect();
        features.sort();
        f.debug_struct("Limits")
            .field("features", &features)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Limits {
    pub(crate) fn new(callbacks: HashMap<String, LimitCallback>, timeout: Duration) -> Self {
        Self { callbacks, timeout }
    }

    /// The features that have a callback.
    pub(crate) fn features(&self) -> Vec<String> {
        let mut features: Vec<String> = self.callbacks.keys().cloned().collect();
        features.sort();
        features
    }

    pub(crate) fn has(&self, feature: &str) -> bool {
        self.callbacks.contains_key(feature)
    }

    /// Asks each feature's callback, concurrently, for the customer's usage. A callback that
    /// fails or takes longer than the timeout is logged and counts as failed, which the
    /// entitlement rules turn into `allow_unknown_limits`.
    pub(crate) async fn outcomes<'a>(
        &self,
        customer: &str,
        features: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<&'a str, LimitOutcome> {
        let calls = features.into_iter().filter_map(|feature| {
            let callback = self.callbacks.get(feature)?;
            let usage = (callback.0)(customer.to_owned());
            let timeout = self.timeout;
            Some(async move {
                // A callback that answers at once (an in-memory count) needs no timer.
                let mut usage = std::pin::pin!(usage);
                let first = std::future::poll_fn(|cx| std::task::Poll::Ready(usage.as_mut().poll(cx))).await;
                let answered = match first {
                    std::task::Poll::Ready(answer) => Ok(answer),
                    std::task::Poll::Pending => tokio::time::timeout(timeout, usage).await,
                };
                let outcome = match answered {
                    Ok(Ok(usage)) if usage.is_nan() => {
                        tracing::warn!(customer, feature, "a limit callback returned NaN; treating it as failed");
                        LimitOutcome::Failed
                    }
                    Ok(Ok(usage)) => LimitOutcome::Usage(usage),
                    Ok(Err(error)) => {
                        tracing::warn!(customer, feature, %error, "a limit callback failed; using allow_unknown_limits");
                        LimitOutcome::Failed
                    }
                    Err(_) => {
                        tracing::warn!(customer, feature, ?timeout, "a limit callback timed out; using allow_unknown_limits");
                        LimitOutcome::TimedOut
                    }
                };
                (feature, outcome)
            })
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_results_are_usages() {
        assert_eq!(3_u32.into_usage().unwrap(), 3.0);
        assert_eq!((-2_i64).into_usage().unwrap(), -2.0);
        assert_eq!(Ok::<usize, std::io::Error>(7).into_usage().unwrap(), 7.0);
        let failed: Result<u64, String> = Err("database down".to_owned());
        assert_eq!(
            failed.into_usage().unwrap_err().to_string(),
            "database down"
        );
    }

    #[actix_rt::test]
    async fn outcomes_cover_usage_failure_timeout_and_absence() {
        let mut callbacks = HashMap::new();
        callbacks.insert(
            "seats".to_owned(),
            LimitCallback::new(|customer: String| async move { customer.len() }),
        );
        callbacks.insert(
            "broken".to_owned(),
            LimitCallback::new(|_| async { Err::<u32, _>(std::io::Error::other("no database")) }),
        );
        callbacks.insert(
            "slow".to_owned(),
            LimitCallback::new(|_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                1_u32
            }),
        );
        let limits = Limits::new(callbacks, Duration::from_millis(50));
        assert!(limits.has("seats") && !limits.has("nothing"));
        let outcomes = limits
            .outcomes("abcd", ["seats", "broken", "slow", "nothing"])
            .await;
        assert_eq!(outcomes["seats"], LimitOutcome::Usage(4.0));
        assert_eq!(outcomes["broken"], LimitOutcome::Failed);
        assert_eq!(outcomes["slow"], LimitOutcome::TimedOut);
        assert!(!outcomes.contains_key("nothing"));
    }
}
