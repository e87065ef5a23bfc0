//! Write Fungi plugins in Rust.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`) that implements one world
//! of the contract in `wit/` (package `fungi:plugin`). This crate generates the guest
//! bindings from that contract and hides them behind plain Rust traits: Arrow arrays in,
//! Arrow arrays out.
//!
//! Scalar functions, row style (the macro writes the vectorized loop and handles NULLs):
//!
//! ```ignore
//! #[fungi_sdk::udf]
//! fn gcd(a: i64, b: i64) -> i64 { /* ... */ }
//!
//! fungi_sdk::scalar_plugin! {
//!     name: "math",
//!     description: "integer helpers",
//!     functions: [gcd],
//! }
//! ```
//!
//! or batch style, implementing [`ScalarFunction`] directly. Aggregates implement
//! [`AggregateFunction`] and [`Accumulator`] (one accumulator holds every group; each
//! call carries a group id per row) and are exported with [`aggregate_plugin!`].

use std::sync::Arc;

pub use arrow_array;
pub use arrow_schema;
pub use fungi_sdk_macros::udf;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};

#[doc(hidden)]
pub use fungi_sdk_aggregate_bindings as aggregate_bindings;
#[doc(hidden)]
pub use fungi_sdk_scalar_bindings as scalar_bindings;
#[doc(hidden)]
pub use fungi_sdk_sink_bindings as sink_bindings;
#[doc(hidden)]
pub use fungi_sdk_source_bindings as source_bindings;
#[doc(hidden)]
pub use fungi_sdk_table_bindings as table_bindings;

pub mod host;
pub mod udf;

// Defined before the modules that use it.
/// `From` conversions between the SDK's types and one world's generated `types`
/// (every world generates its own copy of the `fungi:plugin/types` interface).
macro_rules! conversions {
    ($types:ident) => {
        impl From<crate::Error> for $types::PluginError {
            fn from(e: crate::Error) -> Self {
                match e {
                    crate::Error::InvalidInput(m) => $types::PluginError::InvalidInput(m),
                    crate::Error::Unsupported(m) => $types::PluginError::Unsupported(m),
                    crate::Error::Internal(m) => $types::PluginError::Internal(m),
                }
            }
        }

        impl From<crate::Manifest> for $types::Manifest {
            fn from(m: crate::Manifest) -> Self {
                $types::Manifest {
                    name: m.name,
                    version: m.version,
                    description: m.description,
                    capabilities: $types::Capabilities {
                        network: m.network,
                        directories: m.directories,
                    },
                }
            }
        }

        impl From<crate::Volatility> for $types::Volatility {
            fn from(v: crate::Volatility) -> Self {
                match v {
                    crate::Volatility::Immutable => $types::Volatility::Immutable,
                    crate::Volatility::Stable => $types::Volatility::Stable,
                    crate::Volatility::Volatile => $types::Volatility::Volatile,
                }
            }
        }
    };
}

mod adapters;
mod connectors;
#[doc(hidden)]
pub use adapters::{AggregateAdapter, ScalarAdapter, TableAdapter};
#[doc(hidden)]
pub use connectors::{SinkAdapter, SourceAdapter};
pub use connectors::{SinkConnector, SinkWriter, SourceConnector, SourcePoll, SplitReader};

/// An error a plugin returns (instead of panicking, which the host treats as a crash).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input is not what the function accepts.
    InvalidInput(String),
    /// Valid, but not supported by this plugin.
    Unsupported(String),
    /// Anything else.
    Internal(String),
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Internal(e.to_string())
    }
}

/// How a function's result depends on its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// Same input, same output.
    Immutable,
    /// Same within a query.
    Stable,
    /// May differ per call.
    Volatile,
}

/// What the plugin says about itself.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// `host:port` addresses it wants to reach.
    pub network: Vec<String>,
    /// Guest directories it wants.
    pub directories: Vec<String>,
}

impl Manifest {
    /// A manifest asking for no capabilities.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Manifest {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            ..Manifest::default()
        }
    }
}

/// A scalar function: one output value per input row, a batch at a time.
pub trait ScalarFunction: Send + Sync + 'static {
    /// The name SQL calls it by.
    fn name(&self) -> &str;
    /// Argument types.
    fn arguments(&self) -> Vec<DataType>;
    /// Result type.
    fn returns(&self) -> DataType;
    /// Volatility (default: immutable).
    fn volatility(&self) -> Volatility {
        Volatility::Immutable
    }
    /// Evaluates `args` (`rows` rows; one array per argument); returns `rows` values.
    fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef, Error>;
}

