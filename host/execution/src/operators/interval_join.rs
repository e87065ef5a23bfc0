//! Interval joins: `l.t BETWEEN r.t + lower AND r.t + upper` (and equal keys).
//!
//! Both sides are buffered. A batch arriving on one side is joined with what the other
//! side buffered so far, so each matching pair is emitted once, by whichever of its two
//! rows arrived second; the result is append-only. The watermark bounds the buffers: a
//! left row can no longer match once every right row it could match is older than the
//! watermark (`l.t - lower <= watermark`), and likewise for right rows.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use fungi_checkpoint::RestoredState;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result, Watermark};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use super::hash_join::{gather, key_columns, matching_pairs};
use crate::operator::{Operator, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

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
    subtask: SubtaskInfo,
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
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(IntervalJoinOperator {
                subtask: *s,
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
        let (lk, rk) = key_columns(&self.spec.keys, left, right);
        let (lt, rt) = (
            millis(left, self.spec.time.0)?,
            millis(right, self.spec.time.1)?,
        );
        let (lower, upper) = (self.spec.lower, self.spec.upper);
        let (li, ri) = matching_pairs(
            &lk,
            &rk,
            left.num_rows(),
            right.num_rows(),
            &mut self.hashes,
            |i, j| {
                let d = lt[i] - rt[j];
                d >= lower && d <= upper
            },
        )?;
        gather(&self.output, left, right, li, ri)
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
    // The buffered batches of both sides, each with its latest event time.
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        let mut sides: [Vec<(Vec<u8>, i64)>; 2] = [Vec::new(), Vec::new()];
        for (side, buffer) in sides.iter_mut().zip(&self.buffers) {
            for (batch, latest) in buffer {
                side.push((encode_batch(batch)?, *latest));
            }
        }
        Ok(Some(
            postcard::to_stdvec(&sides).expect("join state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        let keys: [Vec<usize>; 2] = [
            self.spec.keys.iter().map(|k| k.0).collect(),
            self.spec.keys.iter().map(|k| k.1).collect(),
        ];
        for (_, bytes) in &state.states {
            let sides: [Vec<(Vec<u8>, i64)>; 2] = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad interval join state: {e}")))?;
            for (side, batches) in sides.into_iter().enumerate() {
                for (bytes, latest) in batches {
                    let mut batch = decode_batch(&bytes)?;
                    if let Some(f) = &filter {
                        batch = f.retain(batch, &keys[side])?;
                    }
                    if batch.num_rows() > 0 {
                        self.buffers[side].push((batch, latest));
                    }
                }
            }
        }
        Ok(())
    }

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
