//! `fungi bench nexmark`: Nexmark pipelines on the built-in generator to a blackhole.
//!
//! Each query runs in a child process of its own (the same binary with `--child`), so
//! peak RSS and CPU time are the query's alone. Reported per query: events/s (Nexmark
//! events, persons and auctions included, as Flink's Nexmark harness counts them), rows/s
//! of the table the query reads, rows/s per core used (CPU time / wall time), peak RSS,
//! and the p50/p99 end-to-end latency of latency markers the sources emit every 10 ms
//! (as Flink's `metrics.latency.interval`: the time data takes from the source to the
//! blackhole, queueing behind backpressure included; rows held in windows are not
//! counted as latency, the markers pass windows by).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, TimestampMillisecondArray};
use arrow::compute::kernels::{cast, numeric};
use arrow::datatypes::{DataType, Field, Schema, TimestampMillisecondType};
use fungi_common::config::JobConfig;
use fungi_common::ids::SubtaskInfo;
use fungi_connector::blackhole::BlackholeSink;
use fungi_connector::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkSource, NexmarkTable};
use fungi_execution::executor::LocalExecutor;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{MapOperator, WindowOperator};
use fungi_execution::source::{Source, SourceEvent, SourceFactory};
use fungi_streaming::aggregate::count_star;
use fungi_streaming::watermark::WatermarkStrategy;
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::WindowAggregateSpec;
use serde::{Deserialize, Serialize};

use crate::progress::human;

/// The benchmark pipelines.
pub(crate) const QUERIES: &[(&str, &str)] = &[
    ("gen", "the bid generator alone, no runtime"),
    (
        "ds-q0",
        "q0 as a hand-built pipeline (DataStream operators, no SQL)",
    ),
    ("ds-q1", "q1 as a hand-built pipeline"),
    (
        "ds-count",
        "keyed tumbling count per auction (10 s), hand-built",
    ),
    (
        "q0-replay",
        "ds-q0 over bids generated into memory before the clock starts: the runtime's own cost",
    ),
    (
        "count-replay",
        "ds-count over bids generated into memory before the clock starts",
    ),
    (
        "q0",
        "Nexmark q0 in SQL (examples/nexmark/q0.sql): pass-through",
    ),
    ("q1", "Nexmark q1 in SQL: currency conversion"),
    ("q2", "Nexmark q2 in SQL: selection"),
    ("q11", "Nexmark q11 in SQL: session windows per bidder"),
    ("q14", "Nexmark q14 in SQL: CASE, filter, string functions"),
    ("q21", "Nexmark q21 in SQL: CASE and regular expressions"),
    ("q22", "Nexmark q22 in SQL: split_part"),
    (
        "q5",
        "Nexmark q5 in SQL: sliding windows, a window over them, a window join",
    ),
    (
        "q7",
        "Nexmark q7 in SQL: tumbling window maximum, interval join back to the bids",
    ),
    (
        "q8",
        "Nexmark q8 in SQL: window join of persons and auctions",
    ),
    (
        "q15",
        "Nexmark q15 in SQL: updating daily statistics with FILTER and count distinct",
    ),
    (
        "q16",
        "Nexmark q16 in SQL: updating statistics per channel and day",
    ),
    (
        "q17",
        "Nexmark q17 in SQL: updating statistics per auction and day",
    ),
    (
        "q3",
        "Nexmark q3 in SQL: regular join of auctions and persons",
    ),
    (
        "q20",
        "Nexmark q20 in SQL: regular join of bids and auctions",
    ),
    (
        "q4",
        "Nexmark q4 in SQL: regular join, updating max, average over the changelog",
    ),
    ("q9", "Nexmark q9 in SQL: regular join, Top-1 per auction"),
    (
        "q18",
        "Nexmark q18 in SQL: deduplication keeping the last bid",
    ),
    ("q19", "Nexmark q19 in SQL: Top-10 bids per auction"),
    (
        "q12",
        "Nexmark q12 in SQL: processing-time tumbling windows",
    ),
    (
        "q13",
        "Nexmark q13 in SQL: lookup join with a file (run from the repository root)",
    ),
];

