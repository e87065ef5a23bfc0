//! The RocksDB state backend: keyed state on local disk, checkpointed incrementally.
//!
//! One RocksDB instance per backend (a process or a job). A key is
//! `namespace hash (8 bytes) | key group (4 bytes, big endian) | state key`, where the
//! namespace hash is xxh3 of `tenant/job/operator`: the state of one operator subtask is
//! a contiguous key range, each key group a contiguous sub-range, so scans, deletes and
//! snapshots of a key group are range operations.
//!
//! [`RocksDbStateBackend::checkpoint_incremental`] writes a RocksDB checkpoint (SST files
//! hard-linked, so free) and copies into a shared directory only the SST files that no
//! earlier checkpoint copied: SST files never change once written, so a checkpoint is the
//! list of files it needs plus the few new ones.

use std::collections::BTreeSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, IteratorMode, Options, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::snapshot::KeyedSnapshot;
use crate::{KeyedStore, Result, StateBackend, StateError, StateNamespace};

/// Keyed state in an embedded RocksDB under a local directory.
#[derive(Clone)]
pub struct RocksDbStateBackend {
    db: Arc<Database>,
    dir: PathBuf,
}

/// The open database; a temporary one is deleted when the last user drops it.
struct Database {
    db: DB,
    temporary: Option<PathBuf>,
}

impl std::ops::Deref for Database {
    type Target = DB;
    fn deref(&self) -> &DB {
        &self.db
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(dir) = &self.temporary {
            // Unlinking the files of an open database is fine on Unix; the handles go
            // right after.
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl std::fmt::Debug for RocksDbStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStateBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Numbers temporary databases of one process.
static NEXT_TEMPORARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn db_error(context: &str, e: rocksdb::Error) -> StateError {
    StateError::Backend(format!("rocksdb {context}: {e}"))
}

fn io_error(path: &Path, e: std::io::Error) -> StateError {
    StateError::Backend(format!("{}: {e}", path.display()))
}

/// What an incremental checkpoint consists of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalCheckpoint {
    /// Every SST file the checkpoint needs, in the shared directory.
    pub sst_files: Vec<String>,
    /// The other files (manifest, options, current, WAL), copied into `private`.
    pub private_files: Vec<String>,
    /// Bytes copied into the shared directory by this checkpoint.
    pub new_bytes: u64,
    /// Bytes of SST files reused from earlier checkpoints.
    pub reused_bytes: u64,
}

impl RocksDbStateBackend {
    /// Opens (creating if needed) the database under `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_inner(dir.into(), false)
    }

    /// A database in a fresh temporary directory, deleted when the backend and every
    /// store opened from it are dropped.
    pub fn temporary() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "fungi-rocksdb-{}-{}",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        Self::open_inner(dir, true)
    }

