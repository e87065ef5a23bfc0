//! Keyed process functions with state and event-time timers.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use fungi_common::Result;
use fungi_common::ids::CheckpointId;
use fungi_execution::Output;
use fungi_execution::executor::LocalExecutor;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{
    CollectSink, KeyedContext, KeyedProcessFunction, KeyedProcessOperator, KeyedRows,
};
use fungi_execution::source::VecSource;
use fungi_state::ValueState;
use fungi_streaming::timer::{TimeDomain, Timer};
use fungi_streaming::watermark::WatermarkStrategy;

use crate::common::{batch, runtime, schema};

/// Sums `v` per key in value state and emits (key, sum) when event time passes the
/// key's last timestamp + 10.
struct SumThenEmit {
    sum: ValueState<i64>,
}

impl KeyedProcessFunction for SumThenEmit {
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &KeyedRows,
        ctx: &mut KeyedContext<'_>,
        _out: &mut Output,
    ) -> Result<()> {
        let ts = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let v = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..keys.len() {
            let (kg, key) = (keys.key_group(i), keys.key(i));
            let old = self.sum.get(ctx.state, kg, key)?.unwrap_or(0);
            self.sum.put(ctx.state, kg, key, &(old + v.value(i)))?;
            ctx.register_event_time_timer(kg, key, ts.value(i) + 10);
        }
        Ok(())
    }

    fn on_timers(
        &mut self,
        timers: &[Timer],
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_>,
        out: &mut Output,
    ) -> Result<()> {
        assert_eq!(domain, TimeDomain::EventTime);
        // Only the latest timer of each key emits (earlier ones see a newer timer pending).
        let mut sums = Vec::new();
        let mut fired = Vec::new();
        for t in timers {
            if let Some(s) = self.sum.get(ctx.state, t.key_group, &t.key)? {
                sums.push(s);
                fired.push(t.clone());
                self.sum.clear(ctx.state, t.key_group, &t.key)?;
            }
        }
        if fired.is_empty() {
            return Ok(());
        }
        let mut cols = ctx.key_columns(&fired)?;
        cols.push(Arc::new(Int64Array::from(sums)) as ArrayRef);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("sum", DataType::Int64, false),
        ]));
        out.emit(RecordBatch::try_new(schema, cols)?);
        Ok(())
    }
}

