//! Two-phase (local-global) window aggregation against the one-phase aggregation on the
//! same rows: partial aggregators on several subtasks, merged by one global aggregator.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use fungi_streaming::aggregate::{
    AggregateCall, CountDistinct, avg, count, count_star, max, min, sum,
};
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::{WindowAggregateSpec, WindowAggregator};
use fungi_streaming::window_partial::{PartialWindowAggregator, partial_schema};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(i64, Option<i64>)]) -> RecordBatch {
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from_iter_values(
        rows.iter().map(|r| r.0),
    ));
    let v: ArrayRef = Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1)));
    RecordBatch::try_new(schema(), vec![ts, v]).unwrap()
}

fn spec(assigner: WindowAssigner) -> WindowAggregateSpec {
    WindowAggregateSpec {
        keys: vec![],
        time_column: "ts".into(),
        assigner,
        allowed_lateness: 0,
        aggregates: vec![
            count_star("n"),
            count("v", "nv"),
            sum("v", "total"),
            min("v", "lo"),
            max("v", "hi"),
            avg("v", "mean"),
            AggregateCall::new(Arc::new(CountDistinct), &["v"], "distinct"),
        ],
    }
}

/// (time, value) rows.
type Rows = Vec<(i64, Option<i64>)>;

/// Rounds of batches, one per subtask, each round followed by a watermark: times run
/// forward with disorder, some rows fall behind the watermark, some values are NULL.
fn rounds(subtasks: usize) -> Vec<(Vec<Rows>, i64)> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    let mut now = 1_000;
    for _ in 0..40 {
        let mut batches = Vec::new();
        for _ in 0..subtasks {
            let rows = (0..25)
                .map(|_| {
                    // Mostly within 150 ms behind `now`; one row in ten far behind.
                    let behind = if next() % 10 == 0 { 700 } else { 0 };
                    let t = now - (next() % 150) as i64 - behind;
                    let v = (next() % 7 != 0).then(|| (next() % 50) as i64 - 10);
                    (t, v)
                })
                .collect();
            batches.push(rows);
        }
        now += 60;
        out.push((batches, now - 200));
    }
    out
}