/// The Nexmark SQL files the benchmark runs, embedded at build time.
const SQL: &[(&str, &str)] = &[
    ("q0", include_str!("../../../examples/nexmark/q0.sql")),
    ("q1", include_str!("../../../examples/nexmark/q1.sql")),
    ("q2", include_str!("../../../examples/nexmark/q2.sql")),
    ("q11", include_str!("../../../examples/nexmark/q11.sql")),
    ("q14", include_str!("../../../examples/nexmark/q14.sql")),
    ("q21", include_str!("../../../examples/nexmark/q21.sql")),
    ("q22", include_str!("../../../examples/nexmark/q22.sql")),
    ("q5", include_str!("../../../examples/nexmark/q5.sql")),
    ("q7", include_str!("../../../examples/nexmark/q7.sql")),
    ("q8", include_str!("../../../examples/nexmark/q8.sql")),
    ("q15", include_str!("../../../examples/nexmark/q15.sql")),
    ("q16", include_str!("../../../examples/nexmark/q16.sql")),
    ("q17", include_str!("../../../examples/nexmark/q17.sql")),
    ("q3", include_str!("../../../examples/nexmark/q3.sql")),
    ("q20", include_str!("../../../examples/nexmark/q20.sql")),
    ("q4", include_str!("../../../examples/nexmark/q4.sql")),
    ("q9", include_str!("../../../examples/nexmark/q9.sql")),
    ("q18", include_str!("../../../examples/nexmark/q18.sql")),
    ("q19", include_str!("../../../examples/nexmark/q19.sql")),
    ("q12", include_str!("../../../examples/nexmark/q12.sql")),
    ("q13", include_str!("../../../examples/nexmark/q13.sql")),
];

/// How often sources emit latency markers during a benchmark.
const LATENCY_INTERVAL: Duration = Duration::from_millis(10);

/// State, checkpoint and SQL settings of a benchmark run.
#[derive(Debug, Clone, Default)]
pub(crate) struct StateOptions {
    /// Checkpoint every this many ms (into a temporary directory); off if `None`.
    pub(crate) checkpoint_interval_ms: Option<u64>,
    /// Keyed state in RocksDB instead of memory.
    pub(crate) rocksdb: bool,
    /// `SET 'key' = 'value'` ahead of every SQL query.
    pub(crate) settings: Vec<(String, String)>,
}

impl StateOptions {
    /// The job configuration at parallelism `p`, checkpointing into `dir`.
    fn config(&self, p: u32, dir: Option<&std::path::Path>) -> JobConfig {
        let mut config = JobConfig {
            parallelism: p,
            latency_interval: Some(LATENCY_INTERVAL),
            ..JobConfig::default()
        };
        if let (Some(ms), Some(dir)) = (self.checkpoint_interval_ms, dir) {
            config.checkpointing.interval = Some(Duration::from_millis(ms));
            config.checkpointing.dir = Some(dir.to_path_buf());
        }
        if self.rocksdb {
            config.state_backend = fungi_common::config::StateBackendKind::Rocksdb;
        }
        config
    }

    /// The arguments that pass these options to a child process.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ms) = self.checkpoint_interval_ms {
            args.extend(["--checkpoint-interval-ms".to_string(), ms.to_string()]);
        }
        if self.rocksdb {
            args.extend(["--state-backend".to_string(), "rocksdb".to_string()]);
        }
        for (k, v) in &self.settings {
            args.extend(["--set".to_string(), format!("{k}={v}")]);
        }
        args
    }

    /// The SQL settings as `SET` statements, one per line.
    pub(crate) fn sql_settings(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("SET '{k}' = '{v}';\n"))
            .collect()
    }
}

/// The text of an embedded Nexmark SQL file, for `events` events.
pub(crate) fn sql_text(query: &str, events: u64) -> Result<String> {
    let (_, text) = SQL
        .iter()
        .find(|(q, _)| *q == query)
        .ok_or_else(|| anyhow::anyhow!("no SQL for {query}"))?;
    Ok(text.replace("'events' = '1000000'", &format!("'events' = '{events}'")))
}

