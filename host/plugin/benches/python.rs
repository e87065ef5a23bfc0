//! One function, `gcd(BIGINT, BIGINT)` over 8192-row batches, every way Fungi can run it:
//! native Rust (DataFusion's `gcd`), a Wasm plugin written in Rust (`plugins/strings-geo`),
//! native Python vectorized (numpy's `gcd` over the pyarrow arrays), native Python row by
//! row (`math.gcd`), and Python compiled into a Wasm component with componentize-py
//! (`plugins/python/number_theory.py`: `math.gcd` over the decoded lists). Then the Python
//! component's start-up: loading it (compiled, and from the on-disk cache) and a fresh
//! instance with its first call.
//!
//! Needs the virtual environment of `scripts/test.sh` with numpy added
//! (`$FUNGI_PYTHON_VENV/bin/pip install numpy`):
//! `cargo bench -p fungi-plugin --bench python`

#![allow(missing_docs)]

mod common;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::DataType;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::logical_expr::ScalarUDF;
use fungi_plugin::{HostOptions, PluginHost, PluginTenant, ScalarUdf, TenantLimits};
use fungi_plugin_artifacts::{PYTHON_NUMBER_THEORY, STRINGS_GEO};
use fungi_python::{Loaded, PythonFunction, Source};

use common::invoke;

const ROWS: usize = 8192;

const PYTHON: &str = r#"
import math
import numpy as np
import pyarrow as pa
import fungi

@fungi.udf(returns=pa.int64())
def gcd_numpy(a, b):
    return pa.array(np.gcd(a.to_numpy(), b.to_numpy()))

@fungi.udf(returns=pa.int64(), mode="row")
def gcd_row(a, b):
    return math.gcd(a, b)
"#;

fn ints(seed: i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        (0..ROWS as i64).map(|i| (i * 7919 + seed) % 1_000_003),
    ))
}

fn native(udf: &ScalarUDF, args: &[ArrayRef]) -> ArrayRef {
    invoke(udf, args, DataType::Int64)
}

fn native_python(name: &str) -> Arc<PythonFunction> {
    let source = Source::Code {
        module: "bench_udfs".into(),
        code: PYTHON.into(),
    };
    match fungi_python::load(&source, name, name).expect("numpy in the virtual environment") {
        Loaded::Scalar(f) => f,
        Loaded::Aggregate(_) | Loaded::Table(_) => unreachable!("scalar functions"),
    }
}

fn benches(c: &mut Criterion) {
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let tenant = Arc::new(PluginTenant::new("bench", TenantLimits::default()));
    let rust_plugin = host.load_file(std::path::Path::new(STRINGS_GEO)).unwrap();
    let wasm_rust = ScalarUdf::new(rust_plugin, tenant.clone(), "gcd", Vec::new()).unwrap();
    let py_plugin = host
        .load_file(std::path::Path::new(PYTHON_NUMBER_THEORY))
        .unwrap();
    let wasm_python = ScalarUdf::new(py_plugin.clone(), tenant.clone(), "gcd", Vec::new()).unwrap();
    let native_gcd = datafusion::functions::math::gcd();
    let (numpy, row) = (native_python("gcd_numpy"), native_python("gcd_row"));
    let args = [ints(1), ints(17)];
    // The same results, or the comparison means nothing.
    let expected = native(&native_gcd, &args).to_data();
    assert_eq!(wasm_rust.call(&args, ROWS).unwrap().to_data(), expected);
    assert_eq!(wasm_python.call(&args, ROWS).unwrap().to_data(), expected);
    assert_eq!(numpy.call(&args, ROWS).unwrap().to_data(), expected);
    assert_eq!(row.call(&args, ROWS).unwrap().to_data(), expected);

    let mut g = c.benchmark_group("gcd_8192_every_way");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("native_rust", |b| b.iter(|| native(&native_gcd, &args)));
    g.bench_function("wasm_plugin_rust", |b| {
        b.iter(|| wasm_rust.call(&args, ROWS).unwrap())
    });
    g.bench_function("python_vectorized_numpy", |b| {
        b.iter(|| numpy.call(&args, ROWS).unwrap())
    });
    g.bench_function("python_row", |b| b.iter(|| row.call(&args, ROWS).unwrap()));
    g.bench_function("python_wasm_component", |b| {
        b.iter(|| wasm_python.call(&args, ROWS).unwrap())
    });
    g.finish();

    // The Python component's start-up.
    let one = [args[0].slice(0, 1), args[1].slice(0, 1)];
    let mut g = c.benchmark_group("python_component_startup");
    g.sample_size(10);
    g.bench_function("instantiate_and_first_call", |b| {
        b.iter(|| {
            let f = ScalarUdf::new(py_plugin.clone(), tenant.clone(), "gcd", Vec::new()).unwrap();
            f.call(&one, 1).unwrap()
        })
    });
    let bytes = std::fs::read(PYTHON_NUMBER_THEORY).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cached = PluginHost::new(HostOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    })
    .unwrap();
    cached.load("number_theory", &bytes).unwrap();
    g.bench_function("load_from_cache", |b| {
        b.iter(|| cached.load("number_theory", &bytes).unwrap())
    });
    g.bench_function("load_and_compile", |b| {
        b.iter(|| host.load("number_theory", &bytes).unwrap())
    });
    g.finish();
}

criterion_group!(python, benches);
criterion_main!(python);
