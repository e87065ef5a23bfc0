//! Table functions of a plugin: each input row gives zero or more output rows (as
//! Flink's `LATERAL TABLE`), computed for a whole batch per call.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Fields};

use crate::error::Result;
use crate::ipc;
use crate::limits::PluginTenant;
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::pool::FunctionPool;
use crate::sandbox::Exports;

/// The rows a table function produced for a batch: the output columns, and for each
/// output row the input row it came from.
#[derive(Debug, Clone)]
pub struct TableRows {
    /// The output rows (the function's declared columns).
    pub rows: RecordBatch,
    /// For each output row, the index of its input row (below the input's row count).
    pub input_rows: UInt32Array,
}

/// A table function of a plugin, for one tenant. Calls may come from many threads.
#[derive(Debug)]
pub struct TableUdf {
    pool: FunctionPool,
    columns: Fields,
}

impl TableUdf {
    /// Table function `name` of `plugin`, run with `tenant`'s limits and `config`.
    pub fn new(
        plugin: Arc<Plugin>,
        tenant: Arc<PluginTenant>,
        name: &str,
        config: Vec<(String, String)>,
    ) -> Result<Self> {
        let pool = FunctionPool::new(plugin, tenant, name, config, PluginKind::Table)?;
        let DataType::Struct(columns) = pool.signature.returns.data_type().clone() else {
            unreachable!("table function signatures return a struct of their columns")
        };
        Ok(TableUdf { pool, columns })
    }

    /// Name and Arrow signature (`returns` is a struct of the output columns).
    pub fn signature(&self) -> &FunctionSignature {
        &self.pool.signature
    }

    /// The output columns.
    pub fn columns(&self) -> &Fields {
        &self.columns
    }

    /// Evaluates the function on `args` (`rows` input rows).
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<TableRows> {
        let pool = &self.pool;
        let (bytes, input_rows) = pool.call(
            args,
            rows,
            |store, exports, function, input| match exports {
                Exports::Table(b) => b
                    .fungi_plugin_table()
                    .table_function()
                    .call_call(store, function, input),
                _ => unreachable!("checked kind"),
            },
            |(bytes, index)| bytes.len() + index.len() * 4,
        )?;
        let (_, batch) = ipc::decode_from_guest(
            bytes,
            pool.tenant.limits().max_output_bytes,
            pool.plugin.name(),
            &pool.signature.name,
        )?;
        let batch = match batch {
            Some(b) => b,
            None => RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::new(
                self.columns.clone(),
            ))),
        };
        let types = |fields: &Fields| fields.iter().map(|f| f.data_type().clone()).collect();
        let (got, want): (Vec<DataType>, Vec<DataType>) =
            (types(batch.schema().fields()), types(&self.columns));
        if got != want {
            return Err(pool.contract(format!("returned columns {got:?} but declares {want:?}")));
        }
        if input_rows.len() != batch.num_rows() {
            return Err(pool.contract(format!(
                "returned {} rows but {} input row indices",
                batch.num_rows(),
                input_rows.len()
            )));
        }
        if let Some(bad) = input_rows.iter().position(|&r| r as usize >= rows) {
            return Err(pool.contract(format!(
                "output row {bad} names input row {} of {rows}",
                input_rows[bad]
            )));
        }
        // The declared names (the plugin's may differ only in name).
        let rows_out = RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(self.columns.clone())),
            batch.columns().to_vec(),
        )
        .map_err(|e| pool.contract(format!("bad result batch: {e}")))?;
        Ok(TableRows {
            rows: rows_out,
            input_rows: UInt32Array::from(input_rows),
        })
    }
}
