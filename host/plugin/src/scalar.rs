//! Scalar functions of a plugin, callable on Arrow arrays like native functions.

use std::sync::{Arc, Mutex};

use arrow::array::ArrayRef;
use wasmtime::component::ResourceAny;

use crate::bindings::scalar::fungi::plugin::types::PluginError as GuestError;
use crate::error::{PluginError, Result};
use crate::ipc;
use crate::limits::Tenant;
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::sandbox::{Exports, Sandbox};

/// One instance with the function resource created in it.
struct Ready {
    sandbox: Sandbox,
    function: ResourceAny,
    /// The encoded arguments, reused across calls.
    input: Vec<u8>,
}

/// A scalar function of a plugin, for one tenant. Calls may come from many threads: each
/// takes an idle instance (or makes one, within the tenant's instance limit) and gives
/// it back; an instance whose call failed is dropped.
pub struct ScalarUdf {
    plugin: Arc<Plugin>,
    tenant: Arc<Tenant>,
    signature: FunctionSignature,
    config: Vec<(String, String)>,
    idle: Mutex<Vec<Ready>>,
}

impl std::fmt::Debug for ScalarUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalarUdf")
            .field("plugin", &self.plugin.name())
            .field("function", &self.signature.name)
            .finish()
    }
}

pub(crate) fn guest_message(e: &GuestError) -> String {
    match e {
        GuestError::InvalidInput(m) => format!("invalid input: {m}"),
        GuestError::Unsupported(m) => format!("unsupported: {m}"),
        GuestError::Internal(m) => m.clone(),
    }
}

impl ScalarUdf {
    /// Function `name` of `plugin`, run with `tenant`'s limits and `config`.
    pub fn new(
        plugin: Arc<Plugin>,
        tenant: Arc<Tenant>,
        name: &str,
        config: Vec<(String, String)>,
    ) -> Result<Self> {
        plugin.expect_kind(PluginKind::Scalar)?;
        let signature = plugin.function(name)?.clone();
        Ok(ScalarUdf {
            plugin,
            tenant,
            signature,
            config,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Name and Arrow signature.
    pub fn signature(&self) -> &FunctionSignature {
        &self.signature
    }

    /// The plugin it comes from.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
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
            _ => unreachable!("checked kind"),
        })?;
        let function = created.map_err(|e| self.guest_error(&e))?;
        Ok(Ready {
            sandbox,
            function,
            input: Vec::new(),
        })
    }

    fn guest_error(&self, e: &GuestError) -> PluginError {
        PluginError::Guest {
            plugin: self.plugin.name().to_string(),
            function: self.signature.name.clone(),
            message: guest_message(e),
        }
    }

    fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.plugin.name().to_string(),
            function: self.signature.name.clone(),
            reason,
        }
    }

    /// Evaluates the function on `args` (`rows` rows); returns one value per row.
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
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
        let result = ready
            .sandbox
            .call(&self.signature.name, |store, exports| match exports {
                Exports::Scalar(b) => b
                    .fungi_plugin_scalar()
                    .scalar_function()
                    .call_call(store, function, &input),
                _ => unreachable!("checked kind"),
            });
        ready.input = input;
        let bytes = match result {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                self.idle.lock().expect("idle lock").push(ready);
                return Err(self.guest_error(&e));
            }
            Err(e) => return Err(e),
        };
        let max = self.tenant.limits().max_output_bytes;
        if bytes.len() > max {
            // The instance is discarded: a plugin over its output limit is not trusted
            // with the next batch.
            return Err(PluginError::Limit {
                plugin: self.plugin.name().to_string(),
                function: self.signature.name.clone(),
                limit: format!(
                    "output limit of {max} bytes per call exceeded ({} bytes)",
                    bytes.len()
                ),
                output: String::new(),
            });
        }
        if !ready.sandbox.is_poisoned() {
            self.idle.lock().expect("idle lock").push(ready);
        }
        let (_, batch) = ipc::decode_owned(bytes)
            .map_err(|e| self.contract(format!("bad result batch: {e}")))?;
        let batch = batch.ok_or_else(|| self.contract("the result has no batch".into()))?;
        if batch.num_columns() != 1 || batch.num_rows() != rows {
            return Err(self.contract(format!(
                "returned {} columns and {} rows for {rows} input rows; expected 1 column, {rows} rows",
                batch.num_columns(),
                batch.num_rows()
            )));
        }
        let column = batch.column(0).clone();
        if column.data_type() != self.signature.returns.data_type() {
            return Err(self.contract(format!(
                "returned {} but declares {}",
                column.data_type(),
                self.signature.returns.data_type()
            )));
        }
        Ok(column)
    }
}
