//! Turns upserts and deletions by a key (an `upsert-kafka` topic: each record the new
//! value of its key, a tombstone its deletion) into a changelog, as Flink's
//! `ChangelogNormalize` does: the first value of a key is `+I`, a new value `-U` of the
//! old and `+U` of the new, a deletion `-D` of the last value (with all its columns, not
//! only the key a tombstone carries). A value equal to the current one, and the deletion
//! of a key that has none, change nothing and emit nothing.
//!
//! Each key keeps its current row (in a [`RowStore`] that encodes the row's columns, so
//! two values compare as bytes). A batch is folded in row by row; then each key the batch
//! touched emits the difference between its row before and after the batch (a
//! mini-batch, as Flink's).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int8Array, RecordBatch, RecordBatchOptions};
use arrow::compute::SortOptions;
use arrow::datatypes::{Int8Type, SchemaRef};
use fungi_checkpoint::RestoredState;
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::time::now_millis;
use fungi_common::{FungiError, Result};
use fungi_streaming::keys::KeyTable;
use fungi_streaming::row_store::{RowRef, RowStore};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use crate::operator::{Operator, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

/// Keeps each key's current row and emits how the rows change.
pub struct ChangelogNormalizeOperator {
    /// The key columns.
    keys: Vec<usize>,
    /// Where the change column is.
    op: usize,
    schema: SchemaRef,
    store: RowStore,
    key_table: KeyTable,
    current: Vec<Option<RowRef>>,
    // Scratch, reused across batches.
    key_ids: Vec<u32>,
    touched_mark: Vec<u64>,
    batch_no: u64,
    subtask: SubtaskInfo,
}

impl ChangelogNormalizeOperator {
    /// A factory over rows of `input` (its last column the change column) keyed by the
    /// columns `keys`; the output has the input's schema.
    pub fn factory(keys: Vec<usize>, input: SchemaRef) -> Result<OperatorFactory> {
        Self::new(&keys, &input)?;
        Ok(Arc::new(move |s| {
            let mut op = Self::new(&keys, &input)?;
            op.subtask = *s;
            Ok(Box::new(op) as Box<dyn Operator>)
        }))
    }

    fn new(keys: &[usize], input: &SchemaRef) -> Result<Self> {
        let op = input.index_of(OP_COLUMN).map_err(|_| {
            FungiError::Plan("normalizing upserts needs rows with a change column".into())
        })?;
        if keys.is_empty() {
            return Err(FungiError::Plan(
                "normalizing upserts needs the key they are upserts by".into(),
            ));
        }
        // Values compare on every column but the change column.
        let values: Vec<(usize, SortOptions)> = (0..input.fields().len())
            .filter(|&c| c != op)
            .map(|c| (c, SortOptions::default()))
            .collect();
        Ok(ChangelogNormalizeOperator {
            keys: keys.to_vec(),
            op,
            schema: input.clone(),
            store: RowStore::new(input.clone(), &values)?,
            key_table: KeyTable::new(keys.iter().map(|&k| input.field(k).clone()).collect())?,
            current: Vec::new(),
            key_ids: Vec::new(),
            touched_mark: Vec::new(),
            batch_no: 0,
            subtask: SubtaskInfo {
                index: 0,
                parallelism: 1,
                max_parallelism: 1,
            },
        })
    }

    /// Keys that have a row now.
    pub fn live_keys(&self) -> usize {
        self.store.live_rows()
    }

    fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.keys.iter().map(|&k| batch.column(k).clone()).collect()
    }

    fn grow(&mut self) {
        let total = self.key_table.len();
        self.current.resize(total, None);
        self.touched_mark.resize(total, 0);
    }
}

