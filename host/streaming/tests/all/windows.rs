//! Window results on out-of-order input against hand-computed expected output.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use fungi_streaming::aggregate::{avg, count_star, max, min, sum};
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::{WindowAggregateSpec, WindowAggregator};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let k: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        rows.iter().map(|r| r.1),
    ));
    let v: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)));
    RecordBatch::try_new(schema(), vec![k, ts, v]).unwrap()
}

/// (key, start, end, count, sum)
type Row = (String, i64, i64, i64, i64);

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let k = b.column(0).as_string::<i32>();
        let s = b.column(1).as_primitive::<TimestampMillisecondType>();
        let e = b.column(2).as_primitive::<TimestampMillisecondType>();
        let c = b.column(3).as_primitive::<Int64Type>();
        let v = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((
                k.value(i).to_string(),
                s.value(i),
                e.value(i),
                c.value(i),
                v.value(i),
            ));
        }
    }
    out.sort();
    out
}

fn spec(assigner: WindowAssigner, lateness: i64) -> WindowAggregateSpec {
    WindowAggregateSpec {
        keys: vec!["k".into()],
        time_column: "ts".into(),
        assigner,
        allowed_lateness: lateness,
        aggregates: vec![count_star("n"), sum("v", "total")],
    }
}

fn r(k: &str, s: i64, e: i64, n: i64, v: i64) -> Row {
    (k.to_string(), s, e, n, v)
}

/// A batch of (key, ts, value) rows and the watermark that follows it.
type Step<'a> = (&'a [(&'a str, i64, i64)], i64);

/// Feeds `input` (batch, watermark after it) and returns everything emitted, including the
/// final flush at end of input.
fn run(agg: &mut WindowAggregator, input: &[Step<'_>]) -> (Vec<RecordBatch>, Vec<RecordBatch>) {
    let mut out = Vec::new();
    let mut late = Vec::new();
    for (rows, wm) in input {
        let o = agg.process_batch(&batch(rows)).unwrap();
        late.extend(o.late);
        out.extend(o.updates);
        out.extend(agg.advance_watermark(*wm).unwrap());
    }
    out.extend(agg.advance_watermark(i64::MAX).unwrap());
    (out, late)
}

#[test]
fn tumbling_out_of_order() {
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::tumbling(10).unwrap(), 0), &schema())
            .unwrap();
    let (out, late) = run(
        &mut agg,
        &[
            (&[("a", 1, 1), ("b", 12, 10), ("a", 9, 2)], 5),
            (&[("a", 3, 4), ("a", 15, 8), ("b", 11, 20)], 9),
            (&[("b", 25, 100), ("a", 19, 16)], 19),
        ],
    );
    assert!(late.is_empty());
    assert_eq!(
        rows(&out),
        vec![
            r("a", 0, 10, 3, 7),
            r("a", 10, 20, 2, 24),
            r("b", 10, 20, 2, 30),
            r("b", 20, 30, 1, 100)
        ]
    );
    assert_eq!(agg.live_groups(), 0, "state is freed after firing");
}

#[test]
fn sliding_shares_slices() {
    // Size 10, slide 5: windows [-5,5), [0,10), [5,15), [10,20), [15,25).
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::sliding(10, 5).unwrap(), 0), &schema())
            .unwrap();
    let (out, _) = run(
        &mut agg,
        &[
            (&[("a", 7, 1), ("a", 2, 2), ("a", 12, 4)], 3),
            (&[("a", 4, 8), ("b", 16, 1)], 10),
        ],
    );
    assert_eq!(
        rows(&out),
        vec![
            r("a", -5, 5, 2, 10),
            r("a", 0, 10, 3, 11),
            r("a", 5, 15, 2, 5),
            r("a", 10, 20, 1, 4),
            r("b", 10, 20, 1, 1),
            r("b", 15, 25, 1, 1),
        ]
    );
}

#[test]
fn session_windows_merge() {
    // Gap 5: a@1, a@4 -> [1,9); a@20 -> [20,25); b@2 -> [2,7); a@12 then a@16 bridges
    // nothing ([12,17) and [16,21) merge with [20,25) into [12,25)).
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::session(5).unwrap(), 0), &schema())
            .unwrap();
    let (out, _) = run(
        &mut agg,
        &[
            (&[("a", 4, 1), ("a", 20, 2), ("b", 2, 3)], 0),
            (&[("a", 1, 4), ("a", 12, 5)], 0),
            (&[("a", 16, 6)], 0),
        ],
    );
    assert_eq!(
        rows(&out),
        vec![
            r("a", 1, 9, 2, 5),
            r("a", 12, 25, 3, 13),
            r("b", 2, 7, 1, 3)
        ]
    );
}

#[test]
fn session_merges_within_a_batch() {
    // Rows in one batch that bridge two existing sessions.
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::session(3).unwrap(), 0), &schema())
            .unwrap();
    let (out, _) = run(
        &mut agg,
        &[
            (&[("a", 0, 1), ("a", 10, 2)], 0),
            (&[("a", 10, 4), ("a", 5, 8)], 0),
        ],
    );
    // [0,3) + [5,8) touch? 3 < 5: no. [5,8) and [10,13): 8 < 10: no.
    assert_eq!(
        rows(&out),
        vec![r("a", 0, 3, 1, 1), r("a", 5, 8, 1, 8), r("a", 10, 13, 2, 6)]
    );
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::session(3).unwrap(), 0), &schema())
            .unwrap();
    let (out, _) = run(
        &mut agg,
        &[
            (&[("a", 0, 1), ("a", 6, 2)], 0),
            (&[("a", 6, 4), ("a", 3, 8)], 0),
        ],
    );
    // a@3 -> [3,6) touches [0,3) and [6,9): one session [0,9).
    assert_eq!(rows(&out), vec![r("a", 0, 9, 4, 15)]);
}

