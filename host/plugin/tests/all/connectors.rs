//! Source and sink plugins: splits and offsets; two-phase commit into a granted directory.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use fungi_common::ids::CheckpointId;
use fungi_plugin::{PluginKind, PluginMetric, PluginSink, PluginSource, Poll, TenantLimits};
use fungi_plugin_artifacts::{COUNTER_SOURCE, DIR_SINK};

use crate::{load, tenant};

fn drain(reader: &mut fungi_plugin::SplitReader, max_rows: u32, polls: usize) -> Vec<i64> {
    let mut seq = Vec::new();
    for _ in 0..polls {
        match reader.poll(max_rows).unwrap() {
            Poll::Batch(b) => seq.extend(b.column(1).as_primitive::<Int64Type>().values().iter()),
            Poll::Finished => break,
            Poll::Pending | Poll::Idle => {}
        }
    }
    seq
}

#[test]
fn a_source_lists_splits_and_resumes_from_its_offsets() {
    let plugin = load(COUNTER_SOURCE);
    assert_eq!(plugin.kind(), PluginKind::Source);
    let config = vec![
        ("splits".to_string(), "3".to_string()),
        ("rows".to_string(), "250".to_string()),
    ];
    let t = tenant("source", TenantLimits::default());
    let source = PluginSource::new(plugin, t.clone(), config).unwrap();
    assert_eq!(source.splits().unwrap(), ["0", "1", "2"]);
    let mut reader = source.open("1", None).unwrap();
    let first = drain(&mut reader, 100, 1);
    assert_eq!(first, (0..100).collect::<Vec<_>>());
    // A new reader from the snapshot goes on exactly where the first stopped.
    let offset = reader.snapshot().unwrap();
    let mut resumed = source.open("1", Some(offset)).unwrap();
    let rest = drain(&mut resumed, 100, 10);
    assert_eq!(rest, (100..250).collect::<Vec<_>>());
    // The plugin's metrics (host interface), per tenant and plugin.
    assert_eq!(
        t.plugin_metrics(),
        [
            (
                "counter_source".to_string(),
                "last_offset".to_string(),
                PluginMetric::Gauge(250.0)
            ),
            (
                "counter_source".to_string(),
                "rows_emitted".to_string(),
                PluginMetric::Counter(250)
            ),
        ]
    );
    let err = source.open("9x", None).err().unwrap();
    assert!(err.to_string().contains("unknown split '9x'"), "{err}");
}

#[test]
fn a_source_task_resumes_from_checkpointed_offsets_at_another_parallelism() {
    use arrow::datatypes::{DataType, Field, Schema};
    use fungi_execution::source::{SourceContext, SourceEvent};
    let config = vec![
        ("splits".to_string(), "3".to_string()),
        ("rows".to_string(), "250".to_string()),
    ];
    let t = tenant("source-task", TenantLimits::default());
    let source = PluginSource::new(load(COUNTER_SOURCE), t, config).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("split", DataType::Int64, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("label", DataType::Utf8, false),
    ]));
    let factory = source.factory(schema).unwrap();
    let subtask = |index, parallelism| fungi_common::ids::SubtaskInfo {
        index,
        parallelism,
        max_parallelism: 128,
    };
    let context = |s| SourceContext {
        subtask: s,
        batch_size: 100,
        metrics: Arc::new(fungi_execution::metrics::OperatorMetrics::source("counter")),
        dead_letters: Arc::default(),
        name: "counter".into(),
    };
    let rows_of = |event: SourceEvent, seen: &mut Vec<(i64, i64)>| match event {
        SourceEvent::Batch { batch, .. } => {
            let split = batch.column(0).as_primitive::<Int64Type>();
            let seq = batch.column(1).as_primitive::<Int64Type>();
            seen.extend(
                split
                    .values()
                    .iter()
                    .copied()
                    .zip(seq.values().iter().copied()),
            );
            true
        }
        SourceEvent::Finished => false,
        SourceEvent::Pending(_) => true,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // One subtask reads a few batches, then checkpoints.
        let mut seen = Vec::new();
        let mut first = factory(&subtask(0, 1)).unwrap();
        first.open(&context(subtask(0, 1))).unwrap();
        for _ in 0..4 {
            rows_of(first.next().await.unwrap(), &mut seen);
        }
        let position = first
            .snapshot_position(fungi_common::ids::CheckpointId(1))
            .unwrap();
        assert!(!seen.is_empty());
        // Two subtasks resume from it: every row of every split comes exactly once.
        for index in 0..2 {
            let mut resumed = factory(&subtask(index, 2)).unwrap();
            resumed
                .restore_position(&fungi_execution::RestoredState {
                    checkpoint: 1,
                    old_parallelism: 1,
                    states: vec![(0, position.clone())],
                    root: Default::default(),
                })
                .unwrap();
            resumed.open(&context(subtask(index, 2))).unwrap();
            while rows_of(resumed.next().await.unwrap(), &mut seen) {}
        }
        seen.sort_unstable();
        let expected: Vec<(i64, i64)> = (0..3)
            .flat_map(|split| (0..250).map(move |seq| (split, seq)))
            .collect();
        assert_eq!(seen, expected);
    });
}

