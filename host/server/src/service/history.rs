//! A short rolling history of each running job's counters, sampled once a second, so
//! that the dashboard draws throughput, backpressure, latency and checkpoints over time
//! from one JSON call instead of polling and differencing Prometheus text itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use fungi_execution::metrics::OperatorSnapshot;
use fungi_security::{Action, Principal};
use serde::{Deserialize, Serialize};

use super::{Service, ServiceResult, now_ms};

/// How often running jobs are sampled.
pub(crate) const SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Samples kept per job (five minutes at one a second).
const SAMPLES_KEPT: usize = 300;
/// Completed checkpoints kept per job.
const CHECKPOINTS_KEPT: usize = 100;
/// Histories of jobs that stopped running, kept for their pages (oldest dropped first).
const ENDED_KEPT: usize = 64;
/// The trailing window rates and backpressure are averaged over, in samples.
const WINDOW: usize = 10;

/// One sample of a job's counters.
#[derive(Debug, Clone)]
struct Sample {
    t_ms: i64,
    operators: Vec<OperatorSnapshot>,
    latency: Option<fungi_execution::metrics::LatencySummary>,
}

/// What the history keeps of one job.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    checkpoints: VecDeque<CheckpointEntry>,
    /// Operators without an outgoing edge (what the job writes).
    sinks: Vec<String>,
    /// The attempt the samples are of; a restart starts the counters again.
    attempt: u32,
    /// When the job was last seen running (for dropping old histories).
    last_seen_ms: i64,
}

/// One completed checkpoint, as seen by the sampler.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointEntry {
    /// Its id.
    pub id: u64,
    /// When the sampler saw it completed (ms since the epoch).
    pub time_ms: i64,
    /// Trigger to completion.
    pub duration_ms: u64,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Whether it was taken at the end of the input or as a stop-with-savepoint (the
    /// job's last).
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// One point of a job's history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// When (ms since the epoch).
    pub t_ms: i64,
    /// Rows the sources read per second, since the previous point.
    pub read_per_s: f64,
    /// Rows the sinks received per second, since the previous point.
    pub written_per_s: f64,
    /// The largest share of time any operator spent waiting on a full downstream
    /// channel, averaged over the trailing ten seconds (0 to 1).
    pub backpressure: f64,
    /// End-to-end latency of latency markers so far, when the job sends them.
    pub latency_p50_ms: Option<f64>,
    /// Its 99th percentile.
    pub latency_p99_ms: Option<f64>,
}

/// One operator's rates over the trailing ten seconds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorRates {
    /// The operator.
    pub name: String,
    /// Rows received per second.
    pub in_per_s: f64,
    /// Rows emitted per second.
    pub out_per_s: f64,
    /// Share of time spent waiting on a full downstream channel (0 to 1).
    pub backpressure: f64,
    /// Rows received in all.
    pub records_in: u64,
    /// Rows emitted in all.
    pub records_out: u64,
    /// How far its watermark trails the wall clock, when it has one.
    pub watermark_lag_ms: Option<i64>,
}

/// A job's recent history (`GET /api/v1/jobs/{id}/history`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobHistory {
    /// Milliseconds between samples.
    pub interval_ms: u64,
    /// Oldest first, at most five minutes.
    pub points: Vec<HistoryPoint>,
    /// Completed checkpoints, oldest first, at most 100.
    pub checkpoints: Vec<CheckpointEntry>,
    /// Per operator, over the trailing ten seconds.
    pub operators: Vec<OperatorRates>,
}

/// A running job's current rates (`GET /api/v1/job-stats`), for a list of jobs.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStats {
    /// The job.
    pub id: String,
    /// Restarts of the running job.
    pub restarts: u32,
    /// Rows read per second over the trailing ten seconds.
    pub read_per_s: f64,
    /// Rows written per second over the trailing ten seconds.
    pub written_per_s: f64,
    /// Backpressure over the trailing ten seconds (0 to 1).
    pub backpressure: f64,
}

impl History {
    /// Adds a sample of `attempt` (a new attempt's counters start again).
    fn record(&mut self, attempt: u32, graph: &serde_json::Value, sample: Sample) {
        if self.attempt != attempt {
            self.samples.clear();
            self.attempt = attempt;
        }
        if self.sinks.is_empty() {
            self.sinks = sinks_of(graph);
        }
        self.last_seen_ms = sample.t_ms;
        self.samples.push_back(sample);
        while self.samples.len() > SAMPLES_KEPT {
            self.samples.pop_front();
        }
    }

