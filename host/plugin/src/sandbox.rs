//! One plugin instance in its own store, under its tenant's limits.
//!
//! Every call goes through [`Sandbox::call`]: it waits for the tenant's CPU budget, arms
//! the epoch deadline (and fuel), runs the guest, charges the time, collects what the
//! guest printed, and turns a trap or a broken limit into a [`PluginError`]. After such
//! an error the sandbox is *poisoned*: its store may be in any state, so it is dropped
//! and the next call gets a fresh instance.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::bindings::scalar::fungi::plugin::types as types_api;
use crate::bindings::{aggregate, scalar, sink, source, table};
use crate::error::{LimitBreach, LimitKind, PluginError, Result};
use crate::host::HostState;
use crate::limits::{InstanceLimiter, PluginTenant, throttle};
use crate::output::CapturedOutput;
use crate::plugin::{FunctionSignature, Manifest, Plugin, PluginKind, Volatility};

/// The typed exports of an instance.
pub(crate) enum Exports {
    Scalar(scalar::ScalarUdf),
    Table(table::TableUdf),
    Aggregate(aggregate::AggregateUdf),
    Source(source::SourceConnector),
    Sink(sink::SinkConnector),
}

/// A live instance of a plugin.
pub(crate) struct Sandbox {
    pub(crate) store: Store<HostState>,
    pub(crate) exports: Exports,
    tenant: Arc<PluginTenant>,
    plugin: Arc<str>,
    poisoned: bool,
    /// Whether calls get an epoch deadline (see `HostOptions::uninterruptible`).
    interruptible: bool,
    /// A memory growth refused during the last call that still returned (the guest
    /// caught it, as Python's `MemoryError`): the limit it broke.
    refusal: Option<Box<LimitBreach>>,
    /// Host resources (files, sockets, streams) the instance held after its last call,
    /// as charged to the tenant.
    resources: usize,
}

