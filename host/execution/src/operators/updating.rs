//! The updating aggregate operator: runs an [`UpdatingAggregator`] on a keyed stream.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_common::Result;
use fungi_common::time::now_millis;
use fungi_streaming::updating_aggregate::{UpdatingAggregateSpec, UpdatingAggregator};

use crate::operator::{FINAL_CHECKPOINT, Operator, OperatorFactory, Output, not_checkpointable};

/// Aggregation without a window; emits a changelog (see `fungi_common::changelog`).
pub struct UpdatingAggregateOperator {
    aggregator: UpdatingAggregator,
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
        let factory: OperatorFactory = Arc::new(move |_| {
            Ok(Box::new(UpdatingAggregateOperator {
                aggregator: UpdatingAggregator::try_new(&spec, &input)?,
            }) as Box<dyn Operator>)
        });
        Ok((factory, schema))
    }
}

impl Operator for UpdatingAggregateOperator {
    fn snapshot_state(&mut self, checkpoint: u64, _out: &mut Output) -> Result<Option<Vec<u8>>> {
        // After the end of input nothing is left to restore.
        if checkpoint == FINAL_CHECKPOINT {
            return Ok(None);
        }
        Err(not_checkpointable("the updating aggregate operator"))
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
