//! Event time through the runtime: idle splits, late side output, end-of-stream flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use fungi_common::Watermark;
use fungi_execution::executor::LocalExecutor;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{CollectSink, Collected, LATE_TAG, WindowOperator};
use fungi_execution::source::Source;
use fungi_streaming::aggregate::{count_star, sum};
use fungi_streaming::watermark::WatermarkStrategy;
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::WindowAggregateSpec;

use crate::common::{ScriptedSource, Step, batch, runtime, schema};

fn window_rows(batches: &[RecordBatch]) -> Vec<(String, i64, i64, i64)> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push((
                b.column(0).as_string::<i32>().value(i).to_string(),
                b.column(1)
                    .as_primitive::<TimestampMillisecondType>()
                    .value(i),
                b.column(3).as_primitive::<Int64Type>().value(i),
                b.column(4).as_primitive::<Int64Type>().value(i),
            ));
        }
    }
    out.sort();
    out
}

/// source(steps) -> keyBy(k) -> tumbling(10 ms) count/sum -> sink, late -> late sink.
fn window_job(steps: Vec<Step>, strategy: WatermarkStrategy) -> (JobGraph, Collected, Collected) {
    let mut g = JobGraph::new("windows");
    let steps = Arc::new(std::sync::Mutex::new(Some(steps)));
    let src = g.add_source(
        "src",
        1,
        Arc::new(move |_| {
            let steps = steps.lock().unwrap().take().unwrap_or_default();
            Ok(Box::new(ScriptedSource {
                steps: steps.into_iter(),
                splits: vec![0, 1],
            }) as Box<dyn Source>)
        }),
        Some(strategy),
    );
    let spec = WindowAggregateSpec {
        keys: vec!["k".into()],
        time_column: "ts".into(),
        assigner: WindowAssigner::tumbling(10).unwrap(),
        allowed_lateness: 0,
        aggregates: vec![count_star("n"), sum("v", "total")],
    };
    let (factory, _) = WindowOperator::factory(spec, &schema()).unwrap();
    let w = g.add_stateful_operator("window", 2, factory);
    let (sink, out) = CollectSink::new();
    let s = g.add_operator("sink", 1, sink.factory());
    let (late_sink, late) = CollectSink::new();
    let l = g.add_operator("late", 1, late_sink.factory());
    g.connect(src, w, Partitioning::Hash(vec!["k".into()]));
    g.connect(w, s, Partitioning::Rebalance);
    g.connect_side(w, LATE_TAG, l, Partitioning::Rebalance);
    (g, out, late)
}

#[test]
fn end_of_stream_flushes_open_windows_and_late_rows_reach_side_output() {
    let steps = vec![
        Step::Batch(0, batch(&[("a", 1, 1), ("b", 12, 2), ("a", 5, 3)])),
        Step::Batch(1, batch(&[("a", 30, 4)])),
        // Split 0 moves on: the watermark is now min(split0 = 34, split1 = 29) = 29.
        Step::Batch(0, batch(&[("b", 35, 5)])),
        // 3 is older than the watermark: window [0, 10) has fired, the row is late.
        Step::Batch(1, batch(&[("a", 3, 100), ("b", 31, 6)])),
    ];
    let (g, out, late) = window_job(steps, WatermarkStrategy::monotonous("ts"));
    let summary = runtime().block_on(async {
        LocalExecutor::new()
            .execute(g)
            .unwrap()
            .wait()
            .await
            .unwrap()
    });
    assert_eq!(
        window_rows(&out.batches()),
        vec![
            ("a".into(), 0, 2, 4),
            ("a".into(), 30, 1, 4),
            ("b".into(), 10, 1, 2),
            ("b".into(), 30, 2, 11),
        ]
    );
    assert_eq!(late.rows(), 1);
    let window = summary
        .operators
        .iter()
        .find(|o| o.name == "window")
        .unwrap();
    assert_eq!(window.late_records, 1);
    assert_eq!(window.records_side, 1);
    assert_eq!(out.watermarks().last(), Some(&Watermark::MAX));
}

#[test]
fn idle_split_does_not_stall_windows() {
    // Split 1 sends once and goes quiet; split 0 keeps going. With an idleness timeout,
    // windows fire while the job is still running.
    let mut steps = vec![Step::Batch(1, batch(&[("a", 1, 1)]))];
    for i in 0..30 {
        steps.push(Step::Batch(0, batch(&[("a", 10 + i * 10, 1)])));
        steps.push(Step::Sleep(Duration::from_millis(20)));
    }
    let idle = WatermarkStrategy::monotonous("ts").with_idleness(Duration::from_millis(100));
    let (mut g, out, _) = window_job(steps, idle);
    g.config.tick_interval = Duration::from_millis(10);
    runtime().block_on(async {
        let job = LocalExecutor::new().execute(g).unwrap();
        let metrics = job.metrics().operators[1].clone();
        tokio::time::sleep(Duration::from_millis(450)).await;
        let fired_while_running = out.rows();
        assert!(
            fired_while_running > 3,
            "windows fired before the end: {fired_while_running}"
        );
        assert!(metrics.watermark.load(Ordering::Relaxed) > 100);
        job.wait().await.unwrap();
    });

    // Without idleness, split 1 holds event time at its first record until the end.
    let mut steps = vec![Step::Batch(1, batch(&[("a", 1, 1)]))];
    for i in 0..10 {
        steps.push(Step::Batch(0, batch(&[("a", 10 + i * 10, 1)])));
        steps.push(Step::Sleep(Duration::from_millis(20)));
    }
    let (mut g, out, _) = window_job(steps, WatermarkStrategy::monotonous("ts"));
    g.config.tick_interval = Duration::from_millis(10);
    runtime().block_on(async {
        let job = LocalExecutor::new().execute(g).unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            out.rows(),
            0,
            "nothing fires while a split holds event time back"
        );
        job.wait().await.unwrap();
        assert_eq!(out.rows(), 11, "end of stream fires every window");
    });
}
