//! Checkpoint duration and size for one million keys in keyed state: the portable full
//! snapshot (every entry copied into the checkpoint, what savepoints and the memory
//! backend write), a full RocksDB checkpoint (the database files copied) and an
//! incremental RocksDB checkpoint after 1 % of the keys changed (only new SST files
//! copied).
//!
//! `cargo bench -p fungi-state --bench checkpoint`

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fungi_state::{
    KeyedStore, MemoryStateBackend, RocksDbStateBackend, StateBackend, StateNamespace,
};

const KEYS: u32 = 1_000_000;
const KEY_GROUPS: u32 = 128;

fn fill(store: &mut dyn KeyedStore, round: u32, every: u32) {
    let value = [round as u8; 24];
    for k in (0..KEYS).step_by(every as usize) {
        let key = k.to_be_bytes();
        store.put(k % KEY_GROUPS, &key, &value).unwrap();
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn checkpoints(c: &mut Criterion) {
    let ns = StateNamespace::new("bench", "job", "op");
    let mut group = c.benchmark_group("checkpoint_1m_keys");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let mut memory = MemoryStateBackend.open_keyed(&ns, 0..KEY_GROUPS).unwrap();
    fill(memory.as_mut(), 1, 1);
    let bytes = memory.snapshot().unwrap().encode().len();
    eprintln!("memory full snapshot: {:.1} MiB", bytes as f64 / 1048576.0);
    group.bench_function("memory_full_snapshot", |b| {
        b.iter(|| memory.snapshot().unwrap().encode().len())
    });
    drop(memory);

    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbStateBackend::open(dir.path().join("db")).unwrap();
    let mut store = backend.open_keyed(&ns, 0..KEY_GROUPS).unwrap();
    fill(store.as_mut(), 1, 1);
    backend.flush().unwrap();
    let bytes = store.snapshot().unwrap().encode().len();
    eprintln!(
        "rocksdb portable full snapshot: {:.1} MiB",
        bytes as f64 / 1048576.0
    );
    group.bench_function("rocksdb_portable_full_snapshot", |b| {
        b.iter(|| store.snapshot().unwrap().encode().len())
    });

    let mut n = 0;
    let full_size = {
        let target = dir.path().join("full-size");
        backend.checkpoint_full(&target).unwrap();
        dir_size(&target)
    };
    eprintln!(
        "rocksdb full checkpoint: {:.1} MiB",
        full_size as f64 / 1048576.0
    );
    group.bench_function("rocksdb_full_checkpoint", |b| {
        b.iter(|| {
            n += 1;
            let target = dir.path().join(format!("full-{n}"));
            backend.checkpoint_full(&target).unwrap();
            std::fs::remove_dir_all(&target).unwrap();
        })
    });

    // Incremental: each iteration changes 1 % of the keys, flushes and checkpoints.
    let shared = dir.path().join("shared");
    backend
        .checkpoint_incremental(&shared, &dir.path().join("inc-0"))
        .unwrap();
    let mut round = 1;
    let mut last = None;
    group.bench_function("rocksdb_incremental_checkpoint_1pct_changed", |b| {
        b.iter(|| {
            round += 1;
            fill(store.as_mut(), round, 100);
            backend.flush().unwrap();
            let private = dir.path().join(format!("inc-{round}"));
            last = Some(backend.checkpoint_incremental(&shared, &private).unwrap());
            std::fs::remove_dir_all(&private).unwrap();
        })
    });
    if let Some(last) = last {
        eprintln!(
            "rocksdb incremental checkpoint after 1 % changed: {:.2} MiB new, {:.1} MiB reused",
            last.new_bytes as f64 / 1048576.0,
            last.reused_bytes as f64 / 1048576.0
        );
    }
    group.finish();
}

criterion_group!(benches, checkpoints);
criterion_main!(benches);
