//! The updating aggregate operator: runs an [`UpdatingAggregator`] on a keyed stream.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_checkpoint::RestoredState;
use fungi_common::Result;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::time::now_millis;
use fungi_streaming::updating_aggregate::{UpdatingAggregateSpec, UpdatingAggregator};

use crate::operator::{Operator, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

/// Aggregation without a window; emits a changelog (see `fungi_common::changelog`).
pub struct UpdatingAggregateOperator {
    aggregator: UpdatingAggregator,
    subtask: SubtaskInfo,
}

impl UpdatingAggregateOperator {
    /// A factory for `spec` over `input`; also returns the output schema.
    pub fn factory(
        spec: UpdatingAggregateSpec,
        input: &SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        let schema = UpdatingAggregator::try_new(&spec, input)?
            .output_schema()
            .clone();
        let input = input.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(UpdatingAggregateOperator {
                aggregator: UpdatingAggregator::try_new(&spec, &input)?,
                subtask: *s,
            }) as Box<dyn Operator>)
        });
        Ok((factory, schema))
    }
}

impl Operator for UpdatingAggregateOperator {
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        // After the end of input nothing follows that would need the state.
        if checkpoint.is_final() {
            return Ok(None);
        }
        self.aggregator.snapshot().map(Some)
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        for (_, bytes) in &state.states {
            self.aggregator.restore(bytes, filter.as_ref())?;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        for b in self.aggregator.process_batch(&batch, now_millis())? {
            out.emit(b);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, _out: &mut Output) -> Result<()> {
        self.aggregator.expire(now_ms)?;
        Ok(())
    }
}
