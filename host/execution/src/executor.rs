//! Runs a physical plan in this process: one tokio task per chain subtask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fungi_checkpoint::{
    CheckpointStats, CheckpointStorage, CompletedCheckpoint, Coordinator, TaskKey,
};
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::keys::KeyGroups;
use fungi_common::{FungiError, Message, Result};
use fungi_state::{MemoryStateBackend, StateBackend};
use fungi_streaming::watermark::SplitWatermarks;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

use crate::dead_letter::DeadLetterQueue;
use crate::gate::InputGate;
use crate::graph::{JobGraph, NodeKind};
use crate::metrics::{JobMetrics, LatencySummary, OperatorMetrics, OperatorSnapshot};
use crate::operator::OperatorContext;
use crate::partition::Router;
use crate::plan::PhysicalPlan;
use crate::source::SourceContext;
use crate::task::{ChainRunner, OperatorTask, SourceTask, TaskCheckpointing};

/// One input channel of a subtask and which of its operator's inputs it feeds.
type InputChannel = (usize, mpsc::Receiver<Message>);

/// Runs jobs inside the current tokio runtime (embedded mode).
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    state_backend: Arc<dyn StateBackend>,
    /// Cancelling this token cancels the jobs this executor starts, at once (their
    /// tokens are its children): no task has to run to pass the cancellation on.
    cancel_parent: Option<CancellationToken>,
}

impl Default for LocalExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalExecutor {
    /// An executor with the in-memory state backend.
    pub fn new() -> Self {
        LocalExecutor {
            state_backend: Arc::new(MemoryStateBackend),
            cancel_parent: None,
        }
    }

    /// An executor with the state backend `config` asks for: memory, or RocksDB in a
    /// fresh temporary directory (the job's durable state is in its checkpoints).
    pub fn for_config(config: &fungi_common::config::JobConfig) -> Result<Self> {
        Ok(match config.state_backend {
            fungi_common::config::StateBackendKind::Memory => Self::new(),
            fungi_common::config::StateBackendKind::Rocksdb => {
                Self::with_state_backend(Arc::new(fungi_state::RocksDbStateBackend::temporary()?))
            }
        })
    }

    /// Uses `backend` for keyed state.
    pub fn with_state_backend(backend: Arc<dyn StateBackend>) -> Self {
        LocalExecutor {
            state_backend: backend,
            cancel_parent: None,
        }
    }

    /// Jobs started by this executor are cancelled when `parent` is.
    pub fn cancelled_by(mut self, parent: CancellationToken) -> Self {
        self.cancel_parent = Some(parent);
        self
    }

    /// Plans and starts `graph`. Must be called from within a tokio runtime.
    pub fn execute(&self, graph: JobGraph) -> Result<JobHandle> {
        let plan = PhysicalPlan::new(graph)?;
        self.start(plan)
    }

    /// Starts an already planned job.
    pub fn start(&self, plan: PhysicalPlan) -> Result<JobHandle> {
        self.start_from(plan, None)
    }

