//! Savepoints: checkpoints taken on request and copied out of retention's reach.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fungi_common::ids::CheckpointId;
use serde::{Deserialize, Serialize};

use super::{
    CheckpointMetadata, CheckpointStorage, CompletedCheckpoint, io, local_dir_for, write_atomically,
};
use crate::layout::{
    METADATA, SAVEPOINT_REQUEST, SAVEPOINT_RESPONSE, SAVEPOINTS_DIR, StoreLayout,
    savepoint_dir_name, sst_list,
};
use crate::remote::{RemoteDir, is_remote};
use crate::{CheckpointError, Result};

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
        let to = self.dir.join(SAVEPOINTS_DIR).join(savepoint_dir_name(id));
        fs::create_dir_all(&to).map_err(|e| io(&to, e))?;
        for entry in fs::read_dir(&from).map_err(|e| io(&from, e))? {
            let entry = entry.map_err(|e| io(&from, e))?;
            fs::copy(entry.path(), to.join(entry.file_name())).map_err(|e| io(&entry.path(), e))?;
        }
        // Operator files of this checkpoint (RocksDB stores): its private directory and
        // the shared SST files it lists, at the same relative paths.
        for store in StoreLayout::all(&self.dir).map_err(|e| io(&self.dir, e))? {
            let private = store.private(CheckpointId(id));
            let final_private = store.private(CheckpointId::FINAL);
            let private = if private.exists() {
                private
            } else {
                final_private
            };
            if !private.exists() {
                continue;
            }
            let sp_store = StoreLayout::from_relative(&to, store.relative());
            let sp_private = sp_store.dir().join(private.file_name().unwrap_or_default());
            fs::create_dir_all(sp_store.shared()).map_err(|e| io(sp_store.dir(), e))?;
            fs::create_dir_all(&sp_private).map_err(|e| io(&sp_private, e))?;
            for entry in fs::read_dir(&private).map_err(|e| io(&private, e))? {
                let entry = entry.map_err(|e| io(&private, e))?;
                fs::copy(entry.path(), sp_private.join(entry.file_name()))
                    .map_err(|e| io(&entry.path(), e))?;
            }
            for sst in sst_list(&private) {
                let src = store.shared().join(&sst);
                fs::copy(&src, sp_store.shared().join(&sst)).map_err(|e| io(&src, e))?;
            }
        }
        match &self.remote {
            Some(remote) => {
                let rel = format!("{SAVEPOINTS_DIR}/{}", savepoint_dir_name(id));
                remote.dir.put_dir(&rel, &to)?;
                Ok(PathBuf::from(remote.dir.url_of(&rel)))
            }
            None => Ok(to),
        }
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
