//! Coalesces small batches into batches of at least `target` rows, so that a costly
//! per-call step downstream (a plugin function: one Wasm call per batch) pays its fixed
//! cost per thousands of rows. Buffered rows go out before any watermark, on every tick
//! (so latency stays within the tick) and at the end of the input; batches already big
//! enough pass through untouched.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use fungi_common::ids::CheckpointId;
use fungi_common::{Result, Watermark};

use crate::operator::{Operator, OperatorFactory, Output};

/// Buffers batches until `target` rows.
pub struct CoalesceOperator {
    target: usize,
    buffered: Vec<RecordBatch>,
    rows: usize,
}

impl CoalesceOperator {
    /// A factory coalescing to `target` rows.
    pub fn factory(target: usize) -> OperatorFactory {
        Arc::new(move |_| {
            Ok(Box::new(CoalesceOperator {
                target: target.max(1),
                buffered: Vec::new(),
                rows: 0,
            }) as Box<dyn Operator>)
        })
    }

    fn flush(&mut self, out: &mut Output) -> Result<()> {
        match self.buffered.len() {
            0 => {}
            1 => out.emit(self.buffered.pop().expect("one")),
            _ => {
                let schema = self.buffered[0].schema();
                out.emit(concat_batches(&schema, &self.buffered)?);
                self.buffered.clear();
            }
        }
        self.rows = 0;
        Ok(())
    }
}

impl Operator for CoalesceOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if self.buffered.is_empty() && batch.num_rows() >= self.target {
            out.emit(batch);
            return Ok(());
        }
        self.rows += batch.num_rows();
        self.buffered.push(batch);
        if self.rows >= self.target {
            self.flush(out)?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        self.flush(out)?;
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_tick(&mut self, _now_ms: i64, out: &mut Output) -> Result<()> {
        self.flush(out)
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        self.flush(out)
    }

    // Buffered rows travel ahead of the barrier: nothing to save.
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        self.flush(out)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::OutputItem;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    fn sizes(out: &Output) -> Vec<String> {
        out.items
            .iter()
            .map(|i| match i {
                OutputItem::Batch(_, b) => b.num_rows().to_string(),
                OutputItem::Watermark(_) => "wm".into(),
                OutputItem::LatencyMarker(_) | OutputItem::Barrier(_) => "control".into(),
            })
            .collect()
    }

    #[test]
    fn coalesces_until_the_target_and_flushes_before_watermarks() {
        let mut op = CoalesceOperator {
            target: 100,
            buffered: Vec::new(),
            rows: 0,
        };
        let mut out = Output::default();
        for _ in 0..3 {
            op.process_batch(batch(40), &mut out).unwrap();
        }
        op.process_batch(batch(10), &mut out).unwrap();
        op.process_watermark(Watermark::EventTime(5), &mut out)
            .unwrap();
        op.process_batch(batch(500), &mut out).unwrap();
        op.process_batch(batch(7), &mut out).unwrap();
        op.finish(&mut out).unwrap();
        assert_eq!(sizes(&out), ["120", "10", "wm", "500", "7"]);
    }
}
