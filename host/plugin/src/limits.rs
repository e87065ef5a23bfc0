//! What a tenant's plugins may use, and the accounting that enforces it.
//!
//! Limits are per tenant ([`TenantLimits`]); every plugin instance of the tenant shares
//! one [`PluginTenant`], which counts the tenant's live instances, the linear memory they hold
//! and the CPU time its calls used in the current second. Per instance a
//! [`InstanceLimiter`] (a wasmtime `ResourceLimiter`) refuses memory growth beyond the
//! instance's or the tenant's limit; per call an epoch deadline stops runaway code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The limits of one tenant's plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLimits {
    /// Linear memory of one instance, bytes.
    pub memory_per_instance: usize,
    /// Linear memory of all the tenant's instances together, bytes.
    pub memory_total: usize,
    /// Wall-clock time of one call (enforced by epoch interruption); `None`: no limit
    /// per call (required on an uninterruptible host, see
    /// [`HostOptions::uninterruptible`](crate::HostOptions)).
    pub call_timeout: Option<Duration>,
    /// Time the tenant's calls may use per second of wall clock; a tenant over budget
    /// waits for the next second.
    pub cpu_budget_per_second: Duration,
    /// Live instances of the tenant.
    pub max_instances: usize,
    /// Bytes a call may return.
    pub max_output_bytes: usize,
    /// Bytes of stdout/stderr kept per call, and bytes of log lines through the host's
    /// `log` import per call (the rest is counted and dropped).
    pub max_log_bytes: usize,
    /// Bytes of log lines through the host's `log` import per second, across the
    /// tenant's instances (the rest is counted and dropped).
    pub max_log_bytes_per_second: usize,
    /// Deterministic metering: fuel per call (WebAssembly instructions, roughly).
    pub fuel_per_call: Option<u64>,
    /// Stack of the guest, bytes.
    pub max_stack: usize,
    /// Host resources (open files and directories, sockets, streams, pollables) one
    /// instance may hold at once.
    pub max_host_resources_per_instance: usize,
    /// Host resources all the tenant's instances may hold at once.
    pub max_host_resources: usize,
    /// `host:port` addresses plugins may connect to.
    pub network_allow: Vec<String>,
    /// Host directories granted to plugins: (host path, guest path, writable).
    pub directories: Vec<(PathBuf, String, bool)>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            memory_per_instance: 64 << 20,
            memory_total: 512 << 20,
            call_timeout: Some(Duration::from_secs(1)),
            cpu_budget_per_second: Duration::from_secs(1),
            max_instances: 64,
            max_output_bytes: 64 << 20,
            max_log_bytes: 16 << 10,
            max_log_bytes_per_second: 256 << 10,
            fuel_per_call: None,
            max_stack: 512 << 10,
            max_host_resources_per_instance: 256,
            max_host_resources: 2048,
            network_allow: Vec::new(),
            directories: Vec::new(),
        }
    }
}

/// Distinct metric names a tenant's plugins may report (more are dropped and counted),
/// so that a plugin cannot grow the host's memory through its metric names.
pub const MAX_PLUGIN_METRICS: usize = 1024;

/// Longest metric name kept, bytes.
const MAX_METRIC_NAME: usize = 128;

/// A metric reported by a plugin through the host interface (`counter-add`,
/// `gauge-set`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PluginMetric {
    /// Sum of everything added.
    Counter(u64),
    /// The last value set.
    Gauge(f64),
}

/// A tenant: its limits and what its plugins currently use.
#[derive(Debug)]
pub struct PluginTenant {
    name: String,
    limits: TenantLimits,
    memory: AtomicUsize,
    instances: AtomicUsize,
    budget: Mutex<BudgetWindow>,
    /// Plugin metrics by (plugin, name).
    metrics: Mutex<BTreeMap<(String, String), PluginMetric>>,
    dropped_metrics: AtomicU64,
    /// Time spent in calls since the tenant was made, nanoseconds.
    cpu_nanos: AtomicU64,
    /// Calls that ended in a trap or a broken limit, by reason (`memory`, `timeout`,
    /// `fuel`, `stack`, `trap`).
    traps: Mutex<BTreeMap<&'static str, u64>>,
    /// Host resources the tenant's instances held after their last calls.
    host_resources: AtomicUsize,
    /// Host log bytes in the current second: (window start, bytes).
    log_window: Mutex<(Instant, usize)>,
    /// Host log bytes dropped over the per-call or per-second limit.
    dropped_log_bytes: AtomicU64,
}

#[derive(Debug)]
struct BudgetWindow {
    start: Instant,
    used: Duration,
    throttled: Duration,
}

