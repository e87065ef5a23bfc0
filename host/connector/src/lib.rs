//! Sources and sinks that ship with Fungi.
//!
//! - [`datagen`]: rows of a given schema at a given rate (sequences and random values).
//! - [`nexmark`]: the Nexmark auction benchmark generator (persons, auctions, bids),
//!   deterministic, writing Arrow columns directly.
//! - [`file`]: files as source and sink in JSON lines, CSV and Parquet; bad lines give an
//!   error naming file and line, or a dead letter.
//! - [`kafka`]: Apache Kafka topics as source (partitions as splits, offsets in
//!   checkpoints, bad records to the dead-letter output) and sink, on librdkafka.
//! - [`print`]: the `stdout` sink; [`blackhole`]: a sink that only counts.
//! - [`format`]: record formats (JSON, CSV, raw) shared by the connectors.
//!
//! Every connector is configured from string options (the `WITH (...)` clause of SQL, or
//! a job file), so the SQL layer and the CLI share one way to build them: see
//! [`options::Options`].

pub mod blackhole;
pub mod datagen;
pub mod descriptor;
pub mod egress;
pub mod file;
pub mod format;
pub mod http;
pub mod kafka;
pub mod nexmark;
pub mod options;
pub mod print;
pub mod registry;
mod rng;
