//! The DataStream API end to end.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::compute::kernels::cmp::gt;
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use fungi_execution::source::VecSource;
use fungi_flink::prelude::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("amount", DataType::Int64, false),
    ]))
}

fn batch(rows: &[(&str, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn map_filter_window_and_late_side_output() {
    // One upstream subtask, so the window sees rows and watermarks in one order and the
    // late row is late deterministically; the window itself runs with two subtasks.
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    let input = vec![
        batch(&[("ann", 1_000, 5), ("bob", 2_000, 0), ("ann", 9_000, 7)]),
        batch(&[("bob", 12_000, 3), ("ann", 21_000, 1)]),
        // 4_000 is behind the watermark (21_000 - 1): window [0, 10 s) has fired.
        batch(&[("bob", 4_000, 9)]),
    ];
    let source = (VecSource::factory(schema(), input), schema());
    let stream = env
        .from_source(source, None, "payments")
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous("ts"))
        .filter(|b| Ok(gt(b.column(2), &Int64Array::new_scalar(0))?))
        .map(|b| {
            let doubled: Int64Array = b.column(2).as_primitive::<Int64Type>().unary(|v| v * 2);
            let mut cols = b.columns().to_vec();
            cols[2] = Arc::new(doubled);
            Ok(RecordBatch::try_new(b.schema(), cols)?)
        })
        .unwrap();
    let windowed = stream
        .key_by(["user"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(vec![
            count_star("n"),
            sum("amount", "total"),
            avg("amount", "mean"),
        ])
        .unwrap();
    let (sink, out) = CollectSink::new();
    windowed.sink_to(sink.factory(), "results");
    let (late_sink, late) = CollectSink::new();
    windowed
        .side_output("late")
        .unwrap()
        .sink_to(late_sink.factory(), "late");
    let explain = env.explain().unwrap();
    assert!(explain.contains("window [op"), "{explain}");
    assert!(explain.contains("HASH[user]"), "{explain}");
    let summary = rt().block_on(env.execute("payments")).unwrap();
    let mut rows = Vec::new();
    for b in out.batches() {
        for i in 0..b.num_rows() {
            rows.push((
                b.column(0).as_string::<i32>().value(i).to_string(),
                b.column(1)
                    .as_primitive::<TimestampMillisecondType>()
                    .value(i),
                b.column(3).as_primitive::<Int64Type>().value(i),
                b.column(4).as_primitive::<Int64Type>().value(i),
                b.column(5).as_primitive::<Int64Type>().value(i),
            ));
        }
    }
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        rows,
        vec![
            // The mean of BIGINTs is a BIGINT, as Flink types AVG.
            ("ann".into(), 0, 2, 24, 12),
            ("ann".into(), 20_000, 1, 2, 2),
            ("bob".into(), 10_000, 1, 6, 6),
        ]
    );
    assert_eq!(late.rows(), 1);
    let window = summary
        .operators
        .iter()
        .find(|o| o.name == "window")
        .unwrap();
    assert_eq!(window.late_records, 1);
}

#[test]
fn windows_need_event_time_and_errors_say_so() {
    let env = StreamExecutionEnvironment::new();
    let s = env.from_source((VecSource::factory(schema(), vec![]), schema()), None, "s");
    let err = s
        .key_by(["user"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .aggregate(vec![count_star("n")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("assign_timestamps_and_watermarks"), "{err}");
    let err = s
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous("ts"))
        .key_by(["usr"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .aggregate(vec![count_star("n")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown column 'usr'"), "{err}");
    assert!(SlidingEventTimeWindows::of(Duration::from_secs(1), Duration::from_secs(2)).is_err());
}

#[test]
fn session_and_sliding_windows_on_nexmark() {
    let env = StreamExecutionEnvironment::new();
    let bids = env.from_source(
        nexmark_source("bid", 20_000).unwrap(),
        WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_millis(100)),
        "bids",
    );
    let (s1, sliding) = CollectSink::new();
    bids.key_by(["channel"])
        .window(SlidingEventTimeWindows::of(
            Duration::from_millis(1000),
            Duration::from_millis(500),
        ))
        .aggregate(vec![count_star("n")])
        .unwrap()
        .sink_to(s1.factory(), "sliding");
    let (s2, sessions) = CollectSink::new();
    bids.key_by(["bidder"])
        .window(EventTimeSessionWindows::with_gap(Duration::from_millis(
            200,
        )))
        .aggregate(vec![count_star("n"), max("price", "top")])
        .unwrap()
        .sink_to(s2.factory(), "sessions");
    rt().block_on(env.execute("nexmark windows")).unwrap();
    // 18 400 bids over 2 s of event time; every bid is in two sliding windows.
    let total: i64 = sliding
        .batches()
        .iter()
        .map(|b| {
            b.column(3)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(total, 2 * 18_400);
    let sessions_total: i64 = sessions
        .batches()
        .iter()
        .map(|b| {
            b.column(3)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(sessions_total, 18_400);
}

#[test]
fn plugin_functions_in_the_datastream_api() {
    use fungi_plugin::{
        AggregateUdf, HostOptions, PluginHost, PluginTenant, ScalarUdf, TenantLimits,
    };
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let tenant = Arc::new(PluginTenant::new("datastream", TenantLimits::default()));
    let geo = host
        .load_file(std::path::Path::new(fungi_plugin_artifacts::STRINGS_GEO))
        .unwrap();
    let hll = host
        .load_file(std::path::Path::new(fungi_plugin_artifacts::HLL))
        .unwrap();
    let gcd = Arc::new(ScalarUdf::new(geo, tenant.clone(), "gcd", Vec::new()).unwrap());
    let distinct = Arc::new(AggregateUdf::new(hll, tenant, "hll_distinct", Vec::new()).unwrap());

    let env = StreamExecutionEnvironment::new();
    let bids = env.from_source(
        nexmark_source("bid", 20_000).unwrap(),
        WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_millis(100)),
        "bids",
    );
    let (sink, rows) = CollectSink::new();
    bids.with_plugin_column(gcd, &["auction", "bidder"], "g")
        .unwrap()
        .key_by(["channel"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .aggregate(vec![
            count_star("n"),
            AggregateCall::new(distinct, &["bidder"], "bidders"),
            sum("g", "gcds"),
        ])
        .unwrap()
        .sink_to(sink.factory(), "out");
    rt().block_on(env.execute("plugins")).unwrap();
    let batches = rows.batches();
    let n: i64 = batches
        .iter()
        .map(|b| {
            b.column(3)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(n, 18_400);
    // gcd(auction, bidder) >= 1 for every bid, and every window has some bidders.
    for b in &batches {
        let (count, bidders, gcds) = (
            b.column(3).as_primitive::<Int64Type>(),
            b.column(4).as_primitive::<Int64Type>(),
            b.column(5).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            assert!(gcds.value(i) >= count.value(i));
            assert!(bidders.value(i) >= 1 && bidders.value(i) <= count.value(i) + 1);
        }
    }
}

/// Splits lines into words with `lateral` (a table function giving `word, position`),
/// counts the words in a window, and checks the counts.
fn words_in_a_window(lateral: impl FnOnce(DataStream) -> DataStream) {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    let input = vec![batch(&[
        ("to be", 1_000, 1),
        ("or not to be", 2_000, 2),
        ("", 3_000, 3),
    ])];
    let source = (VecSource::factory(schema(), input), schema());
    let (sink, rows) = CollectSink::new();
    let lines = env
        .from_source(source, None, "lines")
        .assign_timestamps_and_watermarks(WatermarkStrategy::monotonous("ts"));
    lateral(lines)
        .key_by(["word"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(vec![count_star("n"), sum("position", "positions")])
        .unwrap()
        .sink_to(sink.factory(), "out");
    rt().block_on(env.execute("words")).unwrap();
    let mut got: Vec<(String, i64, i64)> = Vec::new();
    for b in rows.batches() {
        let (words, n, pos) = (
            b.column(0).as_string::<i32>(),
            b.column(3).as_primitive::<Int64Type>(),
            b.column(4).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            got.push((words.value(i).to_string(), n.value(i), pos.value(i)));
        }
    }
    got.sort();
    let want = [("be", 2, 6), ("not", 1, 2), ("or", 1, 1), ("to", 2, 4)];
    let want: Vec<(String, i64, i64)> = want
        .iter()
        .map(|(w, n, p)| (w.to_string(), *n, *p))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_plugin_table_function_feeds_a_window() {
    use fungi_plugin::{HostOptions, PluginHost, PluginTenant, TableUdf, TenantLimits};
    let host = PluginHost::new(HostOptions::default()).unwrap();
    let tenant = Arc::new(PluginTenant::new("datastream", TenantLimits::default()));
    let plugin = host
        .load_file(std::path::Path::new(fungi_plugin_artifacts::TEXT_SPLIT))
        .unwrap();
    let split = Arc::new(TableUdf::new(plugin, tenant.clone(), "split_words", Vec::new()).unwrap());
    words_in_a_window(|lines| lines.with_plugin_table(split, &["user"]).unwrap());
    // The same function in Python, built into a component (`plugins/python/words.py`).
    let plugin = host
        .load_file(std::path::Path::new(fungi_plugin_artifacts::PYTHON_WORDS))
        .unwrap();
    let split = Arc::new(TableUdf::new(plugin, tenant, "split_words", Vec::new()).unwrap());
    words_in_a_window(|lines| lines.with_plugin_table(split, &["user"]).unwrap());
}

/// Native Python table functions, row-wise (a generator) and vectorized, give the same
/// rows as the Wasm plugin above (needs the virtual environment of `scripts/test.sh`).
#[test]
fn a_python_table_function_feeds_a_window() {
    let source = fungi_python::Source::Code {
        module: "words".into(),
        code: r#"
import pyarrow as pa
import pyarrow.compute as pc
import fungi

@fungi.udtf(returns={"word": "STRING", "position": pa.int64()})
def split_words(line):
    for i, word in enumerate(line.split()):
        yield word, i + 1

@fungi.udtf(returns=[("word", "STRING"), ("position", "BIGINT")], mode="vectorized")
def split_batch(lines):
    words, positions, rows = [], [], []
    for row, line in enumerate(lines.to_pylist()):
        for i, word in enumerate((line or "").split()):
            words.append(word)
            positions.append(i + 1)
            rows.append(row)
    return [pa.array(words), pa.array(positions)], rows

@fungi.udtf(returns={"word": "STRING"})
def broken(line):
    return [(line, "one too many")]
"#
        .into(),
    };
    let table = |name: &str| match fungi_python::load(&source, name, name).unwrap() {
        fungi_python::Loaded::Table(t) => t,
        _ => panic!("{name} is a table function"),
    };
    for name in ["split_words", "split_batch"] {
        let split = table(name);
        assert_eq!(split.columns().len(), 2);
        words_in_a_window(|lines| lines.with_python_table(split, &["user"]).unwrap());
    }
    // A row that does not fit the declared columns is an error naming the function.
    let e = table("broken")
        .call(&[Arc::new(StringArray::from(vec!["x"])) as ArrayRef], 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "Python function 'broken' raised ValueError: broken: a row of 2 values for 1 columns"
        ),
        "{e}"
    );
}

#[test]
fn a_job_with_checkpointing_ends_with_a_final_checkpoint_holding_its_source_positions() {
    let dir = tempfile::tempdir().unwrap();
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(1);
    env.enable_checkpointing(Duration::from_millis(50), dir.path());
    let input: Vec<RecordBatch> = (0..20)
        .map(|i| batch(&[("ann", i * 1_000, 1), ("bob", i * 1_000, 2)]))
        .collect();
    let source = (VecSource::factory(schema(), input), schema());
    let windowed = env
        .from_source(source, WatermarkStrategy::monotonous("ts"), "payments")
        .key_by(["user"])
        .window(TumblingEventTimeWindows::of(Duration::from_secs(5)))
        .aggregate(vec![sum("amount", "total")])
        .unwrap();
    let (sink, out) = CollectSink::new();
    windowed.sink_to(sink.factory(), "results");
    rt().block_on(env.execute("checkpointed")).unwrap();
    assert_eq!(out.rows(), 8, "4 windows × 2 users");
    let storage = fungi_checkpoint::CheckpointStorage::new(dir.path());
    let last = storage.latest().unwrap().expect("a final checkpoint");
    assert!(last.metadata.finished);
    // The source's position: all 20 batches read.
    let source = last.source_state("payments", 0, 1).unwrap();
    assert_eq!(source.states, vec![(0, 20u64.to_le_bytes().to_vec())]);
}
