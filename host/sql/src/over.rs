//! OVER aggregations ordered by event time: `agg(x) OVER (PARTITION BY k ORDER BY ts
//! ROWS BETWEEN n PRECEDING AND CURRENT ROW)`, `RANGE BETWEEN INTERVAL 'd' PRECEDING AND
//! CURRENT ROW`, or either from `UNBOUNDED PRECEDING`, as Flink runs them.
//!
//! Every row is emitted once, with its aggregates appended, when the watermark reaches
//! its time: rows wait until then, so that each partition's rows are aggregated in time
//! order whatever order they arrived in (rows of one time in arrival order). Late rows
//! go to the `late` side output, judged as Flink does: over a bounded frame, a row whose
//! time is not after the last time its partition already emitted
//! (`RowTimeRowsBoundedPrecedingFunction`, `RowTimeRangeBoundedPrecedingFunction`); over
//! an unbounded one, a row arriving at or behind the watermark
//! (`AbstractRowTimeUnboundedPrecedingOver`). Rows of one time are peers in a RANGE
//! frame (each sees the others), not in a ROWS frame.
//!
//! The aggregates are DataFusion's window expressions, evaluated once per partition and
//! watermark over the partition's kept rows and its new rows (sorted by time): the same
//! frames, types and NULL handling as a batch query. Each partition keeps only the rows
//! a later frame can reach (the last n rows, or those within d of its last time), so the
//! state is bounded by the frame; an unbounded frame keeps no rows but carries running
//! aggregates ([`crate::over_running`]). Checkpoints save the kept rows, the rows still
//! waiting, and each partition's last time and carried values.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use arrow::compute::{SortColumn, concat, concat_batches, filter_record_batch, lexsort_to_indices};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::window::WindowExpr;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result, Watermark};
use fungi_execution::RestoredState;
use fungi_execution::metrics::OperatorMetrics;
use fungi_execution::operator::{OperatorContext, OperatorFactory};
use fungi_execution::operators::{LATE_TAG, rescale_filter};
use fungi_execution::{Operator, Output};
use fungi_streaming::keys::KeyTable;
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use crate::over_running::{Running, df_error};

/// How far back an OVER aggregation's frame reaches from the current row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverFrame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`.
    Rows(u64),
    /// `RANGE BETWEEN INTERVAL 'd' PRECEDING AND CURRENT ROW`, d in milliseconds.
    Range(i64),
    /// `ROWS` or `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`: no row is kept,
    /// each partition carries its running aggregates (see [`crate::over_running`]).
    Unbounded,
}

/// What an OVER aggregation computes.
#[derive(Debug, Clone)]
pub(crate) struct OverSpec {
    /// Partition columns of the input.
    pub(crate) partition: Vec<usize>,
    /// The event-time column the rows are ordered by.
    pub(crate) time: usize,
    /// The frame every aggregate shares.
    pub(crate) frame: OverFrame,
    /// The aggregates, over the input's columns, each with the frame above.
    pub(crate) functions: Vec<Arc<dyn WindowExpr>>,
    /// For an unbounded frame: how each aggregate continues its carried value.
    pub(crate) running: Vec<Running>,
    /// The time column is processing time: rows are aggregated as they arrive, in
    /// arrival order, and none is late.
    pub(crate) proctime: bool,
}

/// Aggregates each row over the rows before it in its partition (see the module docs).
pub(crate) struct OverAggregateOperator {
    spec: OverSpec,
    input: SchemaRef,
    output: SchemaRef,
    keys: KeyTable,
    /// Per partition id: the time of the last row emitted (`i64::MIN`: none yet).
    last_time: Vec<i64>,
    /// Rows waiting for the watermark, in arrival order, each batch with its earliest
    /// time (`i64::MIN` with a row without one).
    pending: Vec<(RecordBatch, i64)>,
    /// The rows later frames may reach, sorted by partition, time and arrival.
    kept: RecordBatch,
    kept_ids: Vec<u32>,
    /// Unbounded frames: per partition id, the carried values of every aggregate, in
    /// order (`initial` for a partition not seen yet).
    carried: Vec<Vec<ScalarValue>>,
    initial: Vec<ScalarValue>,
    /// The latest watermark.
    watermark: i64,
    /// Per input column, whether an aggregate (or the partition or order) reads it.
    read: Vec<bool>,
    /// Scratch: the partitions a batch of new rows touches (all false between calls).
    touched: Vec<bool>,
    subtask: SubtaskInfo,
    metrics: Option<Arc<OperatorMetrics>>,
    late_tag: Arc<str>,
    scratch_ids: Vec<u32>,
}

