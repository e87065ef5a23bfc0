//! Scalar functions of a plugin, callable on Arrow arrays like native functions.

use std::sync::Arc;

use arrow::array::ArrayRef;

use crate::error::Result;
use crate::ipc;
use crate::limits::PluginTenant;
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::pool::FunctionPool;
use crate::sandbox::Exports;

/// A scalar function of a plugin, for one tenant. Calls may come from many threads (see
/// [`FunctionPool`]).
#[derive(Debug)]
pub struct ScalarUdf {
    pool: FunctionPool,
}

impl ScalarUdf {
    /// Function `name` of `plugin`, run with `tenant`'s limits and `config`.
    pub fn new(
        plugin: Arc<Plugin>,
        tenant: Arc<PluginTenant>,
        name: &str,
        config: Vec<(String, String)>,
    ) -> Result<Self> {
        Ok(ScalarUdf {
            pool: FunctionPool::new(plugin, tenant, name, config, PluginKind::Scalar)?,
        })
    }

    /// Name and Arrow signature.
    pub fn signature(&self) -> &FunctionSignature {
        &self.pool.signature
    }

    /// The plugin it comes from.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.pool.plugin
    }

    /// Evaluates the function on `args` (`rows` rows); returns one value per row.
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let pool = &self.pool;
        let bytes = pool.call(
            args,
            rows,
            |store, exports, function, input| match exports {
                Exports::Scalar(b) => b
                    .fungi_plugin_scalar()
                    .scalar_function()
                    .call_call(store, function, input),
                _ => unreachable!("checked kind"),
            },
            Vec::len,
        )?;
        let (_, batch) = ipc::decode_from_guest(
            bytes,
            pool.tenant.limits().max_output_bytes,
            pool.plugin.name(),
            &pool.signature.name,
        )?;
        let batch = batch.ok_or_else(|| pool.contract("the result has no batch".into()))?;
        if batch.num_columns() != 1 || batch.num_rows() != rows {
            return Err(pool.contract(format!(
                "returned {} columns and {} rows for {rows} input rows; expected 1 column, {rows} rows",
                batch.num_columns(),
                batch.num_rows()
            )));
        }
        let column = batch.column(0).clone();
        if column.data_type() != pool.signature.returns.data_type() {
            return Err(pool.contract(format!(
                "returned {} but declares {}",
                column.data_type(),
                pool.signature.returns.data_type()
            )));
        }
        Ok(column)
    }
}
