//! The portable snapshot format of keyed state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Result, StateError};

/// Format version written in front of every encoded snapshot.
const SNAPSHOT_VERSION: u8 = 1;

/// The entries of one key group, in key order: (key, value) pairs.
pub type KeyGroupEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Entries of a keyed store, grouped by key group. Restoring filters by key group, so a
/// snapshot taken at one parallelism can be split among the subtasks of another.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedSnapshot {
    /// Key group -> its entries in key order.
    pub groups: BTreeMap<u32, KeyGroupEntries>,
}

impl KeyedSnapshot {
    /// Encodes the snapshot (version byte, then postcard).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_VERSION];
        out.extend(postcard::to_stdvec(self).expect("snapshot encoding cannot fail"));
        out
    }

    /// Decodes a snapshot written by [`KeyedSnapshot::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&SNAPSHOT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| StateError::CorruptSnapshot(e.to_string()))
            }
            Some((v, _)) => Err(StateError::CorruptSnapshot(format!(
                "unknown snapshot version {v} (this build reads version {SNAPSHOT_VERSION})"
            ))),
            None => Err(StateError::CorruptSnapshot("empty snapshot".into())),
        }
    }

    /// Merges the entries of several snapshots (e.g. of all old subtasks).
    pub fn merge(snapshots: impl IntoIterator<Item = KeyedSnapshot>) -> Self {
        let mut out = KeyedSnapshot::default();
        for s in snapshots {
            for (kg, entries) in s.groups {
                out.groups.entry(kg).or_default().extend(entries);
            }
        }
        out
    }
}
