//! Which checkpoints and store files are kept, and deleting the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::SystemTime;

use super::{CheckpointMetadata, CheckpointStorage, Remote, io};
use crate::Result;
use crate::layout::{
    METADATA, SHARED_DIR, SST_LIST, STATE_DIR, StoreLayout, checkpoint_dir_name, checkpoint_ids,
    parse_checkpoint_dir_name, parse_sst_list, sst_list,
};

impl CheckpointStorage {
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
        let ids = checkpoint_ids(
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
                    .any(|(f, _)| *f == format!("{}/{METADATA}", checkpoint_dir_name(*id)))
            })
            .collect();
        let plan = Retention::plan(&ids, &complete, keep);
        let mut doomed: Vec<String> = files
            .iter()
            .filter(|(f, _)| {
                f.split('/')
                    .next()
                    .and_then(parse_checkpoint_dir_name)
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
            if dir == SHARED_DIR {
                entry.shared.push((file.to_string(), *modified));
            } else if let Some(id) = parse_checkpoint_dir_name(dir) {
                entry.privates.entry(id).or_default().push(file.to_string());
            }
        }
        for (store, files) in stores {
            let mut live = BTreeSet::new();
            for (&id, names) in &files.privates {
                let dir = format!("{STATE_DIR}/{store}/{}", checkpoint_dir_name(id));
                if id < plan.keep_from {
                    doomed.extend(names.iter().map(|n| format!("{dir}/{n}")));
                } else if let Some(list) = remote.dir.get(&format!("{dir}/{}", SST_LIST))? {
                    live.extend(parse_sst_list(&String::from_utf8_lossy(&list)));
                }
            }
            let mut shared = remote.shared.lock().expect("upload lock");
            for (name, modified) in files.shared {
                if modified < before && !live.contains(&name) {
                    let key = format!("{STATE_DIR}/{store}/{SHARED_DIR}/{name}");
                    if let Some(known) = shared.as_mut() {
                        known.remove(&key);
                    }
                    doomed.push(key);
                }
            }
        }
        remote.dir.delete(&doomed)
    }

    /// Deletes operator files no complete checkpoint at or after `oldest` needs: private
    /// directories of older checkpoints, and shared SST files none of the rest lists that
    /// were written `before` (later ones may belong to a checkpoint being taken).
    fn collect_state_garbage(&self, oldest: u64, before: SystemTime) -> Result<()> {
        for store in StoreLayout::all(&self.dir).map_err(|e| io(&self.dir, e))? {
            let mut live = BTreeSet::new();
            let dir = store.dir();
            for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
                let path = entry.map_err(|e| io(dir, e))?.path();
                let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_checkpoint_dir_name)
                else {
                    continue;
                };
                if id < oldest {
                    fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
                } else {
                    live.extend(sst_list(&path));
                }
            }
            let shared = store.shared();
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
