//! Interval joins: `l.t BETWEEN r.t + lower AND r.t + upper` (and equal keys).
//!
//! Both sides are buffered. A batch arriving on one side is joined with what the other
//! side buffered so far, so each matching pair is emitted once, by whichever of its two
//! rows arrived second; the result is append-only. The watermark bounds the buffers: a
//! left row can no longer match once every right row it could match is older than the
//! watermark (`l.t - lower <= watermark`), and likewise for right rows.
//!
//! Outer interval joins (LEFT, RIGHT, FULL) remember which buffered rows of an outer
//! side met a partner; when a batch leaves the buffer (or the input ends), its rows that
//! met none are emitted padded with NULLs, once, as Flink's outer interval join does
//! when a row can no longer match. The result stays append-only.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{cast, filter_record_batch, take};
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
    /// Which inputs also emit their rows that met no partner, padded with NULLs:
    /// `[true, false]` is a LEFT join, `[false, true]` a RIGHT one, both a FULL one.
    /// An outer join sends no side whole to every subtask.
    pub outer: [bool; 2],
}

/// A buffered batch of one side: its rows, their latest event time and, on an outer
/// side, which rows met a partner.
struct Buffered {
    batch: RecordBatch,
    latest: i64,
    matched: Vec<bool>,
}

/// An interval join; output columns are the left columns then the right columns.
pub struct IntervalJoinOperator {
    spec: IntervalJoinSpec,
    output: SchemaRef,
    /// Buffered batches of each side.
    buffers: [Vec<Buffered>; 2],
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
        if spec.broadcast.is_some() && spec.outer.contains(&true) {
            return Err(FungiError::Plan(
                "an outer interval join partitions both inputs by key".into(),
            ));
        }
        // The columns of an input are NULL in the padded rows of the other one.
        let side_fields = |schema: &SchemaRef, padded: bool| -> Vec<Field> {
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(f.is_nullable() || padded))
                .collect()
        };
        let mut fields = side_fields(&left, spec.outer[1]);
        fields.extend(side_fields(&right, spec.outer[0]));
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
    /// Returns which new rows met a partner (on an outer side; empty otherwise).
    fn probe(&mut self, side: usize, new: &RecordBatch, out: &mut Output) -> Result<Vec<bool>> {
        let other = 1 - side;
        let mut new_matched = if self.spec.outer[side] {
            vec![false; new.num_rows()]
        } else {
            Vec::new()
        };
        if self.buffers[other].is_empty() || new.num_rows() == 0 {
            return Ok(new_matched);
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
        let other_outer = self.spec.outer[other];
        for Buffered {
            batch: buffered,
            latest,
            matched,
        } in &mut self.buffers[other]
        {
            if *latest < oldest_match {
                continue;
            }
            let buffered_times = millis(buffered, times[other])?;
            let buffered: &RecordBatch = buffered;
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
            let (mine, theirs) = if side == 0 { (&li, &ri) } else { (&ri, &li) };
            if !new_matched.is_empty() {
                mine.iter().for_each(|&i| new_matched[i as usize] = true);
            }
            if other_outer {
                theirs.iter().for_each(|&j| matched[j as usize] = true);
            }
            if let Some(joined) = gather(&self.output, left, right, li, ri)? {
                out.emit(joined);
            }
        }
        Ok(new_matched)
    }

    /// Emits the rows of `gone` (a batch of `side` leaving the buffer) that met no
    /// partner, padded with NULLs.
    fn emit_unmatched(&self, side: usize, gone: &Buffered, out: &mut Output) -> Result<()> {
        if !self.spec.outer[side] {
            return Ok(());
        }
        let lonely: UInt32Array = (0..gone.batch.num_rows() as u32)
            .filter(|&i| !gone.matched[i as usize])
            .collect();
        if lonely.is_empty() {
            return Ok(());
        }
        let own = gone
            .batch
            .columns()
            .iter()
            .map(|c| take(c, &lonely, None))
            .collect::<Result<Vec<_>, _>>()?;
        let width = gone.batch.num_columns();
        let (own_range, other_range) = if side == 0 {
            (0..width, width..self.output.fields().len())
        } else {
            let other = self.output.fields().len() - width;
            (other..other + width, 0..other)
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for i in 0..self.output.fields().len() {
            if own_range.contains(&i) {
                columns.push(own[i - own_range.start].clone());
            } else {
                debug_assert!(other_range.contains(&i));
                columns.push(new_null_array(
                    self.output.field(i).data_type(),
                    lonely.len(),
                ));
            }
        }
        out.emit(RecordBatch::try_new(self.output.clone(), columns)?);
        Ok(())
    }

    /// Drops buffered batches none of whose rows can match any more. Whole batches go
    /// at once, so eviction copies nothing; the time bounds are checked when probing.
    /// On an outer side, the rows of the dropped batches that met no partner are
    /// emitted padded.
    fn evict(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        // Left rows match right times in [l.t - upper, l.t - lower]; right rows match left
        // times in [r.t + lower, r.t + upper]. Future rows are newer than the watermark.
        // At the end of input every batch goes.
        let limits = if watermark == i64::MAX {
            [i64::MAX, i64::MAX]
        } else {
            [
                watermark.saturating_add(self.spec.lower),
                watermark.saturating_sub(self.spec.upper),
            ]
        };
        for (side, limit) in limits.into_iter().enumerate() {
            let (gone, kept): (Vec<Buffered>, Vec<Buffered>) =
                std::mem::take(&mut self.buffers[side])
                    .into_iter()
                    .partition(|b| b.latest <= limit);
            self.buffers[side] = kept;
            for b in &gone {
                self.emit_unmatched(side, b, out)?;
            }
        }
        Ok(())
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
        let mut flags: [Vec<Vec<bool>>; 2] = [Vec::new(), Vec::new()];
        for ((side, side_flags), buffer) in sides.iter_mut().zip(&mut flags).zip(&self.buffers) {
            for b in buffer {
                side.push((encode_batch(&b.batch)?, b.latest));
                side_flags.push(b.matched.clone());
            }
        }
        // An inner join's state is the buffers alone; an outer one's adds the flags.
        let bytes = if self.spec.outer.contains(&true) {
            postcard::to_stdvec(&(sides, flags))
        } else {
            postcard::to_stdvec(&sides)
        };
        Ok(Some(bytes.expect("join state encoding cannot fail")))
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
        let bad = |e: postcard::Error| FungiError::State(format!("bad interval join state: {e}"));
        for (old, bytes) in &state.states {
            type Sides = [Vec<(Vec<u8>, i64)>; 2];
            let (sides, flags): (Sides, [Vec<Vec<bool>>; 2]) = if self.spec.outer.contains(&true) {
                postcard::from_bytes(bytes).map_err(bad)?
            } else {
                (
                    postcard::from_bytes(bytes).map_err(bad)?,
                    Default::default(),
                )
            };
            for (side, (batches, side_flags)) in sides.into_iter().zip(flags).enumerate() {
                if !keeps(side, *old) {
                    continue;
                }
                let mut side_flags = side_flags.into_iter();
                for (bytes, latest) in batches {
                    let mut batch = decode_batch(&bytes)?;
                    let mut matched = side_flags.next().unwrap_or_default();
                    if matched.len() != batch.num_rows() {
                        matched = vec![false; batch.num_rows()];
                    }
                    if let Some(f) = &filter {
                        let columns: Vec<ArrayRef> = keys[side]
                            .iter()
                            .map(|&i| batch.column(i).clone())
                            .collect();
                        let mask = f.mask(&columns, batch.num_rows())?;
                        batch = filter_record_batch(&batch, &mask)?;
                        matched = matched
                            .into_iter()
                            .zip(mask.values().iter())
                            .filter_map(|(m, keep)| keep.then_some(m))
                            .collect();
                    }
                    if batch.num_rows() > 0 {
                        if !self.spec.outer[side] {
                            matched.clear();
                        }
                        self.buffers[side].push(Buffered {
                            batch,
                            latest,
                            matched,
                        });
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
        let matched = self.probe(side, &batch, out)?;
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
            self.buffers[side].push(Buffered {
                batch,
                latest,
                matched,
            });
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark
            && (t != i64::MAX || self.spec.outer.contains(&true))
        {
            self.evict(t, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        if self.spec.outer.contains(&true) {
            self.evict(i64::MAX, out)?;
        }
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
            outer: [false, false],
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

    /// The output rows as (left key, left time, right key, right time), NULLs as None.
    fn rows_of(out: Output) -> Vec<[Option<i64>; 4]> {
        use arrow::array::Array;
        let mut rows = Vec::new();
        for item in out.items {
            if let OutputItem::Batch(None, b) = item {
                let c = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
                let cols = [c(0), c(1), c(2), c(3)];
                for r in 0..b.num_rows() {
                    rows.push(cols.each_ref().map(|c| c.is_valid(r).then(|| c.value(r))));
                }
            }
        }
        rows.sort_unstable();
        rows
    }

    fn outer_join(outer: [bool; 2]) -> Box<dyn Operator> {
        let spec = IntervalJoinSpec {
            time: (1, 1),
            keys: vec![(0, 0)],
            lower: -10,
            upper: 0,
            broadcast: None,
            outer,
        };
        let schema = batch(&[]).schema();
        let (factory, output) =
            IntervalJoinOperator::factory(spec, schema.clone(), schema).unwrap();
        assert_eq!(
            output
                .fields()
                .iter()
                .map(|f| f.is_nullable())
                .collect::<Vec<_>>(),
            [outer[1], outer[1], outer[0], outer[0]]
        );
        factory(&SubtaskInfo {
            index: 0,
            parallelism: 1,
            max_parallelism: 128,
        })
        .unwrap()
    }

    #[test]
    fn outer_rows_without_a_partner_are_padded_once_they_can_no_longer_match() {
        // `l.t - r.t` in [-10, 0]; a FULL join.
        let mut j = outer_join([true, true]);
        let mut out = Output::default();
        j.process_batch_from(0, batch(&[(1, 95), (3, 50)]), &mut out)
            .unwrap();
        j.process_batch_from(1, batch(&[(1, 100), (2, 100)]), &mut out)
            .unwrap();
        assert_eq!(rows_of(out), vec![[Some(1), Some(95), Some(1), Some(100)]]);
        // At watermark 70, (3, 50) can no longer match (right rows from 60 on are to
        // come), but it leaves with its batch, whose other row still can: nothing yet.
        let mut out = Output::default();
        j.process_watermark(Watermark::EventTime(70), &mut out)
            .unwrap();
        assert!(rows_of(out).is_empty());
        let state = j
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        // Restored, what met a partner stays matched.
        let mut j = outer_join([true, true]);
        j.restore_state(&RestoredState {
            checkpoint: 1,
            old_parallelism: 1,
            states: vec![(0, state)],
            root: Default::default(),
        })
        .unwrap();
        let mut out = Output::default();
        j.process_watermark(Watermark::EventTime(200), &mut out)
            .unwrap();
        assert_eq!(
            rows_of(out),
            vec![
                [None, None, Some(2), Some(100)],
                [Some(3), Some(50), None, None]
            ]
        );
        // The end of input pads what is left: nothing, here.
        let mut out = Output::default();
        j.finish(&mut out).unwrap();
        assert!(rows_of(out).is_empty());
    }

    #[test]
    fn a_left_interval_join_pads_left_rows_only_and_at_the_end_of_input() {
        let mut j = outer_join([true, false]);
        let mut out = Output::default();
        j.process_batch_from(1, batch(&[(5, 100)]), &mut out)
            .unwrap();
        j.process_batch_from(0, batch(&[(5, 200), (6, 100)]), &mut out)
            .unwrap();
        assert!(rows_of(out).is_empty());
        let mut out = Output::default();
        j.process_watermark(Watermark::MAX, &mut out).unwrap();
        assert_eq!(
            rows_of(out),
            vec![
                [Some(5), Some(200), None, None],
                [Some(6), Some(100), None, None]
            ]
        );
    }
}
