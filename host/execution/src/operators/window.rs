//! The window operator: runs a [`WindowAggregator`] on a keyed stream.

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
        // Validate (and learn the output schema) once, at planning time.
        let schema = WindowAggregator::try_new(&spec, input)?
            .output_schema()
            .clone();
        let input = input.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(WindowOperator {
                aggregator: WindowAggregator::try_new(&spec, &input)?,
                late_tag: Arc::from(LATE_TAG),
                metrics: None,
                subtask: *s,
            }) as Box<dyn Operator>)
        });
        Ok((factory, schema))
    }
}

impl Operator for WindowOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let outcome = self.aggregator.process_batch(&batch)?;
        if let Some(late) = outcome.late {
            if let Some(m) = &self.metrics {
                m.late_records
                    .fetch_add(late.num_rows() as u64, Ordering::Relaxed);
            }
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

/// For a restore into subtask `s`: the key groups it owns when the parallelism changed
/// since `state` was saved (its keys must be filtered), `None` when it did not.
pub(crate) fn rescale_filter(state: &RestoredState, s: &SubtaskInfo) -> Option<KeyGroupFilter> {
    state.rescaled(s.parallelism).then(|| {
        let key_groups = KeyGroups::new(s.max_parallelism);
        KeyGroupFilter {
            key_groups,
            owned: key_groups.range_for_subtask(s.index, s.parallelism),
        }
    })
}
