//! Checkpoints in a local directory.
//!
//! ```text
//! <dir>/chk-7/
//!     source-bids#0.state     one file per subtask: postcard-encoded TaskSnapshot
//!     window#1.state
//!     _metadata               JSON, written last through a rename: its presence marks
//!                             the checkpoint complete; it lists every file with its
//!                             size and xxh3 checksum
//! ```
//!
//! Object storage (S3-compatible, through `object_store`) is not wired in yet; see the
//! README's architecture section.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64;

use crate::{CheckpointError, RestoredState, Result, TaskKey, TaskSnapshot};

/// Version of the on-disk format.
const FORMAT: u32 = 1;
/// Name of the metadata file of a checkpoint directory.
const METADATA: &str = "_metadata";
/// Version byte in front of each task state file.
const TASK_FILE_VERSION: u8 = 1;

/// The metadata file of a complete checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// On-disk format version.
    pub format: u32,
    /// The job's name.
    pub job: String,
    /// Checkpoint id (increasing).
    pub id: u64,
    /// When it was triggered (ms since the epoch).
    pub timestamp_ms: i64,
    /// Taken when the job had consumed all its input: nothing is left to run.
    pub finished: bool,
    /// Trigger to completion, in ms.
    pub duration_ms: u64,
    /// Bytes of state written.
    pub size_bytes: u64,
    /// One entry per subtask.
    pub tasks: Vec<TaskEntry>,
}

/// One subtask's file in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// Chain head operator name.
    pub chain: String,
    /// Subtask index.
    pub subtask: u32,
    /// The chain's parallelism.
    pub parallelism: u32,
    /// Operators of the chain that saved state (the chain's layout may differ on restore).
    pub operators: Vec<String>,
    /// File name within the checkpoint directory.
    pub file: String,
    /// File size.
    pub bytes: u64,
    /// xxh3-64 of the file.
    pub checksum: u64,
}

/// A complete checkpoint read back from storage.
#[derive(Debug, Clone)]
pub struct CompletedCheckpoint {
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// Its directory.
    pub dir: PathBuf,
    /// Where the files operators saved outside the task files are (`state/...`).
    pub root: PathBuf,
    tasks: Vec<(TaskEntry, TaskSnapshot)>,
}

impl CompletedCheckpoint {
    /// The checkpoint id.
    pub fn id(&self) -> u64 {
        self.metadata.id
    }

