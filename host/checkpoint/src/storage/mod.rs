//! Checkpoints in a local directory, optionally backed by S3-compatible object storage,
//! laid out as [`crate::layout`] describes.
//!
//! With an `s3://bucket/prefix` location the same layout is kept in object storage (see
//! [`crate::remote`]): checkpoints are assembled in a local directory, uploaded file by
//! file with `_metadata` last, and a checkpoint counts as complete once its `_metadata`
//! object exists. The local copy then only caches what was uploaded ([`transfer`]).
//! Retention deletes old checkpoints and the store files no kept one needs
//! ([`retention`]); savepoints are copies out of its reach ([`savepoint`]).

mod retention;
mod savepoint;
#[cfg(test)]
mod tests;
mod transfer;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64;

pub use self::savepoint::{SavepointRequest, SavepointResponse};
use crate::layout::{METADATA, checkpoint_dir_name, checkpoint_ids};
use crate::remote::{RemoteDir, is_remote};
use crate::{CheckpointError, RestoredState, Result, TaskKey, TaskSnapshot};

/// Version of the on-disk format.
const FORMAT: u32 = 1;
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

/// The directory of a job's own files beside its checkpoints.
const JOB_FILES: &str = "_job";

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
        self.dir.join(checkpoint_dir_name(id))
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

    /// Keeps `bytes` as the job's file `name` (under `_job/`, beside its checkpoints):
    /// what a standby JobManager needs to resume the job, such as its script.
    pub fn put_job_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let rel = format!("{JOB_FILES}/{name}");
        match &self.remote {
            Some(remote) => remote.dir.put(&rel, bytes.to_vec()),
            None => {
                let path = self.dir.join(&rel);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
                }
                write_atomically(&path, bytes)
            }
        }
    }

    /// The job's file `name`, if it was kept ([`put_job_file`](Self::put_job_file)).
    pub fn job_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let rel = format!("{JOB_FILES}/{name}");
        match &self.remote {
            Some(remote) => remote.dir.get(&rel),
            None => {
                let path = self.dir.join(&rel);
                match fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&path, e)),
                }
            }
        }
    }

    /// Ids of the checkpoints present (complete or not), ascending; in object storage
    /// when there is one.
    pub fn ids(&self) -> Result<Vec<u64>> {
        match &self.remote {
            Some(remote) => Ok(checkpoint_ids(remote.dir.dirs("")?)),
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
        Ok(checkpoint_ids(
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

    /// The metadata of the newest checkpoint that completed (its `_metadata` written),
    /// without reading its task files: what a watcher of a job's state size needs.
    pub fn latest_metadata(&self) -> Result<Option<CheckpointMetadata>> {
        if self.remote.is_some() {
            return Ok(self.latest()?.map(|c| c.metadata));
        }
        for id in self.local_ids()?.into_iter().rev() {
            let path = self.checkpoint_dir(id).join(METADATA);
            match fs::read(&path) {
                Ok(bytes) => {
                    if let Ok(metadata) = serde_json::from_slice(&bytes) {
                        return Ok(Some(metadata));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
        }
        Ok(None)
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
