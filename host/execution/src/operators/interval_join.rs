//! Interval joins: `l.t BETWEEN r.t + lower AND r.t + upper` (and equal keys).
//!
//! Both sides are buffered. A batch arriving on one side is joined with what the other
//! side buffered so far, so each matching pair is emitted once, by whichever of its two
//! rows arrived second; the result is append-only. The watermark bounds the buffers: a
//! left row can no longer match once every right row it could match is older than the
//! watermark (`l.t - lower <= watermark`), and likewise for right rows.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
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
    /// The input (0 left, 1 right) sent whole to every subtask, if any, instead of both
    /// inputs being partitioned by key: a side with at most a row per window (a
    /// window aggregate without keys). Each row of the other side, wherever it goes,
    /// then meets every row it can match exactly once.
    pub broadcast: Option<usize>,
}

/// An inner interval join; output columns are the left columns then the right columns.
pub struct IntervalJoinOperator {
    spec: IntervalJoinSpec,
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
                output: out.clone(),
                buffers: [Vec::new(), Vec::new()],
                hashes: Vec::new(),
            }) as Box<dyn Operator>)
        });
        Ok((factory, output))
    }

    /// Joins `new` (from side `side`) with the other side's buffer, one buffered batch at
    /// a time: the buffer is not copied, and batches too old to match are skipped.
    fn probe(&mut self, side: usize, new: &RecordBatch, out: &mut Output) -> Result<()> {
        let other = 1 - side;
        if self.buffers[other].is_empty() || new.num_rows() == 0 {
            return Ok(());
        }
        let times = [self.spec.time.0, self.spec.time.1];
        let new_times = millis(new, times[side])?;
        let (lower, upper) = (self.spec.lower, self.spec.upper);
        // `l.t - r.t` lies in `[lower, upper]`: a buffered batch whose latest time is
        // below what the earliest new row can match holds nothing to join.
        let earliest = new_times.iter().copied().min().unwrap_or(i64::MIN);
        let oldest_match = if side == 0 {
            earliest.saturating_sub(upper)
        } else {
            earliest.saturating_add(lower)
        };
        for (buffered, latest) in &self.buffers[other] {
            if *latest < oldest_match {
                continue;
            }
            let buffered_times = millis(buffered, times[other])?;
            let (left, right, lt, rt) = if side == 0 {
                (new, buffered, &new_times, &buffered_times)
            } else {
                (buffered, new, &buffered_times, &new_times)
            };
            let (lk, rk) = key_columns(&self.spec.keys, left, right);
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
            if let Some(joined) = gather(&self.output, left, right, li, ri)? {
                out.emit(joined);
            }
        }
        Ok(())
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
        // Partitioned by key, rows go to the subtask owning their key group after a
        // rescale. With a broadcast side, rows are not where their keys say: every old
        // subtask held all of the broadcast side (each new subtask keeps one copy, from
        // the first state it is given) and each row of the other side goes to one new
        // subtask (the old subtask's own, when the parallelism is unchanged).
        let filter = match self.spec.broadcast {
            None => rescale_filter(state, &self.subtask),
            Some(_) => None,
        };
        let first = state.states.first().map(|(old, _)| *old);
        let keeps = |side: usize, old: u32| match self.spec.broadcast {
            Some(b) if side == b => Some(old) == first,
            Some(_) => old % self.subtask.parallelism == self.subtask.index,
            None => true,
        };
        let keys: [Vec<usize>; 2] = [
            self.spec.keys.iter().map(|k| k.0).collect(),
            self.spec.keys.iter().map(|k| k.1).collect(),
        ];
        for (old, bytes) in &state.states {
            let sides: [Vec<(Vec<u8>, i64)>; 2] = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad interval join state: {e}")))?;
            for (side, batches) in sides.into_iter().enumerate() {
                if !keeps(side, *old) {
                    continue;
                }
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
        self.probe(side, &batch, out)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::OutputItem;
    use arrow::array::Int64Array;

    /// Rows of (key, time in ms).
    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn join(broadcast: Option<usize>, index: u32, parallelism: u32) -> Box<dyn Operator> {
        let spec = IntervalJoinSpec {
            time: (1, 1),
            keys: vec![(0, 0)],
            lower: -10,
            upper: 0,
            broadcast,
        };
        let schema = batch(&[]).schema();
        let (factory, _) = IntervalJoinOperator::factory(spec, schema.clone(), schema).unwrap();
        factory(&SubtaskInfo {
            index,
            parallelism,
            max_parallelism: 128,
        })
        .unwrap()
    }

    /// The joined rows as (left key, left time, right time).
    fn feed(j: &mut dyn Operator, input: usize, rows: &[(i64, i64)]) -> Vec<(i64, i64, i64)> {
        let mut out = Output::default();
        j.process_batch_from(input, batch(rows), &mut out).unwrap();
        let mut joined = Vec::new();
        for item in out.items {
            if let OutputItem::Batch(None, b) = item {
                let c = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
                let (k, lt, rt) = (c(0), c(1), c(3));
                joined.extend((0..b.num_rows()).map(|i| (k.value(i), lt.value(i), rt.value(i))));
            }
        }
        joined.sort_unstable();
        joined
    }

    #[test]
    fn rows_match_up_to_the_bounds_whichever_side_comes_second() {
        // `l.t - r.t` in [-10, 0].
        let mut j = join(None, 0, 1);
        feed(j.as_mut(), 0, &[(1, 95)]);
        feed(j.as_mut(), 0, &[(1, 80), (2, 100)]);
        assert_eq!(feed(j.as_mut(), 1, &[(1, 105)]), vec![(1, 95, 105)]);
        assert_eq!(feed(j.as_mut(), 1, &[(1, 106)]), vec![]);
        assert_eq!(
            feed(j.as_mut(), 1, &[(1, 90), (2, 100)]),
            vec![(1, 80, 90), (1, 95, 90), (2, 100, 100)]
                .into_iter()
                .filter(|(_, l, r)| (-10..=0).contains(&(l - r)))
                .collect::<Vec<_>>()
        );
        // Left rows arriving after the right rows they match.
        assert_eq!(
            feed(j.as_mut(), 0, &[(1, 100), (2, 90)]),
            vec![(1, 100, 105), (1, 100, 106), (2, 90, 100)]
        );
    }

    #[test]
    fn a_broadcast_side_is_kept_once_per_subtask_after_a_rescale() {
        // Two subtasks: the left rows split between them however they came, the right
        // side (broadcast) whole in both.
        let right = [(1, 100), (2, 100)];
        let mut old: Vec<Box<dyn Operator>> = (0..2).map(|i| join(Some(1), i, 2)).collect();
        feed(old[0].as_mut(), 0, &[(1, 95), (2, 96)]);
        feed(old[1].as_mut(), 0, &[(1, 97)]);
        for j in &mut old {
            feed(j.as_mut(), 1, &right);
        }
        let states: Vec<(u32, Vec<u8>)> = old
            .iter_mut()
            .enumerate()
            .map(|(i, j)| {
                let state = j.snapshot_state(CheckpointId(1), &mut Output::default());
                (i as u32, state.unwrap().unwrap())
            })
            .collect();
        // Restored at one, two and three subtasks: a new left row meets each right row
        // once in whichever subtask it reaches, and a new right row (sent to every
        // subtask) meets each kept left row once over all subtasks.
        for parallelism in 1..=3 {
            let mut met = Vec::new();
            for index in 0..parallelism {
                let mut j = join(Some(1), index, parallelism);
                j.restore_state(&RestoredState {
                    checkpoint: 1,
                    old_parallelism: 2,
                    states: states.clone(),
                    root: Default::default(),
                })
                .unwrap();
                assert_eq!(
                    feed(j.as_mut(), 0, &[(1, 99), (2, 99)]),
                    vec![(1, 99, 100), (2, 99, 100)],
                    "subtask {index} of {parallelism}"
                );
                met.extend(feed(j.as_mut(), 1, &[(1, 105)]));
            }
            met.sort_unstable();
            // The new left row went to every subtask, so it meets the new right row in
            // each of them.
            let mut expected = vec![(1, 95, 105), (1, 97, 105)];
            expected.extend((0..parallelism).map(|_| (1, 99, 105)));
            assert_eq!(met, expected, "at parallelism {parallelism}");
        }
    }
}
