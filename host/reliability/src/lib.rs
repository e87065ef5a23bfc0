//! Reliability for everything that talks to the outside world: retries with exponential
//! backoff and jitter ([`RetryPolicy`], delays from the `backon` crate), circuit breakers
//! ([`CircuitBreaker`]) and the policy for what a failure does once retries are spent
//! ([`OnFailure`]: fail the job, or send the records to its dead-letter output).
//!
//! The HTTP sink and the dead-letter targets use these (checkpoint uploads have
//! object_store's own retries with backoff and jitter); the job-level
//! restart strategies (`fungi_common::config::RestartStrategy`, applied by
//! `fungi-scheduler`) are the last line behind them. Everything here is synchronous:
//! Fungi's operators are, and [`outside_async_runtime`] lets them block safely.

mod blocking;
mod breaker;
mod policy;
mod retry;

pub use blocking::outside_async_runtime;
pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use policy::OnFailure;
pub use retry::{Exhausted, RetryPolicy};
