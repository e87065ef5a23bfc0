//! Checkpoints in a local directory, optionally backed by S3-compatible object storage.
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
//! With an `s3://bucket/prefix` location the same layout is kept in object storage (see
//! [`crate::remote`]): checkpoints are assembled in a local directory, uploaded file by
//! file with `_metadata` last, and a checkpoint counts as complete once its `_metadata`
//! object exists. The local copy then only caches what was uploaded.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fungi_common::ids::CheckpointId;
use serde::{Deserialize, Serialize};
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64;

use crate::remote::{RemoteDir, is_remote};
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

/// Checkpoints of one job: a local directory, and object storage behind it when the
/// location is an `s3://` URL.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    /// Where checkpoints are assembled (and, without object storage, kept).
    dir: PathBuf,
    remote: Option<Arc<Remote>>,
}

/// The object storage behind a [`CheckpointStorage`].
#[derive(Debug)]
struct Remote {
    dir: RemoteDir,
    /// Shared operator files known to be uploaded (`state/<store>/sst/<file>`); read from
    /// a listing on first use.
    shared: Mutex<Option<HashSet<String>>>,
}

/// The private directories an operator store may have for checkpoint `id`: its own and,
/// for a final checkpoint, the one tasks write on their own under [`CheckpointId::FINAL`].
fn private_names(id: u64, finished: bool) -> Vec<String> {
    let mut names = vec![format!("chk-{id}")];
    if finished {
        names.push(format!("chk-{}", CheckpointId::FINAL.get()));
    }
    names
}

/// Environment variable naming the directory under which checkpoints kept in object
/// storage are assembled locally (default: `$XDG_CACHE_HOME/fungi/checkpoints`, else
/// `~/.cache/fungi/checkpoints`).
pub const LOCAL_STATE_DIR_ENV: &str = "FUNGI_LOCAL_STATE_DIR";