/// Plans an embedded Nexmark SQL file for `events` events under `config`.
fn sql_graph(query: &str, events: u64, config: JobConfig, settings: &str) -> Result<JobGraph> {
    let text = format!("{settings}{}", sql_text(query, events)?);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let outcomes = runtime.block_on(fungi_sql::SqlSession::new(config).execute_script(&text))?;
    outcomes
        .into_iter()
        .find_map(|o| match o {
            fungi_sql::Outcome::Insert(g) => Some(g),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{query} has no INSERT"))
}

/// One query's measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BenchResult {
    pub(crate) query: String,
    pub(crate) parallelism: u32,
    pub(crate) events: u64,
    pub(crate) rows: u64,
    pub(crate) seconds: f64,
    pub(crate) events_per_second: f64,
    pub(crate) rows_per_second: f64,
    pub(crate) cores_used: f64,
    pub(crate) rows_per_second_per_core: f64,
    pub(crate) peak_rss_mib: f64,
    /// Median end-to-end latency of the latency markers (ms); `None` where no pipeline ran.
    #[serde(default)]
    pub(crate) latency_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    #[serde(default)]
    pub(crate) latency_p99_ms: Option<f64>,
    /// The checkpoint interval, when the run checkpointed.
    #[serde(default)]
    pub(crate) checkpoint_interval_ms: Option<u64>,
    /// Where keyed state lived.
    #[serde(default)]
    pub(crate) state_backend: String,
    /// Checkpoints completed during the run.
    #[serde(default)]
    pub(crate) checkpoints: Option<u64>,
    /// On a cluster: Arrow megabytes (10^6 bytes) a second between TaskManagers.
    #[serde(default)]
    pub(crate) exchange_mb_per_s: Option<f64>,
}

/// Replays pre-generated bid batches; each pass over them is shifted in event time so
/// that windows keep moving forward.
struct ReplaySource {
    batches: Arc<Vec<RecordBatch>>,
    index: usize,
    step: usize,
    remaining: u64,
    shift: i64,
    span: i64,
}

#[async_trait::async_trait]
impl Source for ReplaySource {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        NexmarkTable::Bid.schema()
    }

    async fn next(&mut self) -> fungi_common::Result<SourceEvent> {
        if self.remaining == 0 {
            return Ok(SourceEvent::Finished);
        }
        if self.index >= self.batches.len() {
            self.index %= self.batches.len();
            self.shift += self.span;
        }
        let mut batch = self.batches[self.index].clone();
        self.index += self.step;
        if batch.num_rows() as u64 > self.remaining {
            batch = batch.slice(0, self.remaining as usize);
        }
        self.remaining -= batch.num_rows() as u64;
        if self.shift > 0 {
            let mut columns = batch.columns().to_vec();
            let shift = self.shift;
            let shifted: TimestampMillisecondArray = columns[5]
                .as_primitive::<TimestampMillisecondType>()
                .unary(|t| t + shift);
            columns[5] = Arc::new(shifted);
            batch = RecordBatch::try_new(batch.schema(), columns)?;
        }
        Ok(SourceEvent::Batch { split: 0, batch })
    }
}

/// Generates up to one million bids into memory (before the clock starts) and replays
/// them until `events` events' worth of bids have been sent.
fn replay_factory(events: u64) -> Result<SourceFactory> {
    let pool_events = events.min(1_000_000 * 50 / 46);
    let config = NexmarkConfig {
        max_events: Some(pool_events),
        ..Default::default()
    };
    let mut generator = NexmarkGenerator::new(NexmarkTable::Bid, config.clone(), 0, 1)?;
    let mut batches = Vec::new();
    while let Some(b) = generator.next_batch(8192)? {
        batches.push(b);
    }
    let span = (pool_events * 1000 / config.events_per_second) as i64 + 1;
    let batches = Arc::new(batches);
    let rows = events * 46 / 50;
    Ok(Arc::new(move |s: &SubtaskInfo| {
        let p = s.parallelism as u64;
        Ok(Box::new(ReplaySource {
            batches: batches.clone(),
            index: s.index as usize,
            step: s.parallelism as usize,
            remaining: rows / p + u64::from((s.index as u64) < rows % p),
            shift: 0,
            span,
        }) as Box<dyn Source>)
    }))
}

