//! Event time and windows: the semantics of a streaming job, independent of how tasks run.
//!
//! - [`watermark`]: timestamp assignment, watermark strategies (bounded out-of-orderness,
//!   monotonous), per-split watermarks with idleness, and the minimum over the non-idle
//!   inputs of an operator.
//! - [`window`]: window assigners (tumbling, sliding, session, cumulate) and the slicing
//!   that lets overlapping windows share partial aggregates.
//! - [`aggregate`]: the vectorized [`aggregate::GroupsAccumulator`] trait that every
//!   aggregate (built-in, DataFusion, Wasm, Python) plugs into, and the built-ins.
//! - [`window_aggregate`]: the windowed aggregation state machine used by the window
//!   operator: keyed slices, firing on watermarks, allowed lateness, late side output.
//! - [`window_partial`]: local pre-aggregation of windows without keys, whose partial
//!   rows the window aggregation merges (two-phase aggregation).
//! - [`timer`]: per-key event-time and processing-time timers.
//!
//! Nothing here spawns tasks or touches channels; `fungi-execution` drives these pieces.
//!
//! ```
//! use fungi_streaming::window::WindowAssigner;
//! let w = WindowAssigner::sliding(10_000, 5_000).unwrap();
//! // Slices of 5 s: each 10 s window is made of two of them.
//! assert_eq!(w.slice_size(), Some(5_000));
//! ```

pub mod aggregate;
pub mod keys;
pub mod row_store;
pub mod state_codec;
pub mod timer;
pub mod updating_aggregate;
pub mod watermark;
pub mod window;
pub mod window_aggregate;
pub mod window_partial;

use arrow::datatypes::SchemaRef;
use fungi_common::FungiError;

/// The error for a column name that is not in `schema`, listing the columns there are.
pub fn unknown_column(name: &str, schema: &SchemaRef) -> FungiError {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    FungiError::Plan(format!(
        "unknown column '{name}'; the input has columns: {}",
        names.join(", ")
    ))
}
