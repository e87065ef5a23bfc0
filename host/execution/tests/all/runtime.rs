//! Partitioning, backpressure, chaining and failure handling.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use fungi_common::ids::CheckpointId;
use fungi_common::keys::KeyGroups;
use fungi_common::{FungiError, Result};
use fungi_execution::executor::LocalExecutor;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{CollectSink, MapOperator};
use fungi_execution::partition::{PartitionScratch, partition_by_key};
use fungi_execution::source::{Source, SourceEvent, VecSource};
use fungi_execution::{Operator, OperatorContext, Output};

use crate::common::{batch, runtime, schema};

/// Records which subtask saw which key.
struct KeySpy {
    seen: Arc<Mutex<HashMap<String, HashSet<u32>>>>,
    subtask: u32,
}

impl Operator for KeySpy {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.subtask = ctx.subtask.index;
        Ok(())
    }
    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let keys = batch.column(0).as_string::<i32>();
        let mut seen = self.seen.lock().unwrap();
        for k in keys.iter().flatten() {
            seen.entry(k.to_string()).or_default().insert(self.subtask);
        }
        Ok(())
    }
}

#[test]
fn one_key_always_lands_on_one_subtask() {
    let batches: Vec<RecordBatch> = (0..40)
        .map(|b| {
            let rows: Vec<(String, i64, i64)> = (0..100)
                .map(|i| (format!("key{}", (i * 7 + b) % 37), i, i))
                .collect();
            let refs: Vec<(&str, i64, i64)> =
                rows.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
            batch(&refs)
        })
        .collect();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut g = JobGraph::new("keys");
    let src = g.add_source("src", 3, VecSource::factory(schema(), batches), None);
    let spy_seen = seen.clone();
    let spy = g.add_operator(
        "spy",
        4,
        Arc::new(move |_| {
            Ok(Box::new(KeySpy {
                seen: spy_seen.clone(),
                subtask: 0,
            }) as Box<dyn Operator>)
        }),
    );
    g.connect(src, spy, Partitioning::Hash(vec!["k".into()]));
    runtime().block_on(async {
        LocalExecutor::new()
            .execute(g)
            .unwrap()
            .wait()
            .await
            .unwrap()
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 37);
    let used: HashSet<u32> = seen.values().flatten().copied().collect();
    assert!(used.len() > 1, "keys spread over subtasks: {used:?}");
    for (k, subtasks) in seen.iter() {
        assert_eq!(subtasks.len(), 1, "key {k} went to {subtasks:?}");
    }
}

#[test]
fn partition_matches_key_group_ranges() {
    let rows: Vec<(String, i64, i64)> = (0..500).map(|i| (format!("k{i}"), i, i)).collect();
    let refs: Vec<(&str, i64, i64)> = rows.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
    let b = batch(&refs);
    let groups = KeyGroups::new(128);
    let mut scratch = PartitionScratch::default();
    let parts = partition_by_key(&b, &["k".into()], groups, 3, &mut scratch).unwrap();
    assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 500);
    // Partitioning the same rows again gives the same targets.
    let again = partition_by_key(&b, &["k".into()], groups, 3, &mut scratch).unwrap();
    for ((t1, b1), (t2, b2)) in parts.iter().zip(&again) {
        assert_eq!((t1, b1.num_rows()), (t2, b2.num_rows()));
    }
}

/// An endless source that counts the batches it produced.
struct CountingSource {
    produced: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Source for CountingSource {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        schema()
    }
    async fn next(&mut self) -> Result<SourceEvent> {
        self.produced.fetch_add(1, Ordering::SeqCst);
        Ok(SourceEvent::Batch {
            split: 0,
            batch: batch(&[("a", 1, 1)]),
        })
    }
}

#[test]
fn slow_sink_bounds_memory() {
    let produced = Arc::new(AtomicUsize::new(0));
    let mut g = JobGraph::new("backpressure");
    g.config.channel_capacity = 4;
    let p = produced.clone();
    let src = g.add_source(
        "fast",
        1,
        Arc::new(move |_| {
            Ok(Box::new(CountingSource {
                produced: p.clone(),
            }) as Box<dyn Source>)
        }),
        None,
    );
    // A map in its own task (rebalance edge) adds a second bounded channel.
    let map = g.add_operator("id", 1, MapOperator::factory(Ok));
    let (sink, collected) = CollectSink::new();
    let sink = g.add_operator(
        "slow",
        1,
        sink.with_delay(Duration::from_millis(5)).factory(),
    );
    g.connect(src, map, Partitioning::Rebalance);
    g.connect(map, sink, Partitioning::Rebalance);
    runtime().block_on(async {
        let job = LocalExecutor::new().execute(g).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (made, consumed) = (produced.load(Ordering::SeqCst), collected.rows());
        job.cancel();
        assert!(matches!(job.wait().await, Err(FungiError::Cancelled)));
        // Two channels of 4 batches, plus one batch in hand per task.
        assert!(consumed > 10, "the sink made progress: {consumed}");
        assert!(
            made - consumed <= 2 * 4 + 3,
            "in flight: produced {made}, consumed {consumed}"
        );
    });
}