impl PluginTenant {
    /// A tenant named `name` with `limits`.
    pub fn new(name: impl Into<String>, limits: TenantLimits) -> Self {
        PluginTenant {
            name: name.into(),
            limits,
            memory: AtomicUsize::new(0),
            instances: AtomicUsize::new(0),
            budget: Mutex::new(BudgetWindow {
                start: Instant::now(),
                used: Duration::ZERO,
                throttled: Duration::ZERO,
            }),
            metrics: Mutex::new(BTreeMap::new()),
            dropped_metrics: AtomicU64::new(0),
            cpu_nanos: AtomicU64::new(0),
            traps: Mutex::new(BTreeMap::new()),
            host_resources: AtomicUsize::new(0),
            log_window: Mutex::new((Instant::now(), 0)),
            dropped_log_bytes: AtomicU64::new(0),
        }
    }

    /// Whether `bytes` more of host log fit in the tenant's current second (they are
    /// counted if they do, and counted as dropped if they do not).
    pub(crate) fn admit_log(&self, bytes: usize) -> bool {
        let mut w = self.log_window.lock().expect("log window lock");
        let now = Instant::now();
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 + bytes > self.limits.max_log_bytes_per_second {
            self.drop_log(bytes);
            return false;
        }
        w.1 += bytes;
        true
    }

    /// How many host resources an instance holding `own` of them may hold during its
    /// next call: its share of the per-instance and the tenant-wide limits.
    pub(crate) fn host_resource_room(&self, own: usize) -> usize {
        let others = self
            .host_resources
            .load(Ordering::Acquire)
            .saturating_sub(own);
        self.limits
            .max_host_resources_per_instance
            .min(self.limits.max_host_resources.saturating_sub(others))
    }

    /// An instance went from holding `before` host resources to `after`.
    pub(crate) fn account_host_resources(&self, before: usize, after: usize) {
        if after >= before {
            self.host_resources
                .fetch_add(after - before, Ordering::AcqRel);
        } else {
            self.host_resources
                .fetch_sub(before - after, Ordering::AcqRel);
        }
    }

    /// Host resources the tenant's instances hold (as of their last calls).
    pub fn host_resources(&self) -> usize {
        self.host_resources.load(Ordering::Relaxed)
    }

