//! Moving checkpoints between the local directory and object storage.

use std::fs;

use xxhash_rust::xxh3::xxh3_64;

use super::{CheckpointMetadata, CheckpointStorage, Remote, io, write_atomically};
use crate::layout::{
    METADATA, SHARED_DIR, STATE_DIR, StoreLayout, checkpoint_dir_name, private_names, sst_list,
};
use crate::{CheckpointError, Result};

impl CheckpointStorage {
    /// Uploads checkpoint `metadata.id` from the local directory: the task files, the
    /// operator stores' files for it (shared files only once), then `_metadata`.
    pub(super) fn upload(
        &self,
        remote: &Remote,
        metadata: &CheckpointMetadata,
        json: &[u8],
    ) -> Result<()> {
        let id = metadata.id;
        let chk = checkpoint_dir_name(id);
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
        for store in StoreLayout::all(&self.dir).map_err(|e| io(&self.dir, e))? {
            let rel = store.relative();
            for name in private_names(id, metadata.finished) {
                let private = store.dir().join(&name);
                if !private.exists() {
                    continue;
                }
                for sst in sst_list(&private) {
                    let key = format!("{rel}/{SHARED_DIR}/{sst}");
                    if !shared.contains(&key) {
                        remote.dir.put_file(&key, &store.shared().join(&sst))?;
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
    pub(super) fn download(&self, remote: &Remote, id: u64) -> Result<()> {
        let chk = checkpoint_dir_name(id);
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
            let local_store = StoreLayout::new(&self.dir, &store);
            let rel = local_store.relative();
            for name in private_names(id, finished) {
                let private = local_store.dir().join(&name);
                remote.dir.get_dir(&format!("{rel}/{name}"), &private)?;
                for sst in sst_list(&private) {
                    let local = local_store.shared().join(&sst);
                    if !local.exists() {
                        remote
                            .dir
                            .get_file(&format!("{rel}/{SHARED_DIR}/{sst}"), &local)?;
                    }
                }
            }
        }
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_atomically(&dir.join(METADATA), &json)
    }
}
