//! Shipped plugins compute what their native equivalents compute.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use fungi_plugin::{AggregateUdf, PluginKind, ScalarUdf, TableUdf, TenantLimits};
use fungi_plugin_artifacts::{HLL, STRINGS_GEO, TEXT_SPLIT};
use fungi_streaming::aggregate::AggregateFunction;

use crate::{load, tenant};

#[test]
fn the_library_describes_itself() {
    let plugin = load(STRINGS_GEO);
    assert_eq!(plugin.kind(), PluginKind::Scalar);
    assert_eq!(plugin.manifest().name, "strings-geo");
    let names: Vec<&str> = plugin.functions().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["haversine", "geohash", "gcd", "slugify", "word_count"]
    );
    let gcd = plugin.function("gcd").unwrap();
    assert_eq!(gcd.arguments.len(), 2);
    assert_eq!(gcd.returns.data_type(), &DataType::Int64);
    let err = plugin.function("gdc").unwrap_err().to_string();
    assert!(
        err.contains("no function 'gdc'") && err.contains("gcd"),
        "{err}"
    );
}

#[test]
fn scalar_functions_match_native_results_with_nulls() {
    let plugin = load(STRINGS_GEO);
    let t = tenant("functions", TenantLimits::default());
    let gcd = ScalarUdf::new(plugin.clone(), t.clone(), "gcd", Vec::new()).unwrap();
    let a: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(12),
        Some(-10),
        None,
        Some(0),
        Some(7),
    ]));
    let b: ArrayRef = Arc::new(Int64Array::from(vec![
        Some(18),
        Some(4),
        Some(3),
        Some(0),
        Some(13),
    ]));
    let out = gcd.call(&[a, b], 5).unwrap();
    let out = out.as_primitive::<Int64Type>();
    assert_eq!(
        out.iter().collect::<Vec<_>>(),
        vec![Some(6), Some(2), None, Some(0), Some(1)]
    );

    let slug = ScalarUdf::new(plugin.clone(), t.clone(), "slugify", Vec::new()).unwrap();
    let s: ArrayRef = Arc::new(StringArray::from(vec![
        Some("Hello, World!"),
        None,
        Some(""),
    ]));
    let out = slug.call(&[s], 3).unwrap();
    assert_eq!(
        out.as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("hello-world"), None, Some("")]
    );

    let hav = ScalarUdf::new(plugin.clone(), t.clone(), "haversine", Vec::new()).unwrap();
    let col = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
    // Paris - London: 343.5 km (great circle).
    let out = hav
        .call(&[col(48.8566), col(2.3522), col(51.5074), col(-0.1278)], 1)
        .unwrap();
    let km = out.as_primitive::<Float64Type>().value(0);
    assert!((km - 343.5).abs() < 1.0, "{km}");

    let geohash = ScalarUdf::new(plugin, t, "geohash", Vec::new()).unwrap();
    let p: ArrayRef = Arc::new(Int64Array::from(vec![7, 0]));
    let out = geohash
        .call(
            &[
                Arc::new(Float64Array::from(vec![57.64911, 57.64911])),
                Arc::new(Float64Array::from(vec![10.40744, 10.40744])),
                p,
            ],
            2,
        )
        .unwrap();
    assert_eq!(
        out.as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("u4pruyd"), None]
    );
}

#[test]
fn empty_batches_and_wrong_types_are_answered_not_trapped() {
    let plugin = load(STRINGS_GEO);
    let t = tenant("edges", TenantLimits::default());
    let gcd = ScalarUdf::new(plugin, t, "gcd", Vec::new()).unwrap();
    let empty: ArrayRef = Arc::new(Int64Array::from(Vec::<i64>::new()));
    assert_eq!(gcd.call(&[empty.clone(), empty], 0).unwrap().len(), 0);
    let strings: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
    let err = gcd.call(&[strings.clone(), strings], 1).unwrap_err();
    assert_eq!(err.code(), "PLUGIN_ERROR", "{err}");
    assert!(
        err.to_string().contains("expected a Int64 argument"),
        "{err}"
    );
}

