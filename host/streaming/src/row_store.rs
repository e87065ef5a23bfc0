//! Rows kept by operators without a window (regular joins, Top-N): the batches they
//! arrived in, addressed by [`RowRef`].
//!
//! A batch is stored whole (no copy per row); the owner holds references to the rows it
//! keeps and tells the store which it still needs ([`retain`](RowStore::retain) and
//! [`release`](RowStore::release)). A batch none of whose rows is referenced is dropped.
//! When most stored rows are dead, the owner calls [`compact`](RowStore::compact) with
//! its references: the live rows are copied into one new batch and the references are
//! rewritten, so memory stays proportional to the live rows. Optionally the store keeps
//! the Arrow row encoding of some columns of each batch, for ordering (Top-N) or
//! equality (retractions) without touching the columns again.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{SortOptions, interleave};
use arrow::datatypes::SchemaRef;
use arrow::row::{Row, RowConverter, Rows, SortField};
use fungi_common::Result;

/// A stored row: the batch it is in and its position there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowRef {
    /// Id of the stored batch.
    pub batch: u32,
    /// Row within the batch.
    pub row: u32,
}

struct Stored {
    batch: RecordBatch,
    encoded: Option<Rows>,
    /// References the owner holds to rows of this batch.
    live: u32,
    /// When the batch arrived (processing time, ms), for state TTL.
    arrived_ms: i64,
}

/// Batches of rows referenced by an operator's state.
pub struct RowStore {
    schema: SchemaRef,
    encoder: Option<(RowConverter, Vec<usize>)>,
    /// Indexed by batch id; `None` once dropped. Ids restart at 0 on compaction.
    batches: Vec<Option<Stored>>,
    stored_rows: usize,
    live_rows: usize,
    /// Batches not dropped.
    occupied: usize,
    /// Batches that may have no referenced row left (checked by `sweep`).
    unreferenced: Vec<u32>,
}

impl std::fmt::Debug for RowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStore")
            .field("stored_rows", &self.stored_rows)
            .field("live_rows", &self.live_rows)
            .finish()
    }
}

impl RowStore {
    /// A store for rows of `schema`, encoding the columns `encode` (with their sort
    /// options) of every batch; no encoding if `encode` is empty.
    pub fn new(schema: SchemaRef, encode: &[(usize, SortOptions)]) -> Result<Self> {
        let encoder = if encode.is_empty() {
            None
        } else {
            let fields = encode
                .iter()
                .map(|&(c, o)| SortField::new_with_options(schema.field(c).data_type().clone(), o))
                .collect();
            Some((
                RowConverter::new(fields)?,
                encode.iter().map(|e| e.0).collect(),
            ))
        };
        Ok(RowStore {
            schema,
            encoder,
            batches: Vec::new(),
            stored_rows: 0,
            live_rows: 0,
            occupied: 0,
            unreferenced: Vec::new(),
        })
    }

    /// The schema of stored rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows referenced by the owner.
    pub fn live_rows(&self) -> usize {
        self.live_rows
    }

    /// Rows held in memory (live or not yet compacted away).
    pub fn stored_rows(&self) -> usize {
        self.stored_rows
    }

    /// Encodes the configured columns of `batch` (as stored batches are encoded).
    pub fn encode(&self, batch: &RecordBatch) -> Result<Option<Rows>> {
        let Some((converter, columns)) = &self.encoder else {
            return Ok(None);
        };
        let cols: Vec<ArrayRef> = columns.iter().map(|&c| batch.column(c).clone()).collect();
        Ok(Some(converter.convert_columns(&cols)?))
    }

    /// Stores `batch`; its rows are not referenced yet (the next `sweep` drops it unless
    /// some are retained). Returns its id.
    pub fn push(&mut self, batch: RecordBatch, now_ms: i64) -> Result<u32> {
        let encoded = self.encode(&batch)?;
        self.stored_rows += batch.num_rows();
        self.occupied += 1;
        self.batches.push(Some(Stored {
            batch,
            encoded,
            live: 0,
            arrived_ms: now_ms,
        }));
        let id = (self.batches.len() - 1) as u32;
        self.unreferenced.push(id);
        Ok(id)
    }

    /// Drops the batches none of whose rows is referenced any more. Rows released since
    /// the last sweep stay readable until then (so an owner can still emit them).
    pub fn sweep(&mut self) {
        for id in std::mem::take(&mut self.unreferenced) {
            if let Some(Some(s)) = self.batches.get(id as usize)
                && s.live == 0
            {
                self.drop_batch(id);
            }
        }
    }

    fn drop_batch(&mut self, id: u32) {
        self.take_batch(id as usize);
        self.trim();
    }

    /// Removes batch `id` from the accounts; returns its rows.
    fn take_batch(&mut self, id: usize) -> usize {
        let Some(s) = self.batches[id].take() else {
            return 0;
        };
        self.occupied -= 1;
        self.stored_rows -= s.batch.num_rows();
        self.live_rows -= s.live as usize;
        s.batch.num_rows()
    }

    /// Trailing dropped batches can go for good.
    fn trim(&mut self) {
        while matches!(self.batches.last(), Some(None)) {
            self.batches.pop();
        }
    }

    /// Whether `r` points at a stored row (its batch was not dropped by TTL).
    pub fn contains(&self, r: RowRef) -> bool {
        matches!(self.batches.get(r.batch as usize), Some(Some(_)))
    }

    /// The owner keeps a reference to `r`.
    pub fn retain(&mut self, r: RowRef) {
        if let Some(Some(s)) = self.batches.get_mut(r.batch as usize) {
            s.live += 1;
            self.live_rows += 1;
        }
    }

