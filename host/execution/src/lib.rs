//! The runtime of a Fungi job.
//!
//! A [`graph::JobGraph`] of sources and operators joined by edges (forward, hash by key,
//! broadcast, rebalance) is turned into a [`plan::PhysicalPlan`]: operators on forward
//! edges with equal parallelism are *chained* into one task, and each chain is expanded
//! into one task per subtask. The [`executor::LocalExecutor`] runs every task as a tokio
//! task, joined by bounded channels, so a slow consumer slows its producers
//! (backpressure) instead of letting memory grow.
//!
//! On every edge travel [`fungi_common::Message`]s: Arrow record batches with in-band
//! watermarks, checkpoint barriers and end-of-stream markers. Hash edges route rows by
//! key group ([`partition`]), vectorized over whole batches.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use fungi_execution::graph::{JobGraph, Partitioning};
//! use fungi_execution::operators::{CollectSink, MapOperator};
//! use fungi_execution::source::VecSource;
//! use fungi_execution::executor::LocalExecutor;
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
//! let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
//! let mut graph = JobGraph::new("doc");
//! let src = graph.add_source("numbers", 1, VecSource::factory(schema, vec![batch]), None);
//! let (sink, collected) = CollectSink::new();
//! let out = graph.add_operator("collect", 1, sink.factory());
//! graph.connect(src, out, Partitioning::Forward);
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! rt.block_on(async { LocalExecutor::new().execute(graph).unwrap().wait().await.unwrap() });
//! assert_eq!(collected.rows(), 3);
//! ```

pub mod dead_letter;
pub mod executor;
mod gate;
pub mod graph;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod partition;
pub mod plan;
pub mod source;
mod task;

pub use fungi_checkpoint::RestoredState;
pub use operator::{Operator, OperatorContext, Output};
pub use source::{Source, SourceContext, SourceEvent};
