//! Batches across the boundary: Arrow IPC stream bytes (a schema and at most one batch).

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use std::sync::Arc;

/// Encodes `batch` (schema and rows).
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
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

/// Encodes `batch` into `out` (cleared first), reusing its allocation.
pub fn encode_into(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), arrow::error::ArrowError> {
    out.clear();
    let mut w = StreamWriter::try_new(&mut *out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(())
}

/// Decodes bytes from [`encode`] without copying the column data: the batch's buffers
/// point into `bytes` (misaligned ones, if any, are copied).
pub fn decode_owned(
    bytes: Vec<u8>,
) -> Result<(SchemaRef, Option<RecordBatch>), arrow::error::ArrowError> {
    let mut buffer = arrow::buffer::Buffer::from_vec(bytes);
    let mut decoder = arrow::ipc::reader::StreamDecoder::new().with_require_alignment(false);
    let mut batch = None;
    while !buffer.is_empty() {
        let before = buffer.len();
        match decoder.decode(&mut buffer)? {
            Some(b) if batch.is_none() => batch = Some(b),
            _ if buffer.len() == before => break,
            _ => {}
        }
    }
    decoder.finish()?;
    let schema = decoder
        .schema()
        .ok_or_else(|| arrow::error::ArrowError::IpcError("no schema in the stream".into()))?;
    Ok((schema, batch))
}

/// Decodes bytes from [`encode`]: the schema and the batch, if any.
pub fn decode(bytes: &[u8]) -> Result<(SchemaRef, Option<RecordBatch>), arrow::error::ArrowError> {
    let mut r = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = r.schema();
    let batch = r.next().transpose()?;
    Ok((schema, batch))
}

/// The fields of an encoded schema.
pub fn decode_fields(bytes: &[u8]) -> Result<Vec<Field>, arrow::error::ArrowError> {
    let (schema, _) = decode(bytes)?;
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
