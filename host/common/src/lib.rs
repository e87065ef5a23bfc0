//! Shared vocabulary of the Fungi host.
//!
//! Every other host crate builds on this one: it holds the identifiers of jobs, operators
//! and subtasks ([`ids`]), the error type with stable codes ([`error`]), the messages that
//! travel on every edge of a job ([`message`]), key groups and the vectorized key hashing
//! that assigns rows to them ([`keys`]), event-time helpers ([`time`]), job
//! configuration ([`config`]) and the compaction of batches before they are serialised
//! ([`compact`]). It sits at the bottom of the dependency graph and depends on nothing
//! of Fungi's.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use fungi_common::keys::{hash_columns, KeyGroups};
//!
//! let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
//! let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7, 7, 8]))]).unwrap();
//! let mut hashes = Vec::new();
//! hash_columns(&[batch.column(0).clone()], &mut hashes).unwrap();
//! let groups = KeyGroups::new(128);
//! // Equal keys always land in the same key group, and so on the same subtask.
//! assert_eq!(groups.key_group(hashes[0]), groups.key_group(hashes[1]));
//! ```

pub mod changelog;
pub mod compact;
pub mod config;
pub mod error;
pub mod ids;
pub mod keys;
pub mod message;
pub mod time;
pub mod untrusted_ipc;

pub use error::{FungiError, Result};
pub use message::{LatencyMarker, Message, Watermark};