    /// Rows read and written per second between two samples. Counters may fall (a
    /// cluster part that stopped reporting): a fall reads as zero, never a wrap.
    fn rows_per_s(&self, start: &Sample, cur: &Sample) -> (f64, f64) {
        let secs = seconds(start, cur);
        (
            read(cur).saturating_sub(read(start)) as f64 / secs,
            self.written(cur).saturating_sub(self.written(start)) as f64 / secs,
        )
    }

    /// Rates over the trailing window.
    fn stats(&self, id: &str) -> JobStats {
        let samples = &self.samples;
        let (read_per_s, written_per_s, backpressure) = match samples.back() {
            Some(cur) if samples.len() > 1 => {
                let start = &samples[samples.len().saturating_sub(WINDOW + 1)];
                let (read, written) = self.rows_per_s(start, cur);
                (read, written, backpressure(start, cur))
            }
            _ => (0.0, 0.0, 0.0),
        };
        JobStats {
            id: id.to_string(),
            restarts: self.attempt,
            read_per_s,
            written_per_s,
            backpressure,
        }
    }

    fn view(&self, now: i64) -> JobHistory {
        let samples = &self.samples;
        let points = (1..samples.len())
            .map(|i| {
                let (prev, cur) = (&samples[i - 1], &samples[i]);
                let (read_per_s, written_per_s) = self.rows_per_s(prev, cur);
                HistoryPoint {
                    t_ms: cur.t_ms,
                    read_per_s,
                    written_per_s,
                    backpressure: backpressure(&samples[i.saturating_sub(WINDOW)], cur),
                    latency_p50_ms: cur.latency.map(|l| l.p50_ms),
                    latency_p99_ms: cur.latency.map(|l| l.p99_ms),
                }
            })
            .collect();
        let operators = match samples.back() {
            Some(cur) => {
                let start = &samples[samples.len().saturating_sub(WINDOW + 1)];
                let secs = seconds(start, cur);
                cur.operators
                    .iter()
                    .map(|o| {
                        let before = start.operators.iter().find(|b| b.name == o.name);
                        let delta = |f: fn(&OperatorSnapshot) -> u64| {
                            f(o).saturating_sub(before.map_or(0, f)) as f64
                        };
                        OperatorRates {
                            name: o.name.clone(),
                            in_per_s: delta(|s| s.records_in) / secs,
                            out_per_s: delta(|s| s.records_out) / secs,
                            backpressure: (delta(|s| s.backpressured_ms) / 1000.0 / secs)
                                .clamp(0.0, 1.0),
                            records_in: o.records_in,
                            records_out: o.records_out,
                            watermark_lag_ms: o.watermark.map(|w| now - w),
                        }
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        JobHistory {
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            points,
            checkpoints: self.checkpoints.iter().cloned().collect(),
            operators,
        }
    }

    fn written(&self, s: &Sample) -> u64 {
        s.operators
            .iter()
            .filter(|o| self.sinks.contains(&o.name))
            .map(|o| o.records_in)
            .sum()
    }
}

/// Seconds from `start` to `cur` (at least a millisecond).
fn seconds(start: &Sample, cur: &Sample) -> f64 {
    (cur.t_ms - start.t_ms).max(1) as f64 / 1000.0
}

fn read(s: &Sample) -> u64 {
    fungi_execution::metrics::records_read(&s.operators)
}

/// The largest share of `start..cur` any operator spent backpressured.
fn backpressure(start: &Sample, cur: &Sample) -> f64 {
    let span_ms = (cur.t_ms - start.t_ms).max(1) as f64;
    cur.operators
        .iter()
        .map(|o| {
            let before = start
                .operators
                .iter()
                .find(|b| b.name == o.name)
                .map_or(0, |b| b.backpressured_ms);
            o.backpressured_ms.saturating_sub(before) as f64 / span_ms
        })
        .fold(0.0, f64::max)
        .clamp(0.0, 1.0)
}

/// A cluster job's operators from its parts' counters: rows summed over the parts
/// (subtasks on several TaskManagers), and as backpressure the longest any part that
/// runs the operator waited on a full channel to another host.
fn cluster_operators(parts: &[fungi_cluster::PartStats]) -> Vec<OperatorSnapshot> {
    let mut operators: Vec<OperatorSnapshot> = Vec::new();
    for part in parts {
        for o in &part.operators {
            let at = match operators.iter().position(|s| s.name == o.operator) {
                Some(at) => at,
                None => {
                    operators.push(OperatorSnapshot {
                        name: o.operator.clone(),
                        source: o.source,
                        ..Default::default()
                    });
                    operators.len() - 1
                }
            };
            let s = &mut operators[at];
            s.records_in += o.records_in;
            s.records_out += o.records_out;
            s.backpressured_ms = s.backpressured_ms.max(part.backpressured_ms);
        }
    }
    operators
}

/// Operators of a graph (as `graph_json` writes it) with no outgoing edge.
fn sinks_of(graph: &serde_json::Value) -> Vec<String> {
    let names = |key: &str| -> Vec<String> {
        graph[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v[if key == "nodes" { "name" } else { "from" }].as_str())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let from = names("edges");
    names("nodes")
        .into_iter()
        .filter(|n| !from.contains(n))
        .collect()
}

impl Service {
    /// Samples every job running in this process (see the module doc).
    pub(crate) fn sample_history(&self) {
        let now = now_ms();
        let running: Vec<(String, fungi_scheduler::Live, serde_json::Value)> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .filter(|(_, r)| r.cluster.is_none())
            .map(|(id, r)| (id.clone(), r.live.borrow().clone(), r.graph.clone()))
            .collect();
        let mut all = self.history.lock().expect("history lock");
        self.sample_plugins(now, &mut all);
        let histories = &mut all.jobs;
        for (id, live, graph) in running {
            let h = histories.entry(id).or_default();
            h.record(
                live.restarts,
                &graph,
                Sample {
                    t_ms: now,
                    operators: live.metrics.snapshot(),
                    latency: live.metrics.latency.summary(),
                },
            );
            if let Some(c) = &live.checkpoints {
                let id = c.last_id.load(Ordering::Relaxed);
                if id > 0 && h.checkpoints.back().is_none_or(|b| b.id != id) {
                    h.checkpoints.push_back(CheckpointEntry {
                        id,
                        time_ms: now,
                        duration_ms: c.last_duration_ms.load(Ordering::Relaxed),
                        size_bytes: c.last_size_bytes.load(Ordering::Relaxed),
                        is_final: c
                            .stopped_with_savepoint
                            .lock()
                            .map(|s| s.is_some())
                            .unwrap_or_default(),
                    });
                    while h.checkpoints.len() > CHECKPOINTS_KEPT {
                        h.checkpoints.pop_front();
                    }
                }
            }
        }
        // Histories of ended jobs stay for their pages, the most recent ones only.
        let mut ended: Vec<(i64, String)> = histories
            .iter()
            .filter(|(_, h)| h.last_seen_ms < now)
            .map(|(id, h)| (h.last_seen_ms, id.clone()))
            .collect();
        if ended.len() > ENDED_KEPT {
            ended.sort_unstable();
            for (_, id) in &ended[..ended.len() - ENDED_KEPT] {
                histories.remove(id);
            }
        }
    }

    /// Samples the jobs this server runs on a cluster, from one status call to the
    /// leading JobManager (its TaskManagers' last heartbeats).
    async fn sample_cluster_history(&self) {
        let jobs: Vec<(String, serde_json::Value)> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .filter(|(_, r)| r.cluster.is_some())
            .map(|(id, r)| (id.clone(), r.graph.clone()))
            .collect();
        if jobs.is_empty() {
            return;
        }
        let status = async { self.leader().await.ok()?.status().await.ok() };
        let Ok(Some(status)) = tokio::time::timeout(SAMPLE_INTERVAL, status).await else {
            return;
        };
        let now = now_ms();
        let mut all = self.history.lock().expect("history lock");
        for (id, graph) in jobs {
            let Some(found) = status.jobs.iter().find(|j| j.job == id) else {
                continue;
            };
            all.jobs.entry(id).or_default().record(
                found.attempt as u32,
                &graph,
                Sample {
                    t_ms: now,
                    operators: cluster_operators(&found.parts),
                    latency: None,
                },
            );
        }
    }

    /// Samples running jobs every [`SAMPLE_INTERVAL`] until `stop` is cancelled.
    pub async fn sample_history_until(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.sample_history();
                    if self.cluster().is_some() {
                        self.sample_cluster_history().await;
                    }
                }
            }
        }
    }

    /// A job's recent history: throughput, backpressure and latency over the last five
    /// minutes, its completed checkpoints, and each operator's current rates.
    pub fn job_history(&self, p: &Principal, id: &str) -> ServiceResult<JobHistory> {
        let job = self.visible_job(p, Action::JobGet, id)?;
        let histories = self.history.lock().expect("history lock");
        Ok(match histories.jobs.get(&job.id) {
            Some(h) => h.view(now_ms()),
            None => History::default().view(now_ms()),
        })
    }
}

impl Service {
    /// The current rates of the caller's tenant's running jobs (every tenant's for
    /// admins).
    pub fn job_stats(&self, p: &Principal) -> ServiceResult<Vec<JobStats>> {
        let visible: std::collections::HashSet<String> =
            self.list_jobs(p)?.into_iter().map(|j| j.id).collect();
        let now = now_ms();
        let histories = self.history.lock().expect("history lock");
        let mut stats: Vec<JobStats> = histories
            .jobs
            .iter()
            .filter(|(id, h)| {
                visible.contains(*id)
                    && now - h.last_seen_ms <= 3 * SAMPLE_INTERVAL.as_millis() as i64
            })
            .map(|(id, h)| h.stats(id))
            .collect();
        stats.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(stats)
    }
}

/// Histories by job id, and plugin usage by tenant.
#[derive(Default)]
pub(crate) struct Histories {
    jobs: HashMap<String, History>,
    plugins: HashMap<String, VecDeque<PluginUsagePoint>>,
}

/// One sample of a tenant's plugin usage.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginUsagePoint {
    /// When (ms since the epoch).
    pub t_ms: i64,
    /// Time the tenant's plugin calls took since the server started, seconds.
    pub cpu_seconds: f64,
    /// Linear memory held by the tenant's plugin instances.
    pub memory_bytes: u64,
    /// Live plugin instances.
    pub instances: u64,
    /// Time calls waited because the tenant's CPU budget was spent, seconds.
    pub throttled_seconds: f64,
    /// Calls that trapped or broke a limit, by reason, since the server started.
    pub traps: std::collections::BTreeMap<String, u64>,
}

/// What a tenant holds now, its plugin usage over the last five minutes, and the limits
/// its plugins run under (`GET /api/v1/usage`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// Its running jobs.
    pub running_jobs: u32,
    /// The slots they hold (the sum of their parallelism).
    pub slots: u32,
    /// Its uploaded plugins.
    pub plugins: u32,
    /// Their bytes.
    pub plugin_bytes: u64,
    /// Plugin usage, oldest first.
    pub points: Vec<PluginUsagePoint>,
    /// The limits every plugin instance of the tenant runs under (its quotas, host
    /// defaults where unset).
    pub limits: PluginLimitsView,
}