    /// Counts host log bytes dropped.
    pub(crate) fn drop_log(&self, bytes: usize) {
        self.dropped_log_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Host log bytes dropped over the per-call or per-second limits.
    pub fn dropped_log_bytes(&self) -> u64 {
        self.dropped_log_bytes.load(Ordering::Relaxed)
    }

    /// Time the tenant's plugin calls took in all, since the tenant was made.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    /// Calls that trapped or broke a limit, by reason (`memory`, `timeout`, `fuel`,
    /// `stack`, `trap`).
    pub fn traps(&self) -> Vec<(&'static str, u64)> {
        let traps = self.traps.lock().expect("traps lock");
        traps.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Counts a failed call.
    pub(crate) fn count_trap(&self, reason: &'static str) {
        *self
            .traps
            .lock()
            .expect("traps lock")
            .entry(reason)
            .or_default() += 1;
    }

    /// The metrics the tenant's plugins reported: (plugin, name, value), sorted.
    pub fn plugin_metrics(&self) -> Vec<(String, String, PluginMetric)> {
        let metrics = self.metrics.lock().expect("metrics lock");
        metrics
            .iter()
            .map(|((plugin, name), m)| (plugin.clone(), name.clone(), *m))
            .collect()
    }

    /// Metric updates dropped: names beyond [`MAX_PLUGIN_METRICS`] or too long.
    pub fn dropped_metrics(&self) -> u64 {
        self.dropped_metrics.load(Ordering::Relaxed)
    }

    /// Applies a metric update from `plugin` (`update` gets the current value, if any).
    pub(crate) fn record_metric(
        &self,
        plugin: &str,
        name: &str,
        update: impl FnOnce(Option<PluginMetric>) -> PluginMetric,
    ) {
        let mut metrics = self.metrics.lock().expect("metrics lock");
        let key = (plugin.to_string(), name.to_string());
        let room = name.len() <= MAX_METRIC_NAME && metrics.len() < MAX_PLUGIN_METRICS;
        match metrics.get_mut(&key) {
            Some(m) => *m = update(Some(*m)),
            None if room => {
                metrics.insert(key, update(None));
            }
            None => {
                self.dropped_metrics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant's limits.
    pub fn limits(&self) -> &TenantLimits {
        &self.limits
    }

    /// Linear memory held by the tenant's instances, bytes.
    pub fn memory_in_use(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// Live instances.
    pub fn live_instances(&self) -> usize {
        self.instances.load(Ordering::Relaxed)
    }

    /// Total time the tenant's calls waited because its CPU budget was spent.
    pub fn throttled(&self) -> Duration {
        self.budget.lock().expect("budget lock").throttled
    }

    /// Reserves an instance slot; `false` if the tenant has its maximum.
    pub(crate) fn acquire_instance(&self) -> bool {
        let max = self.limits.max_instances;
        self.instances
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release_instance(&self, memory: usize) {
        self.instances.fetch_sub(1, Ordering::AcqRel);
        self.memory.fetch_sub(memory, Ordering::AcqRel);
    }

    /// How long a call must wait before the tenant has budget again (zero if it has).
    pub(crate) fn wait_for_budget(&self) -> Duration {
        let mut w = self.budget.lock().expect("budget lock");
        let now = Instant::now();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.used = Duration::ZERO;
        }
        if w.used < self.limits.cpu_budget_per_second {
            return Duration::ZERO;
        }
        let wait = Duration::from_secs(1).saturating_sub(now.duration_since(w.start));
        w.throttled += wait;
        wait
    }

    /// Charges `spent` to the current budget window.
    pub(crate) fn charge(&self, spent: Duration) {
        self.cpu_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        let mut w = self.budget.lock().expect("budget lock");
        w.used += spent;
    }
}

/// Waits (off the async runtime's worker if it can) until `tenant` has CPU budget.
pub(crate) fn throttle(tenant: &PluginTenant) {
    loop {
        let wait = tenant.wait_for_budget();
        if wait.is_zero() {
            return;
        }
        tracing::debug!(
            tenant = tenant.name(),
            ?wait,
            "plugin CPU budget spent; waiting"
        );
        let sleep = || std::thread::sleep(wait);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(sleep)
            }
            _ => sleep(),
        }
    }
}

/// The `ResourceLimiter` of one instance: memory per instance and per tenant.
pub(crate) struct InstanceLimiter {
    pub(crate) tenant: std::sync::Arc<PluginTenant>,
    /// Bytes of linear memory this instance holds (charged to the tenant).
    pub(crate) memory: usize,
    /// Set when a growth was refused, to report the limit instead of a bare trap.
    pub(crate) refused: Option<Box<crate::error::LimitBreach>>,
}

/// `bytes` for messages: whole MiB as such, anything else with its fraction, so that a
/// refusal never reads "a limit of 64 MiB, asked for 64 MiB".
pub(crate) fn mib(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Bytes a table element is charged as (a reference: a pointer and its metadata).
const TABLE_ELEMENT_BYTES: usize = 16;

impl InstanceLimiter {
    /// Charges `grow` more bytes to this instance and its tenant, or says which limit
    /// they would break. Every linear memory and every table of the instance counts
    /// towards the same per-instance limit.
    fn charge(&mut self, grow: usize, what: &str) -> bool {
        let limits = self.tenant.limits();
        let wanted = self.memory.saturating_add(grow);
        if wanted > limits.memory_per_instance {
            self.refused = Some(crate::error::LimitBreach::boxed(
                crate::error::LimitKind::Memory,
                Some(limits.memory_per_instance as u64),
                Some(wanted as u64),
                format!(
                    "memory limit of {} per instance exceeded ({what} would bring the \
                     instance to {})",
                    mib(limits.memory_per_instance),
                    mib(wanted)
                ),
            ));
            return false;
        }
        let total = self.tenant.memory.fetch_add(grow, Ordering::AcqRel) + grow;
        if total > limits.memory_total {
            self.tenant.memory.fetch_sub(grow, Ordering::AcqRel);
            self.refused = Some(crate::error::LimitBreach::boxed(
                crate::error::LimitKind::Memory,
                Some(limits.memory_total as u64),
                Some(total as u64),
                format!(
                    "tenant memory limit of {} exceeded ({what} would bring the tenant to {})",
                    mib(limits.memory_total),
                    mib(total)
                ),
            ));
            return false;
        }
        self.memory += grow;
        true
    }
}

impl wasmtime::ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.charge(desired.saturating_sub(current), "growing a linear memory"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.charge(grow, "growing a table"))
    }

    fn memories(&self) -> usize {
        // Components made of several core modules have a memory each; all of them
        // count towards the instance's limit (see `charge`).
        64
    }

    fn tables(&self) -> usize {
        64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_metrics_are_bounded_per_tenant() {
        let t = PluginTenant::new("t", TenantLimits::default());
        for i in 0..MAX_PLUGIN_METRICS + 10 {
            t.record_metric("p", &format!("m{i}"), |_| PluginMetric::Counter(1));
        }
        t.record_metric("p", &"x".repeat(MAX_METRIC_NAME + 1), |_| {
            PluginMetric::Gauge(1.0)
        });
        assert_eq!(t.plugin_metrics().len(), MAX_PLUGIN_METRICS);
        assert_eq!(t.dropped_metrics(), 11);
        // Known names still update.
        t.record_metric("p", "m0", |m| match m {
            Some(PluginMetric::Counter(n)) => PluginMetric::Counter(n + 1),
            _ => unreachable!(),
        });
        assert!(
            t.plugin_metrics()
                .contains(&("p".into(), "m0".into(), PluginMetric::Counter(2)))
        );
    }
}