#[test]
fn timers_fire_per_key_with_state() {
    let input = vec![
        batch(&[("a", 1, 1), ("b", 2, 10), ("a", 3, 2)]),
        batch(&[("b", 30, 20), ("c", 40, 5)]),
    ];
    let mut g = JobGraph::new("timers");
    let src = g.add_source(
        "src",
        1,
        VecSource::factory(schema(), input),
        Some(WatermarkStrategy::monotonous("ts")),
    );
    let factory = KeyedProcessOperator::factory(vec!["k".into()], &schema(), || {
        Box::new(SumThenEmit {
            sum: ValueState::new("sum"),
        })
    })
    .unwrap();
    let p = g.add_stateful_operator("process", 2, factory);
    let (sink, out) = CollectSink::new();
    let s = g.add_operator("sink", 1, sink.factory());
    g.connect(src, p, Partitioning::Hash(vec!["k".into()]));
    g.connect(p, s, Partitioning::Rebalance);
    runtime().block_on(async {
        LocalExecutor::new()
            .execute(g)
            .unwrap()
            .wait()
            .await
            .unwrap()
    });
    let mut rows: Vec<(String, i64)> = out
        .batches()
        .iter()
        .flat_map(|b| {
            let k = b.column(0).as_string::<i32>().clone();
            let s = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows())
                .map(move |i| (k.value(i).to_string(), s.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    // a: timers at 11 and 13 -> sum 3 once. b: the second batch (b@30) is processed before
    // the watermark it raises (39) fires b's timer at 12, so b's sum is 30; its timer at 40
    // finds the state cleared. c: 5 at the end of input.
    assert_eq!(
        rows,
        vec![("a".into(), 3), ("b".into(), 30), ("c".into(), 5)]
    );
}

/// Emits each key once, 30 ms of wall-clock time after its first row.
struct EmitLater;

impl KeyedProcessFunction for EmitLater {
    fn process_batch(
        &mut self,
        _batch: &RecordBatch,
        keys: &KeyedRows,
        ctx: &mut KeyedContext<'_>,
        _out: &mut Output,
    ) -> Result<()> {
        for i in 0..keys.len() {
            let at = ctx.processing_time + 30;
            ctx.register_processing_time_timer(keys.key_group(i), keys.key(i), at);
        }
        Ok(())
    }

    fn on_timers(
        &mut self,
        timers: &[Timer],
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_>,
        out: &mut Output,
    ) -> Result<()> {
        assert_eq!(domain, TimeDomain::ProcessingTime);
        let cols = ctx.key_columns(timers)?;
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        out.emit(RecordBatch::try_new(schema, cols)?);
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_while_the_job_runs() {
    use crate::common::{ScriptedSource, Step};
    use std::time::Duration;
    let steps = std::sync::Mutex::new(Some(vec![
        Step::Batch(0, batch(&[("a", 1, 1), ("b", 1, 1)])),
        Step::Sleep(Duration::from_millis(300)),
    ]));
    let mut g = JobGraph::new("processing-time");
    g.config.tick_interval = Duration::from_millis(10);
    let src = g.add_source(
        "src",
        1,
        Arc::new(move |_| {
            let steps = steps.lock().unwrap().take().unwrap_or_default();
            Ok(Box::new(ScriptedSource {
                steps: steps.into_iter(),
                splits: vec![0],
            }) as Box<dyn fungi_execution::Source>)
        }),
        None,
    );
    let factory =
        KeyedProcessOperator::factory(vec!["k".into()], &schema(), || Box::new(EmitLater)).unwrap();
    let p = g.add_stateful_operator("later", 1, factory);
    let (sink, out) = CollectSink::new();
    let s = g.add_operator("sink", 1, sink.factory());
    g.connect(src, p, Partitioning::Hash(vec!["k".into()]));
    g.connect(p, s, Partitioning::Forward);
    runtime().block_on(async {
        let job = LocalExecutor::new().execute(g).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(out.rows(), 2, "both timers fired before the input ended");
        job.wait().await.unwrap();
    });
}

/// Runs `SumThenEmit` subtask `index` of `parallelism` on RocksDB, checkpointing into
/// `dir`, restored from `restored` if given.
fn sum_then_emit(
    index: u32,
    parallelism: u32,
    dir: &std::path::Path,
    restored: Option<&fungi_execution::RestoredState>,
) -> Box<dyn fungi_execution::Operator> {
    let factory = KeyedProcessOperator::factory(vec!["k".into()], &schema(), || {
        Box::new(SumThenEmit {
            sum: ValueState::new("sum"),
        })
    })
    .unwrap();
    let subtask = fungi_common::ids::SubtaskInfo {
        index,
        parallelism,
        max_parallelism: 128,
    };
    let mut op = factory(&subtask).unwrap();
    let ctx = fungi_execution::OperatorContext {
        job: "job".into(),
        operator: "process".into(),
        subtask,
        state_backend: Arc::new(fungi_state::RocksDbStateBackend::temporary().unwrap()),
        metrics: Arc::new(fungi_execution::metrics::OperatorMetrics::new("process")),
        dead_letters: Arc::default(),
        checkpointing: true,
        checkpoint_interval: Some(std::time::Duration::from_secs(1)),
        checkpoint_dir: Some(dir.to_path_buf()),
    };
    op.open(&ctx).unwrap();
    if let Some(r) = restored {
        op.restore_state(r).unwrap();
    }
    op
}

fn sums(out: &Output) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = out
        .batches()
        .flat_map(|b| {
            let k = b.column(0).as_string::<i32>().clone();
            let s = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows())
                .map(move |i| (k.value(i).to_string(), s.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn keyed_state_and_timers_survive_an_incremental_rocksdb_checkpoint_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let mut op = sum_then_emit(0, 1, dir.path(), None);
    let mut out = Output::default();
    op.process_batch(batch(&[("a", 1, 1), ("b", 2, 10), ("a", 3, 2)]), &mut out)
        .unwrap();
    let first = op
        .snapshot_state(CheckpointId(1), &mut out)
        .unwrap()
        .unwrap();
    op.process_batch(batch(&[("c", 4, 7)]), &mut out).unwrap();
    let second = op
        .snapshot_state(CheckpointId(2), &mut out)
        .unwrap()
        .unwrap();
    // The store's files sit next to the checkpoints; the state bytes only name them.
    let store = dir.path().join("state").join("process#0");
    assert!(store.join("sst").read_dir().unwrap().count() > 0);
    assert!(store.join("chk-2").join("_ssts").exists());
    assert!(second.len() < 1000, "{} bytes", second.len());
    drop(op);

    let restored = |id: u64, state: &Vec<u8>| fungi_execution::RestoredState {
        checkpoint: id,
        old_parallelism: 1,
        states: vec![(0, state.clone())],
        root: dir.path().to_path_buf(),
    };
    // Same parallelism, from checkpoint 1: c never happened.
    let mut op = sum_then_emit(0, 1, dir.path(), Some(&restored(1, &first)));
    let mut out = Output::default();
    op.process_watermark(fungi_common::Watermark::EventTime(100), &mut out)
        .unwrap();
    assert_eq!(sums(&out), vec![("a".into(), 3), ("b".into(), 10)]);

    // Parallelism 2, from checkpoint 2: each subtask fires its own keys.
    let mut all = Vec::new();
    for index in 0..2 {
        let mut op = sum_then_emit(index, 2, dir.path(), Some(&restored(2, &second)));
        let mut out = Output::default();
        op.process_watermark(fungi_common::Watermark::EventTime(100), &mut out)
            .unwrap();
        all.extend(sums(&out));
    }
    all.sort();
    assert_eq!(
        all,
        vec![("a".into(), 3), ("b".into(), 10), ("c".into(), 7)]
    );
}
