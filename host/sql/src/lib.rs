//! Streaming SQL for Fungi.
//!
//! DataFusion parses and plans; this crate turns its logical plans into Fungi job graphs
//! (see [`planner`]). It accepts Flink's streaming SQL:
//!
//! - `CREATE TABLE t (cols..., WATERMARK FOR ts AS ts - INTERVAL '4' SECOND) WITH
//!   ('connector' = 'nexmark' | 'datagen' | 'filesystem' | 'blackhole' | 'stdout', ...)`
//!   (a table without columns takes its connector's schema, e.g. Nexmark's);
//! - `CREATE VIEW`, `SET 'parallelism.default' = '2'`, `EXPLAIN`;
//! - window table functions `TABLE(TUMBLE|HOP|CUMULATE|SESSION(TABLE t, DESCRIPTOR(ts),
//!   ...))` grouped by `window_start, window_end` and keys, with every DataFusion
//!   aggregate;
//! - projections, filters, CASE, casts and every DataFusion scalar function;
//! - `INSERT INTO sink SELECT ...` (a job) and bare `SELECT` (a job whose sink the caller
//!   picks, e.g. stdout);
//! - plugin functions: `CREATE FUNCTION f LANGUAGE WASM USING 'plugin.wasm'` and
//!   `LOAD PLUGIN 'plugin.wasm'` (scalar functions and aggregates, also in windows).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use fungi_sql::{Outcome, SqlSession};
//! let mut session = SqlSession::default();
//! let outcomes = session.execute_script("
//!     CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000');
//!     EXPLAIN SELECT auction, price * 0.908 AS euros FROM bid WHERE price > 100;
//! ").await.unwrap();
//! let Outcome::Explain(text) = &outcomes[1] else { panic!() };
//! assert!(text.contains("filter"));
//! # });
//! ```

mod aggregate;
mod catalog;
mod ddl;
mod error;
mod flink_aggregates;
mod flink_aliases;
mod flink_arrays;
mod flink_functions;
mod flink_json;
mod flink_json_build;
mod flink_strings;
pub mod limits;
mod names;
mod operators;
mod over;
mod over_running;
pub mod planner;
mod plugins;
mod python;
mod session;
pub mod statement;
mod text;
mod tvf;
mod udfs;

pub use catalog::TableDef;
pub use error::{Result, SqlError};
pub use plugins::{Confinement, function_statement, path_inside};
pub use session::{Outcome, Query, SqlSession, TENANT_SETTINGS};

/// Flink's scalar functions that Fungi adds to DataFusion's or gives Flink's semantics
/// (`MOD`, `SPLIT_INDEX`, `REGEXP_EXTRACT`, `CONCAT`, `IF`, `TIMESTAMPADD`, ...), for
/// registering with another DataFusion context (e.g. a batch one that must agree with
/// streaming results).
pub fn flink_functions() -> Vec<datafusion::logical_expr::ScalarUDF> {
    let mut udfs = udfs::FlinkString::udfs();
    udfs.push(udfs::Mod::udf());
    udfs.extend(flink_functions::udfs());
    udfs
}

/// Flink's aggregates where DataFusion's result types differ (`AVG`), for the same use.
pub fn flink_aggregates() -> Vec<datafusion::logical_expr::AggregateUDF> {
    vec![flink_aggregates::FlinkAvg::udaf()]
}

/// Sets Flink's SQL options on a DataFusion configuration: case-sensitive identifiers
/// and NULL as the smallest value in `ORDER BY`.
pub fn flink_options(config: &mut datafusion::prelude::SessionConfig) {
    let options = config.options_mut();
    options.sql_parser.enable_ident_normalization = false;
    options.sql_parser.default_null_ordering = "nulls_min".to_string();
}
