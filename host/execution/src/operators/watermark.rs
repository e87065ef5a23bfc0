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
        let now = Instant::now();
        let mut from = 0;
        for to in self.watermarks.cuts(0, &ts).into_iter().chain([ts.len()]) {
            self.watermarks.observe(0, &ts.slice(from, to - from), now);
            out.emit(batch.slice(from, to - from));
            if let Some(wm) = self.watermarks.poll(now) {
                out.emit_watermark(wm);
            }
            from = to;
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

/// Watermarks by the wall clock, for windows over a processing-time attribute (rows
/// stamped with the wall clock just upstream, in the same task). After each batch and on
/// each tick it emits `now - 1`, so a window fires once the clock passes its end, with or
/// without new rows. Upstream event-time watermarks are dropped, except the final one at
/// the end of a bounded input, which flushes every window.
#[derive(Debug, Default)]
pub struct ProcessingTimeWatermarks {
    emitted: i64,
}

impl ProcessingTimeWatermarks {
    /// A factory.
    pub fn factory() -> OperatorFactory {
        Arc::new(|_| {
            Ok(Box::new(ProcessingTimeWatermarks { emitted: i64::MIN }) as Box<dyn Operator>)
        })
    }

    fn advance(&mut self, now_ms: i64, out: &mut Output) {
        let wm = now_ms - 1;
        if wm > self.emitted {
            self.emitted = wm;
            out.emit_watermark(Watermark::EventTime(wm));
        }
    }
}

impl Operator for ProcessingTimeWatermarks {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit(batch);
        self.advance(fungi_common::time::now_millis(), out);
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if watermark == Watermark::MAX {
            self.emitted = i64::MAX;
            out.emit_watermark(watermark);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Output) -> Result<()> {
        self.advance(now_ms, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::OutputItem;

    #[test]
    fn processing_time_watermarks_follow_the_clock_not_the_data() {
        let mut op = ProcessingTimeWatermarks { emitted: i64::MIN };
        let mut out = Output::default();
        op.process_watermark(Watermark::EventTime(5), &mut out)
            .unwrap();
        assert!(out.items.is_empty(), "event-time watermarks are dropped");
        op.on_tick(1_000, &mut out).unwrap();
        op.on_tick(900, &mut out).unwrap();
        op.process_watermark(Watermark::MAX, &mut out).unwrap();
        let marks: Vec<Watermark> = out
            .items
            .into_iter()
            .filter_map(|i| match i {
                OutputItem::Watermark(w) => Some(w),
                OutputItem::Batch(..) | OutputItem::LatencyMarker(_) | OutputItem::Barrier(_) => {
                    None
                }
            })
            .collect();
        assert_eq!(marks, vec![Watermark::EventTime(999), Watermark::MAX]);
    }
}
