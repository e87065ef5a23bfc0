//! Plugin functions against the same functions as native DataFusion UDFs, at 8192-row
//! batches; the fixed cost of a call; instantiation; loading from the compile cache; and
//! a victim tenant's calls while another tenant's plugin spins.
//!
//! `cargo bench -p fungi-plugin --bench udf`

#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use fungi_plugin::{HostOptions, PluginHost, PluginTenant, ScalarUdf, TenantLimits};
use fungi_plugin_artifacts::{HOSTILE_EVIL, STRINGS_GEO};

use common::invoke;

const ROWS: usize = 8192;

fn ints(seed: i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        (0..ROWS as i64).map(|i| (i * 7919 + seed) % 1_000_003),
    ))
}

fn texts() -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|i| format!("Hello, Wörld number {i} -- of Fungi!")),
    ))
}

/// The plugin's `slugify`, row by row: a copy of `plugins/strings-geo`'s function on
/// purpose, so that both sides run the same code.
fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

/// `slugify` as a native DataFusion UDF: the same function, called per row.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NativeSlugify {
    signature: Signature,
}

impl ScalarUDFImpl for NativeSlugify {
    fn name(&self) -> &str {
        "slugify"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let input = arrow::array::AsArray::as_string::<i32>(&input);
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 8);
        for v in input.iter() {
            match v {
                None => out.append_null(),
                Some(v) => out.append_value(slugify(v)),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn benches(c: &mut Criterion) {
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let plugin = host.load_file(std::path::Path::new(STRINGS_GEO)).unwrap();
    let tenant = Arc::new(PluginTenant::new("bench", TenantLimits::default()));
    let wasm_gcd = ScalarUdf::new(plugin.clone(), tenant.clone(), "gcd", Vec::new()).unwrap();
    let wasm_slug = ScalarUdf::new(plugin.clone(), tenant.clone(), "slugify", Vec::new()).unwrap();
    // The same functions on a host for trusted plugins: no interruption checks compiled
    // in, so no call timeout.
    let trusted_host = PluginHost::new(HostOptions {
        uninterruptible: true,
        ..HostOptions::default()
    })
    .unwrap();
    let trusted_plugin = trusted_host
        .load_file(std::path::Path::new(STRINGS_GEO))
        .unwrap();
    let trusted_tenant = Arc::new(PluginTenant::new(
        "trusted",
        TenantLimits {
            call_timeout: None,
            ..TenantLimits::default()
        },
    ));
    let trusted = |name: &str| {
        ScalarUdf::new(
            trusted_plugin.clone(),
            trusted_tenant.clone(),
            name,
            Vec::new(),
        )
        .unwrap()
    };
    let (trusted_gcd, trusted_slug) = (trusted("gcd"), trusted("slugify"));
    let native_gcd = datafusion::functions::math::gcd();
    let native_slug = ScalarUDF::new_from_impl(NativeSlugify {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    });
    let (a, b, s) = (ints(1), ints(17), texts());
    // Same results, or the comparison means nothing.
    assert_eq!(
        wasm_gcd
            .call(&[a.clone(), b.clone()], ROWS)
            .unwrap()
            .to_data(),
        invoke(&native_gcd, &[a.clone(), b.clone()], DataType::Int64).to_data()
    );
    assert_eq!(
        wasm_slug
            .call(std::slice::from_ref(&s), ROWS)
            .unwrap()
            .to_data(),
        invoke(&native_slug, std::slice::from_ref(&s), DataType::Utf8).to_data()
    );
    assert_eq!(
        trusted_slug
            .call(std::slice::from_ref(&s), ROWS)
            .unwrap()
            .to_data(),
        invoke(&native_slug, std::slice::from_ref(&s), DataType::Utf8).to_data()
    );

    let mut g = c.benchmark_group("gcd_8192");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("native_datafusion", |bench| {
        bench.iter(|| invoke(&native_gcd, &[a.clone(), b.clone()], DataType::Int64))
    });
    g.bench_function("wasm_plugin", |bench| {
        bench.iter(|| wasm_gcd.call(&[a.clone(), b.clone()], ROWS).unwrap())
    });
    g.bench_function("wasm_plugin_uninterruptible", |bench| {
        bench.iter(|| trusted_gcd.call(&[a.clone(), b.clone()], ROWS).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("slugify_8192");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("native_datafusion", |bench| {
        bench.iter(|| invoke(&native_slug, std::slice::from_ref(&s), DataType::Utf8))
    });
    g.bench_function("wasm_plugin", |bench| {
        bench.iter(|| wasm_slug.call(std::slice::from_ref(&s), ROWS).unwrap())
    });
    g.bench_function("wasm_plugin_uninterruptible", |bench| {
        bench.iter(|| trusted_slug.call(std::slice::from_ref(&s), ROWS).unwrap())
    });
    g.finish();

    // Fixed cost per call: a one-row batch.
    let (a1, b1) = (a.slice(0, 1), b.slice(0, 1));
    c.bench_function("wasm_gcd_1_row", |bench| {
        bench.iter(|| wasm_gcd.call(&[a1.clone(), b1.clone()], 1).unwrap())
    });

    // A fresh instance (from the pre-instantiated component) and its first call.
    c.bench_function("instantiate_and_first_call", |bench| {
        bench.iter(|| {
            let f = ScalarUdf::new(plugin.clone(), tenant.clone(), "gcd", Vec::new()).unwrap();
            f.call(&[a1.clone(), b1.clone()], 1).unwrap()
        })
    });

    // Loading a component whose compiled form is in the on-disk cache.
    let cache = tempfile::tempdir().unwrap();
    let cached = PluginHost::new(HostOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostOptions::default()
    })
    .unwrap();
    let bytes = std::fs::read(STRINGS_GEO).unwrap();
    cached.load("strings-geo", &bytes).unwrap();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("from_cache", |bench| {
        bench.iter(|| cached.load("strings-geo", &bytes).unwrap())
    });
    g.bench_function("compile", |bench| {
        bench.iter(|| host.load("strings-geo", &bytes).unwrap())
    });
    g.finish();

    // The victim's gcd while another tenant's plugin spins on the other core.
    let spin = ScalarUdf::new(
        host.load_file(std::path::Path::new(HOSTILE_EVIL)).unwrap(),
        Arc::new(PluginTenant::new(
            "runaway",
            TenantLimits {
                call_timeout: Some(Duration::from_millis(100)),
                ..TenantLimits::default()
            },
        )),
        "spin",
        Vec::new(),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let one = a1.clone();
    let runaway = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let _ = spin.call(std::slice::from_ref(&one), 1);
        }
    });
    let mut g = c.benchmark_group("gcd_8192_with_runaway_neighbour");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("wasm_plugin", |bench| {
        bench.iter(|| wasm_gcd.call(&[a.clone(), b.clone()], ROWS).unwrap())
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    runaway.join().unwrap();
}

criterion_group!(udf, benches);
criterion_main!(udf);
