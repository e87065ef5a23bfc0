//! The RocksDB state backend: keyed state on local disk, checkpointed incrementally.
//!
//! One RocksDB database per operator subtask (as Flink), under the backend's directory.
//! A key is `namespace hash (8 bytes) | key group (4 bytes, big endian) | state key`,
//! where the namespace hash is xxh3 of `tenant/job/operator`: each key group is a
//! contiguous key range, so scans, deletes and snapshots of a key group are range
//! operations.
//!
//! [`KeyedStore::checkpoint_files`] writes a RocksDB checkpoint (SST files hard-linked,
//! so free) and copies into the store's shared directory only the SST files no earlier
//! checkpoint copied: SST files never change once written, so a checkpoint is the list of
//! files it needs plus the few new ones. The private part (manifest, options) is copied
//! per checkpoint. Where the shared and private directories are is the caller's to say
//! (the checkpoint layout owns those names).

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{DB, IteratorMode, Options, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::kinds::{is_expired, now_ms};
use crate::snapshot::KeyedSnapshot;
use crate::{KeyedStore, Result, StateBackend, StateError, StateNamespace};

/// Keyed state in embedded RocksDB databases under a local directory: one database per
/// operator subtask (as Flink), so that each checkpoints on its own.
#[derive(Clone)]
pub struct RocksDbStateBackend {
    root: Arc<Root>,
}

/// The backend's directory; a temporary one is deleted when the backend and every store
/// opened from it are gone.
struct Root {
    dir: PathBuf,
    temporary: bool,
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl std::fmt::Debug for RocksDbStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStateBackend")
            .field("dir", &self.root.dir)
            .finish_non_exhaustive()
    }
}

/// Numbers temporary backends of one process.
static NEXT_TEMPORARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn db_error(context: &str, e: rocksdb::Error) -> StateError {
    StateError::Backend(format!("rocksdb {context}: {e}"))
}

fn io_error(path: &Path, e: std::io::Error) -> StateError {
    StateError::Backend(format!("{}: {e}", path.display()))
}

/// The files of an incremental checkpoint of one keyed store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalCheckpoint {
    /// Every SST file the checkpoint needs: (name in the store's shared directory, name
    /// in the database). Shared names carry the store's incarnation, since a database
    /// restored from an older checkpoint numbers its new files like the lost ones.
    pub sst_files: Vec<(String, String)>,
    /// The other files (manifest, options, current, WAL), copied into the private
    /// directory of this checkpoint.
    pub private_files: Vec<String>,
    /// Bytes copied by this checkpoint (new SST files and private files).
    pub new_bytes: u64,
    /// Bytes of SST files reused from earlier checkpoints.
    pub reused_bytes: u64,
}

fn open_db(dir: &Path) -> Result<DB> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Compaction drops expired entries of states with a time-to-live.
    options.set_compaction_filter("fungi-state-ttl", |_level, key: &[u8], value: &[u8]| {
        if key.len() > 12 && is_expired(&key[12..], value, now_ms()) {
            rocksdb::compaction_filter::Decision::Remove
        } else {
            rocksdb::compaction_filter::Decision::Keep
        }
    });
    DB::open(&options, dir).map_err(|e| db_error("open", e))
}

/// Creates a RocksDB checkpoint of `db` in a fresh temporary directory next to `near`.
fn rocksdb_checkpoint(db: &DB, near: &Path) -> Result<PathBuf> {
    let tmp = near.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    if let Some(parent) = tmp.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    rocksdb::checkpoint::Checkpoint::new(db)
        .and_then(|c| c.create_checkpoint(&tmp))
        .map_err(|e| db_error("checkpoint", e))?;
    Ok(tmp)
}

impl RocksDbStateBackend {
    /// A backend keeping its databases under `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::with_root(dir.into(), false)
    }

    /// A backend in a fresh temporary directory, deleted when the backend and every
    /// store opened from it are dropped.
    pub fn temporary() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "fungi-rocksdb-{}-{}",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        Self::with_root(dir, true)
    }

    fn with_root(dir: PathBuf, temporary: bool) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(RocksDbStateBackend {
            root: Arc::new(Root { dir, temporary }),
        })
    }

    /// The backend's directory.
    pub fn dir(&self) -> &Path {
        &self.root.dir
    }

    /// Reads every entry of an incremental checkpoint into a portable snapshot (to split
    /// it among the subtasks of another parallelism, or to restore it into a store
    /// without files), rebuilding the database in a scratch directory of its own.
    pub fn read_incremental(
        checkpoint: &IncrementalCheckpoint,
        shared: &Path,
        private: &Path,
    ) -> Result<KeyedSnapshot> {
        let scratch = &std::env::temp_dir().join(format!(
            "fungi-rocksdb-read-{}-{}",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        materialize(checkpoint, shared, private, scratch)?;
        let db = open_db(scratch)?;
        let mut snapshot = KeyedSnapshot::default();
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(|e| db_error("scan", e))?;
            if k.len() < 12 {
                continue;
            }
            let kg = u32::from_be_bytes(k[8..12].try_into().expect("four bytes"));
            snapshot
                .groups
                .entry(kg)
                .or_default()
                .push((k[12..].to_vec(), v.to_vec()));
        }
        drop(db);
        let _ = fs::remove_dir_all(scratch);
        Ok(snapshot)
    }
}

