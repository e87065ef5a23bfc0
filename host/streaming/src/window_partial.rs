//! Local pre-aggregation of a window without group keys: the first phase of a
//! local-global (two-phase) window aggregation.
//!
//! A window aggregation without keys has one subtask, so every row of every upstream
//! subtask crosses to it, between hosts too. [`PartialWindowAggregator`] runs on each
//! upstream subtask instead: it folds the rows it sees into one accumulator state per
//! slice, and sends those states on as *partial rows*, one per slice. The window
//! aggregation behind it ([`WindowAggregator::merging`]) merges partial rows where it
//! would have folded input rows, so only a handful of rows per slice and subtask travel.
//!
//! When partial rows are sent decides correctness, and keeps the results and late counts
//! those of the one-phase aggregation:
//! - A slice is sent once the watermark has passed its end, ahead of that watermark:
//!   no window containing the slice can fire before, and the global aggregation sees the
//!   partial row before the watermark that fires the window. Until then its rows are on
//!   time there too, since the global watermark is the smallest of its inputs'.
//! - Rows of a slice whose end the watermark has already passed are sent at once, as
//!   a partial row behind the batch they came in, so the global aggregation judges them
//!   against its own watermark at the moment the one-phase aggregation would have: late
//!   rows are counted there with the rows they stand for (`__rows`), rows within the
//!   allowed lateness update their windows.
//! - Everything is sent ahead of a checkpoint barrier, when the input goes idle and at
//!   the end of input, so the operator holds no state in a checkpoint.
//!
//! Session windows are not split: a session's extent depends on every row of its key.
//!
//! [`WindowAggregator::merging`]: crate::window_aggregate::WindowAggregator::merging

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fungi_common::time::timestamps_millis;
use fungi_common::{FungiError, Result};

use crate::aggregate::{BoundAggregates, GroupsAccumulator, bind};
use crate::window::WindowAssigner;
use crate::window_aggregate::{GroupIds, WindowAggregateSpec};

/// The column of a partial row holding its slice's start.
pub const PARTIAL_TIME: &str = "__time";
/// The column of a partial row holding how many input rows it aggregates.
pub const PARTIAL_ROWS: &str = "__rows";

/// The rows a [`PartialWindowAggregator`] emits: [`PARTIAL_TIME`], [`PARTIAL_ROWS`],
/// then every aggregate's state columns; and how many state columns each aggregate has.
pub fn partial_schema(
    spec: &WindowAggregateSpec,
    input: &SchemaRef,
) -> Result<(SchemaRef, Vec<usize>)> {
    let (schema, widths, _) = bind_partial(spec, input)?;
    Ok((schema, widths))
}

/// [`partial_schema`], with the aggregates bound to `input`.
fn bind_partial(
    spec: &WindowAggregateSpec,
    input: &SchemaRef,
) -> Result<(SchemaRef, Vec<usize>, BoundAggregates)> {
    check_splittable(spec)?;
    let mut bound = bind(&spec.aggregates, input, false)?;
    let mut fields = vec![
        Field::new(
            PARTIAL_TIME,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new(PARTIAL_ROWS, DataType::Int64, false),
    ];
    let mut widths = Vec::with_capacity(bound.accumulators.len());
    for (i, acc) in bound.accumulators.iter_mut().enumerate() {
        let state = acc.state(&[])?;
        widths.push(state.len());
        for (j, column) in state.iter().enumerate() {
            fields.push(Field::new(
                format!("__acc{i}_{j}"),
                column.data_type().clone(),
                true,
            ));
        }
    }
    Ok((Arc::new(Schema::new(fields)), widths, bound))
}

/// Refuses a spec that cannot be aggregated in two phases (see the module docs).
fn check_splittable(spec: &WindowAggregateSpec) -> Result<()> {
    if !spec.keys.is_empty() {
        return Err(FungiError::Plan(
            "local pre-aggregation is for windows without group keys".into(),
        ));
    }
    if spec.assigner.slice_size().is_none() {
        return Err(FungiError::Plan(
            "session windows cannot be pre-aggregated locally".into(),
        ));
    }
    if let Some(call) = spec
        .aggregates
        .iter()
        .find(|c| !c.function.merges_partial_states())
    {
        return Err(FungiError::Plan(format!(
            "{} cannot be pre-aggregated locally: its states do not merge",
            call.function.name()
        )));
    }
    Ok(())
}

/// One subtask's partial aggregates of a window without keys (see the module docs).
pub struct PartialWindowAggregator {
    assigner: WindowAssigner,
    slice: i64,
    time_column: String,
    time_index: usize,
    agg_inputs: Vec<Vec<usize>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    schema: SchemaRef,
    /// Slice start -> group id.
    slices: BTreeMap<i64, u32>,
    /// Rows folded into each group id.
    rows: Vec<i64>,
    ids: GroupIds,
    watermark: i64,
    group_indices: Vec<u32>,
}

impl std::fmt::Debug for PartialWindowAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialWindowAggregator")
            .field("assigner", &self.assigner)
            .field("watermark", &self.watermark)
            .field("slices", &self.slices.len())
            .finish()
    }
}

