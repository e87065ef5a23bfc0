//! The in-memory state backend: one ordered map per key group.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};

use crate::kinds::{is_expired, now_ms};
use crate::snapshot::KeyedSnapshot;
use crate::{KeyedStore, Result, StateBackend, StateError, StateNamespace};

/// Keeps all state on the heap. Fast; bounded by memory; lost on a crash unless
/// checkpointed.
#[derive(Debug, Default, Clone)]
pub struct MemoryStateBackend;

impl StateBackend for MemoryStateBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open_keyed(
        &self,
        _namespace: &StateNamespace,
        key_groups: Range<u32>,
    ) -> Result<Box<dyn KeyedStore>> {
        Ok(Box::new(MemoryKeyedStore::new(key_groups)))
    }
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The keyed store of [`MemoryStateBackend`].
#[derive(Debug)]
struct MemoryKeyedStore {
    range: Range<u32>,
    groups: Vec<Map>,
}

impl MemoryKeyedStore {
    fn new(range: Range<u32>) -> Self {
        let groups = (range.start..range.end).map(|_| Map::new()).collect();
        MemoryKeyedStore { range, groups }
    }

    fn group(&self, key_group: u32) -> Result<&Map> {
        self.index(key_group).map(|i| &self.groups[i])
    }

    fn group_mut(&mut self, key_group: u32) -> Result<&mut Map> {
        let i = self.index(key_group)?;
        Ok(&mut self.groups[i])
    }

    fn index(&self, key_group: u32) -> Result<usize> {
        if self.range.contains(&key_group) {
            Ok((key_group - self.range.start) as usize)
        } else {
            Err(StateError::KeyGroupNotOwned {
                key_group,
                range: self.range.clone(),
            })
        }
    }
}

fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

impl KeyedStore for MemoryKeyedStore {
    fn key_groups(&self) -> Range<u32> {
        self.range.clone()
    }

    fn get(&self, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.group(key_group)?.get(key).cloned())
    }

    fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) -> Result<()> {
        let group = self.group_mut(key_group)?;
        match group.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                group.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn delete(&mut self, key_group: u32, key: &[u8]) -> Result<()> {
        self.group_mut(key_group)?.remove(key);
        Ok(())
    }

    fn scan_prefix(
        &self,
        key_group: u32,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        for (k, v) in self.group(key_group)?.range(prefix_range(prefix)) {
            if !k.starts_with(prefix) || !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn delete_prefix(&mut self, key_group: u32, prefix: &[u8]) -> Result<()> {
        let group = self.group_mut(key_group)?;
        let doomed: Vec<Vec<u8>> = group
            .range(prefix_range(prefix))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            group.remove(&k);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<KeyedSnapshot> {
        let mut snapshot = KeyedSnapshot::default();
        for (i, group) in self.groups.iter().enumerate() {
            // Expired entries of states with a time-to-live are left out.
            let now = now_ms();
            let entries: Vec<_> = group
                .iter()
                .filter(|(k, v)| !is_expired(k, v, now))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !entries.is_empty() {
                snapshot.groups.insert(self.range.start + i as u32, entries);
            }
        }
        Ok(snapshot)
    }

    fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<()> {
        for group in &mut self.groups {
            group.clear();
        }
        for (&kg, entries) in &snapshot.groups {
            if let Ok(group) = self.group_mut(kg) {
                group.extend(entries.iter().cloned());
            }
        }
        Ok(())
    }
}
