//! Functions Fungi adds to DataFusion's: the window marker functions used by the window
//! table function rewrite, and Flink's `MOD` and `PROCTIME`.

use std::sync::Arc;

use arrow::array::{AsArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Which bound a marker returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bound {
    Start,
    End,
    Time,
}

/// `fungi_window_start|end|time(kind, ts, a, b)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WindowMarker {
    bound: Bound,
    name: &'static str,
    signature: Signature,
}

pub(crate) const START: &str = "fungi_window_start";
pub(crate) const END: &str = "fungi_window_end";
pub(crate) const TIME: &str = "fungi_window_time";

impl WindowMarker {
    pub(crate) fn udfs() -> Vec<ScalarUDF> {
        [
            (Bound::Start, START),
            (Bound::End, END),
            (Bound::Time, TIME),
        ]
        .into_iter()
        .map(|(bound, name)| {
            ScalarUDF::new_from_impl(WindowMarker {
                bound,
                name,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

impl ScalarUDFImpl for WindowMarker {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        if arg_types.len() != 4 {
            return plan_err!("{} takes 4 arguments", self.name);
        }
        match &arg_types[1] {
            DataType::Timestamp(_, _) | DataType::Date64 | DataType::Int64 => {}
            other => {
                return plan_err!("the time column of a window must be a TIMESTAMP, got {other}");
            }
        }
        Ok(vec![
            DataType::Utf8,
            ts_type(),
            DataType::Int64,
            DataType::Int64,
        ])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(ts_type())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let scalar_i64 = |v: &ColumnarValue| match v {
            ColumnarValue::Scalar(ScalarValue::Int64(Some(x))) => Ok(*x),
            _ => exec_err!("window size arguments must be constants"),
        };
        let kind = match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(k))) => k.clone(),
            _ => return exec_err!("window kind must be a constant"),
        };
        let (a, b) = (scalar_i64(&args.args[2])?, scalar_i64(&args.args[3])?);
        // Row-wise evaluation is exact for tumbling windows; for the others it gives the
        // first window of each row (the streaming planner never evaluates them row-wise).
        let size = match kind.as_str() {
            "tumble" => a,
            "hop" => b,
            "cumulate" => b,
            _ => a,
        };
        let slide = match kind.as_str() {
            "hop" => a,
            _ => size,
        };
        let ts = args.args[1].to_array(args.number_rows)?;
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let bound = self.bound;
        let out: TimestampMillisecondArray = ts.unary(|t| {
            let start = t - t.rem_euclid(slide);
            match bound {
                Bound::Start => start,
                Bound::End => start + size,
                Bound::Time => start + size - 1,
            }
        });
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Flink's `MOD(a, b)`: the remainder of integer (or floating-point) division.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Mod {
    signature: Signature,
}

impl Mod {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Mod {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!("mod takes 2 arguments, got {}", arg_types.len());
        }
        let float = arg_types.iter().any(|t| t.is_floating());
        if !arg_types.iter().all(|t| t.is_numeric() || t.is_null()) {
            return plan_err!(
                "mod takes numbers, got {} and {}",
                arg_types[0],
                arg_types[1]
            );
        }
        let t = if float {
            DataType::Float64
        } else {
            DataType::Int64
        };
        Ok(vec![t.clone(), t])
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let n = args.number_rows;
        let a = args.args[0].to_array(n)?;
        let b = args.args[1].to_array(n)?;
        Ok(ColumnarValue::Array(arrow::compute::kernels::numeric::rem(
            &a, &b,
        )?))
    }
}

/// Name of the field metadata key marking a processing-time attribute.
pub(crate) const TIME_ATTRIBUTE: &str = "fungi.time";

/// Flink's `PROCTIME()`: the wall-clock time when the row is processed (ms precision).
/// A column declared `p AS PROCTIME()` is a processing-time attribute: windows over it
/// fire by the wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Proctime {
    signature: Signature,
}

pub(crate) const PROCTIME: &str = "proctime";

impl Proctime {
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Proctime {
            signature: Signature::exact(vec![], Volatility::Volatile),
        })
    }
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        PROCTIME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(ts_type())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        // One reading of the clock per batch: the rows of a batch are processed together.
        let now = fungi_common::time::now_millis();
        Ok(ColumnarValue::Array(Arc::new(
            TimestampMillisecondArray::from_value(now, args.number_rows),
        )))
    }
}