impl Sandbox {
    /// Instantiates `plugin` for `tenant` (fresh store, WASI as the tenant grants).
    pub(crate) fn new(
        plugin: &Plugin,
        tenant: &Arc<PluginTenant>,
        config: &[(String, String)],
    ) -> Result<Self> {
        let name = plugin.name.clone();
        if !tenant.acquire_instance() {
            return Err(PluginError::Limit {
                plugin: name.to_string(),
                function: "(instantiate)".into(),
                limit: LimitBreach::boxed(
                    LimitKind::Instances,
                    Some(tenant.limits().max_instances as u64),
                    None,
                    format!(
                        "tenant '{}' has its maximum of {} plugin instances",
                        tenant.name(),
                        tenant.limits().max_instances
                    ),
                ),
                output: String::new(),
            });
        }
        let limits = tenant.limits();
        if let (false, Some(timeout)) = (plugin.host.interruptible, limits.call_timeout) {
            tenant.release_instance(0);
            return Err(PluginError::Limit {
                plugin: name.to_string(),
                function: "(instantiate)".into(),
                limit: LimitBreach::boxed(
                    LimitKind::Unenforceable,
                    Some(timeout.as_millis() as u64),
                    None,
                    format!(
                        "a call time limit of {} ms cannot be enforced: this host compiles \
                         plugins without interruption checks (trusted plugins only); set no \
                         call timeout for the tenant or use an interruptible host",
                        timeout.as_millis()
                    ),
                ),
                output: String::new(),
            });
        }
        let output = CapturedOutput::new(limits.max_log_bytes);
        let wasi = build_wasi(tenant, &output).inspect_err(|_| tenant.release_instance(0))?;
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: InstanceLimiter {
                tenant: tenant.clone(),
                memory: 0,
                refused: None,
            },
            output,
            plugin: name.clone(),
            config: config.to_vec(),
            call_deadline: limits.call_timeout.map(|t| Instant::now() + t),
            cpu_mark: Some(crate::host::thread_cpu()),
            log_bytes: 0,
        };
        let mut store = Store::new(&plugin.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        if plugin.host.interruptible {
            store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().tick()));
            store.set_epoch_deadline(1);
        }
        if plugin.host.fuel {
            store
                .set_fuel(limits.fuel_per_call.unwrap_or(u64::MAX))
                .map_err(|e| PluginError::Host(e.to_string()))?;
        }
        let instantiated = match plugin.kind() {
            PluginKind::Scalar => scalar::ScalarUdfPre::new(plugin.pre.clone())
                .and_then(|pre| pre.instantiate(&mut store))
                .map(Exports::Scalar),
            PluginKind::Aggregate => aggregate::AggregateUdfPre::new(plugin.pre.clone())
                .and_then(|pre| pre.instantiate(&mut store))
                .map(Exports::Aggregate),
            PluginKind::Source => source::SourceConnectorPre::new(plugin.pre.clone())
                .and_then(|pre| pre.instantiate(&mut store))
                .map(Exports::Source),
            PluginKind::Sink => sink::SinkConnectorPre::new(plugin.pre.clone())
                .and_then(|pre| pre.instantiate(&mut store))
                .map(Exports::Sink),
            PluginKind::Table => table::TableUdfPre::new(plugin.pre.clone())
                .and_then(|pre| pre.instantiate(&mut store))
                .map(Exports::Table),
        };
        match instantiated {
            Ok(exports) => Ok(Sandbox {
                store,
                exports,
                tenant: tenant.clone(),
                plugin: name,
                poisoned: false,
                refusal: None,
                interruptible: plugin.host.interruptible,
                resources: 0,
            }),
            Err(e) => {
                let err = classify(&mut store, tenant, &name, "(instantiate)", e);
                tenant.release_instance(store.data().limiter.memory);
                Err(err)
            }
        }
    }

    /// Refuses `bytes` a call returned (`what`: its output, a state, a position) over
    /// the tenant's output limit, and poisons the instance (it is not trusted with the
    /// next call).
    pub(crate) fn check_output(&mut self, function: &str, what: &str, bytes: usize) -> Result<()> {
        let max = self.tenant.limits().max_output_bytes;
        if bytes <= max {
            return Ok(());
        }
        self.poisoned = true;
        self.tenant.count_trap("output");
        Err(PluginError::output_limit(
            self.plugin.to_string(),
            function,
            what,
            max,
            bytes,
        ))
    }

    /// The limit a memory growth of the last call broke, if the call still returned.
    pub(crate) fn take_refusal(&mut self) -> Option<Box<LimitBreach>> {
        self.refusal.take()
    }

    /// Whether a failed call left the instance unusable.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Runs `f` as one guest call named `function`, under the limits.
    pub(crate) fn call<R: Send>(
        &mut self,
        function: &str,
        f: impl FnOnce(&mut Store<HostState>, &Exports) -> wasmtime::Result<R> + Send,
    ) -> Result<R> {
        throttle(&self.tenant);
        let timeout = self.tenant.limits().call_timeout;
        self.store.data_mut().call_deadline = timeout.map(|t| Instant::now() + t);
        self.store.data_mut().log_bytes = 0;
        let room = self.tenant.host_resource_room(self.resources);
        self.store.data_mut().table.set_max_capacity(room);
        if self.interruptible {
            self.store.set_epoch_deadline(1);
        }
        if let Some(fuel) = self.tenant.limits().fuel_per_call
            && self.store.get_fuel().is_ok()
        {
            self.store
                .set_fuel(fuel)
                .map_err(|e| PluginError::Host(e.to_string()))?;
        }
        let (store, exports) = (&mut self.store, &self.exports);
        // WASI's synchronous host functions drive their I/O on a Tokio runtime and must
        // not run on an async worker thread. The CPU time is the thread's that runs it.
        let result = fungi_reliability::outside_async_runtime(|| {
            store.data_mut().cpu_mark = Some(crate::host::thread_cpu());
            let result = f(store, exports);
            store.data_mut().charge_cpu();
            result
        });
        self.store.data_mut().call_deadline = None;
        let held = self.store.data_mut().table.iter_mut().count();
        self.tenant.account_host_resources(self.resources, held);
        self.resources = held;
        match result {
            Ok(r) => {
                self.refusal = self.store.data_mut().limiter.refused.take();
                let printed = self.store.data().output.take();
                if !printed.is_empty() {
                    tracing::info!(plugin = &*self.plugin, function, "{}", printed.trim_end());
                }
                Ok(r)
            }
            Err(e) => Err(self.failure(function, e)),
        }
    }

    /// Classifies a failed call and poisons the sandbox.
    fn failure(&mut self, function: &str, e: wasmtime::Error) -> PluginError {
        self.poisoned = true;
        classify(&mut self.store, &self.tenant, &self.plugin, function, e)
    }

    /// The plugin's manifest.
    pub(crate) fn manifest(&mut self) -> Result<Manifest> {
        let m = self.call("manifest", |store, exports| match exports {
            Exports::Scalar(b) => b.fungi_plugin_plugin().call_describe(store),
            Exports::Table(b) => b.fungi_plugin_plugin().call_describe(store),
            Exports::Aggregate(b) => b.fungi_plugin_plugin().call_describe(store),
            Exports::Source(b) => b.fungi_plugin_plugin().call_describe(store),
            Exports::Sink(b) => b.fungi_plugin_plugin().call_describe(store),
        })?;
        Ok(Manifest {
            name: m.name,
            version: m.version,
            description: m.description,
            network: m.capabilities.network,
            directories: m.capabilities.directories,
        })
    }

    /// The functions the plugin exports, with signatures decoded.
    pub(crate) fn functions(&mut self) -> Result<Vec<FunctionSignature>> {
        let plugin = self.plugin.to_string();
        let table = matches!(self.exports, Exports::Table(_));
        let list: Vec<(types_api::FunctionSignature, bool)> =
            self.call("functions", |store, exports| match exports {
                Exports::Scalar(b) => Ok(b
                    .fungi_plugin_scalar()
                    .call_functions(store)?
                    .into_iter()
                    .map(|s| (s, false))
                    .collect()),
                Exports::Table(b) => Ok(b
                    .fungi_plugin_table()
                    .call_functions(store)?
                    .into_iter()
                    .map(|s| (s, false))
                    .collect()),
                Exports::Aggregate(b) => Ok(b
                    .fungi_plugin_aggregate()
                    .call_functions(store)?
                    .into_iter()
                    .map(|a| (a.signature, a.retractable))
                    .collect()),
                Exports::Source(_) | Exports::Sink(_) => Ok(Vec::new()),
            })?;
        list.into_iter()
            .map(|(s, retractable)| {
                let contract = |reason: String| PluginError::Contract {
                    plugin: plugin.clone(),
                    function: s.name.clone(),
                    reason,
                };
                let arguments = crate::ipc::decode_fields(&s.arguments)
                    .map_err(|e| contract(format!("bad argument schema: {e}")))?;
                let mut returns = crate::ipc::decode_fields(&s.returns)
                    .map_err(|e| contract(format!("bad result schema: {e}")))?;
                let returns = if table {
                    // A table function's output columns, as the fields of one struct.
                    if returns.is_empty() {
                        return Err(contract("a table function returns no columns".into()));
                    }
                    arrow::datatypes::Field::new(
                        s.name.clone(),
                        arrow::datatypes::DataType::Struct(returns.into()),
                        false,
                    )
                } else {
                    returns
                        .drain(..)
                        .next()
                        .ok_or_else(|| contract("the result schema has no field".into()))?
                };
                Ok(FunctionSignature {
                    name: s.name.clone(),
                    arguments,
                    returns,
                    volatility: match s.volatility {
                        types_api::Volatility::Immutable => Volatility::Immutable,
                        types_api::Volatility::Stable => Volatility::Stable,
                        types_api::Volatility::Volatile => Volatility::Volatile,
                    },
                    retractable,
                })
            })
            .collect()
    }
}

