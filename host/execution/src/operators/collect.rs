//! A sink that keeps what it receives in memory: for tests, examples and `SELECT` output.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use fungi_common::{Result, Watermark};

use crate::operator::{Operator, OperatorFactory, Output};

/// Batches and watermarks received by a [`CollectSink`], shared with the caller.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    inner: Arc<Mutex<CollectedInner>>,
}

#[derive(Debug, Default)]
struct CollectedInner {
    batches: Vec<RecordBatch>,
    watermarks: Vec<Watermark>,
}

impl Collected {
    /// Every batch received so far (all subtasks).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.inner.lock().expect("poisoned").batches.clone()
    }

    /// Number of rows received.
    pub fn rows(&self) -> usize {
        self.inner
            .lock()
            .expect("poisoned")
            .batches
            .iter()
            .map(|b| b.num_rows())
            .sum()
    }

    /// Watermarks received, in order.
    pub fn watermarks(&self) -> Vec<Watermark> {
        self.inner.lock().expect("poisoned").watermarks.clone()
    }
}

/// Collects every batch into a shared [`Collected`]; optionally sleeps per batch to play a
/// slow consumer.
#[derive(Debug, Clone)]
pub struct CollectSink {
    collected: Collected,
    delay: Option<Duration>,
}

impl CollectSink {
    /// A sink and the handle to read what it collected.
    pub fn new() -> (Self, Collected) {
        let collected = Collected::default();
        (
            CollectSink {
                collected: collected.clone(),
                delay: None,
            },
            collected,
        )
    }

    /// Sleeps `delay` after each batch (blocking the task), to simulate a slow sink.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// A factory whose subtasks all collect into the same place.
    pub fn factory(&self) -> OperatorFactory {
        let sink = self.clone();
        Arc::new(move |_| Ok(Box::new(sink.clone()) as Box<dyn Operator>))
    }
}

impl Operator for CollectSink {
    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        self.collected
            .inner
            .lock()
            .expect("poisoned")
            .batches
            .push(batch);
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, _out: &mut Output) -> Result<()> {
        self.collected
            .inner
            .lock()
            .expect("poisoned")
            .watermarks
            .push(watermark);
        Ok(())
    }
}