/// Rebuilds a database directory `target` from an incremental checkpoint.
fn materialize(
    checkpoint: &IncrementalCheckpoint,
    shared: &Path,
    private: &Path,
    target: &Path,
) -> Result<()> {
    let _ = fs::remove_dir_all(target);
    fs::create_dir_all(target).map_err(|e| io_error(target, e))?;
    for (shared_name, name) in &checkpoint.sst_files {
        let from = shared.join(shared_name);
        let to = target.join(name);
        // The live database may modify nothing in an SST file, but it deletes them:
        // a copy, not a link, keeps the checkpoint's files apart from it.
        fs::copy(&from, &to).map_err(|e| io_error(&from, e))?;
    }
    for name in &checkpoint.private_files {
        let from = private.join(name);
        fs::copy(&from, target.join(name)).map_err(|e| io_error(&from, e))?;
    }
    Ok(())
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
        let dir = self.root.dir.join(format!(
            "{:016x}-{}-{}",
            u64::from_be_bytes(ns),
            key_groups.start,
            key_groups.end
        ));
        // State comes from checkpoints only: whatever an earlier run left is stale.
        let _ = fs::remove_dir_all(&dir);
        let db = open_db(&dir)?;
        Ok(Box::new(RocksKeyedStore {
            db: Some(db),
            incarnation: format!(
                "{:x}{:x}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ),
            shared_names: HashMap::new(),
            dir,
            _root: self.root.clone(),
            ns,
            range: key_groups,
            key: Vec::new(),
        }))
    }
}

/// The keyed store of one operator subtask in [`RocksDbStateBackend`]: a database of
/// its own.
struct RocksKeyedStore {
    /// Always open, except while a restore swaps the files.
    db: Option<DB>,
    /// Prefix of the shared names of SST files this store copies.
    incarnation: String,
    /// Shared names of database files restored from a checkpoint (the same bytes).
    shared_names: HashMap<String, String>,
    dir: PathBuf,
    _root: Arc<Root>,
    ns: [u8; 8],
    range: Range<u32>,
    /// Scratch for building full keys.
    key: Vec<u8>,
}