/// The plugin limits of a tenant, as enforced.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginLimitsView {
    /// Linear memory per instance, bytes.
    pub memory_per_instance: u64,
    /// Linear memory of all the tenant's instances, bytes.
    pub memory_total: u64,
    /// Plugin CPU time per wall-clock second, ms.
    pub cpu_ms_per_second: u64,
    /// Wall-clock limit of one call, ms.
    pub call_timeout_ms: Option<u64>,
    /// Live instances of the tenant.
    pub max_instances: u64,
    /// Bytes one call may return.
    pub max_output_bytes: u64,
    /// Open files, sockets and streams of the tenant's instances.
    pub max_host_resources: u64,
    /// Hosts its plugins may connect to.
    pub network_allow: Vec<String>,
}

impl From<&fungi_plugin::TenantLimits> for PluginLimitsView {
    fn from(l: &fungi_plugin::TenantLimits) -> Self {
        PluginLimitsView {
            memory_per_instance: l.memory_per_instance as u64,
            memory_total: l.memory_total as u64,
            cpu_ms_per_second: l.cpu_budget_per_second.as_millis() as u64,
            call_timeout_ms: l.call_timeout.map(|d| d.as_millis() as u64),
            max_instances: l.max_instances as u64,
            max_output_bytes: l.max_output_bytes as u64,
            max_host_resources: l.max_host_resources as u64,
            network_allow: l.network_allow.clone(),
        }
    }
}

