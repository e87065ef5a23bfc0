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

/// Identifies a checkpoint of a job. Ids increase with every checkpoint the coordinator
/// triggers; [`CheckpointId::FINAL`] names the checkpoint taken after every input ended,
/// under which operators snapshot their end state and whose completion publishes what
/// sinks still hold.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The final checkpoint: taken once, after every input of the job ended.
    pub const FINAL: CheckpointId = CheckpointId(u64::MAX);

    /// Whether this is the final checkpoint.
    pub fn is_final(self) -> bool {
        self == Self::FINAL
    }

    /// The id as a number (as checkpoint directories and the API name it).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id of the checkpoint after this one.
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0 + 1)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_final() {
            f.write_str("final")
        } else {
            write!(f, "{}", self.0)
        }
    }
}