    fn open_inner(dir: PathBuf, temporary: bool) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&options, &dir).map_err(|e| db_error("open", e))?;
        Ok(RocksDbStateBackend {
            db: Arc::new(Database {
                db,
                temporary: temporary.then(|| dir.clone()),
            }),
            dir,
        })
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes memtables to SST files.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| db_error("flush", e))
    }

    /// A full copy of the database as of now, in `target` (hard links where possible).
    pub fn checkpoint_full(&self, target: &Path) -> Result<u64> {
        let tmp = target.with_extension("tmp");
        let _ = fs::remove_dir_all(&tmp);
        rocksdb::checkpoint::Checkpoint::new(&self.db.db)
            .and_then(|c| c.create_checkpoint(&tmp))
            .map_err(|e| db_error("checkpoint", e))?;
        // Hard links share the data with the live database; a full checkpoint owns its
        // bytes, so copy them.
        fs::create_dir_all(target).map_err(|e| io_error(target, e))?;
        let mut bytes = 0;
        for entry in fs::read_dir(&tmp).map_err(|e| io_error(&tmp, e))? {
            let entry = entry.map_err(|e| io_error(&tmp, e))?;
            bytes += fs::copy(entry.path(), target.join(entry.file_name()))
                .map_err(|e| io_error(&entry.path(), e))?;
        }
        fs::remove_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
        Ok(bytes)
    }

    /// An incremental checkpoint: SST files not yet in `shared` are copied there, the
    /// rest of the RocksDB checkpoint into `private`. Returns what it holds.
    pub fn checkpoint_incremental(
        &self,
        shared: &Path,
        private: &Path,
    ) -> Result<IncrementalCheckpoint> {
        let tmp = private.with_extension("tmp");
        let _ = fs::remove_dir_all(&tmp);
        rocksdb::checkpoint::Checkpoint::new(&self.db.db)
            .and_then(|c| c.create_checkpoint(&tmp))
            .map_err(|e| db_error("checkpoint", e))?;
        fs::create_dir_all(shared).map_err(|e| io_error(shared, e))?;
        fs::create_dir_all(private).map_err(|e| io_error(private, e))?;
        let existing: BTreeSet<String> = fs::read_dir(shared)
            .map_err(|e| io_error(shared, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut out = IncrementalCheckpoint::default();
        for entry in fs::read_dir(&tmp).map_err(|e| io_error(&tmp, e))? {
            let entry = entry.map_err(|e| io_error(&tmp, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let len = entry
                .metadata()
                .map_err(|e| io_error(&entry.path(), e))?
                .len();
            if name.ends_with(".sst") {
                if existing.contains(&name) {
                    out.reused_bytes += len;
                } else {
                    fs::copy(entry.path(), shared.join(&name))
                        .map_err(|e| io_error(&entry.path(), e))?;
                    out.new_bytes += len;
                }
                out.sst_files.push(name);
            } else {
                fs::copy(entry.path(), private.join(&name))
                    .map_err(|e| io_error(&entry.path(), e))?;
                out.new_bytes += len;
                out.private_files.push(name);
            }
        }
        fs::remove_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
        out.sst_files.sort();
        out.private_files.sort();
        Ok(out)
    }

    /// Rebuilds a database directory `target` from an incremental checkpoint.
    pub fn materialize(
        checkpoint: &IncrementalCheckpoint,
        shared: &Path,
        private: &Path,
        target: &Path,
    ) -> Result<()> {
        fs::create_dir_all(target).map_err(|e| io_error(target, e))?;
        for name in &checkpoint.sst_files {
            let from = shared.join(name);
            let to = target.join(name);
            // A hard link where the file system allows it, else a copy.
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(|e| io_error(&from, e))?;
            }
        }
        for name in &checkpoint.private_files {
            let from = private.join(name);
            fs::copy(&from, target.join(name)).map_err(|e| io_error(&from, e))?;
        }
        Ok(())
    }
}

impl StateBackend for RocksDbStateBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn open_keyed(
        &self,
        namespace: &StateNamespace,
        key_groups: Range<u32>,
    ) -> Result<Box<dyn KeyedStore>> {
        let ns = xxhash_rust::xxh3::xxh3_64(namespace.to_string().as_bytes()).to_be_bytes();
        Ok(Box::new(RocksKeyedStore {
            db: self.db.clone(),
            ns,
            range: key_groups,
            key: Vec::new(),
        }))
    }
}

/// The keyed store of one operator subtask in [`RocksDbStateBackend`].
struct RocksKeyedStore {
    db: Arc<Database>,
    ns: [u8; 8],
    range: Range<u32>,
    /// Scratch for building full keys.
    key: Vec<u8>,
}

impl RocksKeyedStore {
    fn check(&self, key_group: u32) -> Result<()> {
        if self.range.contains(&key_group) {
            Ok(())
        } else {
            Err(StateError::KeyGroupNotOwned {
                key_group,
                range: self.range.clone(),
            })
        }
    }

    /// `ns | key group | key` in a fresh buffer.
    fn full_key(&self, key_group: u32, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(12 + key.len());
        k.extend_from_slice(&self.ns);
        k.extend_from_slice(&key_group.to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    /// Calls `visit(key without prefix, value)` for keys of `key_group` starting with
    /// `prefix`.
    fn scan(
        &self,
        key_group: u32,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let start = self.full_key(key_group, prefix);
        let iter = self
            .db
            .iterator(IteratorMode::From(&start, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(|e| db_error("scan", e))?;
            if !k.starts_with(&start) || !visit(&k[12..], &v) {
                break;
            }
        }
        Ok(())
    }
}

impl KeyedStore for RocksKeyedStore {
    fn key_groups(&self) -> Range<u32> {
        self.range.clone()
    }

    fn get(&self, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check(key_group)?;
        self.db
            .get(self.full_key(key_group, key))
            .map_err(|e| db_error("get", e))
    }

    fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) -> Result<()> {
        self.check(key_group)?;
        let mut k = std::mem::take(&mut self.key);
        k.clear();
        k.extend_from_slice(&self.ns);
        k.extend_from_slice(&key_group.to_be_bytes());
        k.extend_from_slice(key);
        let r = self.db.put(&k, value).map_err(|e| db_error("put", e));
        self.key = k;
        r
    }

    fn delete(&mut self, key_group: u32, key: &[u8]) -> Result<()> {
        self.check(key_group)?;
        self.db
            .delete(self.full_key(key_group, key))
            .map_err(|e| db_error("delete", e))
    }

    fn scan_prefix(
        &self,
        key_group: u32,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        self.check(key_group)?;
        self.scan(key_group, prefix, visit)
    }

    fn delete_prefix(&mut self, key_group: u32, prefix: &[u8]) -> Result<()> {
        self.check(key_group)?;
        let mut batch = WriteBatch::default();
        self.scan(key_group, prefix, &mut |k, _| {
            batch.delete(self.full_key(key_group, k));
            true
        })?;
        self.db.write(batch).map_err(|e| db_error("delete", e))
    }

    fn snapshot(&self) -> Result<KeyedSnapshot> {
        let mut snapshot = KeyedSnapshot::default();
        for kg in self.range.clone() {
            let mut entries = Vec::new();
            self.scan(kg, &[], &mut |k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                true
            })?;
            if !entries.is_empty() {
                snapshot.groups.insert(kg, entries);
            }
        }
        Ok(snapshot)
    }

    fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<()> {
        let mut batch = WriteBatch::default();
        for kg in self.range.clone() {
            let (from, to) = (self.full_key(kg, &[]), self.full_key(kg + 1, &[]));
            batch.delete_range(from, to);
        }
        for (&kg, entries) in &snapshot.groups {
            if self.range.contains(&kg) {
                for (k, v) in entries {
                    batch.put(self.full_key(kg, k), v);
                }
            }
        }
        self.db.write(batch).map_err(|e| db_error("restore", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueState;

    #[test]
    fn keyed_state_round_trips_and_namespaces_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksDbStateBackend::open(dir.path()).unwrap();
        let mut a = backend
            .open_keyed(&StateNamespace::new("t", "job", "a"), 0..4)
            .unwrap();
        let mut b = backend
            .open_keyed(&StateNamespace::new("t", "job", "b"), 0..4)
            .unwrap();
        let count = ValueState::<u64>::new("count");
        count.put(a.as_mut(), 1, b"alice", &3).unwrap();
        count.put(b.as_mut(), 1, b"alice", &7).unwrap();
        count.put(a.as_mut(), 2, b"bob", &5).unwrap();
        assert_eq!(count.get(a.as_ref(), 1, b"alice").unwrap(), Some(3));
        assert_eq!(count.get(b.as_ref(), 1, b"alice").unwrap(), Some(7));
        assert!(matches!(
            count.get(a.as_ref(), 9, b"x"),
            Err(StateError::KeyGroupNotOwned { .. })
        ));
        let snap = a.snapshot().unwrap();
        assert_eq!(snap.groups.len(), 2);
        // Restored at another parallelism: each half keeps its key groups only.
        let mut low = backend
            .open_keyed(&StateNamespace::new("t", "job2", "a"), 0..2)
            .unwrap();
        low.restore(&snap).unwrap();
        assert_eq!(count.get(low.as_ref(), 1, b"alice").unwrap(), Some(3));
        assert_eq!(low.snapshot().unwrap().groups.len(), 1);
        a.delete_prefix(1, b"").unwrap();
        assert_eq!(count.get(a.as_ref(), 1, b"alice").unwrap(), None);
        assert_eq!(count.get(b.as_ref(), 1, b"alice").unwrap(), Some(7));
    }

    #[test]
    fn incremental_checkpoints_copy_only_new_files_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksDbStateBackend::open(dir.path().join("db")).unwrap();
        let mut store = backend
            .open_keyed(&StateNamespace::new("t", "j", "op"), 0..1)
            .unwrap();
        for i in 0..10_000u32 {
            store.put(0, &i.to_be_bytes(), &[7; 100]).unwrap();
        }
        backend.flush().unwrap();
        let shared = dir.path().join("shared");
        let first = backend
            .checkpoint_incremental(&shared, &dir.path().join("chk-1"))
            .unwrap();
        assert!(!first.sst_files.is_empty());
        assert_eq!(first.reused_bytes, 0);
        store.put(0, b"late", b"value").unwrap();
        backend.flush().unwrap();
        let second = backend
            .checkpoint_incremental(&shared, &dir.path().join("chk-2"))
            .unwrap();
        assert!(second.reused_bytes > 0, "{second:?}");
        assert!(second.new_bytes < first.new_bytes, "{first:?} {second:?}");
        let restored = dir.path().join("restored");
        RocksDbStateBackend::materialize(&second, &shared, &dir.path().join("chk-2"), &restored)
            .unwrap();
        drop(store);
        let again = RocksDbStateBackend::open(&restored).unwrap();
        let store = again
            .open_keyed(&StateNamespace::new("t", "j", "op"), 0..1)
            .unwrap();
        assert_eq!(store.get(0, b"late").unwrap(), Some(b"value".to_vec()));
        assert_eq!(store.snapshot().unwrap().groups[&0].len(), 10_001);
    }
}
