//! From the job graph to tasks: validation, chaining and EXPLAIN.

use std::fmt::Write;

use fungi_common::ids::OperatorId;
use fungi_common::{FungiError, Result};

use crate::graph::{Edge, JobGraph, NodeKind, Partitioning};

/// Operators that run in one task, each handing its output to the next by a plain call.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The operators, upstream first.
    pub nodes: Vec<OperatorId>,
    /// Subtasks of the chain (the parallelism of all its operators).
    pub parallelism: u32,
}

/// A validated, chained job, ready to be run.
#[derive(Debug, Clone)]
pub struct PhysicalPlan {
    /// The job graph.
    pub graph: JobGraph,
    /// Chains in topological order.
    pub chains: Vec<Chain>,
    /// For each node, the index of its chain.
    pub chain_of: Vec<usize>,
}

fn chainable(graph: &JobGraph, e: &Edge) -> bool {
    let outgoing = graph.edges.iter().filter(|x| x.from == e.from).count();
    let incoming = graph.edges.iter().filter(|x| x.to == e.to).count();
    e.partitioning == Partitioning::Forward
        && e.tag.is_none()
        && outgoing == 1
        && incoming == 1
        && graph.node(e.from).parallelism == graph.node(e.to).parallelism
}

impl PhysicalPlan {
    /// Validates `graph` and chains its operators.
    pub fn new(graph: JobGraph) -> Result<Self> {
        graph.config.validate()?;
        let n = graph.nodes.len();
        if n == 0 {
            return Err(FungiError::Plan("the job has no operators".into()));
        }
        for e in &graph.edges {
            if e.from.0 as usize >= n || e.to.0 as usize >= n {
                return Err(FungiError::Plan(format!(
                    "edge {} -> {} names an unknown node",
                    e.from, e.to
                )));
            }
            let (a, b) = (graph.node(e.from), graph.node(e.to));
            if e.partitioning == Partitioning::Forward && a.parallelism != b.parallelism {
                return Err(FungiError::Plan(format!(
                    "forward edge '{}' -> '{}' joins parallelism {} to {}; use rebalance or hash partitioning",
                    a.name, b.name, a.parallelism, b.parallelism
                )));
            }
        }
        for node in &graph.nodes {
            if node.parallelism == 0 || node.parallelism > graph.config.max_parallelism {
                return Err(FungiError::Plan(format!(
                    "operator '{}' has parallelism {}; it must be between 1 and max_parallelism {}",
                    node.name, node.parallelism, graph.config.max_parallelism
                )));
            }
            let inputs = graph.edges.iter().filter(|e| e.to == node.id).count();
            match node.kind {
                NodeKind::Source { .. } if inputs > 0 => {
                    return Err(FungiError::Plan(format!(
                        "source '{}' cannot have inputs",
                        node.name
                    )));
                }
                NodeKind::Operator { .. } if inputs == 0 => {
                    return Err(FungiError::Plan(format!(
                        "operator '{}' has no input",
                        node.name
                    )));
                }
                _ => {}
            }
        }
        // Topological order (Kahn); a cycle leaves nodes unvisited.
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| graph.edges.iter().filter(|e| e.to.0 as usize == i).count())
            .collect();
        let mut order = Vec::with_capacity(n);
        let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
        while let Some(i) = ready.pop() {
            order.push(i);
            for e in graph.edges.iter().filter(|e| e.from.0 as usize == i) {
                let t = e.to.0 as usize;
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(t);
                }
            }
        }
        if order.len() != n {
            return Err(FungiError::Plan("the job graph has a cycle".into()));
        }
        let mut chain_of = vec![usize::MAX; n];
        let mut chains: Vec<Chain> = Vec::new();
        for &i in &order {
            let id = OperatorId(i as u32);
            let input = graph.edges.iter().find(|e| e.to == id);
            match input.filter(|e| chainable(&graph, e)) {
                Some(e) => {
                    let c = chain_of[e.from.0 as usize];
                    chains[c].nodes.push(id);
                    chain_of[i] = c;
                }
                None => {
                    chain_of[i] = chains.len();
                    chains.push(Chain {
                        nodes: vec![id],
                        parallelism: graph.node(id).parallelism,
                    });
                }
            }
        }
        Ok(PhysicalPlan {
            graph,
            chains,
            chain_of,
        })
    }

    /// A readable description: tasks (chains) with their operators, parallelism, state,
    /// and the edges between them.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Job '{}' (max parallelism {}, channel capacity {} batches)",
            self.graph.name, self.graph.config.max_parallelism, self.graph.config.channel_capacity
        );
        for (i, chain) in self.chains.iter().enumerate() {
            let _ = writeln!(s, "Task {i} x{}:", chain.parallelism);
            for id in &chain.nodes {
                let node = self.graph.node(*id);
                let kind = match &node.kind {
                    NodeKind::Source {
                        watermarks: Some(w),
                        ..
                    } => {
                        format!("source, event time '{}' {:?}", w.timestamp_column, w.kind)
                    }
                    NodeKind::Source { .. } => "source".to_string(),
                    NodeKind::Operator { .. } if node.stateful => {
                        "operator, keyed state".to_string()
                    }
                    NodeKind::Operator { .. } => "operator".to_string(),
                };
                let _ = writeln!(s, "  {} [{}] ({kind})", node.name, node.id);
            }
        }
        for e in &self.graph.edges {
            let (a, b) = (
                self.chain_of[e.from.0 as usize],
                self.chain_of[e.to.0 as usize],
            );
            let tag = e
                .tag
                .as_deref()
                .map(|t| format!(" side output '{t}'"))
                .unwrap_or_default();
            let how = if a == b {
                "CHAINED".to_string()
            } else {
                e.partitioning.to_string()
            };
            let _ = writeln!(
                s,
                "  {} -> {}{tag}: {how}",
                self.graph.node(e.from).name,
                self.graph.node(e.to).name
            );
        }
        s
    }
}
