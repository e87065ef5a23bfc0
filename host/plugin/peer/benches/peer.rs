//! gcd and slugify at 8192-row batches: Fungi's plugin host against RisingWave's
//! `arrow-udf-runtime`, the same algorithms compiled for each. Paths come from
//! `FUNGI_STRINGS_GEO` and `PEER_UDF` (set by `run.sh`).

#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 8192;

fn benches(c: &mut Criterion) {
    let fungi_path = std::env::var("FUNGI_STRINGS_GEO").expect("FUNGI_STRINGS_GEO");
    let peer_path = std::env::var("PEER_UDF").expect("PEER_UDF");

    // Fungi.
    let host = fungi_plugin::PluginHost::new(fungi_plugin::HostOptions::default()).unwrap();
    let plugin = host.load_file(std::path::Path::new(&fungi_path)).unwrap();
    let tenant = Arc::new(fungi_plugin::PluginTenant::new("bench", Default::default()));
    let gcd = fungi_plugin::ScalarUdf::new(plugin.clone(), tenant.clone(), "gcd", vec![]).unwrap();
    let slug = fungi_plugin::ScalarUdf::new(plugin, tenant, "slugify", vec![]).unwrap();
    // Fungi on a host for trusted plugins: no interruption checks (the peer has none).
    let trusted_host = fungi_plugin::PluginHost::new(fungi_plugin::HostOptions {
        uninterruptible: true,
        ..Default::default()
    })
    .unwrap();
    let trusted_plugin = trusted_host
        .load_file(std::path::Path::new(&fungi_path))
        .unwrap();
    let trusted_tenant = Arc::new(fungi_plugin::PluginTenant::new(
        "trusted",
        fungi_plugin::TenantLimits {
            call_timeout: None,
            ..Default::default()
        },
    ));
    let trusted = |name: &str| {
        fungi_plugin::ScalarUdf::new(trusted_plugin.clone(), trusted_tenant.clone(), name, vec![])
            .unwrap()
    };
    let (trusted_gcd, trusted_slug) = (trusted("gcd"), trusted("slugify"));
    let a: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(
        (0..ROWS as i64).map(|i| (i * 7919 + 1) % 1_000_003),
    ));
    let b: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(
        (0..ROWS as i64).map(|i| (i * 7919 + 17) % 1_000_003),
    ));
    let texts: Vec<String> = (0..ROWS)
        .map(|i| format!("Hello, Wörld number {i} -- of Fungi!"))
        .collect();
    let s: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(texts.clone()));

    // The peer.
    use arrow_array58::{Array as _, Int64Array as Int64Array58, RecordBatch as Batch58, StringArray as StringArray58};
    use arrow_schema58::{DataType as DataType58, Field as Field58, Schema as Schema58};
    let binary = std::fs::read(&peer_path).unwrap();
    let runtime = arrow_udf_runtime::wasm::Runtime::new(&binary).unwrap();
    let peer_gcd = runtime
        .find_function("gcd", vec![DataType58::Int64, DataType58::Int64], DataType58::Int64)
        .unwrap();
    let peer_slug = runtime
        .find_function("slugify", vec![DataType58::Utf8], DataType58::Utf8)
        .unwrap();
    let ints = |seed: i64| -> Arc<dyn arrow_array58::Array> {
        Arc::new(Int64Array58::from_iter_values(
            (0..ROWS as i64).map(|i| (i * 7919 + seed) % 1_000_003),
        ))
    };
    let gcd_batch = Batch58::try_new(
        Arc::new(Schema58::new(vec![
            Field58::new("a", DataType58::Int64, true),
            Field58::new("b", DataType58::Int64, true),
        ])),
        vec![ints(1), ints(17)],
    )
    .unwrap();
    let slug_batch = Batch58::try_new(
        Arc::new(Schema58::new(vec![Field58::new("s", DataType58::Utf8, true)])),
        vec![Arc::new(StringArray58::from(texts))],
    )
    .unwrap();
    // Same results on both sides.
    let ours = gcd.call(&[a.clone(), b.clone()], ROWS).unwrap();
    let theirs = runtime.call(&peer_gcd, &gcd_batch).unwrap();
    assert_eq!(ours.len(), theirs.column(0).len());

    let mut g = c.benchmark_group("gcd_8192");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("fungi_plugin", |bench| {
        bench.iter(|| gcd.call(&[a.clone(), b.clone()], ROWS).unwrap())
    });
    g.bench_function("fungi_plugin_uninterruptible", |bench| {
        bench.iter(|| trusted_gcd.call(&[a.clone(), b.clone()], ROWS).unwrap())
    });
    g.bench_function("arrow_udf_runtime", |bench| {
        bench.iter(|| runtime.call(&peer_gcd, &gcd_batch).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("slugify_8192");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("fungi_plugin", |bench| {
        bench.iter(|| slug.call(std::slice::from_ref(&s), ROWS).unwrap())
    });
    g.bench_function("fungi_plugin_uninterruptible", |bench| {
        bench.iter(|| trusted_slug.call(std::slice::from_ref(&s), ROWS).unwrap())
    });
    g.bench_function("arrow_udf_runtime", |bench| {
        bench.iter(|| runtime.call(&peer_slug, &slug_batch).unwrap())
    });
    g.finish();
}

criterion_group!(peer, benches);
criterion_main!(peer);
