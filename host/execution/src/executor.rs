//! Runs a physical plan in this process: one tokio task per chain subtask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fungi_checkpoint::{
    CheckpointStats, CheckpointStorage, CompletedCheckpoint, Coordinator, TaskChannels, TaskKey,
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
use crate::metrics::{JobMetrics, LatencySummary, OperatorSnapshot};
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
        self.launch(&plan, checkpoint, None)
    }

    /// Starts this process's part of a job split across processes (distributed mode):
    /// only the subtasks `part.exchange` says are local; channels to and from subtasks
    /// elsewhere come from the exchange, and the checkpoint coordinator runs elsewhere
    /// too (`part.coordinator`, when the job checkpoints).
    pub fn start_part(
        &self,
        plan: &PhysicalPlan,
        checkpoint: Option<&CompletedCheckpoint>,
        part: JobPart,
    ) -> Result<JobHandle> {
        self.launch(plan, checkpoint, Some(part))
    }

    fn launch(
        &self,
        plan: &PhysicalPlan,
        checkpoint: Option<&CompletedCheckpoint>,
        part: Option<JobPart>,
    ) -> Result<JobHandle> {
        let graph = &plan.graph;
        let config = &graph.config;
        config.validate()?;
        if let Some(c) = checkpoint {
            check_restorable(graph, c)?;
        }
        let cancel = match &self.cancel_parent {
            Some(parent) => parent.child_token(),
            None => CancellationToken::new(),
        };
        let dead_letters =
            Arc::new(DeadLetterQueue::default().with_targets(graph.dead_letter_targets.clone()));
        let metrics = JobMetrics::for_graph(graph);
        let mut tasks = JoinSet::new();
        let (mut wiring, coordination, exchange) = match part {
            None => (
                Wiring::new(plan, &metrics, None)?,
                start_coordinator(plan, checkpoint, &cancel, &mut tasks)?,
                None,
            ),
            Some(part) => {
                let wiring = Wiring::new(plan, &metrics, Some(part.exchange.as_ref()))?;
                let coordination = match part.coordinator {
                    Some(c) => Some(Coordination {
                        channels: c.channels,
                        stats: Arc::default(),
                        local_dir: c.local_dir,
                    }),
                    None => None,
                };
                (wiring, coordination, Some(part.exchange))
            }
        };
        let job = JobEnv {
            graph,
            checkpoint,
            coordination: coordination.as_ref(),
            metrics: &metrics,
            dead_letters: &dead_letters,
            cancel: &cancel,
            state_backend: &self.state_backend,
        };
        for (c, chain) in plan.chains.iter().enumerate() {
            for s in (0..chain.parallelism).rev() {
                let routers = wiring.routers[c]
                    .pop()
                    .expect("one router list per subtask");
                let inputs = wiring.receivers[c]
                    .pop()
                    .expect("one receiver list per subtask");
                if exchange.as_ref().is_some_and(|x| !x.is_local(c, s)) {
                    continue;
                }
                let (name, subtask) = job.subtask(chain, s, routers, inputs)?;
                tasks.spawn(async move { (name, subtask.run().await) });
            }
        }
        debug!(job = %graph.name, tasks = tasks.len(), "job started");
        Ok(JobHandle {
            explain: plan.explain(),
            cancel,
            tasks,
            metrics,
            dead_letters,
            checkpoint_stats: coordination.map(|c| c.stats),
            started: Instant::now(),
        })
    }
}

/// One channel between two chain subtasks: edge `edge` (its index in the job graph)
/// from subtask `producer` of its upstream chain to subtask `consumer` downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    /// Index of the edge in [`JobGraph::edges`].
    pub edge: u32,
    /// The sending subtask.
    pub producer: u32,
    /// The receiving subtask.
    pub consumer: u32,
}

/// How a job's subtasks split across processes connect: which run here, and the ends of
/// channels whose other end is in another process. Messages keep their order on a
/// channel, and a channel is bounded at both ends (backpressure).
pub trait Exchange: Send + Sync {
    /// Whether subtask `subtask` of chain `chain` (its index in the plan) runs here.
    fn is_local(&self, chain: usize, subtask: u32) -> bool;
    /// The sending end of `channel`, whose consumer is in another process.
    fn sender(&self, channel: ChannelId, capacity: usize) -> Result<mpsc::Sender<Message>>;
    /// The receiving end of `channel`, whose producer is in another process.
    fn receiver(&self, channel: ChannelId, capacity: usize) -> Result<mpsc::Receiver<Message>>;
}

