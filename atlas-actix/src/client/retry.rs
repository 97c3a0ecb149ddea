//! The one backoff of every retry the client makes (a platform call's retries, initialisation
//! and background work after a failure, the push link's reconnections), and the one loop that
//! background work runs in.

use std::future::Future;
use std::time::Duration;

/// Background retries (initialisation, event flushes, registrations, the fleet's stream): from
/// 1 s, doubling, at most a minute.
pub(crate) const BACKGROUND_RETRY: Backoff =
    Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// How a round of background work ended, and so when the next one runs.
#[derive(Debug)]
pub(crate) enum Round {
    /// Nothing more to do: the loop ends.
    Done,
    /// The round did its work: the next one runs after this wait (zero: at once), and the
    /// backoff starts again from its first step.
    Again(Duration),
    /// The round failed for this reason: the next one runs after the backoff's next wait.
    Failed(String),
}

/// Runs `round` until it says [`Round::Done`], waiting between rounds as each says, with
/// `backoff` after failures (each logged at warn with `what` and the wait). A round is given
/// the failures in a row before it.
pub(crate) async fn repeat<F, Fut>(what: &'static str, backoff: Backoff, mut round: F)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Round>,
{
    let mut failures: u32 = 0;
    loop {
        let wait = match round(failures).await {
            Round::Done => return,
            Round::Again(wait) => {
                failures = 0;
                wait
            }
            Round::Failed(reason) => {
                let wait = backoff.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(%reason, ?wait, "{what} failed; retrying");
                wait
            }
        };
        if !wait.is_zero() {
            actix_rt::time::sleep(wait).await;
        }
    }
}

/// Exponential backoff with jitter: the wait before retry `n` (from 0) is a random time between
/// half of and the whole ceiling `min(max, base * 2^n)`. The jitter spreads out many clients
/// retrying together; the floor keeps a long run of failures from retrying in a tight loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The first ceiling.
    pub(crate) base: Duration,
    /// The largest ceiling.
    pub(crate) max: Duration,
}

impl Backoff {
    pub(crate) const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The wait before retry `attempt`, counted from 0.
    pub(crate) fn delay(self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1_u32 << attempt.min(20))
            .min(self.max);
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// The waits before each of `retries` retries.
    pub(crate) fn delays(self, retries: u32) -> Delays {
        Delays {
            backoff: self,
            attempt: 0,
            retries,
        }
    }
}

/// The waits of a [`Backoff`], for `backon`'s retry loop.
#[derive(Debug)]
pub(crate) struct Delays {
    backoff: Backoff,
    attempt: u32,
    retries: u32,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.attempt == self.retries {
            return None;
        }
        let delay = self.backoff.delay(self.attempt);
        self.attempt += 1;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn rounds_repeat_until_done_backing_off_after_failures() {
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        let mut seen = Vec::new();
        repeat("test work", backoff, |failures| {
            seen.push(failures);
            let round = match seen.len() {
                1 | 2 => Round::Failed("down".to_owned()),
                3 => Round::Again(Duration::ZERO),
                4 => Round::Failed("down again".to_owned()),
                _ => Round::Done,
            };
            async move { round }
        })
        .await;
        // Two failures counted, reset by a success, then one more.
        assert_eq!(seen, [0, 1, 2, 0, 1]);
    }

    #[test]
    fn waits_stay_between_half_and_a_doubling_capped_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let ceilings = [100, 200, 350, 350];
        for _ in 0..100 {
            let delays: Vec<Duration> = backoff.delays(4).collect();
            assert_eq!(delays.len(), 4);
            for (delay, ceiling) in delays.iter().zip(ceilings) {
                assert!(
                    *delay <= Duration::from_millis(ceiling),
                    "{delay:?} > {ceiling} ms"
                );
                assert!(
                    *delay >= Duration::from_millis(ceiling / 2),
                    "{delay:?} < half"
                );
            }
        }
        assert_eq!(backoff.delays(0).count(), 0);
        let long = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(long.delay(u32::MAX) <= Duration::from_secs(60));
        assert!(long.delay(30) >= Duration::from_secs(30));
    }
}
