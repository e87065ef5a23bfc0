//! Integration tests of the connectors, run through the real executor.

mod datagen;
mod files;
mod nexmark;

use fungi_execution::executor::{JobSummary, LocalExecutor};
use fungi_execution::graph::JobGraph;

/// Runs a job to completion on a fresh runtime.
pub(crate) fn run(graph: JobGraph) -> fungi_common::Result<JobSummary> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { LocalExecutor::new().execute(graph)?.wait().await })
}
