//! Where everything lives in a checkpoint location: the one module that knows the names.
//!
//! ```text
//! <location>/
//!     chk-<id>/                 one checkpoint: a `<chain>#<subtask>.state` file per
//!                               subtask (postcard-encoded TaskSnapshot) and `_metadata`,
//!                               written last through a rename: its presence marks the
//!                               checkpoint complete; it lists every file with its size
//!                               and xxh3 checksum
//!     state/<store>/sst/        SST files an operator store with files of its own
//!                               (RocksDB) shares between its checkpoints
//!     state/<store>/chk-<id>/   that store's private files for one checkpoint, with
//!                               `_ssts`, the list of the shared files it needs
//!     savepoints/sp-<id>/       a savepoint: checkpoint `id` with its store files, out of
//!                               retention's reach
//!     _savepoint_request        left by `fungi savepoint`, taken by the coordinator
//!     _savepoint_response       the coordinator's answer
//! ```
//!
//! Object storage (`s3://bucket/prefix`) holds the same keys under its prefix. The state
//! backend writes a store's files where [`StoreLayout`] says; the checkpoint storage
//! uploads, downloads, copies into savepoints and deletes them by the same rules.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use fungi_common::ids::CheckpointId;

/// The metadata file of a checkpoint directory.
pub const METADATA: &str = "_metadata";
/// The directory of operator stores that keep files of their own.
pub const STATE_DIR: &str = "state";
/// A store's directory of files shared between checkpoints.
pub const SHARED_DIR: &str = "sst";
/// The file, in a store's private directory for a checkpoint, that lists the shared
/// files that checkpoint needs (one name per line).
pub const SST_LIST: &str = "_ssts";
/// The directory of savepoints.
pub(crate) const SAVEPOINTS_DIR: &str = "savepoints";
/// A pending savepoint request.
pub(crate) const SAVEPOINT_REQUEST: &str = "_savepoint_request";
/// The answer to the last savepoint request.
pub(crate) const SAVEPOINT_RESPONSE: &str = "_savepoint_response";

/// The directory name of checkpoint `id` (`chk-<id>`), at the top and in every store.
pub fn checkpoint_dir_name(id: u64) -> String {
    format!("chk-{id}")
}

/// The checkpoint id a directory name (`chk-<id>`) stands for.
pub fn parse_checkpoint_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The directory name of the savepoint taken as checkpoint `id`.
pub(crate) fn savepoint_dir_name(id: u64) -> String {
    format!("sp-{id}")
}

/// The checkpoint ids among directory names, ascending and unique.
pub(crate) fn checkpoint_ids(names: impl IntoIterator<Item = String>) -> Vec<u64> {
    let ids: BTreeSet<u64> = names
        .into_iter()
        .filter_map(|n| parse_checkpoint_dir_name(&n))
        .collect();
    ids.into_iter().collect()
}

/// The files of one operator store in a checkpoint location: `state/<store>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    relative: String,
    dir: PathBuf,
}

impl StoreLayout {
    /// The store named `store` under the checkpoint location `root`.
    pub fn new(root: &Path, store: &str) -> Self {
        StoreLayout {
            relative: format!("{STATE_DIR}/{store}"),
            dir: root.join(STATE_DIR).join(store),
        }
    }

    /// The store at `relative` (as [`relative`](Self::relative) gave it when the
    /// checkpoint was taken) under `root`.
    pub fn from_relative(root: &Path, relative: &str) -> Self {
        StoreLayout {
            relative: relative.to_string(),
            dir: root.join(relative),
        }
    }

    /// Its path relative to the checkpoint location, with `/`.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of files shared between its checkpoints.
    pub fn shared(&self) -> PathBuf {
        self.dir.join(SHARED_DIR)
    }

    /// Its private directory for checkpoint `id`.
    pub fn private(&self, id: CheckpointId) -> PathBuf {
        self.dir.join(checkpoint_dir_name(id.get()))
    }

    /// Every store under the checkpoint location `root`.
    pub(crate) fn all(root: &Path) -> std::io::Result<Vec<StoreLayout>> {
        let state = root.join(STATE_DIR);
        let read = match fs::read_dir(&state) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut stores = Vec::new();
        for entry in read.filter_map(|e| e.ok()) {
            if entry.path().is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                stores.push(StoreLayout::new(root, name));
            }
        }
        Ok(stores)
    }
}

/// The names of the private directories a store may have for checkpoint `id`: its own
/// and, for a final checkpoint, the one tasks write on their own under
/// [`CheckpointId::FINAL`].
pub(crate) fn private_names(id: u64, finished: bool) -> Vec<String> {
    let mut names = vec![checkpoint_dir_name(id)];
    if finished {
        names.push(checkpoint_dir_name(CheckpointId::FINAL.get()));
    }
    names
}

/// Writes the list of shared files a store's checkpoint needs into its private
/// directory `private`.
pub fn write_sst_list<'a>(
    private: &Path,
    shared_files: impl IntoIterator<Item = &'a str>,
) -> std::io::Result<()> {
    let list: Vec<&str> = shared_files.into_iter().collect();
    fs::write(private.join(SST_LIST), list.join("\n"))
}

/// The shared files a store's private directory `private` lists (none when it has no
/// list).
pub(crate) fn sst_list(private: &Path) -> Vec<String> {
    fs::read_to_string(private.join(SST_LIST))
        .map(|s| parse_sst_list(&s))
        .unwrap_or_default()
}

/// The names in the text of a shared-file list.
pub(crate) fn parse_sst_list(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}
