//! Aggregates whose result types follow Flink's rules where DataFusion's differ.
//!
//! `AVG` is typed as its argument in Flink (an average of BIGINTs is a BIGINT, truncated
//! toward zero; of FLOATs a FLOAT), where DataFusion's is always DOUBLE. Registering
//! [`FlinkAvg`] under the name `avg` gives plans Flink's types; Fungi's native
//! accumulator ([`fungi_streaming::aggregate::Avg`]) computes the same, and the
//! accumulator here serves the plans that run through DataFusion's interface. DECIMAL
//! arguments keep DataFusion's rule (`DECIMAL(p + 4, s + 4)`).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{ScalarValue, not_impl_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

/// `AVG` with Flink's result types.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlinkAvg {
    inner: Arc<AggregateUDF>,
    signature: Signature,
    aliases: Vec<String>,
}

impl FlinkAvg {
    /// The function, to register in a session.
    pub(crate) fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(FlinkAvg {
            inner: datafusion::functions_aggregate::average::avg_udaf(),
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec!["mean".to_string()],
        })
    }
}

/// Whether `avg` over `t` takes `t` as its result type (and runs here).
fn typed_as_argument(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Float32 | DataType::Float64)
}

impl AggregateUDFImpl for FlinkAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        match arg_types {
            [t] if typed_as_argument(t) => Ok(vec![t.clone()]),
            [DataType::Float16] => Ok(vec![DataType::Float32]),
            _ => self.inner.coerce_types(arg_types),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        match arg_types {
            [t] if typed_as_argument(t) => Ok(t.clone()),
            _ => self.inner.return_type(arg_types),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::common::Result<Vec<FieldRef>> {
        if !typed_as_argument(args.return_field.data_type()) {
            return self.inner.state_fields(args);
        }
        let sum = if args.return_field.data_type().is_integer() {
            DataType::Int64
        } else {
            DataType::Float64
        };
        Ok(vec![
            Arc::new(Field::new(format!("{}[sum]", args.name), sum, true)),
            Arc::new(Field::new(
                format!("{}[count]", args.name),
                DataType::Int64,
                false,
            )),
        ])
    }

    fn accumulator(
        &self,
        acc_args: AccumulatorArgs,
    ) -> datafusion::common::Result<Box<dyn Accumulator>> {
        let output = acc_args.return_field.data_type().clone();
        if !typed_as_argument(&output) {
            return self.inner.accumulator(acc_args);
        }
        if acc_args.is_distinct {
            return not_impl_err!(
                "AVG(DISTINCT x) over {output}: write AVG(DISTINCT CAST(x AS DECIMAL(38, 0))) or \
                 SUM(DISTINCT x) / COUNT(DISTINCT x)"
            );
        }
        Ok(Box::new(AvgAccumulator {
            integer: output.is_integer(),
            output,
            int_sum: 0,
            float_sum: 0.0,
            count: 0,
        }))
    }
}

/// Sum and count; integers are summed as a wrapping BIGINT, as Flink does.
#[derive(Debug)]
struct AvgAccumulator {
    integer: bool,
    output: DataType,
    int_sum: i64,
    float_sum: f64,
    count: i64,
}

impl AvgAccumulator {
    fn add(&mut self, values: &ArrayRef, sign: i64) -> datafusion::common::Result<()> {
        if self.integer {
            let v = cast(values, &DataType::Int64)?;
            for x in v.as_primitive::<Int64Type>().iter().flatten() {
                self.int_sum = self.int_sum.wrapping_add(sign.wrapping_mul(x));
                self.count += sign;
            }
        } else {
            let v = cast(values, &DataType::Float64)?;
            for x in v.as_primitive::<Float64Type>().iter().flatten() {
                self.float_sum += sign as f64 * x;
                self.count += sign;
            }
        }
        Ok(())
    }
}

impl Accumulator for AvgAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.add(&values[0], 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.add(&values[0], -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        if self.count == 0 {
            return ScalarValue::try_new_null(&self.output);
        }
        let average = if self.integer {
            ScalarValue::Int64(Some(self.int_sum / self.count))
        } else {
            ScalarValue::Float64(Some(self.float_sum / self.count as f64))
        };
        average.cast_to(&self.output)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        let sum = if self.integer {
            ScalarValue::Int64(Some(self.int_sum))
        } else {
            ScalarValue::Float64(Some(self.float_sum))
        };
        Ok(vec![sum, ScalarValue::Int64(Some(self.count))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        for c in states[1].as_primitive::<Int64Type>().iter().flatten() {
            self.count += c;
        }
        if self.integer {
            for s in states[0].as_primitive::<Int64Type>().iter().flatten() {
                self.int_sum = self.int_sum.wrapping_add(s);
            }
        } else {
            for s in states[0].as_primitive::<Float64Type>().iter().flatten() {
                self.float_sum += s;
            }
        }
        Ok(())
    }
}
