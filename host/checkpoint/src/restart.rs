//! Restart strategies: whether, and after how long, a failed job is started again from
//! its latest complete checkpoint.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fungi_common::config::RestartStrategy;

/// Applies a [`RestartStrategy`] to a job's failures.
#[derive(Debug)]
pub struct RestartTracker {
    strategy: RestartStrategy,
    /// Restarts in a row (fixed and exponential delay).
    attempts: u32,
    /// Current wait of the exponential strategy.
    backoff: Duration,
    /// Recent failure times (failure rate).
    failures: VecDeque<Instant>,
    last_failure: Option<Instant>,
}

impl RestartTracker {
    /// A tracker for `strategy` with no failure yet.
    pub fn new(strategy: RestartStrategy) -> Self {
        let backoff = match &strategy {
            RestartStrategy::ExponentialDelay { initial, .. } => *initial,
            _ => Duration::ZERO,
        };
        RestartTracker {
            strategy,
            attempts: 0,
            backoff,
            failures: VecDeque::new(),
            last_failure: None,
        }
    }

    /// Restarts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Records a failure at `now`: `Some(wait)` before restarting, or `None` when the
    /// strategy gives up. `unit` in `[0, 1)` draws the jitter.
    pub fn on_failure(&mut self, now: Instant, unit: f64) -> Option<Duration> {
        let since_last = self.last_failure.map(|t| now.duration_since(t));
        self.last_failure = Some(now);
        match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => {
                (self.attempts < *attempts).then(|| {
                    self.attempts += 1;
                    *delay
                })
            }
            RestartStrategy::ExponentialDelay {
                initial,
                max,
                multiplier,
                jitter,
                reset_after,
                attempts,
            } => {
                if since_last.is_some_and(|d| d >= *reset_after) {
                    self.backoff = *initial;
                    self.attempts = 0;
                }
                if self.attempts >= *attempts {
                    return None;
                }
                self.attempts += 1;
                let wait = self.backoff.min(*max);
                self.backoff = self.backoff.mul_f64(multiplier.max(1.0)).min(*max);
                let factor = 1.0 + jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
                Some(wait.mul_f64(factor.max(0.0)))
            }
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                self.failures.push_back(now);
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > *interval)
                {
                    self.failures.pop_front();
                }
                (self.failures.len() as u32 <= *max_failures).then(|| {
                    self.attempts += 1;
                    *delay
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn fixed_delay_gives_up_after_its_attempts() {
        let mut t = RestartTracker::new(RestartStrategy::FixedDelay {
            attempts: 2,
            delay: S,
        });
        let now = Instant::now();
        assert_eq!(t.on_failure(now, 0.5), Some(S));
        assert_eq!(t.on_failure(now, 0.5), Some(S));
        assert_eq!(t.on_failure(now, 0.5), None);
    }

    #[test]
    fn exponential_delay_grows_caps_jitters_and_resets() {
        let mut t = RestartTracker::new(RestartStrategy::ExponentialDelay {
            initial: S,
            max: 4 * S,
            multiplier: 2.0,
            jitter: 0.1,
            reset_after: 60 * S,
            attempts: 10,
        });
        let now = Instant::now();
        let waits: Vec<Duration> = (0..4).map(|_| t.on_failure(now, 0.5).unwrap()).collect();
        assert_eq!(waits, vec![S, 2 * S, 4 * S, 4 * S]);
        // Jitter within ±10 %.
        let w = t.on_failure(now, 0.0).unwrap();
        assert_eq!(w, (4 * S).mul_f64(0.9));
        // A long quiet spell resets the wait.
        assert_eq!(t.on_failure(now + 120 * S, 0.5), Some(S));
    }

    #[test]
    fn failure_rate_allows_failures_spread_out() {
        let mut t = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: 10 * S,
            delay: S,
        });
        let now = Instant::now();
        assert!(t.on_failure(now, 0.5).is_some());
        assert!(t.on_failure(now + S, 0.5).is_some());
        assert!(t.on_failure(now + 2 * S, 0.5).is_none());
        let mut t2 = RestartTracker::new(RestartStrategy::FailureRate {
            max_failures: 2,
            interval: 10 * S,
            delay: S,
        });
        for i in 0..10 {
            assert!(t2.on_failure(now + 6 * i * S, 0.5).is_some());
        }
    }
}
