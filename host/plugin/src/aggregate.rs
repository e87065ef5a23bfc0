//! Aggregate functions of a plugin as Fungi aggregates: one accumulator (a guest
//! resource) holds every group of an operator, and each batch is one call carrying a
//! group id per row, so plugin aggregates work in windows, in updating aggregations and
//! in SQL like the native ones.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray};
use arrow::datatypes::DataType;
use fungi_common::FungiError;
use fungi_streaming::aggregate::{AggregateFunction, GroupsAccumulator};
use wasmtime::component::ResourceAny;

use crate::error::{PluginError, Result};
use crate::ipc;
use crate::limits::PluginTenant;
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::pool::guest_message;
use crate::sandbox::{Exports, Sandbox};

/// An aggregate function of a plugin, for one tenant.
pub struct AggregateUdf {
    plugin: Arc<Plugin>,
    tenant: Arc<PluginTenant>,
    signature: FunctionSignature,
    config: Vec<(String, String)>,
}

impl std::fmt::Debug for AggregateUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateUdf")
            .field("plugin", &self.plugin.name())
            .field("function", &self.signature.name)
            .finish()
    }
}

impl AggregateUdf {
    /// Aggregate `name` of `plugin`, run with `tenant`'s limits and `config`.
    pub fn new(
        plugin: Arc<Plugin>,
        tenant: Arc<PluginTenant>,
        name: &str,
        config: Vec<(String, String)>,
    ) -> Result<Self> {
        plugin.expect_kind(PluginKind::Aggregate)?;
        let signature = plugin.function(name)?.clone();
        Ok(AggregateUdf {
            plugin,
            tenant,
            signature,
            config,
        })
    }

    /// Name and Arrow signature.
    pub fn signature(&self) -> &FunctionSignature {
        &self.signature
    }

    /// A new accumulator (a fresh instance holding the guest resource).
    pub fn create_accumulator(&self) -> Result<WasmAccumulator> {
        let mut sandbox = Sandbox::new(&self.plugin, &self.tenant, &self.config)?;
        let name = self.signature.name.clone();
        let created = sandbox.call(
            &format!("{name} (create)"),
            |store, exports| match exports {
                Exports::Aggregate(b) => {
                    b.fungi_plugin_aggregate()
                        .accumulator()
                        .call_create(store, &name, &self.config)
                }
                _ => unreachable!("checked kind"),
            },
        )?;
        let resource = created.map_err(|e| PluginError::Guest {
            plugin: self.plugin.name().to_string(),
            function: name.clone(),
            message: guest_message(&e),
        })?;
        Ok(WasmAccumulator {
            sandbox,
            resource,
            plugin: self.plugin.name().to_string(),
            function: name,
            returns: self.signature.returns.data_type().clone(),
            max_output: self.tenant.limits().max_output_bytes,
        })
    }
}

impl AggregateFunction for AggregateUdf {
    fn name(&self) -> &str {
        &self.signature.name
    }

