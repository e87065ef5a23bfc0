//! The `blackhole` sink: accepts everything and keeps nothing (for benchmarks).

use std::sync::Arc;

use arrow::array::RecordBatch;
use fungi_common::Result;
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, Output};

/// Discards its input; the runtime's `records_in` counter still counts it.
#[derive(Debug, Default, Clone, Copy)]
pub struct BlackholeSink;

impl BlackholeSink {
    /// A factory of blackhole sinks.
    pub fn factory() -> OperatorFactory {
        Arc::new(|_| Ok(Box::new(BlackholeSink) as Box<dyn Operator>))
    }
}

impl Operator for BlackholeSink {
    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        std::hint::black_box(batch);
        Ok(())
    }
}
