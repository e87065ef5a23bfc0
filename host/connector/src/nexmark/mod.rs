//! The Nexmark benchmark: an online auction with persons, auctions and bids.
//!
//! A columnar port of the Nexmark generator used by Flink and Beam: events are numbered,
//! every 50 events hold 1 person, 3 auctions and 46 bids, and each event is a function of
//! its number alone (its random draws are seeded by it), so any range of events can be
//! generated independently and in parallel, and the data is the same on every run. Rows
//! are appended straight into Arrow builders: no event objects, no per-row allocation.
//!
//! Differences from the Java generator: the random generator (SplitMix64 instead of
//! `java.util.Random`), so values differ while their distributions (hot auctions, hot
//! bidders, price distribution, sizes) follow the same rules.

mod generator;
mod source;

pub use generator::{DoneLayer, GeneratorPosition, NexmarkConfig, NexmarkGenerator, NexmarkTable};
pub use source::{NEXMARK_OPTIONS, NexmarkSource};
