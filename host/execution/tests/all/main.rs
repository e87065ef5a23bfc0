//! Integration tests of the runtime: partitioning, backpressure, watermarks, windows,
//! chaining, timers and failures, on real tokio tasks and channels.

mod common;
mod keyed;
mod runtime;
mod windows;
