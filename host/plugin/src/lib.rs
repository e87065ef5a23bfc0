//! The Wasm component host of Fungi.
//!
//! Plugins are WebAssembly components built against the contract in `wit/` (package
//! `fungi:plugin`). This crate loads them ([`PluginHost::load`]), checks their world,
//! contract version and imports, compiles them once (with a persistent cache keyed by
//! content hash and engine version), and runs each instance in its own store under its
//! tenant's limits ([`TenantLimits`]): memory per instance and per tenant, time per call
//! (epoch interruption on a ticker thread for guest code, the same deadline for WASI
//! calls that wait), CPU budget per second (the calling thread's CPU time, charged at
//! every epoch tick, a tenant over budget paused mid-call), instance count,
//! output bytes, optional fuel; WASI deny-by-default (no environment, directories and
//! network addresses only as granted, stdout/stderr captured and capped). A trap or a
//! broken limit discards the instance and returns a [`PluginError`] that names the
//! plugin, the function, the reason and what the guest printed.
//!
//! The adapters make plugins look native: [`ScalarUdf`] evaluates Arrow arrays (the SQL
//! layer wraps it as a DataFusion `ScalarUDF`), [`AggregateUdf`] is a Fungi
//! [`AggregateFunction`](fungi_streaming::aggregate::AggregateFunction) whose
//! accumulator serves every group of an operator per call, so plugin aggregates run in
//! windows like native ones.
//!
//! ```no_run
//! # fn main() -> Result<(), fungi_plugin::PluginError> {
//! use std::sync::Arc;
//! use fungi_plugin::{HostOptions, PluginHost, ScalarUdf, PluginTenant, TenantLimits};
//!
//! let host = PluginHost::new(HostOptions::default())?;
//! let plugin = host.load_file(std::path::Path::new("strings_geo.wasm"))?;
//! let tenant = Arc::new(PluginTenant::new("acme", TenantLimits::default()));
//! let gcd = ScalarUdf::new(plugin, tenant, "gcd", Vec::new())?;
//! let a: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![12, 10]));
//! let b: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![18, 4]));
//! let result = gcd.call(&[a, b], 2)?; // [6, 2]
//! # Ok(()) }
//! ```

mod aggregate;
mod bindings;
pub mod conformance;
mod connector;
mod error;
mod host;
pub mod ipc;
mod limits;
mod output;
mod plugin;
mod pool;
mod sandbox;
mod scalar;
mod table;
mod vectors;
mod wasi_io;

pub use aggregate::{AggregateUdf, WasmAccumulator};
pub use bindings::CONTRACT_VERSION;
pub use connector::{PluginSink, PluginSource, Poll, SinkWriter, SplitReader};
pub use error::{LimitBreach, LimitKind, PluginError, Result};
pub use host::{HostOptions, PluginHost};
pub use limits::{MAX_PLUGIN_METRICS, PluginMetric, PluginTenant, TenantLimits};
pub use plugin::{FunctionSignature, Manifest, Plugin, PluginKind, Volatility};
pub use scalar::ScalarUdf;
pub use table::{TableRows, TableUdf};
