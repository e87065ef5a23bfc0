//! Functions Fungi adds to DataFusion's: the window marker functions used by the window
//! table function rewrite, and Flink's `MOD`, `PROCTIME`, `SPLIT_INDEX` and
//! `REGEXP_EXTRACT`.

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

/// The constant string argument `i` of `function` (a literal, e.g. a pattern).
fn constant_str<'a>(
    args: &'a ScalarFunctionArgs,
    i: usize,
    function: &str,
) -> datafusion::common::Result<Option<&'a str>> {
    match &args.args[i] {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v),
        ) => Ok(v.as_deref()),
        _ => plan_err!("{function}: argument {} must be a constant string", i + 1),
    }
}

/// The constant integer argument `i` of `function`.
fn constant_int(
    args: &ScalarFunctionArgs,
    i: usize,
    function: &str,
) -> datafusion::common::Result<Option<i64>> {
    match &args.args[i] {
        ColumnarValue::Scalar(s) if s.is_null() => Ok(None),
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(v) => Ok(v),
            _ => unreachable!("cast to Int64"),
        },
        _ => plan_err!("{function}: argument {} must be a constant integer", i + 1),
    }
}

/// Applies `f` to every string of `array` (Utf8, LargeUtf8 or Utf8View; one dispatch per
/// batch), building a Utf8 result: `None` gives NULL.
fn map_strings<'s>(
    array: &'s arrow::array::ArrayRef,
    mut f: impl FnMut(&'s str) -> Option<&'s str>,
) -> datafusion::common::Result<arrow::array::ArrayRef> {
    fn run<'s, A: arrow::array::StringArrayType<'s>>(
        a: A,
        f: &mut impl FnMut(&'s str) -> Option<&'s str>,
    ) -> arrow::array::ArrayRef {
        let mut out = arrow::array::StringBuilder::with_capacity(a.len(), 0);
        for v in a.iter() {
            out.append_option(v.and_then(&mut *f));
        }
        Arc::new(out.finish())
    }
    Ok(match array.data_type() {
        DataType::Utf8 => run(array.as_string::<i32>(), &mut f),
        DataType::LargeUtf8 => run(array.as_string::<i64>(), &mut f),
        DataType::Utf8View => run(array.as_string_view(), &mut f),
        other => return exec_err!("expected a string, got {other}"),
    })
}

/// Flink's string functions that DataFusion names differently: `SPLIT_INDEX(s, delim,
/// i)` (the `i`-th piece, from 0; NULL out of range and for an empty string) and `REGEXP_EXTRACT(s, regex[, i])`
/// (group `i` of the first match, 0 = the whole match, the default; NULL without a match).
/// The delimiter, pattern and index are constants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlinkString {
    name: &'static str,
    signature: Signature,
}