/// What a failed call broke: a limit (memory, time, fuel, stack) or a trap.
fn classify(
    store: &mut Store<HostState>,
    tenant: &PluginTenant,
    plugin: &str,
    function: &str,
    e: wasmtime::Error,
) -> PluginError {
    let output = store.data().output.take();
    let (plugin, function) = (plugin.to_string(), function.to_string());
    if let Some(refused) = store.data_mut().limiter.refused.take() {
        tenant.count_trap("memory");
        return PluginError::Limit {
            plugin,
            function,
            limit: refused,
            output,
        };
    }
    let limit = |reason: &'static str, limit: Box<LimitBreach>| {
        tenant.count_trap(reason);
        PluginError::Limit {
            plugin: plugin.clone(),
            function: function.clone(),
            limit,
            output: output.clone(),
        }
    };
    if matches!(
        e.downcast_ref::<wasmtime::component::ResourceTableError>(),
        Some(wasmtime::component::ResourceTableError::Full)
    ) {
        let l = tenant.limits();
        return limit(
            "resources",
            LimitBreach::boxed(
                LimitKind::HostResources,
                Some(l.max_host_resources as u64),
                Some(tenant.host_resources() as u64),
                format!(
                    "host resource limit reached: at most {} open files, sockets and streams \
                     per instance, {} for the tenant ({} held)",
                    l.max_host_resources_per_instance,
                    l.max_host_resources,
                    tenant.host_resources()
                ),
            ),
        );
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            let ms = tenant.limits().call_timeout.unwrap_or_default().as_millis();
            limit(
                "timeout",
                LimitBreach::boxed(
                    LimitKind::CallTime,
                    Some(ms as u64),
                    None,
                    format!("call time limit of {ms} ms exceeded"),
                ),
            )
        }
        Some(wasmtime::Trap::OutOfFuel) => {
            let fuel = tenant.limits().fuel_per_call.unwrap_or(0);
            limit(
                "fuel",
                LimitBreach::boxed(
                    LimitKind::Fuel,
                    Some(fuel),
                    None,
                    format!("fuel limit of {fuel} per call exceeded"),
                ),
            )
        }
        Some(wasmtime::Trap::StackOverflow) => limit(
            "stack",
            LimitBreach::boxed(
                LimitKind::Stack,
                None,
                None,
                "stack limit exceeded (too deep recursion)",
            ),
        ),
        trap => {
            tenant.count_trap("trap");
            PluginError::Trap {
                plugin,
                function,
                reason: match trap {
                    // Rust and C guests keep their stack in linear memory, below their
                    // data: overflowing it is an access below address 0.
                    Some(wasmtime::Trap::MemoryOutOfBounds) => format!(
                        "{} (also how a guest overflows the stack it keeps in its linear \
                         memory: too deep a recursion?)",
                        wasmtime::Trap::MemoryOutOfBounds
                    ),
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                },
                output,
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let memory = self.store.data().limiter.memory;
        self.tenant.release_instance(memory);
        self.tenant.account_host_resources(self.resources, 0);
    }
}