/// The rows of `batch` where `mask` is set.
fn select(batch: &RecordBatch, mask: &BooleanArray) -> Result<RecordBatch> {
    Ok(filter_record_batch(batch, mask)?)
}

/// The earliest time of `times`; `i64::MIN` when one is NULL (such a row is due, and
/// late, at the next watermark).
fn earliest_time(times: &TimestampMillisecondArray) -> i64 {
    if times.null_count() > 0 {
        return i64::MIN;
    }
    times.values().iter().copied().min().unwrap_or(i64::MAX)
}

/// Per input column, whether the aggregates, the partition or the time read it.
fn read_columns(spec: &OverSpec, width: usize) -> Vec<bool> {
    use datafusion::physical_expr::utils::collect_columns;
    let mut read = vec![false; width];
    for &c in spec.partition.iter().chain([&spec.time]) {
        read[c] = true;
    }
    for f in &spec.functions {
        let exprs = f
            .expressions()
            .into_iter()
            .chain(f.order_by().iter().map(|s| s.expr.clone()))
            .chain(f.partition_by().iter().cloned());
        for e in exprs {
            for c in collect_columns(&e) {
                if c.index() < width {
                    read[c.index()] = true;
                }
            }
        }
    }
    read
}

impl OverAggregateOperator {
    /// A factory over rows of `input`; returns the output schema (the input's columns,
    /// then one per aggregate).
    pub(crate) fn factory(
        spec: OverSpec,
        input: SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        let output = Self::new(&spec, &input)?.output;
        let out = output.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            let mut over = Self::new(&spec, &input)?;
            over.subtask = *s;
            Ok(Box::new(over) as Box<dyn Operator>)
        });
        Ok((factory, out))
    }

    fn new(spec: &OverSpec, input: &SchemaRef) -> Result<Self> {
        if !matches!(input.field(spec.time).data_type(), DataType::Timestamp(..)) {
            return Err(FungiError::Plan(format!(
                "an OVER aggregation orders by a time column; '{}' is {}",
                input.field(spec.time).name(),
                input.field(spec.time).data_type()
            )));
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for f in &spec.functions {
            let field = f
                .field()
                .map_err(|e| FungiError::Plan(format!("OVER aggregate {}: {e}", f.name())))?;
            fields.push(field.as_ref().clone().with_nullable(true));
        }
        if (spec.frame == OverFrame::Unbounded) != (spec.running.len() == spec.functions.len()) {
            return Err(FungiError::Plan(
                "an OVER aggregation over an unbounded frame needs a running form of each \
                 aggregate"
                    .into(),
            ));
        }
        let mut initial = Vec::new();
        for (r, f) in spec.running.iter().zip(&spec.functions) {
            initial.extend(r.initial(f)?);
        }
        let key_fields = spec
            .partition
            .iter()
            .map(|&p| input.field(p).clone().with_nullable(true))
            .collect();
        Ok(OverAggregateOperator {
            spec: spec.clone(),
            input: input.clone(),
            output: Arc::new(Schema::new(fields)),
            keys: KeyTable::new(key_fields)?,
            last_time: Vec::new(),
            pending: Vec::new(),
            kept: RecordBatch::new_empty(input.clone()),
            kept_ids: Vec::new(),
            carried: Vec::new(),
            initial,
            watermark: i64::MIN,
            read: read_columns(spec, input.fields().len()),
            touched: Vec::new(),
            subtask: SubtaskInfo {
                index: 0,
                parallelism: 1,
                max_parallelism: 1,
            },
            metrics: None,
            late_tag: Arc::from(LATE_TAG),
            scratch_ids: Vec::new(),
        })
    }

    /// The time column of `batch` in milliseconds.
    fn times(&self, batch: &RecordBatch) -> Result<TimestampMillisecondArray> {
        let time = arrow::compute::cast(
            batch.column(self.spec.time),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        Ok(time
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to milliseconds")
            .clone())
    }

    /// Interns the partition keys of `batch` into `ids`.
    fn intern(&mut self, batch: &RecordBatch, ids: &mut Vec<u32>) -> Result<()> {
        let columns: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|&p| batch.column(p).clone())
            .collect();
        self.keys.intern(&columns, batch.num_rows(), ids)?;
        if self.last_time.len() < self.keys.len() {
            self.last_time.resize(self.keys.len(), i64::MIN);
            self.carried.resize(self.keys.len(), self.initial.clone());
        }
        Ok(())
    }

    /// Emits every waiting row whose time is at or behind `watermark`.
    fn fire(&mut self, watermark: i64, out: &mut Output) -> Result<()> {
        // Only the waiting batches that hold a due row are split; the others stay as
        // they are (no copy).
        let mut due_parts = Vec::new();
        let mut still = Vec::with_capacity(self.pending.len());
        for (batch, earliest) in std::mem::take(&mut self.pending) {
            if earliest > watermark {
                still.push((batch, earliest));
                continue;
            }
            let times = self.times(&batch)?;
            let due: BooleanArray = times
                .iter()
                .map(|t| Some(t.is_none_or(|t| t <= watermark)))
                .collect();
            if due.true_count() == batch.num_rows() {
                due_parts.push(batch);
                continue;
            }
            let later = select(&batch, &arrow::compute::not(&due)?)?;
            due_parts.push(select(&batch, &due)?);
            let earliest = earliest_time(&self.times(&later)?);
            still.push((later, earliest));
        }
        self.pending = still;
        if due_parts.is_empty() {
            return Ok(());
        }
        let due = concat_batches(&self.input, &due_parts)?;
        // Late: no time, or not after the last time the partition emitted.
        let mut ids = std::mem::take(&mut self.scratch_ids);
        self.intern(&due, &mut ids)?;
        let times = self.times(&due)?;
        let on_time: BooleanArray = (0..due.num_rows())
            .map(|i| {
                Some(
                    times.is_valid(i)
                        && (self.spec.proctime || times.value(i) > self.last_time[ids[i] as usize]),
                )
            })
            .collect();
        let fresh = self.drop_late(&due, &on_time, out)?;
        let fresh_ids: Vec<u32> = ids
            .iter()
            .zip(on_time.values().iter())
            .filter_map(|(&id, ok)| ok.then_some(id))
            .collect();
        self.scratch_ids = ids;
        if fresh.num_rows() > 0 {
            self.aggregate(fresh, fresh_ids, out)?;
        }
        Ok(())
    }

    /// The rows of `batch` that are `on_time`; the others go to the late side output.
    fn drop_late(
        &self,
        batch: &RecordBatch,
        on_time: &BooleanArray,
        out: &mut Output,
    ) -> Result<RecordBatch> {
        if on_time.true_count() == batch.num_rows() {
            return Ok(batch.clone());
        }
        let late = select(batch, &arrow::compute::not(on_time)?)?;
        if let Some(m) = &self.metrics {
            m.late_records
                .fetch_add(late.num_rows() as u64, Ordering::Relaxed);
        }
        out.emit_side(&self.late_tag, late);
        select(batch, on_time)
    }

    /// Aggregates `fresh` rows (partition ids `fresh_ids`) over the kept rows and emits
    /// them; then keeps what later frames can reach.
    fn aggregate(
        &mut self,
        fresh: RecordBatch,
        fresh_ids: Vec<u32>,
        out: &mut Output,
    ) -> Result<()> {
        // Only the partitions with new rows take part: the others' kept rows stay aside.
        let mut touched = std::mem::take(&mut self.touched);
        touched.resize(self.keys.len(), false);
        fresh_ids.iter().for_each(|&id| touched[id as usize] = true);
        let in_play: BooleanArray = self
            .kept_ids
            .iter()
            .map(|&id| Some(touched[id as usize]))
            .collect();
        let (aside, aside_ids) = if in_play.true_count() == self.kept.num_rows() {
            (None, Vec::new())
        } else {
            let aside = select(&self.kept, &arrow::compute::not(&in_play)?)?;
            let ids: Vec<u32> = self
                .kept_ids
                .iter()
                .copied()
                .filter(|&id| !touched[id as usize])
                .collect();
            (Some(aside), ids)
        };
        let playing = match aside {
            None => self.kept.clone(),
            Some(_) => select(&self.kept, &in_play)?,
        };
        let playing_ids = self
            .kept_ids
            .iter()
            .copied()
            .filter(|&id| touched[id as usize]);
        let old = playing.num_rows();
        // Sorted and aggregated without the columns no aggregate reads; the emitted rows
        // are taken whole from `fresh`.
        let all = concat_batches(&self.input, [&playing, &self.narrow(fresh.clone())?])?;
        let ids = UInt32Array::from_iter_values(playing_ids.chain(fresh_ids.iter().copied()));
        fresh_ids
            .iter()
            .for_each(|&id| touched[id as usize] = false);
        self.touched = touched;
        let times = self.times(&all)?;
        let arrival = UInt64Array::from_iter_values(0..all.num_rows() as u64);
        // Processing time: in arrival order (the clock is read once per batch).
        let mut by = vec![SortColumn {
            values: Arc::new(ids.clone()),
            options: None,
        }];
        if !self.spec.proctime {
            by.push(SortColumn {
                values: Arc::new(times),
                options: None,
            });
        }
        by.push(SortColumn {
            values: Arc::new(arrival),
            options: None,
        });
        let order = lexsort_to_indices(&by, None)?;
        let sorted = arrow::compute::take_record_batch(&all, &order)?;
        let sorted_ids: Vec<u32> = order
            .values()
            .iter()
            .map(|&i| ids.value(i as usize))
            .collect();
        let is_new: Vec<bool> = order.values().iter().map(|&i| i as usize >= old).collect();
        let times = self.times(&sorted)?;
        let mut emitted: Vec<u32> = Vec::with_capacity(fresh.num_rows());
        let mut results: Vec<Vec<ArrayRef>> = vec![Vec::new(); self.spec.functions.len()];
        let mut keep = vec![false; sorted.num_rows()];
        let mut start = 0;
        while start < sorted.num_rows() {
            let id = sorted_ids[start];
            let end = start + sorted_ids[start..].iter().take_while(|&&x| x == id).count();
            // A partition's new rows follow its kept rows: they are after its last time.
            let first_new = (start..end).find(|&i| is_new[i]).unwrap_or(end);
            if first_new < end {
                let rows = sorted.slice(start, end - start);
                let mut slot = 0;
                for (i, (f, result)) in self.spec.functions.iter().zip(&mut results).enumerate() {
                    let values = match self.spec.running.get(i) {
                        // Unbounded: every row of the run is new.
                        Some(running) => {
                            let carried = &mut self.carried[id as usize];
                            let width = running.width();
                            let values =
                                running.evaluate(f, &rows, &mut carried[slot..slot + width])?;
                            slot += width;
                            values
                        }
                        None => f
                            .evaluate(&rows)
                            .map_err(df_error)?
                            .slice(first_new - start, end - first_new),
                    };
                    result.push(values);
                }
                emitted.extend(first_new as u32..end as u32);
                let last = &mut self.last_time[id as usize];
                *last = (*last).max(times.value(end - 1));
            }
            match self.spec.frame {
                OverFrame::Rows(n) => {
                    let from = end.saturating_sub(n as usize).max(start);
                    keep[from..end].iter_mut().for_each(|k| *k = true);
                }
                OverFrame::Unbounded => {}
                OverFrame::Range(d) => {
                    let last = self.last_time[id as usize];
                    for (i, k) in keep.iter_mut().enumerate().take(end).skip(start) {
                        *k = times.value(i) > last.saturating_sub(d);
                    }
                }
            }
            start = end;
        }
        if !emitted.is_empty() {
            let from_fresh: UInt32Array = emitted
                .iter()
                .map(|&p| order.value(p as usize) - old as u32)
                .collect();
            let rows = arrow::compute::take_record_batch(&fresh, &from_fresh)?;
            let mut columns = rows.columns().to_vec();
            for parts in &results {
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                columns.push(concat(&parts)?);
            }
            out.emit(RecordBatch::try_new(self.output.clone(), columns)?);
        }
        // Kept rows hold only the columns the aggregates read (the others NULL): they
        // are never emitted again.
        let keep = BooleanArray::from(keep);
        let kept = select(&sorted, &keep)?;
        let mut kept_ids: Vec<u32> = sorted_ids
            .iter()
            .zip(keep.values().iter())
            .filter_map(|(&id, k)| k.then_some(id))
            .collect();
        match aside {
            None => {
                self.kept = kept;
                self.kept_ids = kept_ids;
            }
            Some(aside) => {
                self.kept = concat_batches(&self.input, [&aside, &kept])?;
                let mut ids = aside_ids;
                ids.append(&mut kept_ids);
                self.kept_ids = ids;
            }
        }
        Ok(())
    }

    /// `rows` with the columns no aggregate reads replaced by NULLs.
    fn narrow(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let columns = rows
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if self.read[i] || c.null_count() == c.len() {
                    c.clone()
                } else {
                    arrow::array::new_null_array(c.data_type(), c.len())
                }
            })
            .collect();
        Ok(RecordBatch::try_new(rows.schema(), columns)?)
    }

    /// The partitions' last times: partition columns, then `last_time`.
    fn marks(&self) -> Result<RecordBatch> {
        let ids: Vec<u32> = (0..self.last_time.len() as u32)
            .filter(|&id| self.last_time[id as usize] != i64::MIN)
            .collect();
        let mut fields: Vec<Field> = self.keys.fields().to_vec();
        fields.push(Field::new("last_time", DataType::Int64, false));
        let mut columns = self.keys.columns(&ids)?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|&id| self.last_time[id as usize]),
        )));
        for (slot, first) in self.initial.iter().enumerate() {
            fields.push(Field::new(
                format!("carried_{slot}"),
                first.data_type(),
                true,
            ));
            let values = ids
                .iter()
                .map(|&id| self.carried[id as usize][slot].clone());
            columns.push(if ids.is_empty() {
                arrow::array::new_empty_array(&first.data_type())
            } else {
                ScalarValue::iter_to_array(values).map_err(df_error)?
            });
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(ids.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }
}