#[test]
fn hll_counts_distinct_values_and_its_state_merges_and_round_trips() {
    let plugin = load(HLL);
    assert_eq!(plugin.kind(), PluginKind::Aggregate);
    let t = tenant("hll", TenantLimits::default());
    let hll = AggregateUdf::new(plugin, t, "hll_distinct", Vec::new()).unwrap();
    assert_eq!(
        hll.return_type(&[DataType::Int64]).unwrap(),
        DataType::Int64
    );
    assert!(hll.return_type(&[DataType::Utf8]).is_err());
    let mut acc = hll.create_accumulator().unwrap();
    use fungi_streaming::aggregate::GroupsAccumulator;
    // Group 0: 0..50 000; group 1: 25 000..75 000 (two batches each).
    for range in [0..25_000i64, 25_000..50_000] {
        let v: ArrayRef = Arc::new(Int64Array::from_iter_values(range));
        acc.update_batch(&[v], &vec![0; 25_000], 2).unwrap();
    }
    let v: ArrayRef = Arc::new(Int64Array::from_iter_values(25_000..75_000));
    acc.update_batch(&[v], &[1; 50_000], 2).unwrap();
    let est = |a: &ArrayRef, i: usize| a.as_primitive::<Int64Type>().value(i) as f64;
    let out = acc.evaluate(&[0, 1]).unwrap();
    for i in 0..2 {
        assert!(
            (est(&out, i) - 50_000.0).abs() / 50_000.0 < 0.05,
            "{:?}",
            out
        );
    }
    // Merging group 1 into a new group 2 that holds group 0: the union, 75 000.
    acc.merge_groups(&[(2, 0), (2, 1)], 3).unwrap();
    let out = acc.evaluate(&[2]).unwrap();
    assert!((est(&out, 0) - 75_000.0).abs() / 75_000.0 < 0.05, "{out:?}");
    // Snapshot and restore into a fresh accumulator.
    let states = acc.snapshot(&[2]).unwrap();
    let mut fresh = hll.create_accumulator().unwrap();
    fresh.restore(&[0], &states).unwrap();
    assert_eq!(
        fresh.evaluate(&[0]).unwrap().as_ref().to_data(),
        out.to_data()
    );
    // Reset empties a group.
    acc.reset(&[2]).unwrap();
    assert_eq!(est(&acc.evaluate(&[2]).unwrap(), 0), 0.0);
}

#[test]
fn checkpointed_plugin_state_restores_into_a_reloaded_plugin_and_a_changed_format_is_refused() {
    use fungi_streaming::aggregate::GroupsAccumulator;
    let t = tenant("hll-upgrade", TenantLimits::default());
    let before = AggregateUdf::new(load(HLL), t.clone(), "hll_distinct", Vec::new()).unwrap();
    let mut acc = before.create_accumulator().unwrap();
    let v: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
    acc.update_batch(&[v], &[0; 10_000], 1).unwrap();
    let expected = acc.evaluate(&[0]).unwrap();
    // What a checkpoint saves: the plugin's bytes per group, as a column.
    let state = acc.state(&[0]).unwrap();
    // The plugin loaded again (an upgrade that keeps the state format) reads it back.
    let after = AggregateUdf::new(load(HLL), t, "hll_distinct", Vec::new()).unwrap();
    let mut restored = after.create_accumulator().unwrap();
    restored.merge_state(&state, &[0], 1).unwrap();
    assert_eq!(
        restored.evaluate(&[0]).unwrap().to_data(),
        expected.to_data()
    );
    // State of another format (here: bytes of another length) is refused, and says why.
    let changed: ArrayRef = Arc::new(arrow::array::BinaryArray::from_vec(vec![&[1u8; 16][..]]));
    let err = after
        .create_accumulator()
        .unwrap()
        .merge_state(&[changed], &[0], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was the plugin's state format changed?") && err.contains("an hll state has"),
        "{err}"
    );
}

#[test]
fn a_table_function_gives_rows_per_input_row() {
    let plugin = load(TEXT_SPLIT);
    assert_eq!(plugin.kind(), PluginKind::Table);
    let t = tenant("table", TenantLimits::default());
    let split = TableUdf::new(plugin.clone(), t.clone(), "split_words", Vec::new()).unwrap();
    let names: Vec<&str> = split.columns().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["word", "position"]);
    let text: ArrayRef = Arc::new(StringArray::from(vec![Some("to be or"), None, Some("not")]));
    let out = split.call(&[text], 3).unwrap();
    assert_eq!(out.input_rows.values().as_ref(), &[0, 0, 0, 2]);
    let words: Vec<&str> = out
        .rows
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(words, ["to", "be", "or", "not"]);
    assert_eq!(
        out.rows
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .as_ref(),
        &[1, 2, 3, 1]
    );
    // An error the function returns is an error, and the next call works.
    let series = TableUdf::new(plugin, t, "series", Vec::new()).unwrap();
    let ints = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let err = series
        .call(&[ints(vec![0]), ints(vec![5_000_000])], 1)
        .unwrap_err();
    assert_eq!(err.code(), "PLUGIN_ERROR", "{err}");
    assert!(err.to_string().contains("more than 1000000 rows"), "{err}");
    let out = series
        .call(&[ints(vec![1, 7]), ints(vec![2, 7])], 2)
        .unwrap();
    assert_eq!(out.input_rows.values().as_ref(), &[0, 0, 1]);
}

/// A componentized Python function grows its memory with every call (componentize-py's
/// CPython does not give it back): the host replaces an instance past 3/4 of its memory
/// limit, so that thousands of calls never reach the limit (they failed after ~1200
/// 8192-row calls before).
#[test]
fn a_python_component_keeps_working_over_thousands_of_calls() {
    let plugin = load(fungi_plugin_artifacts::PYTHON_NUMBER_THEORY);
    let tenant = tenant("python", TenantLimits::default());
    let gcd = ScalarUdf::new(plugin, tenant, "gcd", Vec::new()).unwrap();
    let rows = 8192;
    let a: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * 7 + 1)));
    let b: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * 3 + 2)));
    for call in 0..2000 {
        let out = gcd
            .call(&[a.clone(), b.clone()], rows as usize)
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(out.len(), rows as usize);
    }
}
