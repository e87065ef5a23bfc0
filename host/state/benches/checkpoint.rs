//! Checkpoint duration and size for one million keys in keyed state: the portable full
//! snapshot (every entry copied into the checkpoint, what the memory backend and
//! rescaling restores use), a full RocksDB checkpoint (every file copied) and an
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
        store.put(k % KEY_GROUPS, &k.to_be_bytes(), &value).unwrap();
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn checkpoints(c: &mut Criterion) {
    let ns = StateNamespace::new("bench", "job", "op");
    let mut group = c.benchmark_group("checkpoint_1m_keys");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));

    let mut memory = MemoryStateBackend.open_keyed(&ns, 0..KEY_GROUPS).unwrap();
    fill(memory.as_mut(), 1, 1);
    let bytes = memory.snapshot().unwrap().encode().len();
    eprintln!(
        "memory, portable full snapshot: {:.1} MiB",
        mib(bytes as u64)
    );
    group.bench_function("memory_portable_full", |b| {
        b.iter(|| memory.snapshot().unwrap().encode().len())
    });
    drop(memory);

    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbStateBackend::open(dir.path().join("db")).unwrap();
    let mut store = backend.open_keyed(&ns, 0..KEY_GROUPS).unwrap();
    fill(store.as_mut(), 1, 1);
    let bytes = store.snapshot().unwrap().encode().len();
    eprintln!(
        "rocksdb, portable full snapshot: {:.1} MiB",
        mib(bytes as u64)
    );
    group.bench_function("rocksdb_portable_full", |b| {
        b.iter(|| store.snapshot().unwrap().encode().len())
    });

    // Full: every file copied (an empty shared directory each time).
    let mut n = 0;
    let mut full = None;
    group.bench_function("rocksdb_files_full", |b| {
        b.iter(|| {
            n += 1;
            let shared = dir.path().join(format!("full-{n}"));
            full = store
                .checkpoint_files(&shared, &shared.join("private"))
                .unwrap();
            std::fs::remove_dir_all(&shared).unwrap();
        })
    });
    if let Some(f) = full {
        eprintln!("rocksdb, full checkpoint: {:.1} MiB", mib(f.new_bytes));
    }

    // Incremental: each iteration changes 1 % of the keys and checkpoints into the same
    // shared directory.
    let shared = dir.path().join("shared");
    store
        .checkpoint_files(&shared, &dir.path().join("inc-0"))
        .unwrap();
    let mut round = 1;
    let mut last = None;
    // Only the checkpoint is timed (with the memtable flush it includes), not the writes.
    group.bench_function("rocksdb_files_incremental_1pct_changed", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                fill(store.as_mut(), round, 100);
                let private = dir.path().join(format!("inc-{round}"));
                let start = std::time::Instant::now();
                last = store.checkpoint_files(&shared, &private).unwrap();
                total += start.elapsed();
                std::fs::remove_dir_all(&private).unwrap();
            }
            total
        })
    });
    if let Some(last) = last {
        eprintln!(
            "rocksdb, incremental checkpoint after 1 % changed: {:.2} MiB new, {:.1} MiB reused",
            mib(last.new_bytes),
            mib(last.reused_bytes)
        );
    }
    group.finish();
}

criterion_group!(benches, checkpoints);
criterion_main!(benches);