impl Operator for OverAggregateOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        // Over an unbounded frame a row is late when it arrives behind the watermark,
        // as in Flink's `AbstractRowTimeUnboundedPrecedingOver`.
        let batch = if self.spec.frame == OverFrame::Unbounded && !self.spec.proctime {
            let times = self.times(&batch)?;
            let on_time: BooleanArray = times
                .iter()
                .map(|t| Some(t.is_some_and(|t| t > self.watermark)))
                .collect();
            self.drop_late(&batch, &on_time, out)?
        } else {
            batch
        };
        if batch.num_rows() > 0 {
            let earliest = earliest_time(&self.times(&batch)?);
            self.pending.push((batch, earliest));
            if self.spec.proctime {
                self.fire(i64::MAX, out)?;
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark {
            self.watermark = self.watermark.max(t);
            self.fire(t, out)?;
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        self.fire(i64::MAX, out)
    }

    // The kept rows, the waiting rows and the partitions' last times.
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        if checkpoint.is_final() {
            return Ok(None);
        }
        let waiting: Vec<&RecordBatch> = self.pending.iter().map(|(b, _)| b).collect();
        let waiting = concat_batches(&self.input, waiting)?;
        let parts = (
            encode_batch(&self.kept)?,
            encode_batch(&waiting)?,
            encode_batch(&self.marks()?)?,
        );
        Ok(Some(
            postcard::to_stdvec(&parts).expect("OVER aggregation state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        let key_count = self.spec.partition.len();
        for (_, bytes) in &state.states {
            let (kept, waiting, marks): (Vec<u8>, Vec<u8>, Vec<u8>) =
                postcard::from_bytes(bytes)
                    .map_err(|e| FungiError::State(format!("bad OVER aggregation state: {e}")))?;
            let (mut kept, mut waiting, mut marks) = (
                decode_batch(&kept)?,
                decode_batch(&waiting)?,
                decode_batch(&marks)?,
            );
            if let Some(f) = &filter {
                kept = f.retain(kept, &self.spec.partition)?;
                waiting = f.retain(waiting, &self.spec.partition)?;
                marks = f.retain(marks, &(0..key_count).collect::<Vec<_>>())?;
            }
            let mut ids = Vec::new();
            let key_columns: Vec<ArrayRef> = marks.columns()[..key_count].to_vec();
            self.keys.intern(&key_columns, marks.num_rows(), &mut ids)?;
            self.last_time.resize(self.keys.len(), i64::MIN);
            self.carried.resize(self.keys.len(), self.initial.clone());
            if marks.num_columns() != key_count + 1 + self.initial.len() {
                return Err(FungiError::State(
                    "OVER aggregation state of another query: its aggregates differ".into(),
                ));
            }
            let times = marks
                .column(key_count)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| {
                    FungiError::State("bad OVER aggregation state: last times".into())
                })?;
            for (i, &id) in ids.iter().enumerate() {
                let t = &mut self.last_time[id as usize];
                *t = (*t).max(times.value(i));
                for slot in 0..self.initial.len() {
                    let column = marks.column(key_count + 1 + slot);
                    self.carried[id as usize][slot] =
                        ScalarValue::try_from_array(column, i).map_err(df_error)?;
                }
            }
            self.intern(&kept, &mut ids)?;
            self.kept = concat_batches(&self.input, [&self.kept, &kept])?;
            self.kept_ids.extend(&ids);
            if waiting.num_rows() > 0 {
                let earliest = earliest_time(&self.times(&waiting)?);
                self.pending.push((waiting, earliest));
            }
        }
        Ok(())
    }
}
