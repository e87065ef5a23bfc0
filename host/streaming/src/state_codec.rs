//! Encoding of operator state for checkpoints: Arrow IPC for rows, key-group filtering
//! for restores at another parallelism.

use std::io::Cursor;
use std::ops::Range;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use fungi_common::compact::compact_views;
use fungi_common::keys::{KeyGroups, hash_columns};
use fungi_common::{FungiError, Result};

/// Encodes `batch` as an Arrow IPC stream (its view columns compacted first, so that a
/// slice of a larger batch does not write the larger batch's strings).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let batch = &compact_views(batch.clone())?;
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Decodes a batch written by [`encode_batch`].
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| FungiError::State(format!("state rows are not readable: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| FungiError::State(format!("state rows are not readable: {e}")))?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

/// Which subtask's share of the key space a restore keeps.
#[derive(Debug, Clone)]
pub struct KeyGroupFilter {
    /// The job's key groups.
    pub key_groups: KeyGroups,
    /// The key groups the restoring subtask owns.
    pub owned: Range<u32>,
}

impl KeyGroupFilter {
    /// The rows of `batch` whose key (its columns `keys`) falls in the owned key groups.
    pub fn retain(&self, batch: RecordBatch, keys: &[usize]) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = keys.iter().map(|&i| batch.column(i).clone()).collect();
        let mask = self.mask(&columns, batch.num_rows())?;
        Ok(arrow::compute::filter_record_batch(&batch, &mask)?)
    }

    /// For each row, whether its key (the `keys` columns, hashed as the partitioner
    /// hashes them) falls in the owned key groups.
    pub fn mask(&self, keys: &[ArrayRef], rows: usize) -> Result<BooleanArray> {
        if keys.is_empty() {
            // Unkeyed state lives in the first subtask.
            return Ok(BooleanArray::from(vec![self.owned.start == 0; rows]));
        }
        let mut hashes = Vec::with_capacity(rows);
        hash_columns(keys, &mut hashes)?;
        Ok(hashes
            .iter()
            .map(|&h| Some(self.owned.contains(&self.key_groups.key_group(h))))
            .collect())
    }
}