/// A table function: each input row gives zero or more output rows (`LATERAL TABLE` in
/// SQL), a batch at a time.
pub trait TableFunction: Send + Sync + 'static {
    /// The name SQL calls it by.
    fn name(&self) -> &str;
    /// Argument types.
    fn arguments(&self) -> Vec<DataType>;
    /// The output columns.
    fn columns(&self) -> Vec<Field>;
    /// Evaluates `args` (`rows` input rows); returns the output rows (with
    /// [`columns`](Self::columns)) and, for each, the index of the input row it came from.
    fn call(&self, args: &[ArrayRef], rows: usize) -> Result<(RecordBatch, Vec<u32>), Error>;
}

/// An aggregate function: makes accumulators.
pub trait AggregateFunction: Send + Sync + 'static {
    /// The name SQL calls it by.
    fn name(&self) -> &str;
    /// Argument types.
    fn arguments(&self) -> Vec<DataType>;
    /// Result type.
    fn returns(&self) -> DataType;
    /// Whether its accumulators implement [`Accumulator::retract`].
    fn retractable(&self) -> bool {
        false
    }
    /// A new, empty accumulator.
    fn accumulator(&self, config: &[(String, String)]) -> Result<Box<dyn Accumulator>, Error>;
}

/// The state of an aggregate for many groups (dense ids chosen by the host).
pub trait Accumulator: 'static {
    /// Folds `args` into `groups` (one group id per row); ids are below `total`.
    fn update(&mut self, args: &[ArrayRef], groups: &[u32], total: usize) -> Result<(), Error>;
    /// Takes `args` back out of `groups`.
    fn retract(&mut self, args: &[ArrayRef], groups: &[u32], total: usize) -> Result<(), Error> {
        let _ = (args, groups, total);
        Err(Error::Unsupported("this aggregate cannot retract".into()))
    }
    /// Merges group `src` into `dst` for each pair; `src` is unchanged.
    fn merge(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<(), Error>;
    /// The result of each of `groups`.
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef, Error>;
    /// Empties `groups`.
    fn reset(&mut self, groups: &[u32]);
    /// The state of each of `groups` as bytes.
    fn snapshot(&self, groups: &[u32]) -> Result<Vec<Vec<u8>>, Error>;
    /// Restores `groups` from [`snapshot`](Self::snapshot) bytes.
    fn restore(&mut self, groups: &[u32], states: &[Vec<u8>]) -> Result<(), Error>;
}

/// A scalar plugin: its manifest and functions (implemented by [`scalar_plugin!`]).
pub trait ScalarPlugin: 'static {
    /// The manifest.
    fn manifest() -> Manifest;
    /// The functions.
    fn functions() -> Vec<Arc<dyn ScalarFunction>>;
}

/// A table function plugin: its manifest and functions (implemented by
/// [`table_plugin!`]).
pub trait TablePlugin: 'static {
    /// The manifest.
    fn manifest() -> Manifest;
    /// The functions.
    fn functions() -> Vec<Arc<dyn TableFunction>>;
}

/// An aggregate plugin: its manifest and aggregates (implemented by
/// [`aggregate_plugin!`]).
pub trait AggregatePlugin: 'static {
    /// The manifest.
    fn manifest() -> Manifest;
    /// The aggregates.
    fn functions() -> Vec<Arc<dyn AggregateFunction>>;
}

/// Arrow IPC helpers for the boundary.
#[doc(hidden)]
pub mod ipc {
    use super::*;