    /// The owner dropped a reference to `r`; the batch goes at the next `sweep` if no
    /// reference is left.
    pub fn release(&mut self, r: RowRef) {
        if let Some(Some(s)) = self.batches.get_mut(r.batch as usize) {
            s.live -= 1;
            self.live_rows -= 1;
            if s.live == 0 {
                self.unreferenced.push(r.batch);
            }
        }
    }

    /// The encoded columns of row `r` (the store must have been built with encoding).
    pub fn encoded(&self, r: RowRef) -> Row<'_> {
        let s = self.batches[r.batch as usize]
            .as_ref()
            .expect("reference to a dropped batch");
        s.encoded
            .as_ref()
            .expect("store built without encoding")
            .row(r.row as usize)
    }

    /// The columns of the rows `refs`, in that order.
    pub fn gather(&self, refs: &[RowRef]) -> Result<Vec<ArrayRef>> {
        // Dense batch positions for `interleave`.
        let mut slot_of: Vec<u32> = Vec::new();
        let mut used: Vec<&RecordBatch> = Vec::new();
        let mut indices = Vec::with_capacity(refs.len());
        for r in refs {
            let b = r.batch as usize;
            if slot_of.len() <= b {
                slot_of.resize(b + 1, u32::MAX);
            }
            if slot_of[b] == u32::MAX {
                slot_of[b] = used.len() as u32;
                used.push(
                    &self.batches[b]
                        .as_ref()
                        .expect("reference to a dropped batch")
                        .batch,
                );
            }
            indices.push((slot_of[b] as usize, r.row as usize));
        }
        (0..self.schema.fields().len())
            .map(|c| {
                if used.is_empty() {
                    return Ok(arrow::array::new_empty_array(
                        self.schema.field(c).data_type(),
                    ));
                }
                let arrays: Vec<&dyn Array> = used.iter().map(|b| b.column(c).as_ref()).collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// Drops every batch that arrived at least `ttl_ms` before `now_ms`. References to its
    /// rows become dangling: owners check [`contains`](Self::contains). Returns the number
    /// of rows dropped.
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) -> usize {
        let mut dropped = 0;
        for id in 0..self.batches.len() {
            if self.batches[id]
                .as_ref()
                .is_some_and(|s| now_ms - s.arrived_ms >= ttl_ms)
            {
                dropped += self.take_batch(id);
            }
        }
        self.trim();
        dropped
    }

    /// Whether compacting would free much: most stored rows are dead, or most batch
    /// slots are empty.
    pub fn should_compact(&self) -> bool {
        self.stored_rows > 2 * self.live_rows + 65_536
            || self.batches.len() > 2 * self.occupied + 1024
    }

    /// Copies the rows `refs` (every live reference the owner holds, none dangling) into
    /// one new batch and rewrites them to point there; everything else is dropped.
    /// The new batch counts as arrived at `now_ms` for the TTL.
    pub fn compact<'a>(
        &mut self,
        refs: impl IntoIterator<Item = &'a mut RowRef>,
        now_ms: i64,
    ) -> Result<()> {
        let mut refs: Vec<&mut RowRef> = refs.into_iter().collect();
        let copy: Vec<RowRef> = refs.iter().map(|r| **r).collect();
        let columns = self.gather(&copy)?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(copy.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let encoded = self.encode(&batch)?;
        self.batches.clear();
        self.unreferenced.clear();
        self.batches.push(Some(Stored {
            batch,
            encoded,
            live: copy.len() as u32,
            arrived_ms: now_ms,
        }));
        self.stored_rows = copy.len();
        self.live_rows = copy.len();
        self.occupied = 1;
        for (i, r) in refs.iter_mut().enumerate() {
            **r = RowRef {
                batch: 0,
                row: i as u32,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn values(store: &RowStore, refs: &[RowRef]) -> Vec<i64> {
        let cols = store.gather(refs).unwrap();
        cols[0].as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn keeps_referenced_rows_and_compacts_them() {
        let mut store = RowStore::new(batch(&[]).schema(), &[(0, SortOptions::default())]).unwrap();
        let a = store.push(batch(&[1, 2, 3]), 0).unwrap();
        let b = store.push(batch(&[4, 5]), 0).unwrap();
        let mut refs = vec![RowRef { batch: a, row: 2 }, RowRef { batch: b, row: 0 }];
        for r in &refs {
            store.retain(*r);
        }
        assert!(store.encoded(refs[0]) < store.encoded(refs[1]));
        assert_eq!(values(&store, &refs), vec![3, 4]);
        store.compact(refs.iter_mut(), 0).unwrap();
        assert_eq!(store.stored_rows(), 2);
        assert_eq!(values(&store, &refs), vec![3, 4]);
        store.release(refs[0]);
        store.release(refs[1]);
        assert_eq!(
            values(&store, &refs),
            vec![3, 4],
            "readable until the sweep"
        );
        store.sweep();
        assert_eq!(store.stored_rows(), 0);
        store.push(batch(&[9]), 0).unwrap();
        store.sweep();
        assert_eq!(store.stored_rows(), 0);
    }

    #[test]
    fn ttl_drops_old_batches() {
        let mut store = RowStore::new(batch(&[]).schema(), &[]).unwrap();
        let a = store.push(batch(&[1]), 0).unwrap();
        let b = store.push(batch(&[2]), 900).unwrap();
        store.retain(RowRef { batch: a, row: 0 });
        store.retain(RowRef { batch: b, row: 0 });
        assert_eq!(store.expire(1000, 1000), 1);
        assert!(!store.contains(RowRef { batch: a, row: 0 }));
        assert!(store.contains(RowRef { batch: b, row: 0 }));
    }
}
