//! Window joins: rows of two windowed streams that share a window and a key.
//!
//! Both inputs carry the window of each row (its `window_end` column). Rows are buffered
//! per window until the watermark (the minimum over both inputs) passes the window's last
//! timestamp; then the two sides of that window are joined with a hash join on the key
//! columns and the window's state is dropped. Each window is joined exactly once, so the
//! result is append-only, as in Flink.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use fungi_checkpoint::RestoredState;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result, Watermark};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use super::hash_join::{gather, key_columns, matching_pairs};
use crate::operator::{Operator, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

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
    subtask: SubtaskInfo,
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
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(WindowJoinOperator {
                subtask: *s,
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
        let (lk, rk) = key_columns(&self.spec.keys, left, right);
        let (li, ri) = matching_pairs(
            &lk,
            &rk,
            left.num_rows(),
            right.num_rows(),
            &mut self.hashes,
            |_, _| true,
        )?;
        gather(&self.output, left, right, li, ri)
    }
}

impl Operator for WindowJoinOperator {
    // The buffered rows of both sides are the state; each carries its window.
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for (l, r) in self.windows.values() {
            left.extend(l.iter().cloned());
            right.extend(r.iter().cloned());
        }
        let state = (
            encode_batch(&concat_batches(&self.left, &left)?)?,
            encode_batch(&concat_batches(&self.right, &right)?)?,
        );
        Ok(Some(
            postcard::to_stdvec(&state).expect("join state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        let sides: [Vec<usize>; 2] = [
            self.spec.keys.iter().map(|k| k.0).collect(),
            self.spec.keys.iter().map(|k| k.1).collect(),
        ];
        let mut discard = Output::default();
        for (_, bytes) in &state.states {
            let (left, right): (Vec<u8>, Vec<u8>) = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad window join state: {e}")))?;
            for (input, bytes) in [left, right].into_iter().enumerate() {
                let mut batch = decode_batch(&bytes)?;
                if let Some(f) = &filter {
                    batch = f.retain(batch, &sides[input])?;
                }
                if batch.num_rows() > 0 {
                    self.process_batch_from(input, batch, &mut discard)?;
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
