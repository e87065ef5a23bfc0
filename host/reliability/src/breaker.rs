//! Circuit breakers: stop calling a service that keeps failing, probe it now and then,
//! and resume when it answers.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and for how long. Defaults: 5 failures within 10 s open it for
/// 1 s.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the breaker.
    pub failure_threshold: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long it stays open before letting a probe through (half-open).
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(1),
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are held back until the open time has passed.
    Open,
    /// One probe call goes through; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// Every state, in the order of their codes.
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// The state of a [`code`](Self::code).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// The state of a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// `closed`, `open` or `half-open`.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (the gauge value in metrics).
    pub fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A circuit breaker in front of one service, shared by the callers of one operator.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: VecDeque<Instant>,
    opened_at: Instant,
    times_opened: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: VecDeque::new(),
                opened_at: Instant::now(),
                times_opened: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go now; if not, how long until a probe may.
    pub fn allow(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed | BreakerState::HalfOpen => Ok(()),
            BreakerState::Open => {
                let waited = inner.opened_at.elapsed();
                if waited >= self.config.open_for {
                    inner.state = BreakerState::HalfOpen;
                    tracing::info!("circuit breaker half-open: probing");
                    Ok(())
                } else {
                    Err(self.config.open_for - waited)
                }
            }
        }
    }

    /// A call succeeded: the breaker closes.
    pub fn success(&self) {
        let mut inner = self.lock();
        if inner.state != BreakerState::Closed {
            tracing::info!("circuit breaker closed: the service answers again");
        }
        inner.state = BreakerState::Closed;
        inner.failures.clear();
    }

    /// A call failed: a probe reopens the breaker; enough failures in the window open it.
    pub fn failure(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        let open = match inner.state {
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
            BreakerState::Closed => {
                inner.failures.push_back(now);
                while inner
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.config.window)
                {
                    inner.failures.pop_front();
                }
                inner.failures.len() >= self.config.failure_threshold as usize
            }
        };
        if open {
            tracing::warn!(
                failures = inner.failures.len(),
                "circuit breaker open for {:?}",
                self.config.open_for
            );
            inner.state = BreakerState::Open;
            inner.opened_at = now;
            inner.failures.clear();
            inner.times_opened += 1;
        }
    }

    /// The state now (an open breaker whose time is up still reads open until the next
    /// [`allow`](Self::allow)).
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// How many times it has opened.
    pub fn times_opened(&self) -> u64 {
        self.lock().times_opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_and_closes() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(30),
        });
        b.failure();
        b.failure();
        assert_eq!((b.state(), b.allow()), (BreakerState::Closed, Ok(())));
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_err());
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(b.allow(), Ok(()));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // A failed probe reopens it at once.
        b.failure();
        assert_eq!((b.state(), b.times_opened()), (BreakerState::Open, 2));
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(b.allow(), Ok(()));
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 2,
            window: Duration::from_millis(20),
            open_for: Duration::from_secs(1),
        });
        b.failure();
        std::thread::sleep(Duration::from_millis(30));
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
