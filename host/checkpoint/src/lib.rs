//! Checkpoints for Fungi jobs: the coordinator, the snapshot format and its storage.
//!
//! Checkpoints follow aligned barriers, as in Flink (Chandy-Lamport): the
//! [`Coordinator`] asks every source subtask to inject barrier `N` into its output; each
//! operator subtask aligns its inputs on `N` (it stops reading an input once `N` arrived
//! on it), snapshots its operators and forwards `N`. Every subtask sends its
//! [`TaskSnapshot`] to the coordinator, which writes them to the
//! [`CheckpointStorage`] — one file per subtask, then the metadata file last and
//! atomically — and only then tells the subtasks that `N` is complete, so that
//! two-phase-commit sinks publish what they pre-committed on the barrier.
//!
//! When every subtask has consumed its input the coordinator writes a last, *final*
//! checkpoint with their end states; sinks publish after it, so a job that is killed
//! while finishing resumes from there without writing anything twice.
//!
//! The execution crate drives the barriers through its tasks; this crate knows nothing of
//! operators beyond the bytes they hand over. Recovery reads the latest complete
//! checkpoint ([`CheckpointStorage::latest`]); a checkpoint whose files are missing or do
//! not match their checksums is reported and skipped in favour of the one before.
//! Savepoints are checkpoints taken on request ([`SavepointRequest`], left in the
//! checkpoint directory by `fungi savepoint`) and copied out of the retention's reach;
//! [`RestartTracker`] applies a job's restart strategy to its failures.

mod coordinator;
pub mod layout;
mod remote;
mod restart;
mod storage;

use serde::{Deserialize, Serialize};

pub use coordinator::{
    CheckpointStats, Completed, CompletionGuard, Coordinator, GuardFuture, TaskChannels, TaskReport,
};
pub use layout::STATE_DIR;
pub use restart::RestartTracker;
pub use storage::{
    CheckpointMetadata, CheckpointStorage, CompletedCheckpoint, LOCAL_STATE_DIR_ENV,
    SavepointRequest, SavepointResponse, TaskEntry,
};

/// Errors of the checkpoint layer.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file of the checkpoint directory could not be read or written.
    #[error("checkpoint storage: {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Object storage refused a request or could not be reached.
    #[error("checkpoint storage: {location}: {reason}")]
    Remote {
        /// The object or location (a URL).
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint is incomplete or damaged.
    #[error("checkpoint {id} in {dir} is unusable: {reason}")]
    Corrupt {
        /// The checkpoint's id.
        id: u64,
        /// Its directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<CheckpointError> for fungi_common::FungiError {
    fn from(e: CheckpointError) -> Self {
        fungi_common::FungiError::State(e.to_string())
    }
}

/// Result of checkpoint operations.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Identifies one subtask of a job: the first operator of its chain and its index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    /// Name of the chain's first operator (or source).
    pub chain: String,
    /// Subtask index.
    pub subtask: u32,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.chain, self.subtask)
    }
}

/// What one subtask contributes to a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// The source's position, for a source subtask.
    pub source: Option<Vec<u8>>,
    /// `(operator name, state)` of each operator in the chain that holds state.
    pub operators: Vec<(String, Vec<u8>)>,
}

/// The state an operator (or source) had at a checkpoint, as handed to it on restore.
///
/// When the job runs at the parallelism it was checkpointed at, `states` holds only this
/// subtask's own state. After a change of parallelism it holds the states of every old
/// subtask: keyed operators keep the rows of the key groups they now own, sources the
/// splits they are now assigned, sinks the pending commits of the old subtasks that map
/// to them (`old index % new parallelism`).
#[derive(Debug, Clone, Default)]
pub struct RestoredState {
    /// The checkpoint the state comes from.
    pub checkpoint: u64,
    /// The operator's parallelism when the checkpoint was taken.
    pub old_parallelism: u32,
    /// `(old subtask index, state bytes)`.
    pub states: Vec<(u32, Vec<u8>)>,
    /// The directory files named in the states are relative to: the job's checkpoint
    /// directory, or the savepoint's own directory (savepoints carry their files).
    pub root: std::path::PathBuf,
}

impl RestoredState {
    /// Whether the parallelism changed since the checkpoint.
    pub fn rescaled(&self, parallelism: u32) -> bool {
        self.old_parallelism != parallelism
    }
}
