//! Batches across the boundary: Arrow IPC stream bytes (a schema and at most one batch).

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use std::sync::Arc;

/// Encodes `batch` (schema and rows). View columns are compacted first
/// ([`fungi_common::compact`]): a slice of a larger batch would otherwise hand the
/// plugin, and count against its memory, the larger batch's strings.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let batch = &fungi_common::compact::compact_views(batch.clone())?;
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 512);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// Encodes a schema alone (a signature).
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

/// Encodes `batch` into `out` (cleared first), reusing its allocation; view columns are
/// compacted as [`encode`] does.
pub fn encode_into(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
    let batch = &fungi_common::compact::compact_views(batch.clone())?;
    out.clear();
    let mut w = StreamWriter::try_new(&mut *out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(())
}

/// Decodes what a plugin returned: untrusted bytes, checked before arrow-rs decodes them
/// ([`fungi_common::untrusted_ipc`]: no compressed bodies, every declared size within
/// the bytes and the limits) and measured after, so that `max_bytes` bounds what the host
/// materialises, not only what crossed the boundary. Errors name `plugin` and
/// `function`: a malformed stream breaks the contract, a large one the output limit.
pub(crate) fn decode_from_guest(
    bytes: Vec<u8>,
    max_bytes: usize,
    plugin: &str,
    function: &str,
) -> Result<(SchemaRef, Option<RecordBatch>), crate::error::PluginError> {
    use fungi_common::untrusted_ipc::{self, IpcLimits, UntrustedIpcError};
    let limits = IpcLimits {
        max_bytes,
        ..IpcLimits::default()
    };
    untrusted_ipc::decode(bytes, &limits).map_err(|e| match e {
        UntrustedIpcError::Limit { .. } => crate::error::PluginError::Limit {
            plugin: plugin.to_string(),
            function: function.to_string(),
            limit: crate::error::LimitBreach::boxed(
                crate::error::LimitKind::Output,
                Some(max_bytes as u64),
                None,
                format!("output limit of {max_bytes} bytes per call exceeded: {e}"),
            ),
            output: String::new(),
        },
        e => crate::error::PluginError::Contract {
            plugin: plugin.to_string(),
            function: function.to_string(),
            reason: format!("bad result batch: {e}"),
        },
    })
}

/// The fields of a schema a plugin declared (untrusted bytes, checked as results are).
pub fn decode_fields(bytes: &[u8]) -> Result<Vec<Field>, String> {
    let limits = fungi_common::untrusted_ipc::IpcLimits {
        max_bytes: 1 << 20,
        ..Default::default()
    };
    let (schema, _) =
        fungi_common::untrusted_ipc::decode(bytes.to_vec(), &limits).map_err(|e| e.to_string())?;
    Ok(schema.fields().iter().map(|f| f.as_ref().clone()).collect())
}

/// A batch of `columns` named `arg0`, `arg1`, ... with `rows` rows (for zero columns).
pub fn arguments(
    columns: &[arrow::array::ArrayRef],
    rows: usize,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("arg{i}"), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns.to_vec(),
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}
