//! Typed state kinds over a [`KeyedStore`]: value, list, map and aggregating state.
//!
//! A state handle is a small descriptor (its name and codec); the store and the current
//! key are passed on each call, as the operator knows them. Keys in the store are laid
//! out as `name, 0x00, len(key) as u32 BE, key[, map key]`, so the entries of one state
//! and one key are contiguous and can be scanned or deleted by prefix in any ordered
//! store (BTreeMap, RocksDB).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{KeyedStore, Result, StateError};

fn state_key(name: &str, key: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 5 + key.len() + suffix.len());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(suffix);
    out
}

fn encode<T: Serialize>(state: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| StateError::Codec {
        state: state.into(),
        action: "encode",
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(state: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Codec {
        state: state.into(),
        action: "decode",
        reason: e.to_string(),
    })
}

/// First byte of the name of a state with a time-to-live. Such a state's values start
/// with their expiry time (ms since the epoch, big endian), so that backends can drop
/// expired entries without knowing the state: RocksDB in compaction, every backend when
/// it takes a snapshot (Flink's `cleanupInRocksdbCompactFilter` and
/// `cleanupFullSnapshot`).
pub const TTL_MARKER: u8 = 0x01;

/// Whether a stored entry (its state key, as the typed states lay it out, and value)
/// belongs to a state with a time-to-live and expired before `now_ms`.
pub fn is_expired(key: &[u8], value: &[u8], now_ms: i64) -> bool {
    key.first() == Some(&TTL_MARKER)
        && value
            .get(..8)
            .is_some_and(|e| i64::from_be_bytes(e.try_into().expect("eight bytes")) <= now_ms)
}

/// The name under which a state with a time-to-live is stored.
fn ttl_name(name: impl Into<String>) -> String {
    let mut name = name.into();
    name.insert(0, TTL_MARKER as char);
    name
}

/// Encodes `value`, behind its expiry when the state has a time-to-live.
fn encode_stamped<T: Serialize>(state: &str, ttl_ms: Option<i64>, value: &T) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(ttl) = ttl_ms {
        bytes.extend_from_slice(&now_ms().saturating_add(ttl).to_be_bytes());
    }
    bytes.extend(encode(state, value)?);
    Ok(bytes)
}

