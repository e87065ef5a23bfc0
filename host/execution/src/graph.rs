//! The logical job graph: what a job computes, before it is split into tasks.

use std::sync::Arc;

use fungi_common::config::JobConfig;
use fungi_common::ids::OperatorId;
use fungi_streaming::watermark::WatermarkStrategy;

use crate::operator::OperatorFactory;
use crate::source::SourceFactory;

/// How rows travel from the subtasks of one operator to those of the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// Subtask `i` sends to subtask `i` (equal parallelism required).
    Forward,
    /// Rows are routed by the key group of the named key columns.
    Hash(Vec<String>),
    /// Every row goes to every subtask.
    Broadcast,
    /// Batches go round-robin to all subtasks.
    Rebalance,
}

impl std::fmt::Display for Partitioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partitioning::Forward => write!(f, "FORWARD"),
            Partitioning::Hash(keys) => write!(f, "HASH[{}]", keys.join(", ")),
            Partitioning::Broadcast => write!(f, "BROADCAST"),
            Partitioning::Rebalance => write!(f, "REBALANCE"),
        }
    }
}

/// What a node runs.
#[derive(Clone)]
pub enum NodeKind {
    /// A source, with the watermark strategy applied per split.
    Source {
        /// Makes one source per subtask.
        factory: SourceFactory,
        /// Timestamps and watermarks, if the job uses event time.
        watermarks: Option<WatermarkStrategy>,
    },
    /// An operator.
    Operator {
        /// Makes one operator per subtask.
        factory: OperatorFactory,
    },
}

/// A node of the job graph.
#[derive(Clone)]
pub struct Node {
    /// Its id (index in [`JobGraph::nodes`]).
    pub id: OperatorId,
    /// Human-readable, unique name.
    pub name: String,
    /// Number of parallel subtasks.
    pub parallelism: u32,
    /// What it runs.
    pub kind: NodeKind,
    /// Whether it keeps keyed state (shown by EXPLAIN).
    pub stateful: bool,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("parallelism", &self.parallelism)
            .finish()
    }
}

/// An edge: rows of `from`'s main output (or its side output `tag`) flow to `to`.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Producer.
    pub from: OperatorId,
    /// Consumer.
    pub to: OperatorId,
    /// Routing.
    pub partitioning: Partitioning,
    /// `None` for the main output, or the side output's tag.
    pub tag: Option<Arc<str>>,
}

/// A job: nodes, edges and configuration.
#[derive(Debug, Clone)]
pub struct JobGraph {
    /// Job name.
    pub name: String,
    /// Nodes in insertion order.
    pub nodes: Vec<Node>,
    /// Edges in insertion order.
    pub edges: Vec<Edge>,
    /// Job configuration.
    pub config: JobConfig,
    /// Where the job's dead letters are written besides its in-memory ring.
    pub dead_letter_targets: Vec<std::sync::Arc<dyn crate::dead_letter::DeadLetterTarget>>,
}

impl JobGraph {
    /// An empty job with default configuration.
    pub fn new(name: impl Into<String>) -> Self {
        JobGraph {
            name: name.into(),
            nodes: Vec::new(),
            edges: Vec::new(),
            config: JobConfig::default(),
            dead_letter_targets: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, parallelism: u32, kind: NodeKind, stateful: bool) -> OperatorId {
        let id = OperatorId(self.nodes.len() as u32);
        // Names are unique so metrics and state namespaces are unambiguous.
        let taken = |n: &str| self.nodes.iter().any(|x| x.name == n);
        let mut unique = name.to_string();
        let mut i = 2;
        while taken(&unique) {
            unique = format!("{name}-{i}");
            i += 1;
        }
        self.nodes.push(Node {
            id,
            name: unique,
            parallelism,
            kind,
            stateful,
        });
        id
    }

    /// Adds a source with `parallelism` subtasks.
    pub fn add_source(
        &mut self,
        name: &str,
        parallelism: u32,
        factory: SourceFactory,
        watermarks: Option<WatermarkStrategy>,
    ) -> OperatorId {
        self.add(
            name,
            parallelism,
            NodeKind::Source {
                factory,
                watermarks,
            },
            false,
        )
    }

    /// Adds a stateless operator with `parallelism` subtasks.
    pub fn add_operator(
        &mut self,
        name: &str,
        parallelism: u32,
        factory: OperatorFactory,
    ) -> OperatorId {
        self.add(name, parallelism, NodeKind::Operator { factory }, false)
    }

    /// Adds an operator that keeps keyed state.
    pub fn add_stateful_operator(
        &mut self,
        name: &str,
        parallelism: u32,
        factory: OperatorFactory,
    ) -> OperatorId {
        self.add(name, parallelism, NodeKind::Operator { factory }, true)
    }

    /// Connects `from`'s main output to `to`.
    pub fn connect(&mut self, from: OperatorId, to: OperatorId, partitioning: Partitioning) {
        self.edges.push(Edge {
            from,
            to,
            partitioning,
            tag: None,
        });
    }

    /// Connects `from`'s side output `tag` to `to`.
    pub fn connect_side(
        &mut self,
        from: OperatorId,
        tag: &str,
        to: OperatorId,
        partitioning: Partitioning,
    ) {
        self.edges.push(Edge {
            from,
            to,
            partitioning,
            tag: Some(Arc::from(tag)),
        });
    }

    /// The node with id `id`.
    pub fn node(&self, id: OperatorId) -> &Node {
        &self.nodes[id.0 as usize]
    }
}
