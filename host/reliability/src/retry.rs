//! Retries with exponential backoff and jitter.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How often and how patiently a failed call is tried again: waits grow from
/// `initial_delay` by `multiplier` up to `max_delay`, each with random jitter (so that
/// many subtasks retrying together do not hammer a service in step), at most
/// `max_retries` times. Defaults: 5 retries, 100 ms, 10 s, ×2, jitter on.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: no retry).
    pub max_retries: usize,
    /// The first wait.
    pub initial_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Growth of the wait per retry.
    pub multiplier: f32,
    /// Whether each wait gets random jitter (up to its own length).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

/// What ended a [`RetryPolicy::run`] without success.
#[derive(Debug)]
pub enum Exhausted<E> {
    /// The error was not worth retrying (a rejection, not an outage).
    Fatal(E),
    /// Every attempt failed; the last error and how many attempts were made.
    Spent {
        /// The last error.
        last: E,
        /// Attempts made (the first one and the retries).
        attempts: usize,
    },
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The waits between attempts, in order (`max_retries` of them).
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.multiplier)
            .with_max_times(self.max_retries);
        let builder = if self.jitter {
            builder.with_jitter()
        } else {
            builder
        };
        builder.build()
    }

    /// Runs `attempt` (given the attempt number, from 0) until it succeeds, fails with an
    /// error `retryable` refuses, or the retries are spent; sleeps between attempts and
    /// tells `on_retry` about each failure it retries.
    pub fn run<T, E>(
        &self,
        mut attempt: impl FnMut(usize) -> Result<T, E>,
        retryable: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, Duration),
    ) -> Result<T, Exhausted<E>> {
        let mut delays = self.delays();
        let mut n = 0;
        loop {
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(e) if !retryable(&e) => return Err(Exhausted::Fatal(e)),
                Err(e) => match delays.next() {
                    Some(wait) => {
                        on_retry(&e, wait);
                        std::thread::sleep(wait);
                        n += 1;
                    }
                    None => {
                        return Err(Exhausted::Spent {
                            last: e,
                            attempts: n + 1,
                        });
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_stop() {
        let p = RetryPolicy {
            max_retries: 6,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: false,
        };
        // (f32 growth: 40 ms comes out as 39.99...)
        let ms: Vec<u64> = p
            .delays()
            .map(|d| (d.as_secs_f64() * 1000.0).round() as u64)
            .collect();
        assert_eq!(ms, [10, 20, 40, 50, 50, 50]);
        // Jitter adds up to the delay again, never less.
        let jittered: Vec<Duration> = RetryPolicy { jitter: true, ..p }.delays().collect();
        assert_eq!(jittered.len(), 6);
        assert!(
            jittered
                .iter()
                .zip(&[10, 20, 40, 50, 50, 50])
                .all(|(d, &ms)| *d >= Duration::from_micros(ms * 990)
                    && *d <= Duration::from_millis(2 * ms)),
            "{jittered:?}"
        );
        assert_eq!(RetryPolicy::none().delays().count(), 0);
    }

    #[test]
    fn runs_until_success_rejection_or_exhaustion() {
        let fast = RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            multiplier: 2.0,
            jitter: true,
        };
        let mut retried = 0;
        let v = fast.run(
            |n| if n < 2 { Err("503") } else { Ok(n) },
            |e| e.starts_with('5'),
            |_, _| retried += 1,
        );
        assert_eq!((v.unwrap(), retried), (2, 2));
        let fatal = fast.run(|_| Err::<(), _>("400"), |e| e.starts_with('5'), |_, _| {});
        assert!(matches!(fatal, Err(Exhausted::Fatal("400"))));
        let spent = fast.run(|_| Err::<(), _>("503"), |_| true, |_, _| {});
        assert!(matches!(
            spent,
            Err(Exhausted::Spent {
                last: "503",
                attempts: 4
            })
        ));
    }
}