fn bid_source(
    graph: &mut JobGraph,
    events: u64,
    p: u32,
    watermarks: Option<WatermarkStrategy>,
) -> fungi_common::ids::OperatorId {
    let config = NexmarkConfig {
        max_events: Some(events),
        ..Default::default()
    };
    graph.add_source(
        "bids",
        p,
        NexmarkSource::factory_for(NexmarkTable::Bid, config, None),
        watermarks,
    )
}

fn q1_map(batch: RecordBatch) -> fungi_common::Result<RecordBatch> {
    let price = cast::cast(batch.column(2), &DataType::Float64)?;
    let scaled = numeric::mul(&price, &Float64Array::new_scalar(0.908))?;
    let schema = Arc::new(Schema::new(vec![
        batch.schema().field(0).clone(),
        batch.schema().field(1).clone(),
        Field::new("price", DataType::Float64, false),
        batch.schema().field(5).clone(),
        batch.schema().field(6).clone(),
    ]));
    let columns: Vec<ArrayRef> = vec![
        batch.column(0).clone(),
        batch.column(1).clone(),
        scaled,
        batch.column(5).clone(),
        batch.column(6).clone(),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn q0_map(batch: RecordBatch) -> fungi_common::Result<RecordBatch> {
    Ok(batch.project(&[0, 1, 2, 5, 6])?)
}

/// Builds the job graph of `query`.
fn graph(
    query: &str,
    events: u64,
    config: JobConfig,
    replay: Option<SourceFactory>,
) -> Result<JobGraph> {
    let p = config.parallelism;
    let mut g = JobGraph::new(format!("nexmark-{query}"));
    g.config = config;
    let source = |g: &mut JobGraph, watermarks: Option<WatermarkStrategy>| match &replay {
        Some(factory) => g.add_source("bids", p, factory.clone(), watermarks),
        None => bid_source(g, events, p, watermarks),
    };
    match query {
        "ds-q0" | "ds-q1" => {
            let src = source(&mut g, None);
            let map = g.add_operator(
                query,
                p,
                MapOperator::factory(if query == "ds-q0" { q0_map } else { q1_map }),
            );
            let sink = g.add_operator("blackhole", p, BlackholeSink::factory());
            g.connect(src, map, Partitioning::Forward);
            g.connect(map, sink, Partitioning::Forward);
        }
        "ds-count" => {
            let strategy =
                WatermarkStrategy::bounded_out_of_orderness("dateTime", Duration::from_secs(1));
            let src = source(&mut g, Some(strategy));
            let spec = WindowAggregateSpec {
                keys: vec!["auction".into()],
                time_column: "dateTime".into(),
                assigner: WindowAssigner::tumbling(10_000)?,
                allowed_lateness: 0,
                aggregates: vec![count_star("bids")],
            };
            let (factory, _) = WindowOperator::factory(spec, &NexmarkTable::Bid.schema())?;
            let window = g.add_stateful_operator("window", p, factory);
            let sink = g.add_operator("blackhole", p, BlackholeSink::factory());
            g.connect(src, window, Partitioning::Hash(vec!["auction".into()]));
            g.connect(window, sink, Partitioning::Forward);
        }
        other => bail!(
            "unknown query '{other}'; available: {}",
            QUERIES.iter().map(|q| q.0).collect::<Vec<_>>().join(", ")
        ),
    }
    Ok(g)
}

/// CPU seconds (user + system) used by this process so far, from /proc.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line; 100 ticks per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process in MiB, from /proc.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one query in this process (the child side).
pub(crate) fn run_one(
    query: &str,
    events: u64,
    p: u32,
    state: &StateOptions,
) -> Result<BenchResult> {
    let checkpoints = tempfile::tempdir()?;
    let config = state.config(p, Some(checkpoints.path()));
    let mut cpu0 = cpu_seconds();
    let mut start = Instant::now();
    let mut latency = None;
    let mut completed_checkpoints = None;
    let rows = if query == "gen" {
        let config = NexmarkConfig {
            max_events: Some(events),
            ..Default::default()
        };
        let mut rows = 0u64;
        let mut generator = NexmarkGenerator::new(NexmarkTable::Bid, config, 0, 1)?;
        while let Some(b) = generator.next_batch(8192)? {
            rows += std::hint::black_box(b).num_rows() as u64;
        }
        rows
    } else {
        let g = match query.strip_suffix("-replay") {
            Some(base) => graph(
                &format!("ds-{base}"),
                events,
                config,
                Some(replay_factory(events)?),
            )?,
            None if query.starts_with("ds-") => graph(query, events, config, None)?,
            None => sql_graph(query, events, config, &state.sql_settings())?,
        };
        // Generating the replayed data is not part of the measurement.
        cpu0 = cpu_seconds();
        start = Instant::now();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(p as usize)
            .enable_all()
            .build()?;
        let executor = LocalExecutor::for_config(&g.config)?;
        let (summary, stats) = runtime.block_on(async {
            let handle = executor.execute(g)?;
            let stats = handle.checkpoint_stats().cloned();
            Ok::<_, fungi_common::FungiError>((handle.wait().await?, stats))
        })?;
        latency = summary.latency;
        if let Some(s) = stats {
            completed_checkpoints = Some(s.completed.load(std::sync::atomic::Ordering::Relaxed));
        }
        fungi_execution::metrics::records_read(&summary.operators)
    };
    let seconds = start.elapsed().as_secs_f64();
    let cores = ((cpu_seconds() - cpu0) / seconds).max(0.01);
    Ok(BenchResult {
        query: query.to_string(),
        parallelism: p,
        events,
        rows,
        seconds,
        events_per_second: events as f64 / seconds,
        rows_per_second: rows as f64 / seconds,
        cores_used: cores,
        rows_per_second_per_core: rows as f64 / seconds / cores,
        peak_rss_mib: peak_rss_mib(),
        latency_p50_ms: latency.map(|l| l.p50_ms),
        latency_p99_ms: latency.map(|l| l.p99_ms),
        checkpoint_interval_ms: state.checkpoint_interval_ms,
        state_backend: if state.rocksdb { "rocksdb" } else { "memory" }.into(),
        checkpoints: completed_checkpoints,
        exchange_mb_per_s: None,
    })
}

/// Runs each query in a child process and collects the results.
pub(crate) fn run_all(
    queries: &[String],
    events: u64,
    p: u32,
    state: &StateOptions,
) -> Result<Vec<BenchResult>> {
    let exe = std::env::current_exe().context("cannot find the fungi binary to run queries in")?;
    let mut results = Vec::new();
    for q in queries {
        eprintln!("running {q} ({events} events, parallelism {p})...");
        let out = Command::new(&exe)
            .args([
                "bench",
                "nexmark",
                "--child",
                "--query",
                q,
                "--events",
                &events.to_string(),
                "--parallelism",
                &p.to_string(),
            ])
            .args(state.args())
            .output()
            .with_context(|| format!("cannot start the benchmark of {q}"))?;
        if !out.status.success() {
            bail!(
                "benchmark of {q} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = String::from_utf8_lossy(&out.stdout);
        results.push(
            serde_json::from_str(line.trim())
                .with_context(|| format!("bad output from the benchmark of {q}: {line}"))?,
        );
    }
    Ok(results)
}

/// The results as a table.
pub(crate) fn table(results: &[BenchResult]) -> String {
    let mut s = format!(
        "{:<12} {:>3} {:>12} {:>10} {:>12} {:>12} {:>6} {:>14} {:>9} {:>9} {:>9}\n",
        "query",
        "p",
        "events",
        "seconds",
        "events/s",
        "rows/s",
        "cores",
        "rows/s/core",
        "peak RSS",
        "p50 ms",
        "p99 ms"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for r in results {
        s.push_str(&format!(
            "{:<12} {:>3} {:>12} {:>10.3} {:>12} {:>12} {:>6.2} {:>14} {:>6.0}MiB {:>9} {:>9}\n",
            r.query,
            r.parallelism,
            r.events,
            r.seconds,
            human(r.events_per_second),
            human(r.rows_per_second),
            r.cores_used,
            human(r.rows_per_second_per_core),
            r.peak_rss_mib,
            ms(r.latency_p50_ms),
            ms(r.latency_p99_ms)
        ));
    }
    s
}