/// Decodes a stored value; `None` if it expired.
fn decode_stamped<T: DeserializeOwned>(
    state: &str,
    ttl_ms: Option<i64>,
    bytes: &[u8],
) -> Result<Option<T>> {
    match ttl_ms {
        None => decode(state, bytes).map(Some),
        Some(_) if is_expired(state.as_bytes(), bytes, now_ms()) => Ok(None),
        Some(_) => decode(state, bytes.get(8..).unwrap_or_default()).map(Some),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One value per key.
#[derive(Debug, Clone)]
pub struct ValueState<V> {
    name: String,
    /// Time-to-live in ms: a value expires this long after it was last written.
    ttl_ms: Option<i64>,
    _v: PhantomData<fn() -> V>,
}

impl<V: Serialize + DeserializeOwned> ValueState<V> {
    /// A value state called `name` (unique within the operator).
    pub fn new(name: impl Into<String>) -> Self {
        ValueState {
            name: name.into(),
            ttl_ms: None,
            _v: PhantomData,
        }
    }

    /// A value state whose values expire `ttl` after they were last written (Flink's
    /// `StateTtlConfig` with `OnCreateAndWrite` and `NeverReturnExpired`): an expired
    /// value reads as absent and is dropped by the backend in the background.
    pub fn with_ttl(name: impl Into<String>, ttl: std::time::Duration) -> Self {
        ValueState {
            name: ttl_name(name),
            ttl_ms: Some(ttl.as_millis() as i64),
            _v: PhantomData,
        }
    }

    /// The value for `key`, if any.
    pub fn get(&self, store: &dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<Option<V>> {
        match store.get(key_group, &state_key(&self.name, key, &[]))? {
            None => Ok(None),
            Some(bytes) => decode_stamped(&self.name, self.ttl_ms, &bytes),
        }
    }

    /// Sets the value for `key` (and, with a time-to-live, its expiry).
    pub fn put(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        value: &V,
    ) -> Result<()> {
        let bytes = encode_stamped(&self.name, self.ttl_ms, value)?;
        store.put(key_group, &state_key(&self.name, key, &[]), &bytes)
    }

    /// Removes the value for `key`.
    pub fn clear(&self, store: &mut dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<()> {
        store.delete(key_group, &state_key(&self.name, key, &[]))
    }
}

/// A list of values per key.
#[derive(Debug, Clone)]
pub struct ListState<V> {
    inner: ValueState<Vec<V>>,
}

impl<V: Serialize + DeserializeOwned> ListState<V> {
    /// A list state called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ListState {
            inner: ValueState::new(name),
        }
    }

    /// A list state whose list expires `ttl` after it was last written.
    pub fn with_ttl(name: impl Into<String>, ttl: std::time::Duration) -> Self {
        ListState {
            inner: ValueState::with_ttl(name, ttl),
        }
    }

    /// The list for `key` (empty if none).
    pub fn get(&self, store: &dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<Vec<V>> {
        Ok(self.inner.get(store, key_group, key)?.unwrap_or_default())
    }

    /// Appends `value` to the list of `key`.
    pub fn add(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        value: V,
    ) -> Result<()> {
        let mut list = self.get(store, key_group, key)?;
        list.push(value);
        self.inner.put(store, key_group, key, &list)
    }

    /// Replaces the list of `key`.
    pub fn update(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        values: &Vec<V>,
    ) -> Result<()> {
        self.inner.put(store, key_group, key, values)
    }

    /// Removes the list of `key`.
    pub fn clear(&self, store: &mut dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<()> {
        self.inner.clear(store, key_group, key)
    }
}

/// A map per key; each entry is stored on its own so large maps are not rewritten whole.
#[derive(Debug, Clone)]
pub struct MapState<K, V> {
    name: String,
    /// Time-to-live of each entry in ms, from its last write.
    ttl_ms: Option<i64>,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// A map state called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MapState {
            name: name.into(),
            ttl_ms: None,
            _kv: PhantomData,
        }
    }

    /// A map state whose entries each expire `ttl` after they were last written.
    pub fn with_ttl(name: impl Into<String>, ttl: std::time::Duration) -> Self {
        MapState {
            name: ttl_name(name),
            ttl_ms: Some(ttl.as_millis() as i64),
            _kv: PhantomData,
        }
    }

    fn entry_key(&self, key: &[u8], map_key: &K) -> Result<Vec<u8>> {
        Ok(state_key(&self.name, key, &encode(&self.name, map_key)?))
    }

    /// The value under `map_key` in the map of `key`.
    pub fn get(
        &self,
        store: &dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        map_key: &K,
    ) -> Result<Option<V>> {
        match store.get(key_group, &self.entry_key(key, map_key)?)? {
            None => Ok(None),
            Some(bytes) => decode_stamped(&self.name, self.ttl_ms, &bytes),
        }
    }

    /// Sets `map_key` to `value` in the map of `key`.
    pub fn put(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        map_key: &K,
        value: &V,
    ) -> Result<()> {
        let bytes = encode_stamped(&self.name, self.ttl_ms, value)?;
        store.put(key_group, &self.entry_key(key, map_key)?, &bytes)
    }

    /// Removes `map_key` from the map of `key`.
    pub fn remove(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        map_key: &K,
    ) -> Result<()> {
        store.delete(key_group, &self.entry_key(key, map_key)?)
    }

    /// All entries of the map of `key`, in the order of their encoded keys.
    pub fn entries(
        &self,
        store: &dyn KeyedStore,
        key_group: u32,
        key: &[u8],
    ) -> Result<Vec<(K, V)>> {
        let prefix = state_key(&self.name, key, &[]);
        let mut out = Vec::new();
        let mut error = None;
        store.scan_prefix(key_group, &prefix, &mut |k, v| match (
            decode(&self.name, &k[prefix.len()..]),
            decode_stamped(&self.name, self.ttl_ms, v),
        ) {
            (Ok(k), Ok(Some(v))) => {
                out.push((k, v));
                true
            }
            // Expired.
            (Ok(_), Ok(None)) => true,
            (Err(e), _) | (_, Err(e)) => {
                error = Some(e);
                false
            }
        })?;
        error.map_or(Ok(out), Err)
    }

    /// Removes the whole map of `key`.
    pub fn clear(&self, store: &mut dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<()> {
        store.delete_prefix(key_group, &state_key(&self.name, key, &[]))
    }
}

/// An incremental aggregation, as Flink's `AggregateFunction`: values are folded into an
/// accumulator, which is what the state stores.
pub trait AggregateFunction {
    /// The input value.
    type In;
    /// The stored accumulator.
    type Acc: Serialize + DeserializeOwned + Default;
    /// The result.
    type Out;
    /// Folds `value` into `acc`.
    fn add(&self, acc: &mut Self::Acc, value: Self::In);
    /// The result for `acc`.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// One accumulator per key, updated through an [`AggregateFunction`].
#[derive(Debug, Clone)]
pub struct AggregatingState<F: AggregateFunction> {
    inner: ValueState<F::Acc>,
    function: F,
}

impl<F: AggregateFunction> AggregatingState<F> {
    /// An aggregating state called `name` that folds with `function`.
    pub fn new(name: impl Into<String>, function: F) -> Self {
        AggregatingState {
            inner: ValueState::new(name),
            function,
        }
    }

    /// An aggregating state whose accumulator expires `ttl` after it was last updated.
    pub fn with_ttl(name: impl Into<String>, function: F, ttl: std::time::Duration) -> Self {
        AggregatingState {
            inner: ValueState::with_ttl(name, ttl),
            function,
        }
    }

    /// Folds `value` into the accumulator of `key`.
    pub fn add(
        &self,
        store: &mut dyn KeyedStore,
        key_group: u32,
        key: &[u8],
        value: F::In,
    ) -> Result<()> {
        let mut acc = self.inner.get(store, key_group, key)?.unwrap_or_default();
        self.function.add(&mut acc, value);
        self.inner.put(store, key_group, key, &acc)
    }

    /// The current result for `key`, if anything was added.
    pub fn get(
        &self,
        store: &dyn KeyedStore,
        key_group: u32,
        key: &[u8],
    ) -> Result<Option<F::Out>> {
        Ok(self
            .inner
            .get(store, key_group, key)?
            .map(|acc| self.function.result(&acc)))
    }

    /// Drops the accumulator of `key`.
    pub fn clear(&self, store: &mut dyn KeyedStore, key_group: u32, key: &[u8]) -> Result<()> {
        self.inner.clear(store, key_group, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyedSnapshot, MemoryStateBackend, StateBackend, StateNamespace};

    fn store(range: std::ops::Range<u32>) -> Box<dyn KeyedStore> {
        MemoryStateBackend
            .open_keyed(&StateNamespace::new("t", "j", "o"), range)
            .unwrap()
    }

    struct Avg;
    impl AggregateFunction for Avg {
        type In = f64;
        type Acc = (f64, u64);
        type Out = f64;
        fn add(&self, acc: &mut (f64, u64), v: f64) {
            acc.0 += v;
            acc.1 += 1;
        }
        fn result(&self, acc: &(f64, u64)) -> f64 {
            acc.0 / acc.1 as f64
        }
    }

    #[test]
    fn kinds_are_isolated_by_name_and_key() {
        let mut s = store(0..4);
        let v = ValueState::<String>::new("v");
        let l = ListState::<i64>::new("l");
        let m = MapState::<String, i64>::new("m");
        let a = AggregatingState::new("a", Avg);
        v.put(s.as_mut(), 1, b"k1", &"x".to_string()).unwrap();
        l.add(s.as_mut(), 1, b"k1", 1).unwrap();
        l.add(s.as_mut(), 1, b"k1", 2).unwrap();
        m.put(s.as_mut(), 1, b"k1", &"b".into(), &2).unwrap();
        m.put(s.as_mut(), 1, b"k1", &"a".into(), &1).unwrap();
        m.put(s.as_mut(), 1, b"k2", &"z".into(), &9).unwrap();
        a.add(s.as_mut(), 1, b"k1", 1.0).unwrap();
        a.add(s.as_mut(), 1, b"k1", 2.0).unwrap();
        assert_eq!(v.get(s.as_ref(), 1, b"k1").unwrap().as_deref(), Some("x"));
        assert_eq!(v.get(s.as_ref(), 1, b"k2").unwrap(), None);
        assert_eq!(l.get(s.as_ref(), 1, b"k1").unwrap(), vec![1, 2]);
        let entries = m.entries(s.as_ref(), 1, b"k1").unwrap();
        assert_eq!(entries, vec![("a".to_string(), 1), ("b".to_string(), 2)]);
        assert_eq!(a.get(s.as_ref(), 1, b"k1").unwrap(), Some(1.5));
        m.clear(s.as_mut(), 1, b"k1").unwrap();
        assert!(m.entries(s.as_ref(), 1, b"k1").unwrap().is_empty());
        assert_eq!(m.entries(s.as_ref(), 1, b"k2").unwrap().len(), 1);
    }

    #[test]
    fn every_kind_can_expire() {
        let mut s = store(0..1);
        let short = std::time::Duration::from_millis(30);
        let l = ListState::<i64>::with_ttl("l", short);
        let m = MapState::<String, i64>::with_ttl("m", short);
        let a = AggregatingState::with_ttl("a", Avg, short);
        l.add(s.as_mut(), 0, b"k", 1).unwrap();
        m.put(s.as_mut(), 0, b"k", &"old".into(), &1).unwrap();
        a.add(s.as_mut(), 0, b"k", 2.0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        m.put(s.as_mut(), 0, b"k", &"new".into(), &2).unwrap();
        assert!(l.get(s.as_ref(), 0, b"k").unwrap().is_empty());
        assert_eq!(a.get(s.as_ref(), 0, b"k").unwrap(), None);
        // Map entries expire one by one.
        assert_eq!(m.get(s.as_ref(), 0, b"k", &"old".into()).unwrap(), None);
        assert_eq!(
            m.entries(s.as_ref(), 0, b"k").unwrap(),
            vec![("new".to_string(), 2)]
        );
        // An expired list starts over.
        l.add(s.as_mut(), 0, b"k", 5).unwrap();
        assert_eq!(l.get(s.as_ref(), 0, b"k").unwrap(), vec![5]);
    }

    #[test]
    fn refuses_foreign_key_groups() {
        let mut s = store(0..4);
        let v = ValueState::<u8>::new("v");
        let err = v.put(s.as_mut(), 9, b"k", &1).unwrap_err();
        assert!(err.to_string().contains("key group 9"), "{err}");
    }

    #[test]
    fn snapshot_restores_at_other_parallelism() {
        let v = ValueState::<u32>::new("v");
        let mut old = store(0..8);
        for kg in 0..8u32 {
            v.put(old.as_mut(), kg, b"k", &kg).unwrap();
        }
        let bytes = old.snapshot().unwrap().encode();
        let snapshot = KeyedSnapshot::decode(&bytes).unwrap();
        let mut left = store(0..3);
        let mut right = store(3..8);
        left.restore(&snapshot).unwrap();
        right.restore(&snapshot).unwrap();
        assert_eq!(v.get(left.as_ref(), 2, b"k").unwrap(), Some(2));
        assert_eq!(v.get(right.as_ref(), 7, b"k").unwrap(), Some(7));
        assert!(KeyedSnapshot::decode(&[9, 1, 2]).is_err());
    }
}
