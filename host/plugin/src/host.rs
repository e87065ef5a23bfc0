//! The plugin host: one wasmtime engine (with its compile cache and epoch ticker) and
//! the linker that says what plugins may import.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::scalar::fungi::plugin::host as host_api;
use crate::error::{PluginError, Result};
use crate::limits::{InstanceLimiter, PluginMetric};
use crate::output::CapturedOutput;
use crate::plugin::Plugin;

/// How often the engine's epoch advances; call deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Options of a [`PluginHost`].
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Directory of the compiled-component cache (keyed by content hash and engine
    /// version); `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel (needed for [`TenantLimits::fuel_per_call`](crate::TenantLimits)).
    pub fuel: bool,
    /// Compile plugins without the interruption checks that Wasmtime puts at every loop
    /// head and function entry (epoch interruption). Loop-heavy plugin code runs about
    /// 20 % faster (`docs/benchmarks.md`), but a call can no longer be stopped: only for
    /// trusted plugins. Tenants on such a host must have no call timeout
    /// ([`TenantLimits::call_timeout`](crate::TenantLimits) `None`); their CPU budget
    /// per second is still charged between calls.
    pub uninterruptible: bool,
}

/// The state of one plugin instance's store.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: InstanceLimiter,
    pub(crate) output: CapturedOutput,
    pub(crate) plugin: Arc<str>,
    pub(crate) config: Vec<(String, String)>,
    /// When the running call's time limit passes (WASI waits end there too).
    pub(crate) call_deadline: Option<std::time::Instant>,
    /// The calling thread's CPU time when it was last charged to the tenant.
    pub(crate) cpu_mark: Option<std::time::Duration>,
    /// Bytes logged through the `log` import during the running call.
    pub(crate) log_bytes: usize,
}

/// The calling thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID` on Linux).
pub(crate) fn thread_cpu() -> std::time::Duration {
    cpu_time::ThreadTime::now().as_duration()
}

impl HostState {
    /// Charges the CPU time the calling thread used since the last mark to the tenant.
    pub(crate) fn charge_cpu(&mut self) {
        let now = thread_cpu();
        if let Some(mark) = self.cpu_mark.replace(now) {
            self.limiter.tenant.charge(now.saturating_sub(mark));
        }
    }

    /// The epoch tick of a running call: charges its CPU time, stops it at its time
    /// limit, and pauses it while its tenant's CPU budget for this second is spent (the
    /// pause does not count towards the time limit).
    pub(crate) fn tick(&mut self) -> wasmtime::UpdateDeadline {
        self.charge_cpu();
        if let Some(deadline) = self.call_deadline
            && std::time::Instant::now() >= deadline
        {
            return wasmtime::UpdateDeadline::Interrupt;
        }
        let wait = self.limiter.tenant.wait_for_budget();
        if !wait.is_zero() {
            std::thread::sleep(wait);
            if let Some(deadline) = &mut self.call_deadline {
                *deadline += wait;
            }
            self.cpu_mark = Some(thread_cpu());
        }
        wasmtime::UpdateDeadline::Continue(1)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_api::Host for HostState {
    fn log(&mut self, level: host_api::Level, message: String, fields: Vec<(String, String)>) {
        let plugin = &*self.plugin;
        let asked = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let message = clip(&message, MAX_LOG_MESSAGE);
        let fields = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| format!("{}={}", clip(k, MAX_LOG_FIELD), clip(v, MAX_LOG_FIELD)))
            .collect::<Vec<_>>()
            .join(" ");
        let kept = message.len() + fields.len();
        let tenant = &self.limiter.tenant;
        tenant.drop_log(asked.saturating_sub(kept));
        if self.log_bytes + kept > tenant.limits().max_log_bytes {
            tenant.drop_log(kept);
            return;
        }
        if !tenant.admit_log(kept) {
            return;
        }
        self.log_bytes += kept;
        match level {
            host_api::Level::Trace => tracing::trace!(plugin, %fields, "{message}"),
            host_api::Level::Debug => tracing::debug!(plugin, %fields, "{message}"),
            host_api::Level::Info => tracing::info!(plugin, %fields, "{message}"),
            host_api::Level::Warn => tracing::warn!(plugin, %fields, "{message}"),
            host_api::Level::Error => tracing::error!(plugin, %fields, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, value: u64) {
        self.limiter
            .tenant
            .record_metric(&self.plugin, &name, |current| match current {
                Some(PluginMetric::Counter(n)) => PluginMetric::Counter(n.saturating_add(value)),
                _ => PluginMetric::Counter(value),
            });
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.limiter
            .tenant
            .record_metric(&self.plugin, &name, |_| PluginMetric::Gauge(value));
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

impl crate::bindings::scalar::fungi::plugin::types::Host for HostState {}

/// The longest log message kept, bytes (longer ones are cut).
const MAX_LOG_MESSAGE: usize = 4096;
/// Fields of a log line kept.
const MAX_LOG_FIELDS: usize = 16;
/// The longest log field name or value kept, bytes.
const MAX_LOG_FIELD: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Loads plugins and runs them under limits. One per process is enough; it is cheap to
/// share (`Arc`).
pub struct PluginHost {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) fuel: bool,
    pub(crate) interruptible: bool,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost").finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host with `options`; starts the epoch ticker thread.
    pub fn new(options: HostOptions) -> Result<Arc<Self>> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(!options.uninterruptible)
            .consume_fuel(options.fuel)
            .max_wasm_stack(1 << 20);
        // For profiling plugin code with `perf`: `perfmap` names the compiled functions in
        // /tmp/perf-<pid>.map; `jitdump` also keeps their code (`perf inject --jit`).
        match std::env::var("FUNGI_PLUGIN_PROFILER").as_deref() {
            Ok("perfmap") => {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Ok("jitdump") => {
                config.profiler(wasmtime::ProfilingStrategy::JitDump);
            }
            _ => {}
        }
        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                PluginError::Host(format!("cache directory {}: {e}", dir.display()))
            })?;
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache = wasmtime::Cache::new(cache)
                .map_err(|e| PluginError::Host(format!("compile cache: {e}")))?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Host(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| crate::wasi_io::add_to_linker(&mut linker))
            .map_err(|e| PluginError::Host(e.to_string()))?;
        host_api::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PluginError::Host(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        // The epoch ticker: call deadlines are counted in its ticks. It runs on its own
        // thread so that a guest spinning on a runtime worker is still interrupted.
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("fungi-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Host(format!("epoch ticker: {e}")))?;
        Ok(Arc::new(PluginHost {
            engine,
            linker,
            fuel: options.fuel,
            interruptible: !options.uninterruptible,
            stop,
        }))
    }

    /// The default tenant limits that this host can enforce (no call timeout on an
    /// uninterruptible host).
    pub fn default_limits(&self) -> crate::TenantLimits {
        let mut limits = crate::TenantLimits::default();
        if !self.interruptible {
            limits.call_timeout = None;
        }
        limits
    }

    /// Loads a plugin from component bytes (compiled, or taken from the cache).
    pub fn load(self: &Arc<Self>, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>> {
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Load {
            plugin: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        Plugin::new(self.clone(), name, bytes, component)
    }

    /// Loads a plugin from a `.wasm` file; its name is the file stem.
    pub fn load_file(self: &Arc<Self>, path: &Path) -> Result<Arc<Plugin>> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Load {
            plugin: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load(&name, &bytes)
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