/// The local directory for the object storage location `url`.
fn local_dir_for(url: &str) -> PathBuf {
    let base = std::env::var_os(LOCAL_STATE_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("fungi/checkpoints"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/fungi/checkpoints"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("fungi-checkpoints"));
    let (scheme, rest) = url.split_once("://").unwrap_or(("s3", url));
    rest.split('/')
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .fold(base.join(scheme), |d, p| d.join(sanitize(p)))
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
    /// Storage under the local directory `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointStorage {
            dir: dir.into(),
            remote: None,
        }
    }

    /// Storage at `location`: a local directory, or `s3://bucket/prefix` for
    /// S3-compatible object storage configured by `options` (`s3.endpoint`,
    /// `s3.access-key`, `s3.secret-key`, `s3.region`, `s3.path.style.access`) and the
    /// `AWS_*` environment variables.
    pub fn open(location: &Path, options: &BTreeMap<String, String>) -> Result<Self> {
        if !is_remote(location) {
            return Ok(CheckpointStorage::new(location));
        }
        let url = location.to_string_lossy();
        let dir = RemoteDir::open(&url, options)?;
        Ok(CheckpointStorage {
            dir: local_dir_for(&url),
            remote: Some(Arc::new(Remote {
                dir,
                shared: Mutex::new(None),
            })),
        })
    }

    /// Assembles checkpoints kept in object storage in `dir` instead of the default
    /// (see [`LOCAL_STATE_DIR_ENV`]); for local storage, the same as [`new`](Self::new).
    pub fn with_local_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The local directory: where checkpoints are kept, or assembled before upload.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the checkpoints are, for messages: the directory or the object storage URL.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.dir.url_of("").trim_end_matches('/').to_string(),
            None => self.dir.display().to_string(),
        }
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
        if let Some(remote) = &self.remote {
            self.upload(remote, &metadata, &json)?;
        }
        write_atomically(&dir.join(METADATA), &json)?;
        Ok(metadata)
    }

    /// Uploads checkpoint `metadata.id` from the local directory: the task files, the
    /// operator stores' files for it (shared files only once), then `_metadata`.
    fn upload(&self, remote: &Remote, metadata: &CheckpointMetadata, json: &[u8]) -> Result<()> {
        let id = metadata.id;
        let chk = format!("chk-{id}");
        for entry in &metadata.tasks {
            remote.dir.put_file(
                &format!("{chk}/{}", entry.file),
                &self.checkpoint_dir(id).join(&entry.file),
            )?;
        }
        let mut shared = remote.shared.lock().expect("upload lock");
        if shared.is_none() {
            let known = remote
                .dir
                .files(STATE_DIR)?
                .into_iter()
                .map(|(f, _)| format!("{STATE_DIR}/{f}"))
                .collect();
            *shared = Some(known);
        }
        let shared = shared.as_mut().expect("filled above");
        for store in self.state_stores()? {
            let rel = self.rel(&store);
            for name in private_names(id, metadata.finished) {
                let private = store.join(&name);
                if !private.exists() {
                    continue;
                }
                for sst in sst_list(&private) {
                    let key = format!("{rel}/sst/{sst}");
                    if !shared.contains(&key) {
                        remote.dir.put_file(&key, &store.join("sst").join(&sst))?;
                        shared.insert(key);
                    }
                }
                remote.dir.put_dir(&format!("{rel}/{name}"), &private)?;
            }
        }
        remote.dir.put(&format!("{chk}/{METADATA}"), json.to_vec())
    }

    /// Downloads checkpoint `id` into the local directory (files already there and
    /// unchanged are kept), its `_metadata` last.
    fn download(&self, remote: &Remote, id: u64) -> Result<()> {
        let chk = format!("chk-{id}");
        let dir = self.checkpoint_dir(id);
        let Some(json) = remote.dir.get(&format!("{chk}/{METADATA}"))? else {
            return Err(CheckpointError::Corrupt {
                id,
                dir: remote.dir.url_of(&chk),
                reason: "no _metadata object (the checkpoint never completed)".into(),
            });
        };
        // A _metadata that does not parse is reported by `load_from` (written as is).
        let metadata: Option<CheckpointMetadata> = serde_json::from_slice(&json).ok();
        let _ = fs::remove_file(dir.join(METADATA));
        for entry in metadata.iter().flat_map(|m| &m.tasks) {
            let local = dir.join(&entry.file);
            let unchanged = fs::read(&local)
                .is_ok_and(|b| b.len() as u64 == entry.bytes && xxh3_64(&b) == entry.checksum);
            if !unchanged {
                // A missing object is reported by `load_from`, naming the file.
                let _ = fs::remove_file(&local);
                remote
                    .dir
                    .get_file(&format!("{chk}/{}", entry.file), &local)?;
            }
        }
        let finished = metadata.as_ref().is_some_and(|m| m.finished);
        for store in remote.dir.dirs(STATE_DIR)? {
            let rel = format!("{STATE_DIR}/{store}");
            let local_store = self.dir.join(STATE_DIR).join(&store);
            for name in private_names(id, finished) {
                let private = local_store.join(&name);
                remote.dir.get_dir(&format!("{rel}/{name}"), &private)?;
                for sst in sst_list(&private) {
                    let local = local_store.join("sst").join(&sst);
                    if !local.exists() {
                        remote.dir.get_file(&format!("{rel}/sst/{sst}"), &local)?;
                    }
                }
            }
        }
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_atomically(&dir.join(METADATA), &json)
    }

    /// `path` relative to the local directory, with `/`.
    fn rel(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Ids of the checkpoints present (complete or not), ascending; in object storage
    /// when there is one.
    pub fn ids(&self) -> Result<Vec<u64>> {
        match &self.remote {
            Some(remote) => Ok(chk_ids(remote.dir.dirs("")?)),
            None => self.local_ids(),
        }
    }

    /// Ids of the checkpoint directories in the local directory, ascending.
    fn local_ids(&self) -> Result<Vec<u64>> {
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.dir, e)),
        };
        Ok(chk_ids(
            read.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(String::from)),
        ))
    }

    /// Reads and checks checkpoint `id` (downloading it first from object storage).
    pub fn load(&self, id: u64) -> Result<CompletedCheckpoint> {
        if let Some(remote) = &self.remote {
            self.download(remote, id)?;
        }
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
    /// than the newest complete one; in object storage too, when there is one.
    pub fn retain(&self, keep: usize) -> Result<()> {
        let local_ids = self.local_ids()?;
        let complete: Vec<u64> = local_ids
            .iter()
            .copied()
            .filter(|&id| self.checkpoint_dir(id).join(METADATA).exists())
            .collect();
        let plan = Retention::plan(&local_ids, &complete, keep);
        for &id in &plan.delete {
            let dir = self.checkpoint_dir(id);
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        // Shared files copied after the newest complete checkpoint was triggered may
        // belong to one being taken (the final one is taken by each task on its own).
        let newest_trigger = fs::read(self.checkpoint_dir(plan.newest).join(METADATA))
            .ok()
            .and_then(|b| serde_json::from_slice::<CheckpointMetadata>(&b).ok())
            .map(|m| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(m.timestamp_ms.max(0) as u64)
            });
        if let Some(before) = newest_trigger {
            self.collect_state_garbage(plan.keep_from, before)?;
        }
        match (&self.remote, newest_trigger) {
            (Some(remote), Some(before)) => self.retain_remote(remote, keep, before),
            _ => Ok(()),
        }
    }

    /// [`retain`](Self::retain) for the object storage copy.
    fn retain_remote(&self, remote: &Remote, keep: usize, before: SystemTime) -> Result<()> {
        let files = remote.dir.files("")?;
        let ids = chk_ids(
            files
                .iter()
                .filter_map(|(f, _)| f.split('/').next().map(String::from)),
        );
        let complete: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                files
                    .iter()
                    .any(|(f, _)| *f == format!("chk-{id}/{METADATA}"))
            })
            .collect();
        let plan = Retention::plan(&ids, &complete, keep);
        let mut doomed: Vec<String> = files
            .iter()
            .filter(|(f, _)| {
                f.strip_prefix("chk-")
                    .and_then(|r| r.split('/').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|id| plan.delete.contains(&id))
            })
            .map(|(f, _)| f.clone())
            .collect();
        // Operator stores: `state/<store>/chk-<id>/...` and `state/<store>/sst/<file>`.
        let mut stores: BTreeMap<&str, StoreFiles> = BTreeMap::new();
        for (f, modified) in &files {
            let Some(rest) = f.strip_prefix(&format!("{STATE_DIR}/")) else {
                continue;
            };
            let mut parts = rest.splitn(3, '/');
            let (Some(store), Some(dir), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let entry = stores.entry(store).or_default();
            if dir == "sst" {
                entry.shared.push((file.to_string(), *modified));
            } else if let Some(id) = dir.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok()) {
                entry.privates.entry(id).or_default().push(file.to_string());
            }
        }
        for (store, files) in stores {
            let mut live = BTreeSet::new();
            for (&id, names) in &files.privates {
                let dir = format!("{STATE_DIR}/{store}/chk-{id}");
                if id < plan.keep_from {
                    doomed.extend(names.iter().map(|n| format!("{dir}/{n}")));
                } else if let Some(list) = remote.dir.get(&format!("{dir}/{}", SST_LIST))? {
                    live.extend(parse_sst_list(&String::from_utf8_lossy(&list)));
                }
            }
            let mut shared = remote.shared.lock().expect("upload lock");
            for (name, modified) in files.shared {
                if modified < before && !live.contains(&name) {
                    let key = format!("{STATE_DIR}/{store}/sst/{name}");
                    if let Some(known) = shared.as_mut() {
                        known.remove(&key);
                    }
                    doomed.push(key);
                }
            }
        }
        remote.dir.delete(&doomed)
    }
}