    /// Encodes `batch` as Arrow IPC stream bytes.
    pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(batch.get_array_memory_size() + 512);
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
        drop(w);
        Ok(out)
    }

    /// Encodes a schema of `types` (named `arg0`...) or of one field `result`.
    pub fn schema(fields: Vec<Field>) -> Vec<u8> {
        let mut out = Vec::new();
        let schema = Schema::new(fields);
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).expect("schema encodes");
        w.finish().expect("schema encodes");
        drop(w);
        out
    }

    /// Decodes the columns of an IPC stream with one batch (no batch: no rows), without
    /// copying the column data (the arrays point into `bytes`).
    ///
    /// The stream is read message by message here rather than through Arrow's
    /// `StreamDecoder`, because that one validates every batch (all string offsets and
    /// their UTF-8), a pass over the whole batch inside the sandbox per call. The bytes
    /// come from the Fungi host, which encodes them from Arrow arrays it has already
    /// validated and validates everything a plugin returns, so the guest skips it.
    pub fn decode(bytes: Vec<u8>) -> Result<(Vec<ArrayRef>, usize), Error> {
        let buffer = arrow_buffer::Buffer::from_vec(bytes);
        let mut schema: Option<Arc<Schema>> = None;
        let mut offset = 0;
        while let Some((message, body)) = next_message(&buffer, &mut offset)? {
            match message.header_type() {
                arrow_ipc::MessageHeader::Schema => {
                    let fb = message
                        .header_as_schema()
                        .ok_or_else(|| invalid("schema message without a schema"))?;
                    schema = Some(Arc::new(arrow_ipc::convert::fb_to_schema(fb)));
                }
                arrow_ipc::MessageHeader::RecordBatch => {
                    let fb = message
                        .header_as_record_batch()
                        .ok_or_else(|| invalid("batch message without a batch"))?;
                    let schema = schema
                        .clone()
                        .ok_or_else(|| invalid("batch before the schema"))?;
                    let mut skip = arrow_data::UnsafeFlag::new();
                    // SAFETY: host-encoded data from validated arrays (see above).
                    unsafe { skip.set(true) };
                    let no_dictionaries = std::collections::HashMap::new();
                    let batch = arrow_ipc::reader::RecordBatchDecoder::try_new(
                        &body,
                        fb,
                        schema,
                        &no_dictionaries,
                        &message.version(),
                    )?
                    .with_require_alignment(false)
                    .with_skip_validation(skip)
                    .read_record_batch()?;
                    let rows = batch.num_rows();
                    return Ok((batch.columns().to_vec(), rows));
                }
                other => {
                    return Err(invalid(&format!("unexpected IPC message {other:?}")));
                }
            }
        }
        Ok((Vec::new(), 0))
    }

    /// The next message of an IPC stream at `*offset` and its body; `None` at the end
    /// (end-of-stream marker or no bytes left).
    fn next_message<'a>(
        buffer: &'a arrow_buffer::Buffer,
        offset: &mut usize,
    ) -> Result<Option<(arrow_ipc::Message<'a>, arrow_buffer::Buffer)>, Error> {
        let bytes = buffer.as_slice();
        let word = |at: usize| -> Result<u32, Error> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| invalid("truncated IPC stream"))
        };
        if *offset + 4 > bytes.len() {
            return Ok(None);
        }
        // A continuation marker, then the metadata length (older streams: no marker).
        let mut at = *offset;
        let mut len = word(at)?;
        at += 4;
        if len == 0xFFFF_FFFF {
            len = word(at)?;
            at += 4;
        }
        if len == 0 {
            return Ok(None);
        }
        let meta = bytes
            .get(at..at + len as usize)
            .ok_or_else(|| invalid("truncated IPC message"))?;
        let message =
            arrow_ipc::root_as_message(meta).map_err(|e| invalid(&format!("IPC message: {e}")))?;
        at += len as usize;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| invalid("negative IPC body length"))?;
        if at + body_len > bytes.len() {
            return Err(invalid("truncated IPC body"));
        }
        let body = buffer.slice_with_length(at, body_len);
        *offset = at + body_len;
        Ok(Some((message, body)))
    }

    fn invalid(what: &str) -> Error {
        Error::InvalidInput(format!("batch from the host: {what}"))
    }

    /// One column as an IPC batch.
    pub fn column(array: ArrayRef) -> Result<Vec<u8>, Error> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "result",
            array.data_type().clone(),
            true,
        )]));
        let rows = array.len();
        let batch = RecordBatch::try_new_with_options(
            schema,
            vec![array],
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        encode(&batch)
    }
}

