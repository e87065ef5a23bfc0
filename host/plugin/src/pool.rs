//! Instances of one plugin function (scalar or table), pooled for one tenant.
//!
//! Calls may come from many threads: each takes an idle instance (or makes one, within
//! the tenant's instance limit) and gives it back; an instance whose call trapped or
//! broke a limit is dropped, so the next call gets a fresh one.

use std::sync::{Arc, Mutex};

use arrow::array::ArrayRef;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::bindings::scalar::fungi::plugin::types::PluginError as GuestError;
use crate::error::{LimitBreach, PluginError, Result};
use crate::host::HostState;
use crate::ipc;
use crate::limits::PluginTenant;
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::sandbox::{Exports, Sandbox};

/// One instance with the function resource created in it.
struct Ready {
    sandbox: Sandbox,
    function: ResourceAny,
    /// The encoded arguments, reused across calls.
    input: Vec<u8>,
}

/// The pooled instances of one function.
pub(crate) struct FunctionPool {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) tenant: Arc<PluginTenant>,
    pub(crate) signature: FunctionSignature,
    config: Vec<(String, String)>,
    idle: Mutex<Vec<Ready>>,
}

impl std::fmt::Debug for FunctionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionPool")
            .field("plugin", &self.plugin.name())
            .field("function", &self.signature.name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn guest_message(e: &GuestError) -> String {
    match e {
        GuestError::InvalidInput(m) => format!("invalid input: {m}"),
        GuestError::Unsupported(m) => format!("unsupported: {m}"),
        GuestError::Internal(m) => m.clone(),
    }
}

impl FunctionPool {
    /// Function `name` of `plugin` (a plugin of `kind`), run with `tenant`'s limits.
    pub(crate) fn new(
        plugin: Arc<Plugin>,
        tenant: Arc<PluginTenant>,
        name: &str,
        config: Vec<(String, String)>,
        kind: PluginKind,
    ) -> Result<Self> {
        plugin.expect_kind(kind)?;
        let signature = plugin.function(name)?.clone();
        Ok(FunctionPool {
            plugin,
            tenant,
            signature,
            config,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn instance(&self) -> Result<Ready> {
        if let Some(r) = self.idle.lock().expect("idle lock").pop() {
            return Ok(r);
        }
        let mut sandbox = Sandbox::new(&self.plugin, &self.tenant, &self.config)?;
        let name = self.signature.name.clone();
        let created = sandbox.call("create", |store, exports| match exports {
            Exports::Scalar(b) => {
                b.fungi_plugin_scalar()
                    .scalar_function()
                    .call_create(store, &name, &self.config)
            }
            Exports::Table(b) => {
                b.fungi_plugin_table()
                    .table_function()
                    .call_create(store, &name, &self.config)
            }
            _ => unreachable!("checked kind"),
        })?;
        let function = created.map_err(|e| self.guest_error(&e))?;
        Ok(Ready {
            sandbox,
            function,
            input: Vec::new(),
        })
    }

    pub(crate) fn guest_error(&self, e: &GuestError) -> PluginError {
        PluginError::Guest {
            plugin: self.plugin.name().to_string(),
            function: self.signature.name.clone(),
            message: guest_message(e),
        }
    }

    pub(crate) fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.plugin.name().to_string(),
            function: self.signature.name.clone(),
            reason,
        }
    }

    /// Encodes `args` (`rows` rows), calls the function through `invoke` and returns
    /// what it returned, after the tenant's output limit (`size` measures it).
    pub(crate) fn call<T: Send>(
        &self,
        args: &[ArrayRef],
        rows: usize,
        invoke: impl FnOnce(
            &mut Store<HostState>,
            &Exports,
            ResourceAny,
            &Vec<u8>,
        ) -> wasmtime::Result<std::result::Result<T, GuestError>>
        + Send,
        size: impl FnOnce(&T) -> usize,
    ) -> Result<T> {
        if args.len() != self.signature.arguments.len() {
            return Err(self.contract(format!(
                "called with {} arguments, it takes {}",
                args.len(),
                self.signature.arguments.len()
            )));
        }
        let mut ready = self.instance()?;
        let mut input = std::mem::take(&mut ready.input);
        ipc::arguments(args, rows)
            .and_then(|b| ipc::encode_into(&b, &mut input))
            .map_err(|e| PluginError::Host(format!("encoding arguments: {e}")))?;
        let function = ready.function;
        let result = ready.sandbox.call(&self.signature.name, |store, exports| {
            invoke(store, exports, function, &input)
        });
        ready.input = input;
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                if let Some(limit) = ready.sandbox.take_refusal() {
                    // The guest caught a refused memory growth and gave up: report the
                    // limit, and drop the instance as after any broken limit.
                    self.tenant.count_trap("memory");
                    return Err(PluginError::Limit {
                        plugin: self.plugin.name().to_string(),
                        function: self.signature.name.clone(),
                        limit: Box::new(LimitBreach {
                            message: format!("{limit}; the plugin said: {}", guest_message(&e)),
                            ..*limit
                        }),
                        output: String::new(),
                    });
                }
                self.idle.lock().expect("idle lock").push(ready);
                return Err(self.guest_error(&e));
            }
            Err(e) => return Err(e),
        };
        let (max, bytes) = (self.tenant.limits().max_output_bytes, size(&out));
        if bytes > max {
            // The instance is discarded: a plugin over its output limit is not trusted
            // with the next batch.
            return Err(PluginError::output_limit(
                self.plugin.name(),
                self.signature.name.clone(),
                "the output",
                max,
                bytes,
            ));
        }
        // An instance whose linear memory has grown past three quarters of its limit is
        // replaced by a fresh one (from the pre-instantiated component) rather than kept:
        // calls are stateless, and some guest runtimes never give memory back
        // (componentize-py's CPython grows with every call until its limit), which
        // would otherwise fail a long-running job once the limit is reached.
        let grown = ready.sandbox.store.data().limiter.memory
            > self.tenant.limits().memory_per_instance / 4 * 3;
        if grown {
            tracing::debug!(plugin = %self.plugin.name(), function = %self.signature.name,
                "replacing a plugin instance whose memory grew past 3/4 of its limit");
        }
        if !ready.sandbox.is_poisoned() && !grown {
            self.idle.lock().expect("idle lock").push(ready);
        }
        Ok(out)
    }
}