/// WASI for a tenant: nothing ambient; stdout/stderr captured; directories and network
/// addresses only as granted.
fn build_wasi(tenant: &PluginTenant, output: &CapturedOutput) -> Result<WasiCtx> {
    let mut b = WasiCtx::builder();
    b.stdout(output.clone()).stderr(output.clone());
    for (host, guest, writable) in &tenant.limits().directories {
        let perms = if *writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(host, guest, perms).map_err(|e| {
            PluginError::Host(format!("granting directory {}: {e}", host.display()))
        })?;
    }
    let allowed: Vec<std::net::SocketAddr> = tenant
        .limits()
        .network_allow
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    b.allow_ip_name_lookup(false);
    b.allow_udp(false);
    b.allow_tcp(!allowed.is_empty());
    b.socket_addr_check(move |addr, usage| {
        use wasmtime_wasi::sockets::SocketAddrUse;
        let ok = match usage {
            // The implicit bind of an outgoing connection (wildcard address, any port).
            SocketAddrUse::TcpBind => {
                !allowed.is_empty() && addr.ip().is_unspecified() && addr.port() == 0
            }
            SocketAddrUse::TcpConnect => allowed.contains(&addr),
            _ => false,
        };
        Box::pin(async move { ok })
    });
    Ok(b.build())
}