impl Operator for ChangelogNormalizeOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let kinds = batch.column(self.op).as_primitive::<Int8Type>().clone();
        let mut ids = std::mem::take(&mut self.key_ids);
        self.key_table
            .intern(&self.key_columns(&batch), n, &mut ids)?;
        self.grow();
        self.batch_no += 1;
        let b = self.store.push(batch, now_millis())?;
        // Each touched key's row before the batch; then fold the rows in.
        let mut touched: Vec<(u32, Option<RowRef>)> = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let key = id as usize;
            if self.touched_mark[key] != self.batch_no {
                self.touched_mark[key] = self.batch_no;
                touched.push((id, self.current[key]));
            }
            let deleted = matches!(
                RowKind::from_code(kinds.value(i)),
                Some(RowKind::Delete | RowKind::UpdateBefore)
            );
            self.current[key] = (!deleted).then_some(RowRef {
                batch: b,
                row: i as u32,
            });
        }
        let mut rows: Vec<RowRef> = Vec::new();
        let mut changes: Vec<i8> = Vec::new();
        for &(id, before) in &touched {
            let after = self.current[id as usize];
            match (before, after) {
                (None, Some(new)) => {
                    rows.push(new);
                    changes.push(RowKind::Insert as i8);
                }
                (Some(old), Some(new)) if self.store.encoded(old) == self.store.encoded(new) => {
                    // The same value again: nothing changed; the older row stays.
                    self.current[id as usize] = Some(old);
                }
                (Some(old), Some(new)) => {
                    rows.extend([old, new]);
                    changes.extend([RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]);
                }
                (Some(old), None) => {
                    rows.push(old);
                    changes.push(RowKind::Delete as i8);
                }
                (None, None) => {}
            }
        }
        if !rows.is_empty() {
            let mut columns = self.store.gather(&rows)?;
            columns[self.op] = Arc::new(Int8Array::from(changes));
            out.emit(RecordBatch::try_new(self.schema.clone(), columns)?);
        }
        // References follow the keys' rows.
        for &(id, before) in &touched {
            let after = self.current[id as usize];
            if before != after {
                if let Some(new) = after {
                    self.store.retain(new);
                }
                if let Some(old) = before {
                    self.store.release(old);
                }
            }
        }
        self.store.sweep();
        if self.store.should_compact() {
            let now = now_millis();
            self.store.compact(self.current.iter_mut().flatten(), now)?;
        }
        self.key_ids = ids;
        Ok(())
    }

    // Every key's current row, one batch.
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        if checkpoint.is_final() {
            return Ok(None);
        }
        let refs: Vec<RowRef> = self.current.iter().flatten().copied().collect();
        let columns = self.store.gather(&refs)?;
        let options = RecordBatchOptions::new().with_row_count(Some(refs.len()));
        let rows = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(Some(encode_batch(&rows)?))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        for (_, bytes) in &state.states {
            let rows = decode_batch(bytes)?;
            let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
            let mut rows = RecordBatch::try_new_with_options(
                self.schema.clone(),
                rows.columns().to_vec(),
                &options,
            )
            .map_err(|e| FungiError::State(format!("a normalize snapshot does not fit: {e}")))?;
            if let Some(f) = &filter {
                rows = f.retain(rows, &self.keys)?;
            }
            let n = rows.num_rows();
            if n == 0 {
                continue;
            }
            let mut ids = Vec::with_capacity(n);
            self.key_table
                .intern(&self.key_columns(&rows), n, &mut ids)?;
            self.grow();
            let b = self.store.push(rows, now_millis())?;
            for (i, &id) in ids.iter().enumerate() {
                let r = RowRef {
                    batch: b,
                    row: i as u32,
                };
                self.current[id as usize] = Some(r);
                self.store.retain(r);
            }
            self.store.sweep();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new(OP_COLUMN, DataType::Int8, false),
        ]))
    }

    /// Upserts (`Some(value)`) and tombstones (`None`) by key.
    fn batch(rows: &[(i64, Option<&str>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| {
                    if r.1.is_some() {
                        RowKind::UpdateAfter as i8
                    } else {
                        RowKind::Delete as i8
                    }
                }))),
            ],
        )
        .unwrap()
    }

    fn run(op: &mut ChangelogNormalizeOperator, rows: &[(i64, Option<&str>)]) -> Vec<String> {
        let mut out = Output::default();
        op.process_batch(batch(rows), &mut out).unwrap();
        let mut v = Vec::new();
        for item in out.items {
            if let crate::operator::OutputItem::Batch(None, b) = item {
                for i in 0..b.num_rows() {
                    let kind = RowKind::from_code(b.column(2).as_primitive::<Int8Type>().value(i));
                    v.push(format!(
                        "{}({},{})",
                        kind.unwrap().short(),
                        b.column(0)
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .value(i),
                        b.column(1).as_string::<i32>().value(i)
                    ));
                }
            }
        }
        v
    }

    fn operator() -> ChangelogNormalizeOperator {
        ChangelogNormalizeOperator::new(&[0], &schema()).unwrap()
    }

    #[test]
    fn upserts_and_tombstones_become_a_changelog() {
        let mut op = operator();
        assert_eq!(
            run(&mut op, &[(1, Some("a")), (2, Some("b"))]),
            ["+I(1,a)", "+I(2,b)"]
        );
        // A new value, the same value again, a tombstone, a tombstone of no key.
        assert_eq!(
            run(&mut op, &[(1, Some("aa")), (2, Some("b")), (3, None)]),
            ["-U(1,a)", "+U(1,aa)"]
        );
        // The deletion carries the whole last row, not the tombstone's nulls.
        assert_eq!(run(&mut op, &[(2, None)]), ["-D(2,b)"]);
        // Within one batch only the net change of a key goes out.
        assert_eq!(
            run(
                &mut op,
                &[(4, Some("x")), (4, Some("y")), (1, None), (1, Some("z"))]
            ),
            ["+I(4,y)", "-U(1,aa)", "+U(1,z)"]
        );
        assert_eq!(op.live_keys(), 2);
    }

    #[test]
    fn the_current_rows_survive_a_checkpoint() {
        let mut op = operator();
        run(&mut op, &[(1, Some("a")), (2, Some("b")), (2, None)]);
        let state = op
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        let mut restored = operator();
        restored
            .restore_state(&RestoredState {
                checkpoint: 1,
                old_parallelism: 1,
                states: vec![(0, state)],
                root: Default::default(),
            })
            .unwrap();
        assert_eq!(restored.live_keys(), 1);
        let next = [(1, Some("a")), (1, Some("c")), (2, Some("d"))];
        assert_eq!(run(&mut restored, &next), run(&mut op, &next));
        assert_eq!(run(&mut restored, &[(1, None)]), ["-D(1,c)"]);
    }
}
