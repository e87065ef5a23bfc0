//! `avg`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::compute::kernels::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use fungi_common::{FungiError, Result};

use super::count::CountAccumulator;
use super::fold::{AddFold, fold_accumulator};
use super::{
    AggregateFunction, GroupsAccumulator, merge_sum_count_state, numeric_domain, one_arg,
    sum_count_state,
};

/// `avg`, typed as in Flink: the argument's type (an average of BIGINTs is a BIGINT,
/// truncated toward zero; of FLOATs a FLOAT). Integers are summed as BIGINT.
#[derive(Debug, Clone, Copy)]
pub struct Avg;

/// The result type of `avg` over `input` (Flink's rule: the argument's type).
fn avg_type(input: &[DataType]) -> Result<DataType> {
    let t = one_arg("avg", input)?;
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => Ok(t),
        DataType::Float16 => Ok(DataType::Float32),
        other => Err(FungiError::Plan(format!(
            "avg does not accept arguments of type {other}"
        ))),
    }
}

impl AggregateFunction for Avg {
    fn name(&self) -> &str {
        "avg"
    }
    fn merges_partial_states(&self) -> bool {
        true
    }
    fn return_type(&self, input: &[DataType]) -> Result<DataType> {
        avg_type(input)
    }
    fn accumulator(&self, input: &[DataType]) -> Result<Box<dyn GroupsAccumulator>> {
        let output = avg_type(input)?;
        let domain = numeric_domain("avg", &output)?;
        Ok(Box::new(AvgAccumulator {
            sum: fold_accumulator::<AddFold, AddFold>(&domain, domain.clone()),
            count: CountAccumulator::default(),
            output,
        }))
    }
    fn retracting_accumulator(
        &self,
        input: &[DataType],
    ) -> Result<Option<Box<dyn GroupsAccumulator>>> {
        self.accumulator(input).map(Some)
    }
}

struct AvgAccumulator {
    /// The sum in the numeric domain (BIGINT for integers, DOUBLE for floats).
    sum: Box<dyn GroupsAccumulator>,
    count: CountAccumulator,
    output: DataType,
}

impl GroupsAccumulator for AvgAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.sum.update_batch(values, groups, total)?;
        self.count.update_batch(values, groups, total)
    }
    fn retract_batch(&mut self, values: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        self.sum.retract_batch(values, groups, total)?;
        self.count.retract_batch(values, groups, total)
    }
    fn merge_groups(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<()> {
        self.sum.merge_groups(dst_src, total)?;
        self.count.merge_groups(dst_src, total)
    }
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef> {
        let sums = self.sum.evaluate(groups)?;
        let counts = self.count.evaluate(groups)?;
        let counts = counts.as_primitive::<Int64Type>().values();
        let averages: ArrayRef = match sums.data_type() {
            DataType::Float64 => Arc::new(
                sums.as_primitive::<Float64Type>()
                    .iter()
                    .zip(counts.iter())
                    .map(|(s, &c)| s.filter(|_| c > 0).map(|s| s / c as f64))
                    .collect::<PrimitiveArray<Float64Type>>(),
            ),
            // Integer division truncates toward zero, as Java's does in Flink.
            _ => Arc::new(
                sums.as_primitive::<Int64Type>()
                    .iter()
                    .zip(counts.iter())
                    .map(|(s, &c)| s.filter(|_| c > 0).map(|s| s / c))
                    .collect::<PrimitiveArray<Int64Type>>(),
            ),
        };
        Ok(cast::cast(&averages, &self.output)?)
    }
    fn reset(&mut self, groups: &[u32]) -> Result<()> {
        self.sum.reset(groups)?;
        self.count.reset(groups)
    }
    fn size(&self) -> usize {
        self.sum.size() + self.count.size()
    }
    fn state(&mut self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        sum_count_state(self.sum.as_mut(), &mut self.count, groups)
    }
    fn merge_state(&mut self, state: &[ArrayRef], groups: &[u32], total: usize) -> Result<()> {
        merge_sum_count_state(self.sum.as_mut(), &mut self.count, state, groups, total)
    }
}
