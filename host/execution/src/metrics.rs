//! Live counters of a running job, read by the CLI's progress line and later the API.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use hdrhistogram::Histogram;

/// Counters of one operator, summed over its subtasks.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// Operator name.
    pub name: String,
    /// Whether the node is a source (its output is what the job reads).
    pub source: bool,
    /// Rows received.
    pub records_in: AtomicU64,
    /// Rows emitted on the main output.
    pub records_out: AtomicU64,
    /// Rows emitted on side outputs (late data, dead letters).
    pub records_side: AtomicU64,
    /// Rows that arrived after their windows closed.
    pub late_records: AtomicU64,
    /// Arrow bytes received (the in-memory size of the batches' buffers).
    pub bytes_in: AtomicU64,
    /// Arrow bytes emitted on the main output.
    pub bytes_out: AtomicU64,
    /// Time the operator waited because a downstream channel was full, nanoseconds
    /// (Flink's back-pressured time).
    pub backpressured_nanos: AtomicU64,
    /// Current output watermark (ms; `i64::MIN` before the first one), the minimum over
    /// subtasks is approximated by the last written value.
    pub watermark: AtomicI64,
    /// Calls to an external service retried after a failure (sinks with a retry policy).
    pub retries: AtomicU64,
    /// The operator's circuit breaker: `u8::MAX` without one, else 0 closed, 1 open,
    /// 2 half-open (`fungi_reliability::BreakerState::code`).
    pub circuit: AtomicU8,
    /// Times the circuit breaker opened.
    pub circuit_opened: AtomicU64,
}

impl OperatorMetrics {
    /// Zeroed counters for operator `name`.
    pub fn new(name: impl Into<String>) -> Self {
        OperatorMetrics {
            name: name.into(),
            source: false,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            records_side: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            backpressured_nanos: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            retries: AtomicU64::new(0),
            circuit: AtomicU8::new(u8::MAX),
            circuit_opened: AtomicU64::new(0),
        }
    }

    /// Zeroed counters for source `name`.
    pub fn source(name: impl Into<String>) -> Self {
        OperatorMetrics {
            source: true,
            ..Self::new(name)
        }
    }

    pub(crate) fn add_in(&self, batch: &RecordBatch) {
        self.records_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.bytes_in
            .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, batch: &RecordBatch) {
        self.records_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_backpressure(&self, waited: Duration) {
        self.backpressured_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Counters of every operator of a job, in graph order.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    /// One entry per operator node.
    pub operators: Vec<Arc<OperatorMetrics>>,
    /// End-to-end latency of the latency markers that reached the end of the pipeline.
    pub latency: Arc<LatencyStats>,
}

/// A histogram of marker latencies in microseconds (1 µs to 1 h, 3 significant digits).
#[derive(Debug)]
pub struct LatencyStats {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

/// Percentiles of the end-to-end latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Markers recorded.
    pub markers: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl LatencyStats {
    /// Records one marker's latency.
    pub(crate) fn record(&self, micros: u64) {
        let mut h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(micros.max(1));
    }

    /// The percentiles so far; `None` before the first marker.
    pub fn summary(&self) -> Option<LatencySummary> {
        let h = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        (!h.is_empty()).then(|| LatencySummary {
            markers: h.len(),
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: h.max() as f64 / 1000.0,
        })
    }
}

/// A point-in-time copy of one operator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OperatorSnapshot {
    /// Operator name.
    pub name: String,
    /// Whether the node is a source.
    pub source: bool,
    /// Rows received.
    pub records_in: u64,
    /// Rows emitted.
    pub records_out: u64,
    /// Rows sent to side outputs.
    pub records_side: u64,
    /// Late rows.
    pub late_records: u64,
    /// Arrow bytes received.
    pub bytes_in: u64,
    /// Arrow bytes emitted.
    pub bytes_out: u64,
    /// Milliseconds spent waiting on full downstream channels.
    pub backpressured_ms: u64,
    /// Watermark, if any.
    pub watermark: Option<i64>,
    /// Retried calls to an external service.
    pub retries: u64,
    /// The circuit breaker's state (`closed`, `open`, `half-open`), if it has one.
    pub circuit: Option<&'static str>,
    /// Times the circuit breaker opened.
    pub circuit_opened: u64,
}

/// Rows the job's sources produced (what it read).
pub fn records_read(ops: &[OperatorSnapshot]) -> u64 {
    ops.iter().filter(|o| o.source).map(|o| o.records_out).sum()
}

impl JobMetrics {
    /// Fresh counters for every node of `graph` (sources count what they read).
    pub fn for_graph(graph: &crate::graph::JobGraph) -> JobMetrics {
        JobMetrics {
            operators: graph
                .nodes
                .iter()
                .map(|n| {
                    Arc::new(match n.kind {
                        crate::graph::NodeKind::Source { .. } => OperatorMetrics::source(&n.name),
                        _ => OperatorMetrics::new(&n.name),
                    })
                })
                .collect(),
            latency: Arc::default(),
        }
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> Vec<OperatorSnapshot> {
        self.operators
            .iter()
            .map(|m| {
                let wm = m.watermark.load(Ordering::Relaxed);
                OperatorSnapshot {
                    name: m.name.clone(),
                    source: m.source,
                    records_in: m.records_in.load(Ordering::Relaxed),
                    records_out: m.records_out.load(Ordering::Relaxed),
                    records_side: m.records_side.load(Ordering::Relaxed),
                    late_records: m.late_records.load(Ordering::Relaxed),
                    bytes_in: m.bytes_in.load(Ordering::Relaxed),
                    bytes_out: m.bytes_out.load(Ordering::Relaxed),
                    backpressured_ms: m.backpressured_nanos.load(Ordering::Relaxed) / 1_000_000,
                    watermark: (wm != i64::MIN).then_some(wm),
                    retries: m.retries.load(Ordering::Relaxed),
                    circuit: fungi_reliability::BreakerState::from_code(
                        m.circuit.load(Ordering::Relaxed),
                    )
                    .map(fungi_reliability::BreakerState::name),
                    circuit_opened: m.circuit_opened.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