/// Exports a library of scalar functions.
///
/// ```ignore
/// fungi_sdk::scalar_plugin! {
///     name: "strings-geo",
///     description: "string and geographic functions",
///     functions: [haversine, gcd],
/// }
/// ```
#[macro_export]
macro_rules! scalar_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        functions: [$($f:expr),* $(,)?] $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __FungiScalarPlugin;
        impl $crate::ScalarPlugin for __FungiScalarPlugin {
            fn manifest() -> $crate::Manifest {
                $crate::Manifest::new($name, env!("CARGO_PKG_VERSION"), $description)
            }
            fn functions() -> ::std::vec::Vec<::std::sync::Arc<dyn $crate::ScalarFunction>> {
                vec![$(::std::sync::Arc::new($f)),*]
            }
        }
        #[doc(hidden)]
        type __FungiScalarExport = $crate::ScalarAdapter<__FungiScalarPlugin>;
        $crate::scalar_bindings::export_scalar_udf!(__FungiScalarExport with_types_in $crate::scalar_bindings);
    };
}

/// Exports a library of table functions (see [`scalar_plugin!`]).
#[macro_export]
macro_rules! table_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        functions: [$($f:expr),* $(,)?] $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __FungiTablePlugin;
        impl $crate::TablePlugin for __FungiTablePlugin {
            fn manifest() -> $crate::Manifest {
                $crate::Manifest::new($name, env!("CARGO_PKG_VERSION"), $description)
            }
            fn functions() -> ::std::vec::Vec<::std::sync::Arc<dyn $crate::TableFunction>> {
                vec![$(::std::sync::Arc::new($f)),*]
            }
        }
        #[doc(hidden)]
        type __FungiTableExport = $crate::TableAdapter<__FungiTablePlugin>;
        $crate::table_bindings::export_table_udf!(__FungiTableExport with_types_in $crate::table_bindings);
    };
}

/// Exports a library of aggregate functions (see [`scalar_plugin!`]).
#[macro_export]
macro_rules! aggregate_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        functions: [$($f:expr),* $(,)?] $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __FungiAggregatePlugin;
        impl $crate::AggregatePlugin for __FungiAggregatePlugin {
            fn manifest() -> $crate::Manifest {
                $crate::Manifest::new($name, env!("CARGO_PKG_VERSION"), $description)
            }
            fn functions() -> ::std::vec::Vec<::std::sync::Arc<dyn $crate::AggregateFunction>> {
                vec![$(::std::sync::Arc::new($f)),*]
            }
        }
        #[doc(hidden)]
        type __FungiAggregateExport = $crate::AggregateAdapter<__FungiAggregatePlugin>;
        $crate::aggregate_bindings::export_aggregate_udf!(__FungiAggregateExport with_types_in $crate::aggregate_bindings);
    };
}

/// Exports a source connector: `T` implements [`SourceConnector`].
///
/// ```ignore
/// fungi_sdk::source_plugin! { name: "counter", description: "...", connector: Counter }
/// ```
#[macro_export]
macro_rules! source_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        connector: $ty:ty $(,)?
    ) => {
        #[doc(hidden)]
        type __FungiSourceExport = $crate::SourceAdapter<$ty>;
        #[doc(hidden)]
        impl $crate::connectors_manifest::Described for $ty {
            fn manifest() -> $crate::Manifest {
                $crate::Manifest::new($name, env!("CARGO_PKG_VERSION"), $description)
            }
        }
        $crate::source_bindings::export_source_connector!(__FungiSourceExport with_types_in $crate::source_bindings);
    };
}

/// Exports a sink connector: `T` implements [`SinkConnector`]. `directories` lists the
/// guest directories it asks to be granted.
#[macro_export]
macro_rules! sink_plugin {
    (
        name: $name:expr,
        description: $description:expr,
        directories: [$($dir:expr),* $(,)?],
        connector: $ty:ty $(,)?
    ) => {
        #[doc(hidden)]
        type __FungiSinkExport = $crate::SinkAdapter<$ty>;
        #[doc(hidden)]
        impl $crate::connectors_manifest::Described for $ty {
            fn manifest() -> $crate::Manifest {
                $crate::Manifest {
                    directories: vec![$(($dir).to_string()),*],
                    ..$crate::Manifest::new($name, env!("CARGO_PKG_VERSION"), $description)
                }
            }
        }
        $crate::sink_bindings::export_sink_connector!(__FungiSinkExport with_types_in $crate::sink_bindings);
    };
}

#[doc(hidden)]
pub mod connectors_manifest {
    /// A connector's manifest (implemented by the export macros).
    pub trait Described {
        /// The manifest.
        fn manifest() -> crate::Manifest;
    }
}
