//! Assigns timestamps and watermarks in the middle of a stream (sources do it per split).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use fungi_common::time::timestamps_millis;
use fungi_common::{Result, Watermark};
use fungi_streaming::watermark::{SplitWatermarks, WatermarkStrategy};

use crate::operator::{Operator, OperatorFactory, Output};

/// Derives watermarks from a timestamp column; upstream watermarks are replaced.
pub struct WatermarkAssigner {
    watermarks: SplitWatermarks,
}

impl WatermarkAssigner {
    /// A factory for `strategy`.
    pub fn factory(strategy: WatermarkStrategy) -> OperatorFactory {
        Arc::new(move |_| {
            let mut watermarks = SplitWatermarks::new(strategy.clone());
            watermarks.add_split(0, Instant::now());
            Ok(Box::new(WatermarkAssigner { watermarks }) as Box<dyn Operator>)
        })
    }
}

impl Operator for WatermarkAssigner {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let col = self.watermarks.strategy().timestamp_column.clone();
        let index = batch
            .schema()
            .index_of(&col)
            .map_err(|_| fungi_streaming::unknown_column(&col, &batch.schema()))?;
        let ts = timestamps_millis(batch.column(index), &col)?;
        self.watermarks.observe(0, &ts, Instant::now());
        out.emit(batch);
        if let Some(wm) = self.watermarks.poll(Instant::now()) {
            out.emit_watermark(wm);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        // Only the end of input passes through: it closes every window.
        if watermark == Watermark::MAX {
            out.emit_watermark(watermark);
        }
        Ok(())
    }

    fn on_tick(&mut self, _now_ms: i64, out: &mut Output) -> Result<()> {
        if let Some(wm) = self.watermarks.poll(Instant::now()) {
            out.emit_watermark(wm);
        }
        Ok(())
    }
}