    /// The state of the source `name`, for a subtask of the new job.
    pub fn source_state(
        &self,
        name: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Option<RestoredState> {
        self.collect(subtask, parallelism, |e, s| {
            (e.chain == name).then(|| s.source.clone()).flatten()
        })
    }

    /// The state of operator `name`, for a subtask of the new job.
    pub fn operator_state(
        &self,
        name: &str,
        subtask: u32,
        parallelism: u32,
    ) -> Option<RestoredState> {
        self.collect(subtask, parallelism, |_, s| {
            s.operators
                .iter()
                .find(|(op, _)| op == name)
                .map(|(_, b)| b.clone())
        })
    }

    fn collect(
        &self,
        subtask: u32,
        parallelism: u32,
        pick: impl Fn(&TaskEntry, &TaskSnapshot) -> Option<Vec<u8>>,
    ) -> Option<RestoredState> {
        let mut old_parallelism = None;
        let mut states = Vec::new();
        for (entry, snapshot) in &self.tasks {
            if let Some(bytes) = pick(entry, snapshot) {
                old_parallelism = Some(entry.parallelism);
                states.push((entry.subtask, bytes));
            }
        }
        let old_parallelism = old_parallelism?;
        if old_parallelism == parallelism {
            states.retain(|(s, _)| *s == subtask);
        }
        states.sort_by_key(|(s, _)| *s);
        Some(RestoredState {
            checkpoint: self.metadata.id,
            old_parallelism,
            states,
            root: self.root.clone(),
        })
    }

    /// Names of every operator and source that has state in the checkpoint.
    pub fn stateful_operators(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tasks
            .iter()
            .flat_map(|(e, s)| {
                s.source
                    .as_ref()
                    .map(|_| e.chain.clone())
                    .into_iter()
                    .chain(s.operators.iter().map(|(n, _)| n.clone()))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Checkpoints of one job in a local directory.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    dir: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced to disk.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        // Makes the rename itself durable; not every platform can sync a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

impl CheckpointStorage {
    /// Storage under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointStorage { dir: dir.into() }
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id}"))
    }

    /// Writes a checkpoint: every task file, then the metadata file last.
    pub fn write(
        &self,
        job: &str,
        id: u64,
        timestamp_ms: i64,
        finished: bool,
        tasks: &[(TaskKey, u32, TaskSnapshot)],
        duration_ms: u64,
    ) -> Result<CheckpointMetadata> {
        let dir = self.checkpoint_dir(id);
        if dir.exists() {
            // Left over from an attempt that never completed (no metadata, or we would not
            // be writing this id again).
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut entries = Vec::with_capacity(tasks.len());
        let mut size = 0;
        for (key, parallelism, snapshot) in tasks {
            let file = format!("{}.state", sanitize(&key.to_string()));
            let mut bytes = vec![TASK_FILE_VERSION];
            bytes.extend(postcard::to_stdvec(snapshot).expect("snapshot encoding cannot fail"));
            let path = dir.join(&file);
            let mut f = fs::File::create(&path).map_err(|e| io(&path, e))?;
            f.write_all(&bytes).map_err(|e| io(&path, e))?;
            f.sync_all().map_err(|e| io(&path, e))?;
            size += bytes.len() as u64;
            entries.push(TaskEntry {
                chain: key.chain.clone(),
                subtask: key.subtask,
                parallelism: *parallelism,
                operators: snapshot.operators.iter().map(|(n, _)| n.clone()).collect(),
                file,
                bytes: bytes.len() as u64,
                checksum: xxh3_64(&bytes),
            });
        }
        entries.sort_by(|a, b| (&a.chain, a.subtask).cmp(&(&b.chain, b.subtask)));
        let metadata = CheckpointMetadata {
            format: FORMAT,
            job: job.to_string(),
            id,
            timestamp_ms,
            finished,
            duration_ms,
            size_bytes: size,
            tasks: entries,
        };
        let json = serde_json::to_vec_pretty(&metadata).expect("metadata encoding cannot fail");
        write_atomically(&dir.join(METADATA), &json)?;
        Ok(metadata)
    }

    /// Ids of the checkpoint directories present (complete or not), ascending.
    pub fn ids(&self) -> Result<Vec<u64>> {
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, e)),
        };
        let mut ids: Vec<u64> = read
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("chk-"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Reads and checks checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<CompletedCheckpoint> {
        self.load_from(&self.checkpoint_dir(id), id)
    }

    fn load_from(&self, dir: &Path, id: u64) -> Result<CompletedCheckpoint> {
        let dir = dir.to_path_buf();
        let corrupt = |reason: String| CheckpointError::Corrupt {
            id,
            dir: dir.display().to_string(),
            reason,
        };
        let meta_path = dir.join(METADATA);
        let bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(
                    "no _metadata file (the checkpoint never completed)".into(),
                ));
            }
            Err(e) => return Err(io(&meta_path, e)),
        };
        let metadata: CheckpointMetadata = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("_metadata is not valid: {e}")))?;
        if metadata.format != FORMAT {
            return Err(corrupt(format!(
                "format version {} (this build reads {FORMAT})",
                metadata.format
            )));
        }
        let mut tasks = Vec::with_capacity(metadata.tasks.len());
        for entry in &metadata.tasks {
            let path = dir.join(&entry.file);
            let bytes =
                fs::read(&path).map_err(|e| corrupt(format!("cannot read {}: {e}", entry.file)))?;
            if bytes.len() as u64 != entry.bytes || xxh3_64(&bytes) != entry.checksum {
                return Err(corrupt(format!(
                    "{} does not match its checksum ({} bytes, {} expected)",
                    entry.file,
                    bytes.len(),
                    entry.bytes
                )));
            }
            let snapshot = match bytes.split_first() {
                Some((&TASK_FILE_VERSION, rest)) => postcard::from_bytes(rest)
                    .map_err(|e| corrupt(format!("{}: {e}", entry.file)))?,
                _ => return Err(corrupt(format!("{}: unknown file version", entry.file))),
            };
            tasks.push((entry.clone(), snapshot));
        }
        Ok(CompletedCheckpoint {
            metadata,
            dir,
            root: self.dir.clone(),
            tasks,
        })
    }

    /// The newest usable checkpoint. A damaged or incomplete one is reported (a warning
    /// naming the checkpoint and the problem) and the one before it is tried.
    pub fn latest(&self) -> Result<Option<CompletedCheckpoint>> {
        Ok(self.latest_with_skipped()?.0)
    }

    /// As [`latest`](Self::latest), also returning why newer checkpoints were skipped.
    pub fn latest_with_skipped(&self) -> Result<(Option<CompletedCheckpoint>, Vec<String>)> {
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            match self.load(id) {
                Ok(c) => return Ok((Some(c), skipped)),
                Err(e @ CheckpointError::Corrupt { .. }) => {
                    warn!(error = %e, "skipping checkpoint");
                    skipped.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Ok((None, skipped))
    }

    /// Deletes complete checkpoints beyond the newest `keep`, and incomplete ones older
    /// than the newest complete one.
    pub fn retain(&self, keep: usize) -> Result<()> {
        let ids = self.ids()?;
        let complete: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| self.checkpoint_dir(id).join(METADATA).exists())
            .collect();
        let keep_from = complete
            .len()
            .checked_sub(keep)
            .map_or(0, |i| complete.get(i).copied().unwrap_or(0));
        let newest = complete.last().copied().unwrap_or(0);
        for id in ids {
            let incomplete_old = !complete.contains(&id) && id < newest;
            if id < keep_from || incomplete_old {
                let dir = self.checkpoint_dir(id);
                fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        // Shared files copied after the newest complete checkpoint was triggered may
        // belong to one being taken (the final one is taken by each task on its own).
        let newest_trigger = fs::read(self.checkpoint_dir(newest).join(METADATA))
            .ok()
            .and_then(|b| serde_json::from_slice::<CheckpointMetadata>(&b).ok())
            .map(|m| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(m.timestamp_ms.max(0) as u64)
            });
        match newest_trigger {
            Some(before) => self.collect_state_garbage(keep_from, before),
            None => Ok(()),
        }
    }
}

/// A request for a savepoint, left in the checkpoint directory by `fungi savepoint` and
/// picked up by the running job's coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointRequest {
    /// Stop the job once the savepoint is complete.
    pub stop: bool,
}

