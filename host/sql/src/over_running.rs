//! Running aggregates of OVER frames that start `UNBOUNDED PRECEDING`.
//!
//! Such a frame reaches every earlier row of the partition, so instead of keeping the
//! rows, each partition carries the aggregate of the rows it already emitted (two values
//! for AVG: the sum and the count). New rows are aggregated by DataFusion over
//! themselves alone, with the same frame (so peers of a RANGE frame are handled), and
//! the carried value is folded into every result with Arrow kernels: a COUNT adds it, a
//! SUM adds it where the new rows' sum is not NULL, MIN and MAX take the smaller or
//! larger, and AVG divides the two running sums. This is Flink's way (it keeps
//! accumulators, not rows), in columns.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, Scalar};
use arrow::compute::kernels::cmp::{eq, gt, lt};
use arrow::compute::kernels::numeric::{add_wrapping, div};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, is_null};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::window::WindowExpr;
use fungi_common::{FungiError, Result};

/// How an aggregate's results over new rows continue the partition's carried value.
#[derive(Debug, Clone)]
pub(crate) enum Running {
    /// COUNT: adds the carried count.
    Count,
    /// SUM: adds the carried sum (NULL: no value yet).
    Sum,
    /// MIN: the smaller of the two.
    Min,
    /// MAX: the larger of the two.
    Max,
    /// AVG: the running sum over the running count, in the aggregate's type; `sum` and
    /// `count` are the SUM and COUNT of its argument with its frame.
    Avg {
        /// SUM of the argument.
        sum: Arc<dyn WindowExpr>,
        /// COUNT of the argument.
        count: Arc<dyn WindowExpr>,
        /// The AVG's result type.
        output: DataType,
    },
}

impl Running {
    /// How many values a partition carries for this aggregate.
    pub(crate) fn width(&self) -> usize {
        match self {
            Running::Avg { .. } => 2,
            _ => 1,
        }
    }

    /// The carried values of a partition that has emitted nothing yet, for an aggregate
    /// `function`.
    pub(crate) fn initial(&self, function: &Arc<dyn WindowExpr>) -> Result<Vec<ScalarValue>> {
        let null_of = |f: &Arc<dyn WindowExpr>| -> Result<ScalarValue> {
            let field = f.field().map_err(df_error)?;
            ScalarValue::try_from(field.data_type()).map_err(df_error)
        };
        Ok(match self {
            Running::Count => vec![ScalarValue::Int64(Some(0))],
            Running::Sum | Running::Min | Running::Max => vec![null_of(function)?],
            Running::Avg { sum, .. } => vec![null_of(sum)?, ScalarValue::Int64(Some(0))],
        })
    }

    /// The aggregate `function` over `rows` (one partition's new rows, sorted by time),
    /// continued from `carried`, which becomes the value after the last row.
    pub(crate) fn evaluate(
        &self,
        function: &Arc<dyn WindowExpr>,
        rows: &arrow::array::RecordBatch,
        carried: &mut [ScalarValue],
    ) -> Result<ArrayRef> {
        let values = match self {
            Running::Count => count(evaluate(function, rows)?, &mut carried[0])?,
            Running::Sum => sum(evaluate(function, rows)?, &mut carried[0])?,
            Running::Min | Running::Max => {
                let values = evaluate(function, rows)?;
                let out = if carried[0].is_null() {
                    values
                } else {
                    let c = Scalar::new(carried[0].to_array().map_err(df_error)?);
                    let better = if matches!(self, Running::Min) {
                        lt(&values, &c)?
                    } else {
                        gt(&values, &c)?
                    };
                    // A NULL comparison (no value among the new rows) keeps the carried one.
                    zip(&better, &values, &c)?
                };
                carried[0] = last(&out)?;
                out
            }
            Running::Avg {
                sum: s,
                count: c,
                output,
            } => {
                let (carried_sum, carried_count) = carried.split_at_mut(1);
                let total = sum(evaluate(s, rows)?, &mut carried_sum[0])?;
                let n = count(evaluate(c, rows)?, &mut carried_count[0])?;
                // Where nothing was counted the sum is NULL too: divide by 1 there.
                let n = zip(
                    &eq(&n, &Scalar::new(Int64Array::from(vec![0])))?,
                    &Scalar::new(Int64Array::from(vec![1])),
                    &n,
                )?;
                let quotient = if total.data_type().is_floating() {
                    div(&total, &cast(&n, total.data_type())?)?
                } else {
                    let total = cast(&total, &DataType::Int64)?;
                    div(&total, &n)?
                };
                cast(&quotient, output)?
            }
        };
        Ok(values)
    }
}

/// COUNT over new rows plus the carried count.
fn count(values: ArrayRef, carried: &mut ScalarValue) -> Result<ArrayRef> {
    let values = cast(&values, &DataType::Int64)?;
    let out = add_wrapping(&values, &Scalar::new(carried.to_array().map_err(df_error)?))?;
    *carried = last(&out)?;
    Ok(out)
}

/// SUM over new rows plus the carried sum, NULL while neither has a value.
fn sum(values: ArrayRef, carried: &mut ScalarValue) -> Result<ArrayRef> {
    let out = if carried.is_null() {
        values
    } else {
        let c = Scalar::new(carried.to_array().map_err(df_error)?);
        let added = add_wrapping(&values, &c)?;
        zip(&is_null(&values)?, &c, &added)?
    };
    *carried = last(&out)?;
    Ok(out)
}

fn last(values: &ArrayRef) -> Result<ScalarValue> {
    ScalarValue::try_from_array(values, values.len() - 1).map_err(df_error)
}

fn evaluate(function: &Arc<dyn WindowExpr>, rows: &arrow::array::RecordBatch) -> Result<ArrayRef> {
    function.evaluate(rows).map_err(df_error)
}

/// A DataFusion error of an OVER aggregate, as the operator's failure.
pub(crate) fn df_error(e: datafusion::error::DataFusionError) -> FungiError {
    FungiError::Operator {
        operator: "over-aggregate".into(),
        message: e.to_string(),
    }
}