impl RocksKeyedStore {
    fn db(&self) -> &DB {
        self.db
            .as_ref()
            .expect("the database is open outside restores")
    }

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
            .db()
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
        self.db()
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
        let r = self.db().put(&k, value).map_err(|e| db_error("put", e));
        self.key = k;
        r
    }

    fn delete(&mut self, key_group: u32, key: &[u8]) -> Result<()> {
        self.check(key_group)?;
        self.db()
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
        self.db().write(batch).map_err(|e| db_error("delete", e))
    }

    fn snapshot(&self) -> Result<KeyedSnapshot> {
        let mut snapshot = KeyedSnapshot::default();
        for kg in self.range.clone() {
            let mut entries = Vec::new();
            let now = now_ms();
            self.scan(kg, &[], &mut |k, v| {
                if !is_expired(k, v, now) {
                    entries.push((k.to_vec(), v.to_vec()));
                }
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
        self.db().write(batch).map_err(|e| db_error("restore", e))
    }

    fn checkpoint_files(
        &mut self,
        shared: &Path,
        private: &Path,
    ) -> Result<Option<IncrementalCheckpoint>> {
        let tmp = rocksdb_checkpoint(self.db(), private)?;
        fs::create_dir_all(shared).map_err(|e| io_error(shared, e))?;
        let _ = fs::remove_dir_all(private);
        fs::create_dir_all(private).map_err(|e| io_error(private, e))?;
        let mut out = IncrementalCheckpoint::default();
        for entry in fs::read_dir(&tmp).map_err(|e| io_error(&tmp, e))? {
            let entry = entry.map_err(|e| io_error(&tmp, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let len = entry
                .metadata()
                .map_err(|e| io_error(&entry.path(), e))?
                .len();
            if name.ends_with(".sst") {
                // SST files never change once written: one copied before (by this
                // incarnation, or restored from the shared directory) is reused.
                let shared_name = self
                    .shared_names
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| format!("{}-{name}", self.incarnation));
                let target = shared.join(&shared_name);
                if target.exists() {
                    out.reused_bytes += len;
                } else {
                    let partial = shared.join(format!("{shared_name}.partial"));
                    fs::copy(entry.path(), &partial).map_err(|e| io_error(&entry.path(), e))?;
                    fs::rename(&partial, &target).map_err(|e| io_error(&target, e))?;
                    out.new_bytes += len;
                }
                out.sst_files.push((shared_name, name));
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
        Ok(Some(out))
    }

    fn restore_files(
        &mut self,
        checkpoint: &IncrementalCheckpoint,
        shared: &Path,
        private: &Path,
    ) -> Result<()> {
        // Close, rebuild the directory from the checkpoint's files, reopen.
        self.db = None;
        let result = materialize(checkpoint, shared, private, &self.dir);
        self.db = Some(open_db(&self.dir)?);
        result?;
        self.shared_names = checkpoint
            .sst_files
            .iter()
            .map(|(shared, local)| (local.clone(), shared.clone()))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueState;

    #[test]
    fn keyed_state_round_trips_and_namespaces_stay_apart() {
        let backend = RocksDbStateBackend::temporary().unwrap();
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
        let dir = backend.dir().to_path_buf();
        drop((a, b, low, backend));
        assert!(!dir.exists(), "a temporary backend cleans up");
    }

    #[test]
    fn expired_values_are_invisible_and_left_out_of_snapshots() {
        let backend = RocksDbStateBackend::temporary().unwrap();
        let mut store = backend
            .open_keyed(&StateNamespace::new("t", "j", "op"), 0..1)
            .unwrap();
        let short = ValueState::<u64>::with_ttl("short", std::time::Duration::from_millis(30));
        let long = ValueState::<u64>::with_ttl("long", std::time::Duration::from_secs(3600));
        let plain = ValueState::<u64>::new("plain");
        short.put(store.as_mut(), 0, b"k", &1).unwrap();
        long.put(store.as_mut(), 0, b"k", &2).unwrap();
        plain.put(store.as_mut(), 0, b"k", &3).unwrap();
        assert_eq!(short.get(store.as_ref(), 0, b"k").unwrap(), Some(1));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(short.get(store.as_ref(), 0, b"k").unwrap(), None);
        assert_eq!(long.get(store.as_ref(), 0, b"k").unwrap(), Some(2));
        assert_eq!(plain.get(store.as_ref(), 0, b"k").unwrap(), Some(3));
        assert_eq!(store.snapshot().unwrap().groups[&0].len(), 2);
        let mut memory = crate::MemoryStateBackend
            .open_keyed(&StateNamespace::new("t", "j", "op"), 0..1)
            .unwrap();
        short.put(memory.as_mut(), 0, b"k", &1).unwrap();
        plain.put(memory.as_mut(), 0, b"k", &3).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(short.get(memory.as_ref(), 0, b"k").unwrap(), None);
        assert_eq!(memory.snapshot().unwrap().groups[&0].len(), 1);
    }

    #[test]
    fn incremental_checkpoints_copy_only_new_files_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksDbStateBackend::open(dir.path().join("db")).unwrap();
        let ns = StateNamespace::new("t", "j", "op");
        let mut store = backend.open_keyed(&ns, 0..2).unwrap();
        for i in 0..10_000u32 {
            store.put(i % 2, &i.to_be_bytes(), &[7; 100]).unwrap();
        }
        let shared = dir.path().join("sst");
        let first = store
            .checkpoint_files(&shared, &dir.path().join("chk-1"))
            .unwrap()
            .unwrap();
        assert!(!first.sst_files.is_empty());
        assert_eq!(first.reused_bytes, 0);
        store.put(0, b"late", b"value").unwrap();
        let second = store
            .checkpoint_files(&shared, &dir.path().join("chk-2"))
            .unwrap()
            .unwrap();
        assert!(second.reused_bytes > 0, "{second:?}");
        assert!(second.new_bytes < first.new_bytes, "{first:?} {second:?}");
        // Back to the first checkpoint in place.
        store
            .restore_files(&first, &shared, &dir.path().join("chk-1"))
            .unwrap();
        assert_eq!(store.get(0, b"late").unwrap(), None);
        assert_eq!(store.snapshot().unwrap().groups[&0].len(), 5_000);
        // Read out for a restore at another parallelism.
        let all =
            RocksDbStateBackend::read_incremental(&second, &shared, &dir.path().join("chk-2"))
                .unwrap();
        assert_eq!(all.groups[&0].len(), 5_001);
        assert_eq!(all.groups[&1].len(), 5_000);
    }
}