#[test]
fn cumulate_windows() {
    // Step 5, max 10: windows [0,5), [0,10), [10,15), [10,20).
    let mut agg = WindowAggregator::try_new(
        &spec(WindowAssigner::cumulate(5, 10).unwrap(), 0),
        &schema(),
    )
    .unwrap();
    let (out, late) = run(
        &mut agg,
        &[
            (&[("a", 7, 1), ("a", 3, 2)], 4),
            (&[("a", 1, 4), ("a", 12, 8)], 12),
        ],
    );
    // a@1 arrives after [0,5) fired: too late for it, on time for [0,10).
    assert!(late.is_empty());
    assert_eq!(
        rows(&out),
        vec![
            r("a", 0, 5, 1, 2),
            r("a", 0, 10, 3, 7),
            r("a", 10, 15, 1, 8),
            r("a", 10, 20, 1, 8)
        ]
    );
}

#[test]
fn late_rows_go_to_side_output() {
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::tumbling(10).unwrap(), 0), &schema())
            .unwrap();
    let (out, late) = run(
        &mut agg,
        &[
            (&[("a", 1, 1)], 15),
            (&[("a", 5, 2), ("a", 16, 3), ("b", 9, 4)], 20),
        ],
    );
    assert_eq!(rows(&out), vec![r("a", 0, 10, 1, 1), r("a", 10, 20, 1, 3)]);
    let late_rows: usize = late.iter().map(|b| b.num_rows()).sum();
    assert_eq!(late_rows, 2);
    assert_eq!(agg.late_records(), 2);
    let ts = late[0].column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.values().as_ref(), &[5, 9]);
}

#[test]
fn allowed_lateness_updates_fired_windows() {
    let mut agg =
        WindowAggregator::try_new(&spec(WindowAssigner::tumbling(10).unwrap(), 5), &schema())
            .unwrap();
    let mut emitted = Vec::new();
    agg.process_batch(&batch(&[("a", 1, 1)])).unwrap();
    emitted.extend(agg.advance_watermark(10).unwrap());
    assert_eq!(rows(&emitted), vec![r("a", 0, 10, 1, 1)]);
    // Within lateness (9 + 5 > 12): the window is emitted again with the new result.
    let o = agg.process_batch(&batch(&[("a", 2, 5)])).unwrap();
    assert!(o.late.is_none());
    assert_eq!(
        rows(&o.updates.into_iter().collect::<Vec<_>>()),
        vec![r("a", 0, 10, 2, 6)]
    );
    // Past lateness: late.
    agg.advance_watermark(14).unwrap();
    let o = agg.process_batch(&batch(&[("a", 3, 7)])).unwrap();
    assert_eq!(o.late.unwrap().num_rows(), 1);
    assert_eq!(agg.live_groups(), 0);
}

#[test]
fn global_window_and_all_builtins() {
    let spec = WindowAggregateSpec {
        keys: vec![],
        time_column: "ts".into(),
        assigner: WindowAssigner::tumbling(100).unwrap(),
        allowed_lateness: 0,
        aggregates: vec![
            count_star("n"),
            sum("v", "s"),
            min("v", "lo"),
            max("v", "hi"),
            avg("v", "mean"),
        ],
    };
    let mut agg = WindowAggregator::try_new(&spec, &schema()).unwrap();
    agg.process_batch(&batch(&[("a", 1, 3), ("b", 50, 9), ("c", 99, 6)]))
        .unwrap();
    let out = agg.advance_watermark(i64::MAX).unwrap();
    let out = out.expect("the global window fires");
    assert_eq!(out.num_columns(), 7);
    let col = |i: usize| out.column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!((col(2), col(3), col(4), col(5)), (3, 18, 3, 9));
    // The mean of BIGINTs is a BIGINT (Flink's AVG).
    assert_eq!(col(6), 6);
    assert!(!out.column(0).is_null(0));
}

#[test]
fn unknown_columns_are_named() {
    let mut s = spec(WindowAssigner::tumbling(10).unwrap(), 0);
    s.keys = vec!["nope".into()];
    let err = WindowAggregator::try_new(&s, &schema())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown column 'nope'") && err.contains("k, ts, v"),
        "{err}"
    );
}

#[test]
fn key_table_stays_bounded_when_keys_churn() {
    // Every 10 ms window sees 500 new keys; the previous window's keys never come back.
    for assigner in [
        WindowAssigner::tumbling(10).unwrap(),
        WindowAssigner::session(5).unwrap(),
    ] {
        let mut agg = WindowAggregator::try_new(&spec(assigner, 0), &schema()).unwrap();
        let mut emitted = 0;
        for w in 0..100i64 {
            let keys: Vec<String> = (0..500).map(|i| format!("k{w}-{i}")).collect();
            // The previous window fires while rows of the current one are already in.
            let rows: Vec<(&str, i64, i64)> =
                keys.iter().map(|k| (k.as_str(), w * 10 + 1, 1)).collect();
            agg.process_batch(&batch(&rows)).unwrap();
            if let Some(b) = agg.advance_watermark(w * 10 - 1).unwrap() {
                emitted += b.num_rows();
            }
            assert!(
                agg.interned_keys() <= 2 * 1024 + 1000,
                "window {w}: {} keys",
                agg.interned_keys()
            );
        }
        emitted += agg
            .advance_watermark(i64::MAX)
            .unwrap()
            .map_or(0, |b| b.num_rows());
        assert_eq!(emitted, 100 * 500, "{assigner:?}");
    }
}