/// The coordinator's answer to a [`SavepointRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointResponse {
    /// Where the savepoint is (restore with `fungi run --from-savepoint`), or why it failed.
    pub result: std::result::Result<PathBuf, String>,
    /// The checkpoint id it was taken as.
    pub id: u64,
}

const SAVEPOINT_REQUEST: &str = "_savepoint_request";
/// Where operators keep checkpoint files of their own: `state/<store>/sst/` (shared
/// between checkpoints) and `state/<store>/chk-<id>/` (one checkpoint's, with a
/// `_ssts` list of the shared files it needs).
pub const STATE_DIR: &str = "state";
const SAVEPOINT_RESPONSE: &str = "_savepoint_response";

impl CheckpointStorage {
    /// Asks the job checkpointing into this directory for a savepoint.
    pub fn request_savepoint(&self, request: &SavepointRequest) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let _ = fs::remove_file(self.dir.join(SAVEPOINT_RESPONSE));
        let json = serde_json::to_vec(request).expect("request encoding cannot fail");
        write_atomically(&self.dir.join(SAVEPOINT_REQUEST), &json)
    }

    /// Takes a pending savepoint request, if any.
    pub fn take_savepoint_request(&self) -> Option<SavepointRequest> {
        let path = self.dir.join(SAVEPOINT_REQUEST);
        let bytes = fs::read(&path).ok()?;
        let _ = fs::remove_file(&path);
        serde_json::from_slice(&bytes).ok()
    }

    /// Copies complete checkpoint `id` to `savepoints/sp-<id>`, out of reach of
    /// retention, and answers the request.
    pub fn publish_savepoint(&self, id: u64) -> Result<PathBuf> {
        let from = self.checkpoint_dir(id);
        let to = self.dir.join("savepoints").join(format!("sp-{id}"));
        fs::create_dir_all(&to).map_err(|e| io(&to, e))?;
        for entry in fs::read_dir(&from).map_err(|e| io(&from, e))? {
            let entry = entry.map_err(|e| io(&from, e))?;
            fs::copy(entry.path(), to.join(entry.file_name())).map_err(|e| io(&entry.path(), e))?;
        }
        // Operator files of this checkpoint (RocksDB stores): its private directory and
        // the shared SST files it lists, at the same relative paths.
        for store in self.state_stores()? {
            let private = store.join(format!("chk-{id}"));
            let final_private = store.join(format!("chk-{}", u64::MAX));
            let private = if private.exists() {
                private
            } else {
                final_private
            };
            if !private.exists() {
                continue;
            }
            let rel = store.strip_prefix(&self.dir).unwrap_or(&store);
            let (sp_store, name) = (to.join(rel), private.file_name().unwrap_or_default());
            fs::create_dir_all(sp_store.join("sst")).map_err(|e| io(&sp_store, e))?;
            fs::create_dir_all(sp_store.join(name)).map_err(|e| io(&sp_store, e))?;
            for entry in fs::read_dir(&private).map_err(|e| io(&private, e))? {
                let entry = entry.map_err(|e| io(&private, e))?;
                fs::copy(entry.path(), sp_store.join(name).join(entry.file_name()))
                    .map_err(|e| io(&entry.path(), e))?;
            }
            for sst in sst_list(&private) {
                let src = store.join("sst").join(&sst);
                fs::copy(&src, sp_store.join("sst").join(&sst)).map_err(|e| io(&src, e))?;
            }
        }
        Ok(to)
    }

    /// The directories of operator stores that keep files (`state/<store>/`).
    fn state_stores(&self) -> Result<Vec<PathBuf>> {
        let state = self.dir.join(STATE_DIR);
        match fs::read_dir(&state) {
            Ok(r) => Ok(r
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&state, e)),
        }
    }

    /// Deletes operator files no complete checkpoint at or after `oldest` needs: private
    /// directories of older checkpoints, and shared SST files none of the rest lists that
    /// were written `before` (later ones may belong to a checkpoint being taken).
    fn collect_state_garbage(&self, oldest: u64, before: std::time::SystemTime) -> Result<()> {
        for store in self.state_stores()? {
            let mut live = std::collections::BTreeSet::new();
            for entry in fs::read_dir(&store).map_err(|e| io(&store, e))? {
                let path = entry.map_err(|e| io(&store, e))?.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("chk-"))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if id < oldest {
                    fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                } else {
                    live.extend(sst_list(&path));
                }
            }
            let shared = store.join("sst");
            let Ok(files) = fs::read_dir(&shared) else {
                continue;
            };
            for entry in files.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < before);
                if old && !live.contains(&name) {
                    fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
                }
            }
        }
        Ok(())
    }

    /// Leaves the answer to a savepoint request.
    pub fn respond_savepoint(&self, response: &SavepointResponse) -> Result<()> {
        let json = serde_json::to_vec(response).expect("response encoding cannot fail");
        write_atomically(&self.dir.join(SAVEPOINT_RESPONSE), &json)
    }

    /// The answer to a savepoint request, once there is one.
    pub fn savepoint_response(&self) -> Option<SavepointResponse> {
        let bytes = fs::read(self.dir.join(SAVEPOINT_RESPONSE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Reads a savepoint (or any checkpoint) directory written by this storage.
    pub fn load_dir(dir: &Path) -> Result<CompletedCheckpoint> {
        let meta_path = dir.join(METADATA);
        let bytes = fs::read(&meta_path).map_err(|e| io(&meta_path, e))?;
        let metadata: CheckpointMetadata =
            serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
                id: 0,
                dir: dir.display().to_string(),
                reason: format!("_metadata is not valid: {e}"),
            })?;
        // A savepoint carries its operators' files (`state/...`) in its own directory.
        let mut c = CheckpointStorage::new(dir).load_from(dir, metadata.id)?;
        c.root = dir.to_path_buf();
        Ok(c)
    }
}

