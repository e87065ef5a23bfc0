//! Sources and sinks that ship with Fungi.
//!
//! - [`datagen`]: rows of a given schema at a given rate (sequences and random values).
//! - [`nexmark`]: the Nexmark auction benchmark generator (persons, auctions, bids),
//!   deterministic, writing Arrow columns directly.
//! - [`file`]: files as source and sink in JSON lines, CSV and Parquet; bad lines give an
//!   error naming file and line, or a dead letter.
//! - [`print`]: the `stdout` sink; [`blackhole`]: a sink that only counts.
//!
//! Every connector is configured from string options (the `WITH (...)` clause of SQL, or
//! a job file), so the SQL layer and the CLI share one way to build them: see
//! [`options::Options`]. Kafka arrives in its own module with the rdkafka dependency.

pub mod blackhole;
pub mod datagen;
pub mod file;
pub mod nexmark;
pub mod options;
pub mod print;
pub mod registry;
mod rng;
