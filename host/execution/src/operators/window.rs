//! The window operators: [`WindowOperator`] runs a [`WindowAggregator`] on a keyed
//! stream; [`WindowPartialOperator`] pre-aggregates a window without keys on each
//! upstream subtask, for a [`WindowOperator::merging`] behind it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_checkpoint::RestoredState;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::keys::KeyGroups;
use fungi_common::{Result, Watermark};
use fungi_streaming::state_codec::KeyGroupFilter;
use fungi_streaming::window_aggregate::{WindowAggregateSpec, WindowAggregator};
use fungi_streaming::window_partial::PartialWindowAggregator;

use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};

/// Tag of the side output that receives rows too late for their windows.
pub const LATE_TAG: &str = "late";

/// Windowed aggregation; late rows go to the side output [`LATE_TAG`].
pub struct WindowOperator {
    aggregator: WindowAggregator,
    late_tag: Arc<str>,
    metrics: Option<Arc<OperatorMetrics>>,
    subtask: SubtaskInfo,
}

impl WindowOperator {
    /// A factory for `spec` over input of `input` schema; also returns the output schema.
    pub fn factory(
        spec: WindowAggregateSpec,
        input: &SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        Self::factory_of(spec, input, WindowAggregator::try_new)
    }

    /// A factory for the global phase of a two-phase window aggregation: it merges the
    /// partial rows of [`WindowPartialOperator`]s made from the same `spec` and `input`.
    /// Also returns the output schema, the same as [`factory`](Self::factory)'s.
    pub fn merging(
        spec: WindowAggregateSpec,
        input: &SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        Self::factory_of(spec, input, WindowAggregator::merging)
    }

    /// A factory of operators around the aggregators `build` makes.
    fn factory_of(
        spec: WindowAggregateSpec,
        input: &SchemaRef,
        build: fn(&WindowAggregateSpec, &SchemaRef) -> Result<WindowAggregator>,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        // Validate (and learn the output schema) once, at planning time.
        let schema = build(&spec, input)?.output_schema().clone();
        let input = input.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(WindowOperator {
                aggregator: build(&spec, &input)?,
                late_tag: Arc::from(LATE_TAG),
                metrics: None,
                subtask: *s,
            }) as Box<dyn Operator>)
        });
        Ok((factory, schema))
    }
}

/// Counts the rows an aggregator classed as late since `before` (its earlier count).
fn count_late(metrics: &Option<Arc<OperatorMetrics>>, before: u64, now: u64) {
    if let Some(m) = metrics
        && now > before
    {
        m.late_records.fetch_add(now - before, Ordering::Relaxed);
    }
}

impl Operator for WindowOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let before = self.aggregator.late_records();
        let outcome = self.aggregator.process_batch(&batch)?;
        count_late(&self.metrics, before, self.aggregator.late_records());
        if let Some(late) = outcome.late {
            out.emit_side(&self.late_tag, late);
        }
        if let Some(updates) = outcome.updates {
            out.emit(updates);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark
            && let Some(fired) = self.aggregator.advance_watermark(t)?
        {
            out.emit(fired);
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        self.aggregator.snapshot().map(Some)
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        for (_, bytes) in &state.states {
            self.aggregator.restore(bytes, filter.as_ref())?;
        }
        Ok(())
    }
}

/// The local phase of a two-phase window aggregation (see
/// [`fungi_streaming::window_partial`]): folds its subtask's rows into one partial row
/// per slice, sent when the watermark passes the slice (at once for rows behind it),
/// ahead of every checkpoint barrier (so it saves no state) and when its input goes
/// idle or ends. The window behind it judges lateness.
pub struct WindowPartialOperator {
    aggregator: PartialWindowAggregator,
}

impl WindowPartialOperator {
    /// A factory for `spec` over input of `input` schema; also returns the schema of the
    /// partial rows. Refuses a spec that cannot be split in two phases.
    pub fn factory(
        spec: WindowAggregateSpec,
        input: &SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        let schema = PartialWindowAggregator::try_new(&spec, input)?
            .output_schema()
            .clone();
        let input = input.clone();
        let factory: OperatorFactory = Arc::new(move |_| {
            Ok(Box::new(WindowPartialOperator {
                aggregator: PartialWindowAggregator::try_new(&spec, &input)?,
            }) as Box<dyn Operator>)
        });
        Ok((factory, schema))
    }

    fn flush(&mut self, out: &mut Output) -> Result<()> {
        if let Some(partials) = self.aggregator.flush()? {
            out.emit(partials);
        }
        Ok(())
    }
}

impl Operator for WindowPartialOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if let Some(partials) = self.aggregator.process_batch(&batch)? {
            out.emit(partials);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        match watermark {
            Watermark::EventTime(t) => {
                if let Some(partials) = self.aggregator.advance_watermark(t)? {
                    out.emit(partials);
                }
            }
            // The window behind goes on without this input: send everything first, or
            // it could fire windows these rows belong to.
            Watermark::Idle => self.flush(out)?,
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        self.flush(out)
    }

    // Partial rows travel ahead of the barrier: nothing to save.
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        self.flush(out)?;
        Ok(None)
    }
}

/// For a restore into subtask `s`: the key groups it owns when the parallelism changed
/// since `state` was saved (its keys must be filtered), `None` when it did not.
pub fn rescale_filter(state: &RestoredState, s: &SubtaskInfo) -> Option<KeyGroupFilter> {
    state.rescaled(s.parallelism).then(|| {
        let key_groups = KeyGroups::new(s.max_parallelism);
        KeyGroupFilter {
            key_groups,
            owned: key_groups.range_for_subtask(s.index, s.parallelism),
        }
    })
}