/// The shared SST files a store's checkpoint directory lists.
fn sst_list(private: &Path) -> Vec<String> {
    fs::read_to_string(private.join("_ssts"))
        .map(|s| {
            s.lines()
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A file name from a task key: operator names may hold any character.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '#' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(tag: u8) -> TaskSnapshot {
        TaskSnapshot {
            source: Some(vec![tag]),
            operators: vec![("window".into(), vec![tag; 10])],
        }
    }

    fn key(s: u32) -> TaskKey {
        TaskKey {
            chain: "src".into(),
            subtask: s,
        }
    }

    #[test]
    fn a_written_checkpoint_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path());
        storage
            .write(
                "job",
                1,
                0,
                false,
                &[(key(0), 2, snapshot(1)), (key(1), 2, snapshot(2))],
                5,
            )
            .unwrap();
        let c = storage.latest().unwrap().unwrap();
        assert_eq!(c.id(), 1);
        let s = c.operator_state("window", 1, 2).unwrap();
        assert_eq!(s.states, vec![(1, vec![2; 10])]);
        // At another parallelism every old subtask's state is handed over.
        let s = c.source_state("src", 0, 3).unwrap();
        assert_eq!(s.old_parallelism, 2);
        assert_eq!(s.states, vec![(0, vec![1]), (1, vec![2])]);
    }

    #[test]
    fn a_damaged_or_unfinished_checkpoint_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path());
        for id in 1..=3 {
            storage
                .write("job", id, 0, false, &[(key(0), 1, snapshot(id as u8))], 1)
                .unwrap();
        }
        // 3: a state file flipped; 2: fine. An unfinished 4 has no metadata.
        let file = dir.path().join("chk-3").join("src#0.state");
        let mut bytes = fs::read(&file).unwrap();
        *bytes.last_mut().unwrap() ^= 0xff;
        fs::write(&file, bytes).unwrap();
        fs::create_dir_all(dir.path().join("chk-4")).unwrap();
        let (c, skipped) = storage.latest_with_skipped().unwrap();
        assert_eq!(c.unwrap().id(), 2);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].contains("chk-4") && skipped[0].contains("never completed"));
        assert!(
            skipped[1].contains("does not match its checksum"),
            "{}",
            skipped[1]
        );
        // A missing file is named too.
        fs::remove_file(dir.path().join("chk-2").join("src#0.state")).unwrap();
        let (c, skipped) = storage.latest_with_skipped().unwrap();
        assert_eq!(c.unwrap().id(), 1);
        assert!(
            skipped[2].contains("cannot read src#0.state"),
            "{}",
            skipped[2]
        );
    }

    #[test]
    fn garbage_collection_keeps_the_shared_files_retained_checkpoints_list() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path());
        let store = dir.path().join(STATE_DIR).join("op#0");
        fs::create_dir_all(store.join("sst")).unwrap();
        let private = |id: u64, ssts: &[&str]| {
            let p = store.join(format!("chk-{id}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("_ssts"), ssts.join("\n")).unwrap();
        };
        for name in ["a.sst", "b.sst", "c.sst"] {
            fs::write(store.join("sst").join(name), b"x").unwrap();
        }
        private(1, &["a.sst"]);
        private(2, &["b.sst"]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        for id in 1..=2 {
            storage
                .write("job", id, now(), false, &[(key(0), 1, snapshot(1))], 1)
                .unwrap();
        }
        // A file copied after the newest checkpoint was triggered, listed by no one yet.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(store.join("sst").join("d.sst"), b"x").unwrap();
        storage.retain(1).unwrap();
        let left: Vec<String> = {
            let mut v: Vec<String> = fs::read_dir(store.join("sst"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // a: only checkpoint 1 (deleted) needed it; c: nobody; d: too new to judge.
        assert_eq!(left, ["b.sst", "d.sst"]);
        assert!(!store.join("chk-1").exists() && store.join("chk-2").exists());
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    #[test]
    fn retention_keeps_the_newest_complete_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(dir.path());
        for id in 1..=5 {
            storage
                .write("job", id, 0, false, &[(key(0), 1, snapshot(1))], 1)
                .unwrap();
        }
        fs::create_dir_all(dir.path().join("chk-6")).unwrap();
        storage.retain(2).unwrap();
        assert_eq!(storage.ids().unwrap(), vec![4, 5, 6]);
    }
}