impl Service {
    /// Samples every tenant's plugin usage.
    fn sample_plugins(&self, now: i64, histories: &mut Histories) {
        let tenants: Vec<Arc<fungi_plugin::PluginTenant>> = self
            .plugin_tenants
            .lock()
            .expect("plugin tenants lock")
            .values()
            .cloned()
            .collect();
        for t in tenants {
            let points = histories.plugins.entry(t.name().to_string()).or_default();
            points.push_back(PluginUsagePoint {
                t_ms: now,
                cpu_seconds: t.cpu_time().as_secs_f64(),
                memory_bytes: t.memory_in_use() as u64,
                instances: t.live_instances() as u64,
                throttled_seconds: t.throttled().as_secs_f64(),
                traps: t
                    .traps()
                    .into_iter()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect(),
            });
            while points.len() > SAMPLES_KEPT {
                points.pop_front();
            }
        }
    }

    /// What the caller's tenant (every tenant, for admins) holds, its plugin usage over
    /// the last five minutes, and the limits its plugins run under.
    pub fn tenant_usage(&self, p: &Principal) -> ServiceResult<Vec<TenantUsage>> {
        self.authorize(p, Action::MetricsRead, &p.tenant, "")?;
        let tenants = if p.role == fungi_security::Role::Admin {
            self.store.tenants()?
        } else {
            vec![self.tenant(&p.tenant)?]
        };
        let mut held = Vec::with_capacity(tenants.len());
        for t in &tenants {
            let plugins = self.store.plugins(&t.id)?;
            held.push((
                self.usage(&t.id)?,
                plugins.len() as u32,
                plugins.iter().map(|p| p.bytes).sum::<u64>(),
            ));
        }
        let histories = self.history.lock().expect("history lock");
        Ok(tenants
            .into_iter()
            .zip(held)
            .map(|(t, (usage, plugins, plugin_bytes))| TenantUsage {
                running_jobs: usage.jobs,
                slots: usage.parallelism,
                plugins,
                plugin_bytes,
                points: histories
                    .plugins
                    .get(&t.id)
                    .map(|p| p.iter().cloned().collect())
                    .unwrap_or_default(),
                limits: PluginLimitsView::from(&super::plugin_limits(&t.quotas)),
                tenant: t.id,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, source: bool, rows: u64, backpressured_ms: u64) -> OperatorSnapshot {
        OperatorSnapshot {
            name: name.into(),
            source,
            records_in: if source { 0 } else { rows },
            records_out: rows,
            records_side: 0,
            late_records: 0,
            bytes_in: 0,
            bytes_out: 0,
            backpressured_ms,
            watermark: Some(1_000),
            retries: 0,
            circuit: None,
            circuit_opened: 0,
        }
    }

    #[test]
    fn rates_and_backpressure_come_from_differences_over_the_window() {
        let mut h = History {
            sinks: vec!["sink".into()],
            ..Default::default()
        };
        for i in 0..12u64 {
            h.samples.push_back(Sample {
                t_ms: 10_000 + i as i64 * 1000,
                // 500 rows a second; the source waits half of every second.
                operators: vec![
                    op("src", true, i * 500, i * 500),
                    op("sink", false, i * 500, 0),
                ],
                latency: None,
            });
        }
        let v = h.view(21_000);
        assert_eq!(v.points.len(), 11);
        let last = v.points.last().unwrap();
        assert!((last.read_per_s - 500.0).abs() < 1e-9, "{last:?}");
        assert!((last.written_per_s - 500.0).abs() < 1e-9, "{last:?}");
        assert!((last.backpressure - 0.5).abs() < 1e-9, "{last:?}");
        let src = &v.operators[0];
        assert!((src.out_per_s - 500.0).abs() < 1e-9, "{src:?}");
        assert_eq!(src.watermark_lag_ms, Some(20_000));
        assert!(History::default().view(0).points.is_empty());
        // A counter that falls (a cluster part that stopped reporting) reads as zero.
        let mut fell = h.samples.back().unwrap().clone();
        fell.t_ms += 1000;
        fell.operators[0].records_out = 0;
        h.samples.push_back(fell);
        assert_eq!(h.view(22_000).points.last().unwrap().read_per_s, 0.0);
    }

    #[test]
    fn a_cluster_jobs_operators_sum_their_parts() {
        let part = |tm: &str, rows: u64, waited: u64| fungi_cluster::PartStats {
            task_manager: tm.into(),
            backpressured_ms: waited,
            operators: vec![fungi_cluster::OperatorCount {
                operator: "src".into(),
                records_in: 0,
                records_out: rows,
                source: true,
            }],
            ..Default::default()
        };
        let ops = cluster_operators(&[part("tm-1", 10, 5), part("tm-2", 32, 40)]);
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].records_out, ops[0].backpressured_ms), (42, 40));
        assert!(ops[0].source);
    }

    #[test]
    fn sinks_are_the_operators_nothing_leaves() {
        let graph = serde_json::json!({
            "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}],
        });
        assert_eq!(sinks_of(&graph), ["b", "c"]);
    }
}
