//! Identifiers of jobs, operators and subtasks.

use std::fmt;

/// Index of an operator (node) in a job graph.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct OperatorId(pub u32);

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// Where one parallel instance of an operator runs: its index among `parallelism` peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubtaskInfo {
    /// 0-based index of this subtask.
    pub index: u32,
    /// Number of parallel subtasks of the operator.
    pub parallelism: u32,
    /// Maximum parallelism (number of key groups) of the job.
    pub max_parallelism: u32,
}

impl SubtaskInfo {
    /// A single, non-parallel subtask.
    pub fn single(max_parallelism: u32) -> Self {
        SubtaskInfo {
            index: 0,
            parallelism: 1,
            max_parallelism,
        }
    }
}
