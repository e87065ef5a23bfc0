//! Stateless batch functions: map, filter, flat_map.

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use fungi_common::Result;

use crate::operator::{Operator, OperatorFactory, Output};

type MapFn = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync>;
type FilterFn = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync>;
type FlatMapFn = Arc<dyn Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync>;

/// Applies a function to each batch.
pub struct MapOperator(MapFn);

impl MapOperator {
    /// A factory for `f` applied to every batch.
    pub fn factory(
        f: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> OperatorFactory {
        let f: MapFn = Arc::new(f);
        Arc::new(move |_| Ok(Box::new(MapOperator(f.clone())) as Box<dyn Operator>))
    }
}

impl Operator for MapOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.emit((self.0)(batch)?);
        Ok(())
    }
}

/// Keeps the rows for which a predicate (computed over the whole batch) is true.
pub struct FilterOperator(FilterFn);

impl FilterOperator {
    /// A factory for the predicate `f`; null counts as false.
    pub fn factory(
        f: impl Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync + 'static,
    ) -> OperatorFactory {
        let f: FilterFn = Arc::new(f);
        Arc::new(move |_| Ok(Box::new(FilterOperator(f.clone())) as Box<dyn Operator>))
    }
}

impl Operator for FilterOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = (self.0)(&batch)?;
        out.emit(filter_record_batch(&batch, &mask)?);
        Ok(())
    }
}

/// Turns each batch into any number of batches.
pub struct FlatMapOperator(FlatMapFn);

impl FlatMapOperator {
    /// A factory for `f`.
    pub fn factory(
        f: impl Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync + 'static,
    ) -> OperatorFactory {
        let f: FlatMapFn = Arc::new(f);
        Arc::new(move |_| Ok(Box::new(FlatMapOperator(f.clone())) as Box<dyn Operator>))
    }
}

impl Operator for FlatMapOperator {
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        for b in (self.0)(batch)? {
            out.emit(b);
        }
        Ok(())
    }
}
