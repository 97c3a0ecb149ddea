//! A per-caller rate limit for the scope's routes that anyone may call (feature registration,
//! SDK version reports), so an anonymous caller cannot turn them into work for the app or
//! into platform calls made with the merchant's key.
//!
//! A fixed window per caller, counted in a bounded [`quick_cache`]: a flood of distinct
//! callers evicts old windows instead of growing memory (a keyed limiter such as `governor`'s
//! keeps every key until it is pruned by hand).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

use crate::web::error_response::RequestError;

/// The most callers whose windows are remembered at once.
const CALLERS: usize = 10_000;

struct Window {
    started: Instant,
    count: AtomicU32,
}

/// Allows each caller `requests` per `period`.
pub(crate) struct Throttle {
    requests: u32,
    period: Duration,
    windows: quick_cache::sync::Cache<String, Arc<Window>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("requests", &self.requests)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    pub(crate) fn new(requests: u32, period: Duration) -> Self {
        Self {
            requests,
            period,
            windows: quick_cache::sync::Cache::new(CALLERS),
        }
    }

    /// `Err` when `caller` is over its allowance in the current window; counts nothing.
    pub(crate) fn exhausted(&self, caller: &str) -> Result<(), RequestError> {
        let Some(window) = self.windows.get(caller) else {
            return Ok(());
        };
        let elapsed = window.started.elapsed();
        if elapsed < self.period && window.count.load(Ordering::Relaxed) >= self.requests {
            let left = self.period.saturating_sub(elapsed);
            return Err(RequestError::TooManyRequests(left.as_secs().max(1)));
        }
        Ok(())
    }

    /// Counts one request of `caller`; `Err` when it is over its allowance.
    pub(crate) fn admit(&self, caller: &str) -> Result<(), RequestError> {
        let now = Instant::now();
        let window = match self.windows.get(caller) {
            Some(window) if now.duration_since(window.started) < self.period => window,
            _ => {
                let window = Arc::new(Window {
                    started: now,
                    count: AtomicU32::new(0),
                });
                self.windows.insert(caller.to_owned(), Arc::clone(&window));
                window
            }
        };
        if window.count.fetch_add(1, Ordering::Relaxed) < self.requests {
            Ok(())
        } else {
            let left = self
                .period
                .saturating_sub(now.duration_since(window.started));
            Err(RequestError::TooManyRequests(left.as_secs().max(1)))
        }
    }
}

/// Who is calling, for the limit: the user when there is one, else the peer address (never a
/// forwarding header, which the caller writes).
pub(crate) fn caller(request: &HttpRequest, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("user:{user}"),
        None => match request.peer_addr() {
            Some(addr) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_gets_its_allowance_per_window() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            throttle.admit("a").unwrap();
        }
        assert!(matches!(
            throttle.admit("a"),
            Err(RequestError::TooManyRequests(seconds)) if (1..=60).contains(&seconds)
        ));
        throttle.admit("b").unwrap();
        let short = Throttle::new(1, Duration::from_millis(20));
        short.admit("a").unwrap();
        assert!(short.admit("a").is_err());
        std::thread::sleep(Duration::from_millis(30));
        short.admit("a").unwrap();
    }
}
