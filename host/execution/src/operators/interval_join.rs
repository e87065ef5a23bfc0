//! Interval joins: `l.t BETWEEN r.t + lower AND r.t + upper` (and equal keys).
//!
//! Both sides are buffered. A batch arriving on one side is joined with what the other
//! side buffered so far, so each matching pair is emitted once, by whichever of its two
//! rows arrived second; the result is append-only. The watermark bounds the buffers: a
//! left row can no longer match once every right row it could match is older than the
//! watermark (`l.t - lower <= watermark`), and likewise for right rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use fungi_common::keys::hash_columns;
use fungi_common::{Result, Watermark};
use hashbrown::HashTable;

use crate::operator::{Operator, OperatorFactory, Output};

/// Columns and bounds of an interval join.
#[derive(Debug, Clone)]
pub struct IntervalJoinSpec {
    /// Event-time column of the left and right input.
    pub time: (usize, usize),
    /// Pairs of (left, right) key columns that must be equal.
    pub keys: Vec<(usize, usize)>,
    /// `l.t - r.t` must lie in `[lower, upper]` (ms).
    pub lower: i64,
    /// See `lower`.
    pub upper: i64,
}

/// An inner interval join; output columns are the left columns then the right columns.
pub struct IntervalJoinOperator {
    spec: IntervalJoinSpec,
    schemas: [SchemaRef; 2],
    output: SchemaRef,
    /// Buffered batches of each side with the latest event time in each.
    buffers: [Vec<(RecordBatch, i64)>; 2],
    hashes: Vec<u64>,
}

fn millis(batch: &RecordBatch, column: usize) -> Result<Vec<i64>> {
    let ints = cast(batch.column(column), &DataType::Int64)?;
    Ok(ints.as_primitive::<Int64Type>().values().to_vec())
}

impl IntervalJoinOperator {
    /// A factory joining `left` and `right` rows; returns the output schema.
    pub fn factory(
        spec: IntervalJoinSpec,
        left: SchemaRef,
        right: SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        let mut fields: Vec<Field> = left.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(right.fields().iter().map(|f| f.as_ref().clone()));
        let output = Arc::new(Schema::new(fields));
        let out = output.clone();
        let factory: OperatorFactory = Arc::new(move |_| {
            Ok(Box::new(IntervalJoinOperator {
                spec: spec.clone(),
                schemas: [left.clone(), right.clone()],
                output: out.clone(),
                buffers: [Vec::new(), Vec::new()],
                hashes: Vec::new(),
            }) as Box<dyn Operator>)
        });
        Ok((factory, output))
    }

    /// Joins `new` (from side `side`) with the other side's buffer.
    fn probe(&mut self, side: usize, new: &RecordBatch) -> Result<Option<RecordBatch>> {
        let other = 1 - side;
        if self.buffers[other].is_empty() || new.num_rows() == 0 {
            return Ok(None);
        }
        let batches: Vec<RecordBatch> =
            self.buffers[other].iter().map(|(b, _)| b.clone()).collect();
        let buffered = concat_batches(&self.schemas[other], &batches)?;
        let (left, right) = if side == 0 {
            (new, &buffered)
        } else {
            (&buffered, new)
        };
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
            .zip(&lk)
            .map(|((_, r), l)| cast(right.column(*r), l.data_type()))
            .collect::<Result<_, _>>()?;
        let (lt, rt) = (
            millis(left, self.spec.time.0)?,
            millis(right, self.spec.time.1)?,
        );
        let in_bounds = |i: usize, j: usize| {
            let d = lt[i] - rt[j];
            d >= self.spec.lower && d <= self.spec.upper
        };
        let (mut li, mut ri) = (Vec::new(), Vec::new());
        if lk.is_empty() {
            for i in 0..left.num_rows() {
                for j in 0..right.num_rows() {
                    if in_bounds(i, j) {
                        li.push(i as u32);
                        ri.push(j as u32);
                    }
                }
            }
        } else {
            let converter = RowConverter::new(
                lk.iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )?;
            let (lrows, rrows) = (
                converter.convert_columns(&lk)?,
                converter.convert_columns(&rk)?,
            );
            hash_columns(&rk, &mut self.hashes)?;
            let rhash = std::mem::take(&mut self.hashes);
            let mut table: HashTable<u32> = HashTable::with_capacity(right.num_rows());
            let mut next = vec![u32::MAX; right.num_rows()];
            for (j, &h) in rhash.iter().enumerate() {
                let row = rrows.row(j);
                match table.find_mut(h, |&k| rrows.row(k as usize) == row) {
                    Some(head) => {
                        next[j] = *head;
                        *head = j as u32;
                    }
                    None => {
                        table.insert_unique(h, j as u32, |&k| rhash[k as usize]);
                    }
                }
            }
            hash_columns(&lk, &mut self.hashes)?;
            for (i, &h) in self.hashes.iter().enumerate() {
                let row = lrows.row(i);
                if let Some(&head) = table.find(h, |&k| rrows.row(k as usize) == row) {
                    let mut j = head;
                    while j != u32::MAX {
                        if in_bounds(i, j as usize) {
                            li.push(i as u32);
                            ri.push(j);
                        }
                        j = next[j as usize];
                    }
                }
            }
        }
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

    /// Drops buffered batches none of whose rows can match any more. Whole batches go
    /// at once, so eviction copies nothing; the time bounds are checked when probing.
    fn evict(&mut self, watermark: i64) {
        // Left rows match right times in [l.t - upper, l.t - lower]; right rows match left
        // times in [r.t + lower, r.t + upper]. Future rows are newer than the watermark.
        let limits = [
            watermark.saturating_add(self.spec.lower),
            watermark.saturating_sub(self.spec.upper),
        ];
        for (buffer, limit) in self.buffers.iter_mut().zip(limits) {
            buffer.retain(|(_, latest)| *latest > limit);
        }
    }
}

impl Operator for IntervalJoinOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        self.process_batch_from(0, batch, out)
    }

    fn process_batch_from(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        let side = input.min(1);
        if let Some(joined) = self.probe(side, &batch)? {
            out.emit(joined);
        }
        if batch.num_rows() > 0 {
            let column = if side == 0 {
                self.spec.time.0
            } else {
                self.spec.time.1
            };
            let latest = millis(&batch, column)?
                .into_iter()
                .max()
                .unwrap_or(i64::MIN);
            self.buffers[side].push((batch, latest));
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark
            && t != i64::MAX
        {
            self.evict(t);
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}