/// What object storage holds of one operator store.
#[derive(Default)]
struct StoreFiles {
    /// Checkpoint id → files of its private directory.
    privates: BTreeMap<u64, Vec<String>>,
    /// Shared files with their last modification.
    shared: Vec<(String, SystemTime)>,
}

/// Which checkpoints retention deletes.
struct Retention {
    /// Ids to delete.
    delete: Vec<u64>,
    /// The oldest id kept.
    keep_from: u64,
    /// The newest complete checkpoint (0 when none).
    newest: u64,
}

impl Retention {
    /// Keeps the newest `keep` complete checkpoints and incomplete ones newer than the
    /// newest complete one (one may be in progress).
    fn plan(ids: &[u64], complete: &[u64], keep: usize) -> Retention {
        let keep_from = complete
            .len()
            .checked_sub(keep)
            .map_or(0, |i| complete.get(i).copied().unwrap_or(0));
        let newest = complete.last().copied().unwrap_or(0);
        let delete = ids
            .iter()
            .copied()
            .filter(|&id| id < keep_from || (!complete.contains(&id) && id < newest))
            .collect();
        Retention {
            delete,
            keep_from,
            newest,
        }
    }
}

/// The checkpoint ids among directory names (`chk-<id>`), ascending and unique.
fn chk_ids(names: impl IntoIterator<Item = String>) -> Vec<u64> {
    let ids: BTreeSet<u64> = names
        .into_iter()
        .filter_map(|n| n.strip_prefix("chk-").and_then(|n| n.parse().ok()))
        .collect();
    ids.into_iter().collect()
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
            let final_private = store.join(format!("chk-{}", CheckpointId::FINAL.get()));
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
        match &self.remote {
            Some(remote) => {
                let rel = format!("savepoints/sp-{id}");
                remote.dir.put_dir(&rel, &to)?;
                Ok(PathBuf::from(remote.dir.url_of(&rel)))
            }
            None => Ok(to),
        }
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

    /// Reads a savepoint (or any checkpoint) directory written by this storage; an
    /// `s3://` location is downloaded first (configured by `options`, as for
    /// [`open`](Self::open)).
    pub fn load_dir(dir: &Path, options: &BTreeMap<String, String>) -> Result<CompletedCheckpoint> {
        let local;
        let dir = if is_remote(dir) {
            let url = dir.to_string_lossy();
            let remote = RemoteDir::open(&url, options)?;
            local = local_dir_for(&url);
            if remote.get(METADATA)?.is_none() {
                return Err(CheckpointError::Remote {
                    location: remote.url_of(METADATA),
                    reason: "not found: no savepoint or checkpoint there".into(),
                });
            }
            let _ = fs::remove_dir_all(&local);
            remote.get_dir("", &local)?;
            local.as_path()
        } else {
            dir
        };
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

/// Name of the list of shared files in a store's checkpoint directory.
const SST_LIST: &str = "_ssts";

/// The shared SST files a store's checkpoint directory lists.
fn sst_list(private: &Path) -> Vec<String> {
    fs::read_to_string(private.join(SST_LIST))
        .map(|s| parse_sst_list(&s))
        .unwrap_or_default()
}

fn parse_sst_list(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
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

    /// Writes checkpoint `id` with one subtask's snapshot tagged `id`, triggered now.
    fn write_now(storage: &CheckpointStorage, id: u64) {
        storage
            .write(
                "job",
                id,
                now(),
                false,
                &[(key(0), 1, snapshot(id as u8))],
                1,
            )
            .unwrap();
    }

    /// A fake RocksDB store's files for checkpoint `id` under `root`: shared `ssts`,
    /// listed by its private directory.
    fn store_files(root: &Path, id: u64, ssts: &[&str]) {
        let store = root.join(STATE_DIR).join("op#0");
        fs::create_dir_all(store.join("sst")).unwrap();
        for sst in ssts {
            fs::write(store.join("sst").join(sst), sst.as_bytes()).unwrap();
        }
        let private = store.join(format!("chk-{id}"));
        fs::create_dir_all(&private).unwrap();
        fs::write(private.join(SST_LIST), ssts.join("\n")).unwrap();
        fs::write(private.join("MANIFEST"), format!("manifest {id}")).unwrap();
    }

    #[test]
    fn checkpoints_in_object_storage_restore_on_a_machine_without_local_files() {
        let server = fungi_testkit::S3Server::start(&["ckpt"]);
        let url = Path::new("s3://ckpt/jobs/a");
        let local = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(url, &server.options())
            .unwrap()
            .with_local_dir(local.path());
        assert_eq!(storage.location(), "s3://ckpt/jobs/a");
        for id in 1..=4u64 {
            // Each checkpoint keeps one older shared file and adds one.
            let ssts = [format!("{}.sst", id.max(2) - 1), format!("{id}.sst")];
            store_files(local.path(), id, &[&ssts[0], &ssts[1]]);
            std::thread::sleep(std::time::Duration::from_millis(20));
            write_now(&storage, id);
            storage.retain(2).unwrap();
        }
        let bucket = server.root().join("ckpt/jobs/a");
        let mut objects: Vec<String> = crate::remote::local_files(&bucket)
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .filter(|f| !f.contains(".s3s"))
            .collect();
        objects.sort();
        // Two checkpoints kept; shared files only those they list.
        assert!(
            objects
                .iter()
                .all(|f| !f.starts_with("chk-1/") && !f.starts_with("chk-2/")),
            "{objects:?}"
        );
        assert!(
            objects.contains(&"chk-4/_metadata".to_string()),
            "{objects:?}"
        );
        let ssts: Vec<&String> = objects.iter().filter(|f| f.contains("/sst/")).collect();
        assert_eq!(ssts.len(), 3, "{objects:?}");

        // Another machine: nothing local; the newest checkpoint is downloaded with the
        // store files it needs.
        let fresh = tempfile::tempdir().unwrap();
        let restored = CheckpointStorage::open(url, &server.options())
            .unwrap()
            .with_local_dir(fresh.path());
        assert_eq!(restored.ids().unwrap(), vec![3, 4]);
        let c = restored.latest().unwrap().unwrap();
        assert_eq!(c.id(), 4);
        assert_eq!(
            c.operator_state("window", 0, 1).unwrap().states,
            vec![(0, vec![4; 10])]
        );
        let store = fresh.path().join(STATE_DIR).join("op#0");
        assert_eq!(
            fs::read_to_string(store.join("chk-4/MANIFEST")).unwrap(),
            "manifest 4"
        );
        assert_eq!(
            fs::read_to_string(store.join("sst/4.sst")).unwrap(),
            "4.sst"
        );
        assert!(store.join("sst/3.sst").exists());
    }

    #[test]
    fn a_damaged_object_falls_back_to_the_previous_checkpoint() {
        let server = fungi_testkit::S3Server::start(&["ckpt"]);
        let url = Path::new("s3://ckpt/b");
        let local = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::open(url, &server.options())
            .unwrap()
            .with_local_dir(local.path());
        for id in 1..=3 {
            write_now(&storage, id);
        }
        // 3: its state object damaged in the bucket; 2: its _metadata gone.
        let bucket = server.root().join("ckpt/b");
        let state = crate::remote::local_files(&bucket.join("chk-3"))
            .unwrap()
            .into_iter()
            .find(|(f, _)| f.ends_with(".state"))
            .unwrap()
            .1;
        let mut bytes = fs::read(&state).unwrap();
        bytes[3] ^= 0xff;
        fs::write(&state, bytes).unwrap();
        fs::remove_file(bucket.join("chk-2/_metadata")).unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let restored = CheckpointStorage::open(url, &server.options())
            .unwrap()
            .with_local_dir(fresh.path());
        let (c, skipped) = restored.latest_with_skipped().unwrap();
        assert_eq!(c.unwrap().id(), 1);
        assert!(
            skipped[0].contains("does not match its checksum"),
            "{skipped:?}"
        );
        assert!(
            skipped[1].contains("never completed") && skipped[1].contains("s3://ckpt/b/chk-2"),
            "{skipped:?}"
        );
    }

    #[test]
    fn bad_object_storage_settings_are_named() {
        let err =
            CheckpointStorage::open(Path::new("s3:///nobucket"), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("no bucket"), "{err}");
        let options = [("s3.colour".to_string(), "red".to_string())].into();
        let err = CheckpointStorage::open(Path::new("s3://b/p"), &options).unwrap_err();
        assert!(
            err.to_string().contains("unknown option 's3.colour'"),
            "{err}"
        );
        // Nothing listens there: the error names the location.
        let options = [(
            "s3.endpoint".to_string(),
            format!("http://127.0.0.1:{}", fungi_testkit::free_port()),
        )]
        .into();
        let storage = CheckpointStorage::open(Path::new("s3://b/p"), &options)
            .unwrap()
            .with_local_dir(tempfile::tempdir().unwrap().path());
        let err = storage.ids().unwrap_err();
        assert!(err.to_string().contains("s3://b/p"), "{err}");
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