#[test]
fn forward_operators_are_chained() {
    let mut g = JobGraph::new("chain");
    let src = g.add_source(
        "src",
        2,
        VecSource::factory(schema(), vec![batch(&[("a", 1, 1)])]),
        None,
    );
    let m = g.add_operator("map", 2, MapOperator::factory(Ok));
    let (sink, collected) = CollectSink::new();
    let s = g.add_operator("sink", 1, sink.factory());
    g.connect(src, m, Partitioning::Forward);
    g.connect(m, s, Partitioning::Rebalance);
    let plan = fungi_execution::plan::PhysicalPlan::new(g.clone()).unwrap();
    assert_eq!(plan.chains.len(), 2);
    let explain = plan.explain();
    assert!(explain.contains("src -> map: CHAINED"), "{explain}");
    assert!(explain.contains("map -> sink: REBALANCE"), "{explain}");
    runtime().block_on(async {
        LocalExecutor::new()
            .execute(g)
            .unwrap()
            .wait()
            .await
            .unwrap()
    });
    assert_eq!(collected.rows(), 1);
}

#[test]
fn bad_graphs_are_refused() {
    let mut g = JobGraph::new("bad");
    let src = g.add_source("src", 2, VecSource::factory(schema(), vec![]), None);
    let m = g.add_operator("map", 3, MapOperator::factory(Ok));
    g.connect(src, m, Partitioning::Forward);
    let err = fungi_execution::plan::PhysicalPlan::new(g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("forward edge 'src' -> 'map'"), "{err}");
    let mut g = JobGraph::new("bad");
    g.add_operator("lonely", 1, MapOperator::factory(Ok));
    let err = fungi_execution::plan::PhysicalPlan::new(g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'lonely' has no input"), "{err}");
}

#[test]
fn operator_failure_fails_the_job_with_its_name() {
    let mut g = JobGraph::new("fail");
    let src = g.add_source(
        "src",
        1,
        VecSource::factory(schema(), vec![batch(&[("a", 1, 1)])]),
        None,
    );
    let m = g.add_operator(
        "explode",
        1,
        MapOperator::factory(|_| Err(FungiError::Config("boom".into()))),
    );
    let (sink, _) = CollectSink::new();
    let s = g.add_operator("sink", 1, sink.factory());
    g.connect(src, m, Partitioning::Rebalance);
    g.connect(m, s, Partitioning::Forward);
    let err = runtime()
        .block_on(async { LocalExecutor::new().execute(g).unwrap().wait().await })
        .unwrap_err()
        .to_string();
    assert!(err.contains("'explode'") && err.contains("boom"), "{err}");
}

#[test]
fn latency_markers_reach_the_sink_and_give_percentiles() {
    let batches: Vec<RecordBatch> = (0..200).map(|i| batch(&[("a", i, i)])).collect();
    let mut g = JobGraph::new("latency");
    g.config.latency_interval = Some(Duration::from_millis(1));
    let src = g.add_source("src", 1, VecSource::factory(schema(), batches), None);
    // A separate task, so markers cross a channel.
    let map = g.add_operator("id", 2, MapOperator::factory(Ok));
    let (sink, collected) = CollectSink::new();
    let sink = g.add_operator(
        "sink",
        2,
        sink.with_delay(Duration::from_millis(1)).factory(),
    );
    g.connect(src, map, Partitioning::Rebalance);
    g.connect(map, sink, Partitioning::Forward);
    let summary = runtime().block_on(async { LocalExecutor::new().execute(g)?.wait().await });
    let latency = summary.unwrap().latency.expect("markers were recorded");
    assert_eq!(collected.rows(), 200);
    assert!(latency.markers > 10, "{latency:?}");
    assert!(
        latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms,
        "{latency:?}"
    );
    // Without the setting there are no markers.
    let mut g = JobGraph::new("no-latency");
    let src = g.add_source(
        "src",
        1,
        VecSource::factory(schema(), vec![batch(&[("a", 1, 1)])]),
        None,
    );
    let (sink, _) = CollectSink::new();
    let sink = g.add_operator("sink", 1, sink.factory());
    g.connect(src, sink, Partitioning::Forward);
    let summary = runtime().block_on(async { LocalExecutor::new().execute(g)?.wait().await });
    assert!(summary.unwrap().latency.is_none());
}

/// Keeps state it cannot save.
struct Forgetful;

impl Operator for Forgetful {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(batch);
        Ok(())
    }
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        Err(fungi_execution::operator::not_checkpointable(
            "the forgetful operator",
        ))
    }
}

#[test]
fn an_operator_that_cannot_save_its_state_fails_a_checkpointing_job_naming_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = JobGraph::new("forgetful");
    g.config.checkpointing.interval = Some(Duration::from_millis(10));
    g.config.checkpointing.dir = Some(dir.path().to_path_buf());
    let src = g.add_source(
        "src",
        1,
        VecSource::factory(schema(), vec![batch(&[("a", 1, 1)])]),
        None,
    );
    let op = g.add_operator(
        "forgetful",
        1,
        Arc::new(|_| Ok(Box::new(Forgetful) as Box<dyn Operator>)),
    );
    g.connect(src, op, Partitioning::Forward);
    let err = runtime()
        .block_on(async { LocalExecutor::new().execute(g)?.wait().await })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("forgetful") && err.contains("cannot be checkpointed"),
        "{err}"
    );
}