fn rows(n: i64) -> RecordBatch {
    RecordBatch::try_from_iter([(
        "x",
        Arc::new(arrow::array::Int64Array::from_iter_values(0..n)) as arrow::array::ArrayRef,
    )])
    .unwrap()
}

#[test]
fn a_sink_commits_in_two_phases_into_a_granted_directory() {
    let dir = tempfile::tempdir().unwrap();
    let limits = TenantLimits {
        directories: vec![(dir.path().to_path_buf(), "/out".into(), true)],
        ..TenantLimits::default()
    };
    let sink = PluginSink::new(load(DIR_SINK), tenant("sink", limits), Vec::new()).unwrap();
    let mut w = sink.open(0, Vec::new()).unwrap();
    w.write(&rows(3)).unwrap();
    let handle = w.pre_commit(7).unwrap();
    let visible = |name: &str| dir.path().join(name).exists();
    assert!(
        !visible("part-0-7.csv"),
        "pre-committed rows are not visible"
    );
    w.commit(&handle).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("part-0-7.csv")).unwrap(),
        "0\n1\n2\n"
    );
    // An aborted transaction leaves nothing.
    w.write(&rows(2)).unwrap();
    let handle = w.pre_commit(8).unwrap();
    w.abort(&handle).unwrap();
    assert!(!visible("part-0-8.csv"));
    // A transaction pre-committed before a "restart" is committed when the writer opens.
    w.write(&rows(1)).unwrap();
    let handle = w.pre_commit(9).unwrap();
    drop(w);
    sink.open(0, vec![handle]).unwrap();
    assert!(visible("part-0-9.csv"));
}

#[test]
fn a_sink_without_its_directory_is_refused_with_the_reason() {
    let sink = PluginSink::new(
        load(DIR_SINK),
        tenant("nodir", TenantLimits::default()),
        Vec::new(),
    )
    .unwrap();
    let err = sink.open(0, Vec::new()).err().unwrap().to_string();
    assert!(err.contains("is /out granted?"), "{err}");
}

#[test]
fn the_sink_operator_commits_on_checkpoints_and_after_a_restore() {
    use fungi_execution::{OperatorContext, Output, RestoredState};
    let dir = tempfile::tempdir().unwrap();
    let limits = TenantLimits {
        directories: vec![(dir.path().to_path_buf(), "/out".into(), true)],
        ..TenantLimits::default()
    };
    let sink = PluginSink::new(load(DIR_SINK), tenant("sink-op", limits), Vec::new()).unwrap();
    let subtask = fungi_common::ids::SubtaskInfo {
        index: 0,
        parallelism: 1,
        max_parallelism: 128,
    };
    let ctx = OperatorContext {
        job: "job".into(),
        operator: "sink".into(),
        subtask,
        state_backend: Arc::new(fungi_state::MemoryStateBackend),
        metrics: Arc::new(fungi_execution::metrics::OperatorMetrics::new("sink")),
        dead_letters: Arc::default(),
        checkpointing: true,
        checkpoint_interval: Some(std::time::Duration::from_secs(1)),
        checkpoint_dir: None,
    };
    let factory = sink.factory();
    let visible = |name: &str| dir.path().join(name).exists();
    let mut op = factory(&subtask).unwrap();
    op.open(&ctx).unwrap();
    let mut out = Output::default();
    op.process_batch(rows(3), &mut out).unwrap();
    op.snapshot_state(CheckpointId(1), &mut out).unwrap();
    assert!(!visible("part-0-1.csv"), "pre-committed, not yet visible");
    op.notify_checkpoint_complete(CheckpointId(1)).unwrap();
    assert!(visible("part-0-1.csv"));
    // Pre-committed on checkpoint 2, then the process dies before it completes.
    op.process_batch(rows(2), &mut out).unwrap();
    let state = op
        .snapshot_state(CheckpointId(2), &mut out)
        .unwrap()
        .unwrap();
    drop(op);
    assert!(!visible("part-0-2.csv"));
    // Checkpoint 2 was complete after all: the restored writer commits what it holds.
    let mut op = factory(&subtask).unwrap();
    op.open(&ctx).unwrap();
    op.restore_state(&RestoredState {
        checkpoint: 2,
        old_parallelism: 1,
        states: vec![(0, state)],
        root: Default::default(),
    })
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("part-0-2.csv")).unwrap(),
        "0\n1\n"
    );
}
