//! A Flink-style DataStream API over Fungi's runtime.
//!
//! What a Flink user writes, with Arrow batches as the unit of work instead of single
//! records:
//!
//! ```
//! use std::time::Duration;
//! use fungi_flink::prelude::*;
//!
//! # fn main() -> fungi_common::Result<()> {
//! let env = StreamExecutionEnvironment::new();
//! let bids = env.from_source(
//!     nexmark_source("bid", 10_000)?,
//!     WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(1)),
//!     "bids",
//! );
//! let (sink, counts) = CollectSink::new();
//! bids.key_by(["auction"])
//!     .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
//!     .aggregate(vec![count_star("bids"), max("price", "top")])?
//!     .sink_to(sink.factory(), "collect");
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let summary = rt.block_on(env.execute("hot auctions"))?;
//! assert!(counts.rows() > 0);
//! # Ok(()) }
//! ```
//!
//! Functions passed to `map`, `filter` and `flat_map` take and return whole
//! `RecordBatch`es, and are called once per batch. `map` learns its output schema by
//! calling the function once on an empty batch, so it must accept one.

mod environment;
mod stream;
mod windows;

pub use environment::StreamExecutionEnvironment;
pub use stream::{DataStream, KeyedStream, WindowedStream};
pub use windows::{
    CumulativeEventTimeWindows, EventTimeSessionWindows, SlidingEventTimeWindows,
    TumblingEventTimeWindows,
};

use arrow::datatypes::SchemaRef;
use fungi_common::Result;
use fungi_connector::options::Options;
use fungi_execution::source::SourceFactory;

/// A source ready to be added to a job: its factory and the schema it produces.
pub type SourceSpec = (SourceFactory, SchemaRef);

/// The Nexmark generator for `table` (`bid`, `auction`, `person`), bounded to `events`
/// events of all kinds.
pub fn nexmark_source(table: &str, events: u64) -> Result<SourceSpec> {
    fungi_connector::registry::source(
        "nexmark",
        None,
        &Options::new(
            "nexmark",
            [("table", table.to_string()), ("events", events.to_string())],
        ),
    )
}

/// Everything a DataStream program usually needs.
pub mod prelude {
    pub use super::{
        CumulativeEventTimeWindows, DataStream, EventTimeSessionWindows, KeyedStream,
        SlidingEventTimeWindows, SourceSpec, StreamExecutionEnvironment, TumblingEventTimeWindows,
        WindowedStream, nexmark_source,
    };
    pub use fungi_execution::operators::{
        CollectSink, KeyedContext, KeyedProcessFunction, KeyedRows,
    };
    pub use fungi_streaming::aggregate::{AggregateCall, avg, count, count_star, max, min, sum};
    pub use fungi_streaming::watermark::WatermarkStrategy;
}