impl FlinkString {
    /// `REGEXP_EXTRACT`, for the functions rewritten into it.
    pub(crate) fn regexp_extract() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(FlinkString {
            name: "regexp_extract",
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    }

    pub(crate) fn udfs() -> Vec<ScalarUDF> {
        ["split_index", "regexp_extract"]
            .into_iter()
            .map(|name| {
                ScalarUDF::new_from_impl(FlinkString {
                    name,
                    signature: Signature::user_defined(Volatility::Immutable),
                })
            })
            .collect()
    }
}

impl ScalarUDFImpl for FlinkString {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let arity = match self.name {
            "split_index" => 3..=3,
            _ => 2..=3,
        };
        if !arity.contains(&arg_types.len()) {
            return plan_err!(
                "{} takes {} arguments, got {}",
                self.name,
                if self.name == "split_index" {
                    "3"
                } else {
                    "2 or 3"
                },
                arg_types.len()
            );
        }
        let string = |t: &DataType| match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => t.clone(),
            _ => DataType::Utf8,
        };
        let mut types = vec![string(&arg_types[0]), DataType::Utf8];
        if arg_types.len() == 3 {
            if !(arg_types[2].is_integer() || arg_types[2].is_null()) {
                return plan_err!(
                    "{}: the index must be an integer, got {}",
                    self.name,
                    arg_types[2]
                );
            }
            types.push(DataType::Int64);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let index = match args.args.len() {
            3 => constant_int(&args, 2, self.name)?,
            _ => Some(0),
        };
        let (Some(pattern), Some(index)) = (constant_str(&args, 1, self.name)?, index) else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let out = if self.name == "split_index" {
            let index = usize::try_from(index).ok();
            // An empty string has no pieces at all (Flink: NULL, not an empty piece).
            map_strings(&input, |s| {
                index
                    .filter(|_| !s.is_empty())
                    .and_then(|i| s.split(pattern).nth(i))
            })?
        } else {
            let regex = regex::Regex::new(pattern).map_err(|e| {
                datafusion::common::DataFusionError::Plan(format!(
                    "regexp_extract: bad pattern '{pattern}': {e}"
                ))
            })?;
            let group = usize::try_from(index).unwrap_or(usize::MAX);
            if group > regex.captures_len() - 1 {
                return plan_err!(
                    "regexp_extract: group {index} of a pattern with {} groups",
                    regex.captures_len() - 1
                );
            }
            let mut locations = regex.capture_locations();
            map_strings(&input, |s| {
                regex.captures_read(&mut locations, s)?;
                let (start, end) = locations.get(group)?;
                Some(&s[start..end])
            })?
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Whether `e` is a call of `PROCTIME()`.
pub(crate) fn is_proctime_call(e: &datafusion::logical_expr::Expr) -> bool {
    let e = match e {
        datafusion::logical_expr::Expr::Alias(a) => a.expr.as_ref(),
        other => other,
    };
    matches!(e, datafusion::logical_expr::Expr::ScalarFunction(f) if f.func.name() == PROCTIME)
}

/// A scalar function call's arguments as arrays of the batch's rows, and the row count.
pub(crate) fn argument_arrays(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
) -> datafusion::common::Result<(Vec<arrow::array::ArrayRef>, usize)> {
    let rows = args.number_rows;
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok((arrays, rows))
}

#[cfg(test)]
mod flink_string_tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::Field;

    fn call(name: &str, input: Vec<Option<&str>>, rest: Vec<ScalarValue>) -> Vec<Option<String>> {
        let udf = FlinkString::udfs()
            .into_iter()
            .find(|u| u.name() == name)
            .unwrap();
        let input: ArrayRef = Arc::new(StringArray::from(input));
        let n = input.len();
        let mut args = vec![ColumnarValue::Array(input)];
        args.extend(rest.into_iter().map(ColumnarValue::Scalar));
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let out = udf
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields,
                number_rows: n,
                return_field: Arc::new(Field::new("r", DataType::Utf8, true)),
                config_options: Default::default(),
            })
            .unwrap()
            .to_array(n)
            .unwrap();
        out.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn split_index_and_regexp_extract_behave_as_in_flink() {
        let url = "https://www.nexmark.com/a/b/item.htm?query=1&channel_id=42";
        assert_eq!(
            call(
                "split_index",
                vec![Some(url), None, Some("x")],
                vec![ScalarValue::from("/"), ScalarValue::Int64(Some(3))]
            ),
            [Some("a".to_string()), None, None]
        );
        assert_eq!(
            call(
                "regexp_extract",
                vec![Some(url), Some("no match"), None],
                vec![
                    ScalarValue::from("(&|^)channel_id=([^&]*)"),
                    ScalarValue::Int64(Some(2))
                ]
            ),
            [Some("42".to_string()), None, None]
        );
        assert_eq!(
            call(
                "regexp_extract",
                vec![Some("foothebar")],
                vec![ScalarValue::from("foo(.*?)(bar)")]
            ),
            [Some("foothebar".to_string())]
        );
    }
}