/// A process's part of a distributed job.
pub struct JobPart {
    /// Where each subtask runs, and the channels to the others.
    pub exchange: Arc<dyn Exchange>,
    /// The coordinator's channels, when the job checkpoints.
    pub coordinator: Option<RemoteCoordinator>,
}

impl std::fmt::Debug for JobPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPart").finish_non_exhaustive()
    }
}

/// The ends of a coordinator that runs in another process, as this process's subtasks
/// hold them: triggers and completions arrive on the watches, reports leave on the
/// sender.
#[derive(Debug, Clone)]
pub struct RemoteCoordinator {
    /// The channels.
    pub channels: TaskChannels,
    /// Where operators write their own checkpoint files (a directory every process of
    /// the job shares).
    pub local_dir: std::path::PathBuf,
}

/// The checkpoint coordinator of `plan`, when it checkpoints (an interval and a
/// directory are set), with the channels its subtasks use and its counters; for a
/// process that runs the coordinator of a job whose subtasks run elsewhere.
pub fn coordinator(
    plan: &PhysicalPlan,
    checkpoint: Option<&CompletedCheckpoint>,
) -> Result<Option<(Coordinator, TaskChannels, Arc<CheckpointStats>)>> {
    let graph = &plan.graph;
    let checkpointing = &graph.config.checkpointing;
    let (Some(_), Some(dir)) = (&checkpointing.interval, &checkpointing.dir) else {
        return Ok(None);
    };
    let expected = plan.chains.iter().map(|c| c.parallelism as usize).sum();
    let storage = CheckpointStorage::open(dir, &checkpointing.storage_options)?;
    let (coordinator, channels) = Coordinator::new(
        checkpointing.clone(),
        storage,
        graph.name.clone(),
        expected,
        checkpoint.map_or(1, |c| c.id() + 1),
    );
    let stats = coordinator.stats();
    Ok(Some((coordinator, channels, stats)))
}

/// Whether `plan` can resume from `checkpoint` (a savepoint of another version of the
/// job, say): every operator whose state the checkpoint holds exists in `plan`, and
/// every stateful operator of `plan` reads the state its subtasks saved, through its
/// own restore on a scratch in-memory backend. Nothing runs and nothing is written; the
/// first refusal names the operator and why.
pub fn check_state_compatible(plan: &PhysicalPlan, checkpoint: &CompletedCheckpoint) -> Result<()> {
    let graph = &plan.graph;
    check_restorable(graph, checkpoint)?;
    let backend: Arc<dyn StateBackend> = Arc::new(MemoryStateBackend);
    for chain in &plan.chains {
        for id in &chain.nodes {
            let node = graph.node(*id);
            let NodeKind::Operator { factory } = &node.kind else {
                continue;
            };
            if !node.stateful {
                continue;
            }
            for s in 0..chain.parallelism {
                let Some(state) = checkpoint.operator_state(&node.name, s, chain.parallelism)
                else {
                    continue;
                };
                let subtask = SubtaskInfo {
                    index: s,
                    parallelism: chain.parallelism,
                    max_parallelism: graph.config.max_parallelism,
                };
                let context = OperatorContext {
                    job: graph.name.clone(),
                    operator: node.name.clone(),
                    subtask,
                    state_backend: backend.clone(),
                    metrics: Arc::new(crate::metrics::OperatorMetrics::new(&node.name)),
                    dead_letters: Arc::default(),
                    checkpointing: false,
                    checkpoint_interval: None,
                    checkpoint_dir: None,
                };
                let refused = |e: FungiError| {
                    FungiError::State(format!(
                        "operator '{}' cannot read the state checkpoint {} saved for it: {e}",
                        node.name,
                        checkpoint.id()
                    ))
                };
                let mut operator = factory(&subtask).map_err(refused)?;
                operator.open(&context).map_err(refused)?;
                operator.restore_state(&state).map_err(refused)?;
            }
        }
    }
    Ok(())
}