fn sorted(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Vec<String> {
    let all = concat_batches(schema, &batches).unwrap();
    let text = pretty_format_batches(&[all]).unwrap().to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn two_phases_give_the_results_and_late_counts_of_one() {
    let assigners = [
        WindowAssigner::tumbling(100).unwrap(),
        WindowAssigner::sliding(300, 100).unwrap(),
        WindowAssigner::sliding(250, 100).unwrap(),
        WindowAssigner::cumulate(100, 400).unwrap(),
    ];
    // With allowed lateness, rows behind the watermark update fired windows instead.
    for (assigner, lateness) in assigners.into_iter().flat_map(|a| [(a, 0), (a, 150)]) {
        let mut spec = spec(assigner);
        spec.allowed_lateness = lateness;
        let mut one = WindowAggregator::try_new(&spec, &schema()).unwrap();
        let mut global = WindowAggregator::merging(&spec, &schema()).unwrap();
        let mut locals: Vec<PartialWindowAggregator> = (0..3)
            .map(|_| PartialWindowAggregator::try_new(&spec, &schema()).unwrap())
            .collect();
        let (mut expected, mut got) = (Vec::new(), Vec::new());
        for (batches, watermark) in rounds(3) {
            for (local, rows) in locals.iter_mut().zip(&batches) {
                let b = batch(rows);
                let outcome = one.process_batch(&b).unwrap();
                expected.extend(outcome.updates);
                // Rows behind the watermark travel at once, as they would in one phase.
                if let Some(partials) = local.process_batch(&b).unwrap() {
                    let outcome = global.process_batch(&partials).unwrap();
                    assert!(outcome.late.is_none(), "partial rows are not input rows");
                    got.extend(outcome.updates);
                }
            }
            expected.extend(one.advance_watermark(watermark).unwrap());
            for local in &mut locals {
                if let Some(partials) = local.advance_watermark(watermark).unwrap() {
                    got.extend(global.process_batch(&partials).unwrap().updates);
                }
            }
            got.extend(global.advance_watermark(watermark).unwrap());
        }
        expected.extend(one.advance_watermark(i64::MAX).unwrap());
        for local in &mut locals {
            if let Some(partials) = local.flush().unwrap() {
                got.extend(global.process_batch(&partials).unwrap().updates);
            }
            assert_eq!(local.open_slices(), 0);
        }
        got.extend(global.advance_watermark(i64::MAX).unwrap());
        let out = one.output_schema().clone();
        assert_eq!(global.output_schema(), &out, "{assigner:?} {lateness}");
        assert!(!expected.is_empty());
        assert_eq!(
            sorted(got, &out),
            sorted(expected, &out),
            "{assigner:?} {lateness}"
        );
        assert!(one.late_records() > 0, "the input has late rows");
        assert_eq!(
            global.late_records(),
            one.late_records(),
            "{assigner:?} {lateness}"
        );
        assert_eq!(global.live_groups(), 0, "{assigner:?} {lateness}");
    }
}

#[test]
fn a_slice_is_sent_once_the_watermark_passes_its_end_and_all_ahead_of_a_barrier() {
    let spec = spec(WindowAssigner::sliding(300, 100).unwrap());
    let mut local = PartialWindowAggregator::try_new(&spec, &schema()).unwrap();
    let rows = [(5, Some(1)), (150, Some(2)), (160, None), (250, Some(4))];
    assert!(local.process_batch(&batch(&rows)).unwrap().is_none());
    assert_eq!(local.open_slices(), 3);
    // The first slice ends at 99: only it can be part of a window firing at 149.
    let sent = local.advance_watermark(149).unwrap().unwrap();
    assert_eq!(sent.num_rows(), 1);
    let starts = sent
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>();
    assert_eq!(starts.unwrap().value(0), 0);
    // A barrier takes the rest, with the rows each slice folded (NULLs included).
    let sent = local.flush().unwrap().unwrap();
    let counts = sent
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(counts.values(), &[2, 1]);
    assert_eq!(local.open_slices(), 0);
    assert!(local.flush().unwrap().is_none());
    // A row of a slice the watermark has passed (-250: slice [-300, -200)) travels at
    // once, for the window to judge; one of a later slice waits.
    let sent = local
        .process_batch(&batch(&[(-250, Some(9)), (-260, None), (120, Some(1))]))
        .unwrap()
        .unwrap();
    let starts = sent
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>();
    assert_eq!(starts.unwrap().values(), &[-300]);
    let counts = sent
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(counts.values(), &[2]);
    assert_eq!(local.open_slices(), 1);
}

#[test]
fn a_partial_row_arriving_after_its_window_fired_counts_the_rows_it_stands_for() {
    let spec = spec(WindowAssigner::tumbling(100).unwrap());
    let mut local = PartialWindowAggregator::try_new(&spec, &schema()).unwrap();
    let mut global = WindowAggregator::merging(&spec, &schema()).unwrap();
    local
        .process_batch(&batch(&[(10, Some(1)), (20, Some(2)), (30, None)]))
        .unwrap();
    // Another subtask advanced the global window past [0, 100) while this one idled.
    assert!(global.advance_watermark(500).unwrap().is_none());
    let partials = local.flush().unwrap().unwrap();
    let outcome = global.process_batch(&partials).unwrap();
    assert!(outcome.late.is_none(), "partial rows are not input rows");
    assert!(outcome.updates.is_none());
    assert_eq!(global.late_records(), 3);
    assert_eq!(global.live_groups(), 0);
}

#[test]
fn windows_that_cannot_be_split_are_refused_by_name() {
    let input = schema();
    let mut keyed = spec(WindowAssigner::tumbling(100).unwrap());
    keyed.keys = vec!["v".into()];
    let err = partial_schema(&keyed, &input).unwrap_err().to_string();
    assert!(err.contains("group keys"), "{err}");
    let session = spec(WindowAssigner::session(100).unwrap());
    let err = PartialWindowAggregator::try_new(&session, &input)
        .unwrap_err()
        .to_string();
    assert!(err.contains("session"), "{err}");
    let err = WindowAggregator::merging(&session, &input)
        .unwrap_err()
        .to_string();
    assert!(err.contains("session"), "{err}");
}
