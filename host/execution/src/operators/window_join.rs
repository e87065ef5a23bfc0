//! Window joins: rows of two windowed streams that share a window and a key.
//!
//! Both inputs carry the window of each row (its `window_end` column). Rows are buffered
//! per window until the watermark (the minimum over both inputs) passes the window's last
//! timestamp; then the two sides of that window are joined with a hash join on the key
//! columns and the window's state is dropped. Each window is joined exactly once, so the
//! result is append-only, as in Flink.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::row::{RowConverter, SortField};
use fungi_common::keys::hash_columns;
use fungi_common::{FungiError, Result, Watermark};
use hashbrown::HashTable;

use crate::operator::{Operator, OperatorFactory, Output};

/// Where the join finds the window and the keys on each side.
#[derive(Debug, Clone)]
pub struct WindowJoinSpec {
    /// Index of the `window_end` column in the left and right input.
    pub window_end: (usize, usize),
    /// Pairs of (left, right) key column indices that must be equal.
    pub keys: Vec<(usize, usize)>,
}

/// An inner window join; output columns are the left columns then the right columns.
pub struct WindowJoinOperator {
    spec: WindowJoinSpec,
    left: SchemaRef,
    right: SchemaRef,
    output: SchemaRef,
    /// window end -> (left batches, right batches)
    windows: BTreeMap<i64, (Vec<RecordBatch>, Vec<RecordBatch>)>,
    hashes: Vec<u64>,
}

impl WindowJoinOperator {
    /// A factory joining `left` and `right` rows under `spec`; returns the output schema.
    pub fn factory(
        spec: WindowJoinSpec,
        left: SchemaRef,
        right: SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        for (schema, i, side) in [
            (&left, spec.window_end.0, "left"),
            (&right, spec.window_end.1, "right"),
        ] {
            let t = schema.fields().get(i).map(|f| f.data_type().clone());
            if t.as_ref() != Some(&ts) {
                return Err(FungiError::Plan(format!(
                    "window join: the {side} window_end column must be a TIMESTAMP(3), got {t:?}"
                )));
            }
        }
        let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(right.fields().iter().map(|f| f.as_ref().clone()));
        let output = Arc::new(Schema::new(fields));
        let out = output.clone();
        let factory: OperatorFactory = Arc::new(move |_| {
            Ok(Box::new(WindowJoinOperator {
                spec: spec.clone(),
                left: left.clone(),
                right: right.clone(),
                output: out.clone(),
                windows: BTreeMap::new(),
                hashes: Vec::new(),
            }) as Box<dyn Operator>)
        });
        Ok((factory, output))
    }

    fn join(&mut self, left: &RecordBatch, right: &RecordBatch) -> Result<Option<RecordBatch>> {
        if left.num_rows() == 0 || right.num_rows() == 0 {
            return Ok(None);
        }
        let lk: Vec<ArrayRef> = self
            .spec
            .keys
            .iter()
            .map(|(l, _)| left.column(*l).clone())
            .collect();
        let rk: Vec<ArrayRef> = self
            .spec
            .keys
            .iter()
            .map(|(_, r)| right.column(*r).clone())
            .collect();
        let (li, ri) = if lk.is_empty() {
            // No keys: every left row with every right row of the window.
            let (n, m) = (left.num_rows() as u32, right.num_rows() as u32);
            (
                (0..n)
                    .flat_map(|i| std::iter::repeat_n(i, m as usize))
                    .collect(),
                (0..n).flat_map(|_| 0..m).collect(),
            )
        } else {
            // Compare keys in one row format; cast the right keys to the left types.
            let fields: Vec<SortField> = lk
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let rk: Vec<ArrayRef> = rk
                .iter()
                .zip(&lk)
                .map(|(r, l)| arrow::compute::cast(r, l.data_type()))
                .collect::<Result<_, _>>()?;
            let lrows = converter.convert_columns(&lk)?;
            let rrows = converter.convert_columns(&rk)?;
            // Build on the right: a hash table of first rows and a chain of the others.
            hash_columns(&rk, &mut self.hashes)?;
            let rhash = std::mem::take(&mut self.hashes);
            let mut table: HashTable<u32> = HashTable::with_capacity(right.num_rows());
            let mut next = vec![u32::MAX; right.num_rows()];
            for (i, &h) in rhash.iter().enumerate() {
                let row = rrows.row(i);
                match table.find_mut(h, |&j| rrows.row(j as usize) == row) {
                    Some(head) => {
                        next[i] = *head;
                        *head = i as u32;
                    }
                    None => {
                        table.insert_unique(h, i as u32, |&j| rhash[j as usize]);
                    }
                }
            }
            hash_columns(&lk, &mut self.hashes)?;
            let (mut li, mut ri) = (Vec::new(), Vec::new());
            for (i, &h) in self.hashes.iter().enumerate() {
                let row = lrows.row(i);
                if let Some(&head) = table.find(h, |&j| rrows.row(j as usize) == row) {
                    let mut j = head;
                    while j != u32::MAX {
                        li.push(i as u32);
                        ri.push(j);
                        j = next[j as usize];
                    }
                }
            }
            (li, ri)
        };
        if li.is_empty() {
            return Ok(None);
        }
        let (li, ri) = (UInt32Array::from(li), UInt32Array::from(ri));
        let mut columns = Vec::with_capacity(self.output.fields().len());
        for c in left.columns() {
            columns.push(take(c, &li, None)?);
        }
        for c in right.columns() {
            columns.push(take(c, &ri, None)?);
        }
        Ok(Some(RecordBatch::try_new(self.output.clone(), columns)?))
    }
}

impl Operator for WindowJoinOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        self.process_batch_from(0, batch, out)
    }

    fn process_batch_from(
        &mut self,
        input: usize,
        batch: RecordBatch,
        _out: &mut Output,
    ) -> Result<()> {
        let col = if input == 0 {
            self.spec.window_end.0
        } else {
            self.spec.window_end.1
        };
        let ends = batch
            .column(col)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        if ends.null_count() > 0 {
            return Err(FungiError::Operator {
                operator: "window join".into(),
                message: "a row has no window_end".into(),
            });
        }
        // Usually one window per batch; otherwise split by window.
        let mut distinct: Vec<i64> = ends.values().to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for end in distinct {
            let part = if ends.values().iter().all(|&e| e == end) {
                batch.clone()
            } else {
                let mask: arrow::array::BooleanArray =
                    ends.values().iter().map(|&e| Some(e == end)).collect();
                arrow::compute::filter_record_batch(&batch, &mask)?
            };
            let slot = self.windows.entry(end).or_default();
            if input == 0 {
                slot.0.push(part)
            } else {
                slot.1.push(part)
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark {
            while let Some((&end, _)) = self.windows.first_key_value() {
                if end - 1 > t {
                    break;
                }
                let (_, (l, r)) = self.windows.pop_first().expect("exists");
                let left = concat_batches(&self.left, &l)?;
                let right = concat_batches(&self.right, &r)?;
                if let Some(joined) = self.join(&left, &right)? {
                    out.emit(joined);
                }
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}