    fn return_type(&self, input: &[DataType]) -> fungi_common::Result<DataType> {
        let expected: Vec<&DataType> = self
            .signature
            .arguments
            .iter()
            .map(|f| f.data_type())
            .collect();
        if input.iter().collect::<Vec<_>>() != expected {
            return Err(FungiError::Plan(format!(
                "{} takes ({}), got ({})",
                self.signature.name,
                expected
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                input
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(self.signature.returns.data_type().clone())
    }

    fn accumulator(&self, input: &[DataType]) -> fungi_common::Result<Box<dyn GroupsAccumulator>> {
        self.return_type(input)?;
        Ok(Box::new(self.create_accumulator()?))
    }

    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> fungi_common::Result<Option<Box<dyn GroupsAccumulator>>> {
        if self.signature.retractable {
            self.accumulator(input).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The state of a plugin aggregate for every group of an operator, inside one instance.
pub struct WasmAccumulator {
    sandbox: Sandbox,
    resource: ResourceAny,
    plugin: String,
    function: String,
    returns: DataType,
    max_output: usize,
}

impl WasmAccumulator {
    fn guest<T>(
        &self,
        r: std::result::Result<T, crate::bindings::scalar::fungi::plugin::types::PluginError>,
    ) -> Result<T> {
        r.map_err(|e| PluginError::Guest {
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            message: guest_message(&e),
        })
    }

    /// How errors name a call of the accumulator's `method`: the aggregate first.
    fn method(&self, method: &str) -> String {
        format!("{} ({method})", self.function)
    }

    fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.plugin.clone(),
            function: self.function.clone(),
            reason,
        }
    }

    fn fold(
        &mut self,
        values: &[ArrayRef],
        groups: &[u32],
        total: usize,
        retract: bool,
    ) -> Result<()> {
        let rows = groups.len();
        let args = ipc::arguments(values, rows)
            .and_then(|b| ipc::encode(&b))
            .map_err(|e| PluginError::Host(format!("encoding arguments: {e}")))?;
        let resource = self.resource;
        let call = if retract { "retract" } else { "update" };
        let r = self.sandbox.call(&self.method(call), |store, exports| {
            let Exports::Aggregate(b) = exports else {
                unreachable!("checked kind")
            };
            let acc = b.fungi_plugin_aggregate().accumulator();
            if retract {
                acc.call_retract(store, resource, &args, groups, total as u32)
            } else {
                acc.call_update(store, resource, &args, groups, total as u32)
            }
        })?;
        self.guest(r)
    }

    /// The state of each of `groups` as bytes (for checkpoints).
    pub fn snapshot(&mut self, groups: &[u32]) -> Result<Vec<Vec<u8>>> {
        let resource = self.resource;
        let r = self
            .sandbox
            .call(&self.method("snapshot"), |store, exports| {
                let Exports::Aggregate(b) = exports else {
                    unreachable!("checked kind")
                };
                b.fungi_plugin_aggregate()
                    .accumulator()
                    .call_snapshot(store, resource, groups)
            })?;
        let states = self.guest(r)?;
        let bytes: usize = states.iter().map(Vec::len).sum();
        self.sandbox
            .check_output(&self.method("snapshot"), "state", bytes)?;
        if states.len() != groups.len() {
            return Err(self.contract(format!(
                "snapshot returned {} states for {} groups",
                states.len(),
                groups.len()
            )));
        }
        Ok(states)
    }

    /// Restores `groups` from [`snapshot`](Self::snapshot) bytes.
    pub fn restore(&mut self, groups: &[u32], states: &[Vec<u8>]) -> Result<()> {
        let resource = self.resource;
        let r = self
            .sandbox
            .call(&self.method("restore"), |store, exports| {
                let Exports::Aggregate(b) = exports else {
                    unreachable!("checked kind")
                };
                b.fungi_plugin_aggregate()
                    .accumulator()
                    .call_restore(store, resource, groups, states)
            })?;
        self.guest(r)
    }
}

impl GroupsAccumulator for WasmAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total_num_groups: usize,
    ) -> fungi_common::Result<()> {
        Ok(self.fold(values, group_indices, total_num_groups, false)?)
    }

    fn retract_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[u32],
        total_num_groups: usize,
    ) -> fungi_common::Result<()> {
        Ok(self.fold(values, group_indices, total_num_groups, true)?)
    }

    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> fungi_common::Result<()> {
        let resource = self.resource;
        let r = self.sandbox.call(&self.method("merge"), |store, exports| {
            let Exports::Aggregate(b) = exports else {
                unreachable!("checked kind")
            };
            b.fungi_plugin_aggregate().accumulator().call_merge(
                store,
                resource,
                dst_src,
                total as u32,
            )
        })?;
        Ok(self.guest(r)?)
    }

    fn evaluate(&mut self, groups: &[u32]) -> fungi_common::Result<ArrayRef> {
        let resource = self.resource;
        let r = self
            .sandbox
            .call(&self.method("evaluate"), |store, exports| {
                let Exports::Aggregate(b) = exports else {
                    unreachable!("checked kind")
                };
                b.fungi_plugin_aggregate()
                    .accumulator()
                    .call_evaluate(store, resource, groups)
            })?;
        let bytes = self.guest(r)?;
        if bytes.len() > self.max_output {
            return Err(PluginError::output_limit(
                self.plugin.clone(),
                self.function.clone(),
                "an evaluated batch",
                self.max_output,
                bytes.len(),
            )
            .into());
        }
        let (_, batch) =
            ipc::decode_from_guest(bytes, self.max_output, &self.plugin, &self.function)?;
        let batch = batch.ok_or_else(|| self.contract("the result has no batch".into()))?;
        if batch.num_columns() != 1
            || batch.num_rows() != groups.len()
            || batch.column(0).data_type() != &self.returns
        {
            return Err(self
                .contract(format!(
                    "evaluate returned {} columns, {} rows of {:?} for {} groups of {}",
                    batch.num_columns(),
                    batch.num_rows(),
                    batch
                        .schema()
                        .fields()
                        .first()
                        .map(|f| f.data_type().clone()),
                    groups.len(),
                    self.returns
                ))
                .into());
        }
        Ok(batch.column(0).clone())
    }

    fn reset(&mut self, groups: &[u32]) -> fungi_common::Result<()> {
        let resource = self.resource;
        self.sandbox.call(&self.method("reset"), |store, exports| {
            let Exports::Aggregate(b) = exports else {
                unreachable!("checked kind")
            };
            b.fungi_plugin_aggregate()
                .accumulator()
                .call_reset(store, resource, groups)
        })?;
        Ok(())
    }

    fn size(&self) -> usize {
        self.sandbox.store.data().limiter.memory
    }

    // The plugin's own state bytes, one per group, are what checkpoints save.
    fn state(&mut self, groups: &[u32]) -> fungi_common::Result<Vec<ArrayRef>> {
        let states = self.snapshot(groups)?;
        Ok(vec![Arc::new(BinaryArray::from_iter_values(states))])
    }

    // State is restored into fresh groups only, where setting a group is merging into
    // an empty one.
    fn merge_state(
        &mut self,
        state: &[ArrayRef],
        groups: &[u32],
        _total: usize,
    ) -> fungi_common::Result<()> {
        let bytes = state
            .first()
            .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
            .ok_or_else(|| self.contract("checkpointed state is not binary".into()))?;
        let states: Vec<Vec<u8>> = bytes
            .iter()
            .map(|b| b.unwrap_or_default().to_vec())
            .collect();
        Ok(self.restore(groups, &states).map_err(|e| {
            self.contract(format!(
                "cannot read the state saved in the checkpoint (was the plugin's state format changed?): {e}"
            ))
        })?)
    }
}
