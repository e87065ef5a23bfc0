//! Keyed state for Fungi operators.
//!
//! A [`StateBackend`] hands every operator subtask a [`KeyedStore`]: a byte-level,
//! ordered key-value store partitioned by key group and scoped by a [`StateNamespace`]
//! (tenant, job, operator). On top of it sit the typed state kinds a user function works
//! with: [`ValueState`], [`ListState`], [`MapState`] and [`AggregatingState`]. They only
//! speak bytes to the store, so the in-memory backend and the RocksDB backend (keys
//! prefixed by namespace and key group, [`RocksDbStateBackend`]) are interchangeable
//! without changing callers; snapshots are taken and restored per key group, which is
//! what lets a savepoint be restored at another parallelism.
//!
//! ```
//! use fungi_state::{MemoryStateBackend, StateBackend, StateNamespace, ValueState};
//!
//! let backend = MemoryStateBackend::default();
//! let mut store = backend.open_keyed(&StateNamespace::new("t", "job", "count"), 0..128).unwrap();
//! let count = ValueState::<u64>::new("count");
//! count.put(store.as_mut(), 5, b"alice", &3).unwrap();
//! assert_eq!(count.get(store.as_ref(), 5, b"alice").unwrap(), Some(3));
//! ```

mod kinds;
mod memory;
mod rocks;
mod snapshot;

use std::fmt;
use std::ops::Range;
use std::path::Path;

pub use kinds::{
    AggregateFunction, AggregatingState, ListState, MapState, TTL_MARKER, ValueState, is_expired,
};
pub use memory::MemoryStateBackend;
pub use rocks::{IncrementalCheckpoint, RocksDbStateBackend};
pub use snapshot::{KeyGroupEntries, KeyedSnapshot};

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A value could not be encoded or decoded.
    #[error("state '{state}': cannot {action} value: {reason}")]
    Codec {
        /// The state's name.
        state: String,
        /// "encode" or "decode".
        action: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// A key group outside the store's range was used.
    #[error("key group {key_group} is not owned by this subtask (owns {range:?})")]
    KeyGroupNotOwned {
        /// The key group asked for.
        key_group: u32,
        /// The range this store owns.
        range: Range<u32>,
    },
    /// A snapshot could not be read.
    #[error("corrupt state snapshot: {0}")]
    CorruptSnapshot(String),
    /// The storage engine failed (RocksDB, the file system).
    #[error("state backend: {0}")]
    Backend(String),
}

impl From<StateError> for fungi_common::FungiError {
    fn from(e: StateError) -> Self {
        fungi_common::FungiError::State(e.to_string())
    }
}

/// Result of state operations.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Where a store's state belongs: tenant, job and operator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateNamespace {
    /// The tenant that owns the job.
    pub tenant: String,
    /// The job's id.
    pub job: String,
    /// The operator's stable id within the job.
    pub operator: String,
}

impl StateNamespace {
    /// A namespace from its three parts.
    pub fn new(
        tenant: impl Into<String>,
        job: impl Into<String>,
        operator: impl Into<String>,
    ) -> Self {
        StateNamespace {
            tenant: tenant.into(),
            job: job.into(),
            operator: operator.into(),
        }
    }
}

impl fmt::Display for StateNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.job, self.operator)
    }
}

/// A factory of keyed stores; one per job (memory) or per process (RocksDB directory).
///
/// Implementations must be cheap to share between tasks.
pub trait StateBackend: Send + Sync + fmt::Debug {
    /// Short name for logs and configuration ("memory", "rocksdb").
    fn name(&self) -> &'static str;

    /// Opens the keyed store of one operator subtask owning the key groups `key_groups`.
    fn open_keyed(
        &self,
        namespace: &StateNamespace,
        key_groups: Range<u32>,
    ) -> Result<Box<dyn KeyedStore>>;
}

/// An ordered byte key-value store for one operator subtask, partitioned by key group.
///
/// Callers are the typed state kinds of this crate; keys they pass already carry the
/// state's name as a prefix. Every method names the key group so that a backend can keep
/// groups apart (a map per group in memory, a key prefix in RocksDB) and snapshot or
/// restore them one by one.
pub trait KeyedStore: Send {
    /// The key groups this store owns.
    fn key_groups(&self) -> Range<u32>;
    /// Reads the value under `key`.
    fn get(&self, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Writes `value` under `key`.
    fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key`.
    fn delete(&mut self, key_group: u32, key: &[u8]) -> Result<()>;
    /// Calls `visit` for every entry whose key starts with `prefix`, in key order, until
    /// it returns `false`.
    fn scan_prefix(
        &self,
        key_group: u32,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;
    /// Removes every entry whose key starts with `prefix`.
    fn delete_prefix(&mut self, key_group: u32, prefix: &[u8]) -> Result<()>;
    /// A full snapshot of the owned key groups.
    fn snapshot(&self) -> Result<KeyedSnapshot>;
    /// Replaces the content with the entries of `snapshot` that fall in the owned key
    /// groups (the snapshot may come from another parallelism).
    fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<()>;

    /// Writes the store's files for an incremental checkpoint: files not yet in `shared`
    /// are copied there, the rest into `private`. `None` for a store without files (the
    /// memory backend): the caller saves a portable [`snapshot`](Self::snapshot) instead.
    fn checkpoint_files(
        &mut self,
        shared: &Path,
        private: &Path,
    ) -> Result<Option<IncrementalCheckpoint>> {
        let _ = (shared, private);
        Ok(None)
    }

    /// Replaces the content with the files of an incremental checkpoint of a store of
    /// the same key groups. The default reads the checkpoint's entries and restores them
    /// (a store without files, or a checkpoint taken by another backend).
    fn restore_files(
        &mut self,
        checkpoint: &IncrementalCheckpoint,
        shared: &Path,
        private: &Path,
    ) -> Result<()> {
        self.restore(&RocksDbStateBackend::read_incremental(
            checkpoint, shared, private,
        )?)
    }
}
