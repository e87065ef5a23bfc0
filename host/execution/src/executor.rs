//! Runs a physical plan in this process: one tokio task per chain subtask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fungi_common::ids::SubtaskInfo;
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
use crate::metrics::{JobMetrics, OperatorMetrics, OperatorSnapshot};
use crate::operator::OperatorContext;
use crate::partition::Router;
use crate::plan::PhysicalPlan;
use crate::source::SourceContext;
use crate::task::{ChainRunner, OperatorTask, SourceTask};

/// One input channel of a subtask and which of its operator's inputs it feeds.
type InputChannel = (usize, mpsc::Receiver<Message>);

/// Runs jobs inside the current tokio runtime (embedded mode).
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    state_backend: Arc<dyn StateBackend>,
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
        }
    }

    /// Uses `backend` for keyed state.
    pub fn with_state_backend(backend: Arc<dyn StateBackend>) -> Self {
        LocalExecutor {
            state_backend: backend,
        }
    }

    /// Plans and starts `graph`. Must be called from within a tokio runtime.
    pub fn execute(&self, graph: JobGraph) -> Result<JobHandle> {
        let plan = PhysicalPlan::new(graph)?;
        self.start(plan)
    }

    /// Starts an already planned job.
    pub fn start(&self, plan: PhysicalPlan) -> Result<JobHandle> {
        let graph = &plan.graph;
        let config = &graph.config;
        let key_groups = KeyGroups::new(config.max_parallelism);
        let cancel = CancellationToken::new();
        let dead_letters = Arc::new(DeadLetterQueue::default());
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
                ));
            }
        }
        let mut tasks = JoinSet::new();
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
                    } => (
                        &chain.nodes[1..],
                        Some((factory(&subtask)?, watermarks.clone())),
                    ),
                    NodeKind::Operator { .. } => (&chain.nodes[..], None),
                };
                let mut ops = Vec::new();
                let mut contexts = Vec::new();
                for id in op_nodes {
                    let node = graph.node(*id);
                    let NodeKind::Operator { factory } = &node.kind else {
                        return Err(FungiError::Internal(format!(
                            "source '{}' inside a chain",
                            node.name
                        )));
                    };
                    ops.push(factory(&subtask)?);
                    contexts.push(OperatorContext {
                        job: graph.name.clone(),
                        operator: node.name.clone(),
                        subtask,
                        state_backend: self.state_backend.clone(),
                        metrics: metrics.operators[id.0 as usize].clone(),
                        dead_letters: dead_letters.clone(),
                    });
                }
                let head_metrics = metrics.operators[head.id.0 as usize].clone();
                let chain_runner =
                    ChainRunner::new(ops, contexts, task_routers, Some(head_metrics.clone()));
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
        match first_error {
            Some(e) => Err(e),
            None => Ok(JobSummary {
                elapsed: self.started.elapsed(),
                operators: self.metrics.snapshot(),
                dead_letters: self.dead_letters.counts(),
            }),
        }
    }
}
