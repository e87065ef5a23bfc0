//! The Prometheus exposition (`GET /metrics`): per job and operator, the running
//! attempt's counters; per tenant, what its plugins use. Built at scrape time from the
//! live counters (nothing is kept between scrapes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fungi_scheduler::Live;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One running job's live counters.
pub struct JobSample {
    /// The job's id.
    pub job: String,
    /// Its tenant.
    pub tenant: String,
    /// The running attempt's counters.
    pub live: Live,
}

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter<u64>>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Registers a family and returns it for filling.
fn family<M>(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<Labels, M>::default();
    registry.register(name, help, f.clone());
    f
}

/// The text exposition of `jobs` and `tenants` (`now_ms` for watermark lag).
pub fn render(
    jobs: &[JobSample],
    tenants: &[Arc<fungi_plugin::PluginTenant>],
    now_ms: i64,
) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("fungi");
    let records_in: Counters = family(&mut r, "operator_records_in", "Rows an operator received");
    let records_out: Counters = family(&mut r, "operator_records_out", "Rows an operator emitted");
    let records_side: Counters = family(
        &mut r,
        "operator_records_side",
        "Rows an operator sent to side outputs (late data, dead letters)",
    );
    let bytes_in: Counters = family(
        &mut r,
        "operator_bytes_in",
        "Arrow bytes an operator received (in-memory size of the batches)",
    );
    let bytes_out: Counters = family(
        &mut r,
        "operator_bytes_out",
        "Arrow bytes an operator emitted",
    );
    let backpressured: Gauges = family(
        &mut r,
        "operator_backpressured_seconds",
        "Time an operator waited on full downstream channels (backpressure), since the attempt started",
    );
    let late: Counters = family(
        &mut r,
        "operator_late_records",
        "Rows that arrived after their window closed",
    );
    let lag: Gauges = family(
        &mut r,
        "operator_watermark_lag_seconds",
        "Wall clock minus the operator's watermark",
    );
    let latency: Gauges = family(
        &mut r,
        "job_latency_seconds",
        "End-to-end latency of latency markers (quantile label), when the job emits them",
    );
    let checkpoints: Counters = family(
        &mut r,
        "job_checkpoints_completed",
        "Checkpoints completed by the running attempt",
    );
    let aborted: Counters = family(
        &mut r,
        "job_checkpoints_aborted",
        "Checkpoints aborted by the running attempt",
    );
    let ck_duration: Gauges = family(
        &mut r,
        "job_checkpoint_duration_seconds",
        "Duration of the last completed checkpoint",
    );
    let ck_size: Gauges = family(
        &mut r,
        "job_checkpoint_size_bytes",
        "Size of the last completed checkpoint",
    );
    let restarts: Gauges = family(&mut r, "job_restarts", "Restarts of the running job");
    let retries: Counters = family(
        &mut r,
        "operator_retries",
        "Calls to an external service an operator retried after a failure",
    );
    let circuit: Gauges = family(
        &mut r,
        "operator_circuit_state",
        "An operator's circuit breaker: 0 closed, 1 open, 2 half-open",
    );
    let circuit_opened: Counters = family(
        &mut r,
        "operator_circuit_opened",
        "Times an operator's circuit breaker opened",
    );
    for j in jobs {
        let job = |extra: Option<(&'static str, String)>| {
            let mut l: Labels = vec![("tenant", j.tenant.clone()), ("job", j.job.clone())];
            l.extend(extra);
            l
        };
        for op in j.live.metrics.snapshot() {
            let l = job(Some(("operator", op.name.clone())));
            records_in.get_or_create(&l).inc_by(op.records_in);
            records_out.get_or_create(&l).inc_by(op.records_out);
            records_side.get_or_create(&l).inc_by(op.records_side);
            late.get_or_create(&l).inc_by(op.late_records);
            bytes_in.get_or_create(&l).inc_by(op.bytes_in);
            bytes_out.get_or_create(&l).inc_by(op.bytes_out);
            backpressured
                .get_or_create(&l)
                .set(op.backpressured_ms as f64 / 1000.0);
            if let Some(state) = op
                .circuit
                .and_then(fungi_reliability::BreakerState::from_name)
            {
                circuit.get_or_create(&l).set(f64::from(state.code()));
                circuit_opened.get_or_create(&l).inc_by(op.circuit_opened);
                retries.get_or_create(&l).inc_by(op.retries);
            }
            if let Some(wm) = op.watermark {
                lag.get_or_create(&l)
                    .set((now_ms - wm).max(0) as f64 / 1000.0);
            }
        }
        if let Some(s) = j.live.metrics.latency.summary() {
            for (q, v) in [("0.5", s.p50_ms), ("0.99", s.p99_ms), ("1", s.max_ms)] {
                latency
                    .get_or_create(&job(Some(("quantile", q.into()))))
                    .set(v / 1000.0);
            }
        }
        restarts
            .get_or_create(&job(None))
            .set(j.live.restarts as f64);
        if let Some(c) = &j.live.checkpoints {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            checkpoints
                .get_or_create(&job(None))
                .inc_by(load(&c.completed));
            aborted.get_or_create(&job(None)).inc_by(load(&c.aborted));
            ck_duration
                .get_or_create(&job(None))
                .set(load(&c.last_duration_ms) as f64 / 1000.0);
            ck_size
                .get_or_create(&job(None))
                .set(load(&c.last_size_bytes) as f64);
        }
    }
    let cpu: Gauges = family(
        &mut r,
        "tenant_plugin_cpu_seconds",
        "Time the tenant's plugin calls took since the server started",
    );
    let memory: Gauges = family(
        &mut r,
        "tenant_plugin_memory_bytes",
        "Linear memory held by the tenant's plugin instances",
    );
    let instances: Gauges = family(
        &mut r,
        "tenant_plugin_instances",
        "Live plugin instances of the tenant",
    );
    let throttled: Gauges = family(
        &mut r,
        "tenant_plugin_throttled_seconds",
        "Time the tenant's calls waited because its CPU budget was spent",
    );
    let resources: Gauges = family(
        &mut r,
        "tenant_plugin_host_resources",
        "Open files, sockets and streams held by the tenant's plugin instances",
    );
    let dropped_logs: Gauges = family(
        &mut r,
        "tenant_plugin_dropped_log_bytes",
        "Host log bytes of the tenant's plugins dropped over the per-call or per-second limit",
    );
    let traps: Counters = family(
        &mut r,
        "tenant_plugin_traps",
        "Plugin calls that trapped or broke a limit, by reason",
    );
    for t in tenants {
        let l: Labels = vec![("tenant", t.name().to_string())];
        cpu.get_or_create(&l).set(t.cpu_time().as_secs_f64());
        memory.get_or_create(&l).set(t.memory_in_use() as f64);
        instances.get_or_create(&l).set(t.live_instances() as f64);
        throttled.get_or_create(&l).set(t.throttled().as_secs_f64());
        resources.get_or_create(&l).set(t.host_resources() as f64);
        dropped_logs
            .get_or_create(&l)
            .set(t.dropped_log_bytes() as f64);
        for (reason, n) in t.traps() {
            let mut l = l.clone();
            l.push(("reason", reason.to_string()));
            traps.get_or_create(&l).inc_by(n);
        }
    }
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}
