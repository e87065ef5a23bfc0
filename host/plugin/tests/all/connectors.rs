//! Source and sink plugins: splits and offsets; two-phase commit into a granted directory.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
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