impl PartialWindowAggregator {
    /// Builds the aggregator for input rows of `input` schema; refuses a spec that
    /// cannot be split (group keys, session windows, aggregates whose states do not
    /// merge).
    pub fn try_new(spec: &WindowAggregateSpec, input: &SchemaRef) -> Result<Self> {
        let (schema, _, bound) = bind_partial(spec, input)?;
        let time_index = input
            .index_of(&spec.time_column)
            .map_err(|_| crate::unknown_column(&spec.time_column, input))?;
        Ok(PartialWindowAggregator {
            assigner: spec.assigner,
            slice: spec
                .assigner
                .slice_size()
                .expect("checked: sliced assigner"),
            time_column: spec.time_column.clone(),
            time_index,
            agg_inputs: bound.inputs,
            accumulators: bound.accumulators,
            schema,
            slices: BTreeMap::new(),
            rows: Vec::new(),
            ids: GroupIds::default(),
            watermark: i64::MIN,
            group_indices: Vec::new(),
        })
    }

    /// Schema of the partial rows (see [`partial_schema`]).
    pub fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Slices holding rows not sent yet.
    pub fn open_slices(&self) -> usize {
        self.slices.len()
    }

    /// Folds a batch into its slices; returns the partial rows of the slices whose end
    /// the watermark has already passed (rows behind it), to be sent right away.
    pub fn process_batch(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let ts = timestamps_millis(batch.column(self.time_index), &self.time_column)?;
        self.fold(batch, ts.values())?;
        if self.watermark == i64::MIN {
            return Ok(None);
        }
        self.send_ready()
    }

    fn fold(&mut self, batch: &RecordBatch, ts: &[i64]) -> Result<()> {
        if ts.is_empty() {
            return Ok(());
        }
        let mut groups = std::mem::take(&mut self.group_indices);
        groups.clear();
        groups.reserve(ts.len());
        // Rows mostly arrive in time order: the previous row's slice is the likely one.
        let mut last: Option<(i64, u32)> = None;
        for &t in ts {
            let s = self.assigner.slice_start(t, self.slice);
            let g = match last {
                Some((ls, g)) if ls == s => g,
                _ => {
                    let ids = &mut self.ids;
                    let g = *self.slices.entry(s).or_insert_with(|| ids.alloc());
                    if self.rows.len() <= g as usize {
                        self.rows.resize(g as usize + 1, 0);
                    }
                    last = Some((s, g));
                    g
                }
            };
            self.rows[g as usize] += 1;
            groups.push(g);
        }
        let total = self.ids.total();
        for (acc, inputs) in self.accumulators.iter_mut().zip(&self.agg_inputs) {
            let values: Vec<ArrayRef> = inputs.iter().map(|&i| batch.column(i).clone()).collect();
            acc.update_batch(&values, &groups, total)?;
        }
        self.group_indices = groups;
        Ok(())
    }

    /// Event time advanced to `watermark`: the partial rows of every slice that ends at
    /// or before it, to be sent ahead of the watermark.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        self.watermark = self.watermark.max(watermark);
        self.send_ready()
    }

    /// The partial rows of the slices that end at or before the watermark.
    fn send_ready(&mut self) -> Result<Option<RecordBatch>> {
        // A slice [s, s + slice) may be part of a window that fires at the watermark
        // once s + slice - 1 <= watermark.
        let bound = self.watermark.saturating_sub(self.slice).saturating_add(1);
        let ready: Vec<i64> = self.slices.range(..=bound).map(|(&s, _)| s).collect();
        self.send(&ready)
    }

    /// The partial rows of every open slice (ahead of a checkpoint barrier, or at the
    /// end of input).
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let all: Vec<i64> = self.slices.keys().copied().collect();
        self.send(&all)
    }

    fn send(&mut self, starts: &[i64]) -> Result<Option<RecordBatch>> {
        if starts.is_empty() {
            return Ok(None);
        }
        let mut groups = Vec::with_capacity(starts.len());
        let mut rows = Vec::with_capacity(starts.len());
        for s in starts {
            let g = self.slices.remove(s).expect("sending an open slice");
            groups.push(g);
            rows.push(std::mem::take(&mut self.rows[g as usize]));
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(starts.to_vec())),
            Arc::new(Int64Array::from(rows)),
        ];
        for acc in &mut self.accumulators {
            columns.extend(acc.state(&groups)?);
        }
        for acc in &mut self.accumulators {
            acc.reset(&groups)?;
        }
        if self.slices.is_empty() {
            // Every id is free again: start over so the accumulators stay small.
            self.ids = GroupIds::default();
        } else {
            self.ids.release(&groups);
        }
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}