    /// Starts a planned job, restoring its sources and operators from `checkpoint` if
    /// given. Fails if the checkpoint holds state of an operator the job does not have
    /// (it would be lost).
    pub fn start_from(
        &self,
        plan: PhysicalPlan,
        checkpoint: Option<&CompletedCheckpoint>,
    ) -> Result<JobHandle> {
        let graph = &plan.graph;
        let config = &graph.config;
        config.validate()?;
        if let Some(c) = checkpoint {
            for name in c.stateful_operators() {
                if !graph.nodes.iter().any(|n| n.name == name) {
                    return Err(FungiError::State(format!(
                        "checkpoint {} holds state of operator '{name}', which this job does not have; \
                         its state would be lost (operators: {})",
                        c.id(),
                        graph
                            .nodes
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let key_groups = KeyGroups::new(config.max_parallelism);
        let cancel = match &self.cancel_parent {
            Some(parent) => parent.child_token(),
            None => CancellationToken::new(),
        };
        let dead_letters =
            Arc::new(DeadLetterQueue::default().with_targets(graph.dead_letter_targets.clone()));
        let metrics = JobMetrics {
            operators: graph
                .nodes
                .iter()
                .map(|n| {
                    Arc::new(match n.kind {
                        crate::graph::NodeKind::Source { .. } => OperatorMetrics::source(&n.name),
                        _ => OperatorMetrics::new(&n.name),
                    })
                })
                .collect(),
            latency: Arc::default(),
        };
        // Channels for every edge that leaves a chain: one per (producer, consumer) pair.
        let mut receivers: Vec<Vec<Vec<InputChannel>>> = plan
            .chains
            .iter()
            .map(|c| (0..c.parallelism).map(|_| Vec::new()).collect())
            .collect();
        let mut routers: Vec<Vec<Vec<Router>>> = plan
            .chains
            .iter()
            .map(|c| (0..c.parallelism).map(|_| Vec::new()).collect())
            .collect();
        for e in &graph.edges {
            let (from_chain, to_chain) = (
                plan.chain_of[e.from.0 as usize],
                plan.chain_of[e.to.0 as usize],
            );
            if from_chain == to_chain {
                continue;
            }
            let pb = plan.chains[to_chain].parallelism;
            // Which input of the consumer this edge is.
            let logical = graph
                .edges
                .iter()
                .filter(|x| x.to == e.to)
                .position(|x| std::ptr::eq(x, e))
                .expect("the edge is among its consumer's inputs");
            for (i, producer) in routers[from_chain].iter_mut().enumerate() {
                let mut senders = Vec::with_capacity(pb as usize);
                for rx in receivers[to_chain].iter_mut() {
                    let (tx, r) = mpsc::channel(config.channel_capacity);
                    senders.push(tx);
                    rx.push((logical, r));
                }
                producer.push(Router::new(
                    e.tag.clone(),
                    e.partitioning.clone(),
                    key_groups,
                    senders,
                    i,
                    metrics.operators[e.from.0 as usize].clone(),
                ));
            }
        }
        let mut tasks = JoinSet::new();
        // The checkpoint coordinator, when the job checkpoints.
        let mut checkpoint_stats = None;
        let mut local_checkpoint_dir = None;
        let channels = match (&config.checkpointing.interval, &config.checkpointing.dir) {
            (Some(_), Some(dir)) => {
                let expected = plan.chains.iter().map(|c| c.parallelism as usize).sum();
                let storage = CheckpointStorage::open(dir, &config.checkpointing.storage_options)?;
                // Operators write their own checkpoint files (RocksDB) locally; object
                // storage gets them from there.
                local_checkpoint_dir = Some(storage.dir().to_path_buf());
                let (coordinator, channels) = Coordinator::new(
                    config.checkpointing.clone(),
                    storage,
                    graph.name.clone(),
                    expected,
                    checkpoint.map_or(1, |c| c.id() + 1),
                );
                checkpoint_stats = Some(coordinator.stats());
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    (
                        "checkpoint coordinator".to_string(),
                        coordinator.run(cancel).await,
                    )
                });
                Some(channels)
            }
            _ => None,
        };
        for (c, chain) in plan.chains.iter().enumerate() {
            for s in (0..chain.parallelism).rev() {
                let subtask = SubtaskInfo {
                    index: s,
                    parallelism: chain.parallelism,
                    max_parallelism: config.max_parallelism,
                };
                let task_routers = routers[c].pop().expect("one router list per subtask");
                let gate = receivers[c].pop().expect("one receiver list per subtask");
                let head = graph.node(chain.nodes[0]);
                let (op_nodes, source) = match &head.kind {
                    NodeKind::Source {
                        factory,
                        watermarks,
                    } => {
                        let mut source = factory(&subtask)?;
                        if let Some(state) = checkpoint
                            .and_then(|c| c.source_state(&head.name, s, chain.parallelism))
                        {
                            source.restore_position(&state).map_err(|e| {
                                FungiError::State(format!("source '{}': {e}", head.name))
                            })?;
                        }
                        (&chain.nodes[1..], Some((source, watermarks.clone())))
                    }
                    NodeKind::Operator { .. } => (&chain.nodes[..], None),
                };
                let mut ops = Vec::new();
                let mut contexts = Vec::new();
                let mut restores = Vec::new();
                for id in op_nodes {
                    let node = graph.node(*id);
                    let NodeKind::Operator { factory } = &node.kind else {
                        return Err(FungiError::Internal(format!(
                            "source '{}' inside a chain",
                            node.name
                        )));
                    };
                    ops.push(factory(&subtask)?);
                    restores.push(
                        checkpoint.and_then(|c| c.operator_state(&node.name, s, chain.parallelism)),
                    );
                    contexts.push(OperatorContext {
                        job: graph.name.clone(),
                        operator: node.name.clone(),
                        subtask,
                        state_backend: self.state_backend.clone(),
                        metrics: metrics.operators[id.0 as usize].clone(),
                        dead_letters: dead_letters.clone(),
                        checkpointing: channels.is_some(),
                        checkpoint_dir: local_checkpoint_dir.clone(),
                    });
                }
                let head_metrics = metrics.operators[head.id.0 as usize].clone();
                let chain_runner = ChainRunner::new(
                    ops,
                    contexts,
                    task_routers,
                    Some(head_metrics.clone()),
                    metrics.latency.clone(),
                    restores,
                );
                let checkpointing = channels.as_ref().map(|channels| TaskCheckpointing {
                    key: TaskKey {
                        chain: head.name.clone(),
                        subtask: s,
                    },
                    parallelism: chain.parallelism,
                    channels: channels.clone(),
                    injected: CheckpointId::default(),
                });
                let name = format!("{} ({}/{})", head.name, s + 1, chain.parallelism);
                let cancel = cancel.clone();
                let tick = config.tick_interval;
                match source {
                    Some((source, watermarks)) => {
                        let task = SourceTask {
                            name: head.name.clone(),
                            source,
                            context: SourceContext {
                                subtask,
                                batch_size: config.batch_size,
                                metrics: head_metrics,
                                dead_letters: dead_letters.clone(),
                                name: head.name.clone(),
                            },
                            watermarks: watermarks.map(SplitWatermarks::new),
                            chain: chain_runner,
                            cancel,
                            tick,
                            latency_interval: config.latency_interval,
                            checkpointing,
                        };
                        tasks.spawn(async move { (name, task.run().await) });
                    }
                    None => {
                        let (logical_inputs, gate): (Vec<usize>, Vec<_>) = gate.into_iter().unzip();
                        let task = OperatorTask {
                            logical_inputs,
                            gate: InputGate::new(gate),
                            chain: chain_runner,
                            cancel,
                            tick,
                            checkpointing,
                        };
                        tasks.spawn(async move { (name, task.run().await) });
                    }
                }
            }
        }
        debug!(job = %graph.name, tasks = tasks.len(), "job started");
        Ok(JobHandle {
            explain: plan.explain(),
            cancel,
            tasks,
            metrics,
            dead_letters,
            checkpoint_stats,
            started: Instant::now(),
        })
    }
}

/// A running job.
#[derive(Debug)]
pub struct JobHandle {
    explain: String,
    cancel: CancellationToken,
    tasks: JoinSet<(String, Result<()>)>,
    metrics: JobMetrics,
    dead_letters: Arc<DeadLetterQueue>,
    checkpoint_stats: Option<Arc<CheckpointStats>>,
    started: Instant,
}

/// How a finished job went.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// Wall-clock run time.
    pub elapsed: Duration,
    /// Final counters per operator.
    pub operators: Vec<OperatorSnapshot>,
    /// Records sent to the dead-letter output, per reason.
    pub dead_letters: std::collections::BTreeMap<String, u64>,
    /// End-to-end latency, when the job emitted latency markers.
    pub latency: Option<LatencySummary>,
    /// Where the savepoint is, when the job was stopped with one.
    pub stopped_with_savepoint: Option<std::path::PathBuf>,
}

impl JobHandle {
    /// Live counters.
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// The job's dead-letter output.
    pub fn dead_letters(&self) -> &Arc<DeadLetterQueue> {
        &self.dead_letters
    }

    /// Checkpoint counters, when the job checkpoints.
    pub fn checkpoint_stats(&self) -> Option<&Arc<CheckpointStats>> {
        self.checkpoint_stats.as_ref()
    }

    /// The plan as EXPLAIN shows it.
    pub fn explain(&self) -> &str {
        &self.explain
    }

    /// A token that cancels the job when triggered (e.g. from a Ctrl-C handler).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Asks every task to stop; [`wait`](Self::wait) then returns `Cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until every task ended. Returns the first real error (a failing task
    /// cancels the others), `Cancelled` if the job was cancelled, or the summary.
    pub async fn wait(mut self) -> Result<JobSummary> {
        let mut first_error: Option<FungiError> = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = match joined {
                Ok(r) => r,
                Err(e) => (
                    "task".to_string(),
                    Err(FungiError::Internal(format!("task panicked: {e}"))),
                ),
            };
            if let Err(e) = result {
                if !matches!(e, FungiError::Cancelled) {
                    error!(task = %name, error = %e, "task failed");
                }
                self.cancel.cancel();
                let replace = match &first_error {
                    None => true,
                    Some(FungiError::Cancelled) => !matches!(e, FungiError::Cancelled),
                    Some(_) => false,
                };
                if replace {
                    first_error = Some(e);
                }
            }
        }
        let stopped_with_savepoint = self.checkpoint_stats.as_ref().and_then(|s| {
            s.stopped_with_savepoint
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        match first_error {
            // Stopping with a savepoint cancels the tasks on purpose.
            Some(FungiError::Cancelled) if stopped_with_savepoint.is_some() => {
                Ok(self.summary(stopped_with_savepoint))
            }
            Some(e) => Err(e),
            None => Ok(self.summary(None)),
        }
    }

    fn summary(&self, stopped_with_savepoint: Option<std::path::PathBuf>) -> JobSummary {
        JobSummary {
            elapsed: self.started.elapsed(),
            operators: self.metrics.snapshot(),
            dead_letters: self.dead_letters.counts(),
            latency: self.metrics.latency.summary(),
            stopped_with_savepoint,
        }
    }
}
