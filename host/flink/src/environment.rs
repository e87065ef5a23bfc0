//! The execution environment: where a job graph is built and started.

use std::sync::{Arc, Mutex};

use fungi_common::Result;
use fungi_common::config::JobConfig;
use fungi_execution::executor::{JobHandle, JobSummary, LocalExecutor};
use fungi_execution::graph::{JobGraph, NodeKind, Partitioning};
use fungi_execution::plan::PhysicalPlan;
use fungi_streaming::watermark::WatermarkStrategy;

use crate::SourceSpec;
use crate::stream::DataStream;

/// Builds a job; cheap to clone (all clones build the same job).
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    pub(crate) graph: Arc<Mutex<JobGraph>>,
    /// The executor given with [`with_executor`](Self::with_executor); otherwise one is
    /// made for the job's configuration.
    executor: Option<LocalExecutor>,
}

impl Default for StreamExecutionEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StreamExecutionEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamExecutionEnvironment")
            .finish_non_exhaustive()
    }
}

impl StreamExecutionEnvironment {
    /// An environment that runs jobs in this process.
    pub fn new() -> Self {
        StreamExecutionEnvironment {
            graph: Arc::new(Mutex::new(JobGraph::new("job"))),
            executor: None,
        }
    }

    /// Uses `executor` (e.g. with another state backend).
    pub fn with_executor(mut self, executor: LocalExecutor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Default parallelism of operators added from now on.
    pub fn set_parallelism(&self, parallelism: u32) -> &Self {
        self.graph.lock().expect("poisoned").config.parallelism = parallelism;
        self
    }

    /// Takes a checkpoint every `interval` into `dir` (Flink's `enableCheckpointing` with
    /// a file-system checkpoint storage): sources save their positions, windows and keyed
    /// state their contents, file and plugin sinks commit when a checkpoint completes.
    pub fn enable_checkpointing(
        &self,
        interval: std::time::Duration,
        dir: impl Into<std::path::PathBuf>,
    ) -> &Self {
        let mut g = self.graph.lock().expect("poisoned");
        g.config.checkpointing.interval = Some(interval);
        g.config.checkpointing.dir = Some(dir.into());
        self
    }

    /// Where keyed state lives (memory or RocksDB), unless an executor was given.
    pub fn set_state_backend(&self, kind: fungi_common::config::StateBackendKind) -> &Self {
        self.graph.lock().expect("poisoned").config.state_backend = kind;
        self
    }

    /// Replaces the job configuration.
    pub fn set_config(&self, config: JobConfig) -> &Self {
        self.graph.lock().expect("poisoned").config = config;
        self
    }

    /// The job configuration.
    pub fn config(&self) -> JobConfig {
        self.graph.lock().expect("poisoned").config.clone()
    }

    /// Adds a source. With a watermark strategy, timestamps are read from its column and
    /// watermarks are generated per split of the source.
    pub fn from_source(
        &self,
        source: SourceSpec,
        watermarks: impl Into<Option<WatermarkStrategy>>,
        name: &str,
    ) -> DataStream {
        let (factory, schema) = source;
        let watermarks = watermarks.into();
        let time_column = watermarks.as_ref().map(|w| w.timestamp_column.clone());
        let mut g = self.graph.lock().expect("poisoned");
        let parallelism = g.config.parallelism;
        let node = g.add_source(name, parallelism, factory, watermarks);
        drop(g);
        DataStream::new(self.clone(), node, schema, time_column)
    }

    /// The job graph built so far, with default edges resolved.
    pub fn job_graph(&self, name: &str) -> JobGraph {
        let mut graph = self.graph.lock().expect("poisoned").clone();
        graph.name = name.to_string();
        // As in Flink: an edge without an explicit partitioner is forward when both ends
        // have the same parallelism, rebalance otherwise.
        let parallelism: Vec<u32> = graph.nodes.iter().map(|n| n.parallelism).collect();
        for e in &mut graph.edges {
            if e.partitioning == Partitioning::Forward
                && parallelism[e.from.0 as usize] != parallelism[e.to.0 as usize]
            {
                e.partitioning = Partitioning::Rebalance;
            }
        }
        graph
    }

    /// The plan as EXPLAIN shows it.
    pub fn explain(&self) -> Result<String> {
        Ok(PhysicalPlan::new(self.job_graph("job"))?.explain())
    }

    /// Starts the job and returns at once.
    pub fn execute_async(&self, name: &str) -> Result<JobHandle> {
        let graph = self.job_graph(name);
        if !graph
            .nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Operator { .. }))
        {
            return Err(fungi_common::FungiError::Plan(
                "the job has no operators or sinks; add a sink with sink_to() or print()".into(),
            ));
        }
        match &self.executor {
            Some(executor) => executor.execute(graph),
            None => LocalExecutor::for_config(&graph.config)?.execute(graph),
        }
    }

    /// Runs the job to completion.
    pub async fn execute(&self, name: &str) -> Result<JobSummary> {
        self.execute_async(name)?.wait().await
    }
}