/// Fails when `checkpoint` holds state of an operator `graph` does not have: restoring
/// from it would lose that state.
fn check_restorable(graph: &JobGraph, checkpoint: &CompletedCheckpoint) -> Result<()> {
    for name in checkpoint.stateful_operators() {
        if !graph.nodes.iter().any(|n| n.name == name) {
            return Err(FungiError::State(format!(
                "checkpoint {} holds state of operator '{name}', which this job does not have; \
                 its state would be lost (operators: {})",
                checkpoint.id(),
                graph
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// The channels between chains: for every edge that leaves a chain, one bounded channel
/// per (producer subtask, consumer subtask) pair.
struct Wiring {
    /// Per chain, per subtask: its input channels.
    receivers: Vec<Vec<Vec<InputChannel>>>,
    /// Per chain, per subtask: its routers, one per outgoing edge.
    routers: Vec<Vec<Vec<Router>>>,
}

impl Wiring {
    /// Every edge between chains as a channel: in-process when both ends run here, from
    /// `exchange` when one end runs elsewhere (none when neither does).
    fn new(
        plan: &PhysicalPlan,
        metrics: &JobMetrics,
        exchange: Option<&dyn Exchange>,
    ) -> Result<Wiring> {
        let graph = &plan.graph;
        let config = &graph.config;
        let key_groups = KeyGroups::new(config.max_parallelism);
        let local =
            |chain: usize, subtask: u32| exchange.is_none_or(|x| x.is_local(chain, subtask));
        let mut wiring = Wiring {
            receivers: plan.chains.iter().map(per_subtask).collect(),
            routers: plan.chains.iter().map(per_subtask).collect(),
        };
        for (edge, e) in graph.edges.iter().enumerate() {
            let (from_chain, to_chain) = (
                plan.chain_of[e.from.0 as usize],
                plan.chain_of[e.to.0 as usize],
            );
            if from_chain == to_chain {
                continue;
            }
            // Which input of the consumer this edge is.
            let logical = graph
                .edges
                .iter()
                .filter(|x| x.to == e.to)
                .position(|x| std::ptr::eq(x, e))
                .expect("the edge is among its consumer's inputs");
            for (i, producer) in wiring.routers[from_chain].iter_mut().enumerate() {
                let i = i as u32;
                let mut senders = Vec::new();
                for (j, rx) in wiring.receivers[to_chain].iter_mut().enumerate() {
                    let channel = ChannelId {
                        edge: edge as u32,
                        producer: i,
                        consumer: j as u32,
                    };
                    let capacity = config.channel_capacity;
                    match (local(from_chain, i), local(to_chain, j as u32), exchange) {
                        (true, true, _) => {
                            let (tx, r) = mpsc::channel(capacity);
                            senders.push((tx, false));
                            rx.push((logical, r));
                        }
                        (true, false, Some(x)) => {
                            senders.push((x.sender(channel, capacity)?, true))
                        }
                        (false, true, Some(x)) => {
                            rx.push((logical, x.receiver(channel, capacity)?))
                        }
                        _ => {}
                    }
                }
                if local(from_chain, i) {
                    producer.push(Router::new(
                        e.tag.clone(),
                        e.partitioning.clone(),
                        key_groups,
                        senders,
                        i as usize,
                        metrics.operators[e.from.0 as usize].clone(),
                    ));
                }
            }
        }
        Ok(wiring)
    }
}

/// One empty list per subtask of `chain`.
fn per_subtask<T>(chain: &crate::plan::Chain) -> Vec<Vec<T>> {
    (0..chain.parallelism).map(|_| Vec::new()).collect()
}

/// A checkpointing job's coordinator, as its subtasks see it.
struct Coordination {
    channels: TaskChannels,
    stats: Arc<CheckpointStats>,
    /// Where operators write their own checkpoint files (RocksDB): always a local
    /// directory, from which object storage gets them.
    local_dir: std::path::PathBuf,
}

/// Starts the checkpoint coordinator when the job checkpoints (an interval and a
/// directory are set).
fn start_coordinator(
    plan: &PhysicalPlan,
    checkpoint: Option<&CompletedCheckpoint>,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<(String, Result<()>)>,
) -> Result<Option<Coordination>> {
    let Some((coordinator, channels, stats)) = coordinator(plan, checkpoint)? else {
        return Ok(None);
    };
    let local_dir = coordinator.storage_dir().to_path_buf();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        (
            "checkpoint coordinator".to_string(),
            coordinator.run(cancel).await,
        )
    });
    Ok(Some(Coordination {
        channels,
        stats,
        local_dir,
    }))
}

/// What every subtask of a starting job shares.
struct JobEnv<'a> {
    graph: &'a JobGraph,
    checkpoint: Option<&'a CompletedCheckpoint>,
    coordination: Option<&'a Coordination>,
    metrics: &'a JobMetrics,
    dead_letters: &'a Arc<DeadLetterQueue>,
    cancel: &'a CancellationToken,
    state_backend: &'a Arc<dyn StateBackend>,
}

/// One subtask of a chain, ready to run.
enum Subtask {
    Source(SourceTask),
    Operator(OperatorTask),
}

impl Subtask {
    async fn run(self) -> Result<()> {
        match self {
            Subtask::Source(task) => task.run().await,
            Subtask::Operator(task) => task.run().await,
        }
    }
}

impl JobEnv<'_> {
    /// Builds subtask `s` of `chain` with its routers and input channels: the source
    /// (restored to its position) when the chain starts with one, and its operators
    /// (restored from the checkpoint). Returns the task's name and the task.
    fn subtask(
        &self,
        chain: &crate::plan::Chain,
        s: u32,
        routers: Vec<Router>,
        inputs: Vec<InputChannel>,
    ) -> Result<(String, Subtask)> {
        let graph = self.graph;
        let config = &graph.config;
        let subtask = SubtaskInfo {
            index: s,
            parallelism: chain.parallelism,
            max_parallelism: config.max_parallelism,
        };
        let head = graph.node(chain.nodes[0]);
        let (op_nodes, source) = match &head.kind {
            NodeKind::Source {
                factory,
                watermarks,
            } => {
                let mut source = factory(&subtask)?;
                if let Some(state) = self
                    .checkpoint
                    .and_then(|c| c.source_state(&head.name, s, chain.parallelism))
                {
                    source
                        .restore_position(&state)
                        .map_err(|e| FungiError::State(format!("source '{}': {e}", head.name)))?;
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
                self.checkpoint
                    .and_then(|c| c.operator_state(&node.name, s, chain.parallelism)),
            );
            contexts.push(OperatorContext {
                job: graph.name.clone(),
                operator: node.name.clone(),
                subtask,
                state_backend: self.state_backend.clone(),
                metrics: self.metrics.operators[id.0 as usize].clone(),
                dead_letters: self.dead_letters.clone(),
                checkpointing: self.coordination.is_some(),
                checkpoint_interval: self
                    .coordination
                    .and(self.graph.config.checkpointing.interval),
                checkpoint_dir: self.coordination.map(|c| c.local_dir.clone()),
            });
        }
        let head_metrics = self.metrics.operators[head.id.0 as usize].clone();
        let chain_runner = ChainRunner::new(
            ops,
            contexts,
            routers,
            Some(head_metrics.clone()),
            self.metrics.latency.clone(),
            restores,
        );
        let checkpointing = self.coordination.map(|c| TaskCheckpointing {
            key: TaskKey {
                chain: head.name.clone(),
                subtask: s,
            },
            parallelism: chain.parallelism,
            channels: c.channels.clone(),
            injected: CheckpointId::default(),
        });
        let name = format!("{} ({}/{})", head.name, s + 1, chain.parallelism);
        let cancel = self.cancel.clone();
        let tick = config.tick_interval;
        let task = match source {
            Some((source, watermarks)) => Subtask::Source(SourceTask {
                name: head.name.clone(),
                source,
                context: SourceContext {
                    subtask,
                    batch_size: config.batch_size,
                    metrics: head_metrics,
                    dead_letters: self.dead_letters.clone(),
                    name: head.name.clone(),
                },
                watermarks: watermarks.map(SplitWatermarks::new),
                chain: chain_runner,
                cancel,
                tick,
                latency_interval: config.latency_interval,
                checkpointing,
            }),
            None => {
                let (logical_inputs, gate): (Vec<usize>, Vec<_>) = inputs.into_iter().unzip();
                Subtask::Operator(OperatorTask {
                    logical_inputs,
                    gate: InputGate::new(gate),
                    chain: chain_runner,
                    cancel,
                    tick,
                    checkpointing,
                })
            }
        };
        Ok((name, task))
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
