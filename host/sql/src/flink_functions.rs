//! Flink's semantics for scalar functions whose DataFusion namesakes differ, and Flink
//! functions DataFusion lacks:
//!
//! | Flink | DataFusion alone | here |
//! |---|---|---|
//! | `CONCAT(a, b, ...)` | NULL arguments count as empty strings | NULL if any argument is NULL |
//! | `IF(c, a, b)` | unknown | `CASE WHEN c THEN a ELSE b END` |
//! | `TIMESTAMPADD(unit, n, ts)` | unknown | `ts` moved by `n` units (months keep the day where it exists) |
//! | `TIMESTAMPDIFF(unit, a, b)` | unknown | whole units from `a` to `b` |
//! | `CAST(ts AS STRING)` | `2024-01-01T00:00:01` | `2024-01-01 00:00:01.000` (the fraction has the type's precision) |
//! | `CAST(b AS STRING)` | `true` | `TRUE` |
//! | `GREATEST`, `LEAST` | NULL arguments skipped | NULL if any argument is NULL |
//! | `REGEXP_REPLACE(s, p, r)` | the first match | every match |
//! | `SIGN`, `YEAR`, `QUARTER`, `MONTH`, `WEEK`, `DAYOFYEAR`, `DAYOFMONTH`, `DAYOFWEEK`, `HOUR`, `MINUTE`, `SECOND` | unknown | `signum`, `date_part` (BIGINT; `DAYOFWEEK` counts from 1 on Sunday) |
//!
//! `||` and `CONCAT_WS` already behave as in Flink (`||` is NULL with a NULL operand;
//! `CONCAT_WS` skips NULL arguments and is NULL only with a NULL separator).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Datelike, Months, NaiveDateTime};
use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, expr::ScalarFunction, when,
};

use crate::error::{Result, SqlError};
use crate::text::{find_keyword, rewrite_calls, split_top_level};

/// The functions of this module, to register in a session (they replace DataFusion's
/// functions of the same names).
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    let mut udfs = vec![
        ScalarUDF::new_from_impl(NullStrict::new(datafusion::functions::string::concat())),
        ScalarUDF::new_from_impl(NullStrict::new(datafusion::functions::core::greatest())),
        ScalarUDF::new_from_impl(NullStrict::new(datafusion::functions::core::least())),
        ScalarUDF::new_from_impl(Rewritten::new("sign", Rewrite::Sign)),
        ScalarUDF::new_from_impl(Rewritten::new("regexp_replace", Rewrite::ReplaceAll)),
        ScalarUDF::new_from_impl(Rewritten::new("year", Rewrite::Part("year", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("quarter", Rewrite::Part("quarter", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("month", Rewrite::Part("month", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("week", Rewrite::Part("week", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("dayofyear", Rewrite::Part("doy", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("dayofmonth", Rewrite::Part("day", 0))),
        // Flink counts days of the week from 1 (Sunday); DataFusion from 0.
        ScalarUDF::new_from_impl(Rewritten::new("dayofweek", Rewrite::Part("dow", 1))),
        ScalarUDF::new_from_impl(Rewritten::new("hour", Rewrite::Part("hour", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("minute", Rewrite::Part("minute", 0))),
        ScalarUDF::new_from_impl(Rewritten::new("second", Rewrite::Part("second", 0))),
        ScalarUDF::new_from_impl(If::new()),
        ScalarUDF::new_from_impl(TimestampArith::new(Arith::Add)),
        ScalarUDF::new_from_impl(TimestampArith::new(Arith::Diff)),
    ];
    udfs.extend(crate::flink_aliases::udfs());
    udfs.extend(crate::flink_json::udfs());
    udfs.extend(crate::flink_strings::udfs());
    udfs.extend(crate::flink_json_build::udfs());
    udfs.extend(crate::flink_arrays::udfs());
    udfs
}

/// DataFusion's function of the same name, except that any NULL argument makes the
/// result NULL (Flink's `CONCAT`, `GREATEST` and `LEAST`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullStrict {
    inner: Arc<ScalarUDF>,
}

impl NullStrict {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        NullStrict { inner }
    }
}

impl ScalarUDFImpl for NullStrict {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        if args
            .args
            .iter()
            .any(|a| matches!(a, ColumnarValue::Scalar(s) if s.is_null()))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_new_null(
                args.return_field.data_type(),
            )?));
        }
        let nulls = args.args.iter().fold(None::<NullBuffer>, |acc, a| match a {
            ColumnarValue::Array(a) => NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref()),
            ColumnarValue::Scalar(_) => acc,
        });
        let out = self.inner.invoke_with_args(args)?;
        match (out, nulls) {
            (ColumnarValue::Array(a), Some(nulls)) => {
                let combined = NullBuffer::union(a.nulls(), Some(&nulls));
                let data = a.into_data().into_builder().nulls(combined).build()?;
                Ok(ColumnarValue::Array(arrow::array::make_array(data)))
            }
            (out, _) => Ok(out),
        }
    }
}

/// `IF(condition, a, b)`: rewritten to `CASE` before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct If {
    signature: Signature,
}

impl If {
    fn new() -> Self {
        If {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for If {
    fn name(&self) -> &str {
        "if"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let [condition, a, b] = arg_types else {
            return plan_err!(
                "IF takes 3 arguments (condition, value if true, value if false), got {}",
                arg_types.len()
            );
        };
        if !matches!(condition, DataType::Boolean | DataType::Null) {
            return plan_err!("IF: the condition must be a BOOLEAN, got {condition}");
        }
        let common = type_union_resolution(&[a.clone(), b.clone()]).ok_or_else(|| {
            datafusion::common::DataFusionError::Plan(format!(
                "IF: the two values must have a common type, got {a} and {b}"
            ))
        })?;
        Ok(vec![DataType::Boolean, common.clone(), common])
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(arg_types[1].clone())
    }

    fn simplify(
        &self,
        args: Vec<Expr>,
        _info: &SimplifyContext,
    ) -> datafusion::common::Result<ExprSimplifyResult> {
        let [condition, a, b]: [Expr; 3] = args.try_into().map_err(|_| {
            datafusion::common::DataFusionError::Plan("IF takes 3 arguments".into())
        })?;
        Ok(ExprSimplifyResult::Simplified(
            when(condition, a).otherwise(b)?,
        ))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        exec_err!("IF is rewritten to CASE before it runs")
    }
}

/// How a [`Rewritten`] function becomes DataFusion's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rewrite {
    /// `SIGN(x)`: `signum(x)`.
    Sign,
    /// `REGEXP_REPLACE(s, p, r)` replaces every match (DataFusion's, the first only
    /// unless flagged `g`).
    ReplaceAll,
    /// `HOUR(ts)` and the like: `CAST(date_part(part, ts) AS BIGINT) + offset`.
    Part(&'static str, i64),
}

/// A Flink function that is a rewrite of DataFusion's, applied before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Rewritten {
    name: &'static str,
    rewrite: Rewrite,
    signature: Signature,
}

impl Rewritten {
    fn new(name: &'static str, rewrite: Rewrite) -> Self {
        Rewritten {
            name,
            rewrite,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn target(&self) -> Arc<ScalarUDF> {
        match self.rewrite {
            Rewrite::Sign => datafusion::functions::math::signum(),
            Rewrite::ReplaceAll => datafusion::functions::regex::regexp_replace(),
            Rewrite::Part(..) => datafusion::functions::datetime::date_part(),
        }
    }
}

impl ScalarUDFImpl for Rewritten {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        match self.rewrite {
            Rewrite::Part(..) => match arg_types {
                [t @ (DataType::Timestamp(..) | DataType::Date32 | DataType::Date64)] => {
                    Ok(vec![t.clone()])
                }
                _ => plan_err!(
                    "{} takes one TIMESTAMP or DATE, got {arg_types:?}",
                    self.name.to_uppercase()
                ),
            },
            Rewrite::Sign => match arg_types {
                [t] if t.is_numeric() || t.is_null() => Ok(vec![DataType::Float64]),
                _ => plan_err!("SIGN takes one number, got {arg_types:?}"),
            },
            Rewrite::ReplaceAll => match arg_types.len() {
                3 | 4 => Ok(vec![DataType::Utf8; arg_types.len()]),
                n => plan_err!("REGEXP_REPLACE takes 3 arguments, got {n}"),
            },
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        match self.rewrite {
            Rewrite::Part(..) => Ok(DataType::Int64),
            Rewrite::ReplaceAll => Ok(DataType::Utf8),
            Rewrite::Sign => Ok(DataType::Float64),
        }
    }

    fn simplify(
        &self,
        mut args: Vec<Expr>,
        _info: &SimplifyContext,
    ) -> datafusion::common::Result<ExprSimplifyResult> {
        let call = |args| Expr::ScalarFunction(ScalarFunction::new_udf(self.target(), args));
        Ok(ExprSimplifyResult::Simplified(match self.rewrite {
            Rewrite::Sign => call(args),
            Rewrite::ReplaceAll => {
                if args.len() == 3 {
                    args.push(Expr::Literal(ScalarValue::from("g"), None));
                }
                call(args)
            }
            Rewrite::Part(part, offset) => {
                args.insert(0, Expr::Literal(ScalarValue::from(part), None));
                let value = Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(call(args)),
                    DataType::Int64,
                ));
                if offset == 0 {
                    value
                } else {
                    value + Expr::Literal(ScalarValue::Int64(Some(offset)), None)
                }
            }
        }))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        exec_err!("{} is rewritten before it runs", self.name.to_uppercase())
    }
}

/// Which timestamp function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arith {
    Add,
    Diff,
}

/// A unit of `TIMESTAMPADD`/`TIMESTAMPDIFF`: a fixed length in ms, or months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis(i64),
    Months(i64),
}

/// Flink's time units, by name.
fn unit(name: &str) -> Option<Unit> {
    Some(match name.to_ascii_uppercase().as_str() {
        "MILLISECOND" => Unit::Millis(1),
        "SECOND" => Unit::Millis(1_000),
        "MINUTE" => Unit::Millis(60_000),
        "HOUR" => Unit::Millis(3_600_000),
        "DAY" => Unit::Millis(86_400_000),
        "WEEK" => Unit::Millis(7 * 86_400_000),
        "MONTH" => Unit::Months(1),
        "QUARTER" => Unit::Months(3),
        "YEAR" => Unit::Months(12),
        _ => return None,
    })
}

const UNITS: &str = "MILLISECOND, SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR";

/// `TIMESTAMPADD(unit, n, ts)` and `TIMESTAMPDIFF(unit, a, b)`; the unit arrives as a
/// string literal ([`rewrite_time_units`] quotes Flink's bare keyword).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimestampArith {
    arith: Arith,
    signature: Signature,
}

impl TimestampArith {
    fn new(arith: Arith) -> Self {
        TimestampArith {
            arith,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn label(&self) -> &'static str {
        match self.arith {
            Arith::Add => "TIMESTAMPADD",
            Arith::Diff => "TIMESTAMPDIFF",
        }
    }
}

/// Milliseconds since the epoch of each value of a timestamp or date array.
fn epoch_millis(a: &ArrayRef) -> datafusion::common::Result<Vec<Option<i64>>> {
    let ms = arrow::compute::cast(a, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(ms
        .as_primitive::<TimestampMillisecondType>()
        .iter()
        .collect())
}

/// `ts` (ms) moved by `months`, keeping the day of month where it exists (Jan 31 + 1
/// month is Feb 28 or 29), as Flink does.
fn add_months(ts: i64, months: i64) -> Option<i64> {
    let t = DateTime::from_timestamp_millis(ts)?.naive_utc();
    let moved: NaiveDateTime = if months >= 0 {
        t.checked_add_months(Months::new(u32::try_from(months).ok()?))?
    } else {
        t.checked_sub_months(Months::new(u32::try_from(-months).ok()?))?
    };
    Some(moved.and_utc().timestamp_millis())
}

/// Whole months from `a` to `b` (ms), as Flink (Calcite) counts them: the largest `m`
/// with `a + m months <= b`, negated when `b` is before `a`.
fn months_between(a: i64, b: i64) -> Option<i64> {
    if b < a {
        return months_between(b, a).map(|m| -m);
    }
    let (ta, tb) = (
        DateTime::from_timestamp_millis(a)?.naive_utc(),
        DateTime::from_timestamp_millis(b)?.naive_utc(),
    );
    let mut months =
        (tb.year() as i64 - ta.year() as i64) * 12 + tb.month() as i64 - ta.month() as i64;
    while months > 0 && add_months(a, months)? > b {
        months -= 1;
    }
    Some(months)
}

impl ScalarUDFImpl for TimestampArith {
    fn name(&self) -> &str {
        match self.arith {
            Arith::Add => "timestampadd",
            Arith::Diff => "timestampdiff",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let [u, second, third] = arg_types else {
            return plan_err!(
                "{} takes 3 arguments (unit, {}), got {}",
                self.label(),
                if self.arith == Arith::Add {
                    "count, timestamp"
                } else {
                    "timestamp, timestamp"
                },
                arg_types.len()
            );
        };
        if !matches!(u, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) {
            return plan_err!("{}: the first argument is a unit: {UNITS}", self.label());
        }
        let time = |t: &DataType| match t {
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null => {
                Ok(if t.is_null() {
                    DataType::Timestamp(TimeUnit::Millisecond, None)
                } else {
                    t.clone()
                })
            }
            other => plan_err!(
                "{}: expected a TIMESTAMP or DATE, got {other}",
                self.label()
            ),
        };
        Ok(match self.arith {
            Arith::Add => {
                if !(second.is_integer() || second.is_null()) {
                    return plan_err!(
                        "{}: the count of units must be an integer, got {second}",
                        self.label()
                    );
                }
                vec![DataType::Utf8, DataType::Int64, time(third)?]
            }
            Arith::Diff => vec![DataType::Utf8, time(second)?, time(third)?],
        })
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.arith {
            Arith::Add => match &arg_types[2] {
                // A date moved by a time unit is a timestamp in Flink too.
                DataType::Date32 | DataType::Date64 => {
                    DataType::Timestamp(TimeUnit::Millisecond, None)
                }
                t => t.clone(),
            },
            Arith::Diff => DataType::Int32,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let ColumnarValue::Scalar(name) = &args.args[0] else {
            return exec_err!("{}: the unit must be a literal: {UNITS}", self.label());
        };
        let name = name.to_string();
        let Some(unit) = unit(&name) else {
            return exec_err!("{}: unknown unit '{name}': use {UNITS}", self.label());
        };
        let n = args.number_rows;
        let second = args.args[1].to_array(n)?;
        let third = args.args[2].to_array(n)?;
        match self.arith {
            Arith::Add => {
                let counts = second.as_primitive::<arrow::datatypes::Int64Type>();
                let times = epoch_millis(&third)?;
                let moved: PrimitiveArray<TimestampMillisecondType> = counts
                    .iter()
                    .zip(times)
                    .map(|(c, t)| {
                        let (c, t) = (c?, t?);
                        match unit {
                            Unit::Millis(ms) => c.checked_mul(ms).and_then(|d| t.checked_add(d)),
                            Unit::Months(m) => add_months(t, c.checked_mul(m)?),
                        }
                    })
                    .collect();
                let out = arrow::compute::cast(&moved, args.return_field.data_type())?;
                Ok(ColumnarValue::Array(out))
            }
            Arith::Diff => {
                let (a, b) = (epoch_millis(&second)?, epoch_millis(&third)?);
                let out: Int32Array = a
                    .into_iter()
                    .zip(b)
                    .map(|(a, b)| {
                        let (a, b) = (a?, b?);
                        let whole = match unit {
                            Unit::Millis(ms) => (b - a) / ms,
                            Unit::Months(m) => months_between(a, b)? / m,
                        };
                        i32::try_from(whole).ok()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

/// What to write instead of a Flink function that Fungi does not provide, by lower-case
/// name: the unknown-function error names it.
pub(crate) fn equivalent(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "printf" => "format the parts with CONCAT and CAST(... AS STRING)",
        "instr" => "LOCATE(needle, haystack) or POSITION(needle IN haystack)",
        "str_to_map" => "SPLIT_PART over the pairs, or a UDF",
        "element" => "arr[1] with CARDINALITY(arr) = 1",
        "convert_tz" => "CAST(ts AS TIMESTAMP WITH TIME ZONE) AT TIME ZONE, or a UDF",
        "dayofweek" | "dayofyear" | "week" | "quarter" => {
            "EXTRACT(DOW | DOY | WEEK | QUARTER FROM ts)"
        }
        "cardinality" => "ARRAY_LENGTH(arr) or CARDINALITY(map)",
        "regexp_extract_all" => "REGEXP_MATCH",
        _ => return None,
    })
}

/// Flink's `TIMESTAMPADD(DAY, 1, ts)` and `TIMESTAMPDIFF(DAY, a, b)` take the unit as a
/// bare keyword; DataFusion would read it as a column, so it is quoted.
pub(crate) fn rewrite_time_units(sql: &str) -> Result<String> {
    let mut out = sql.to_string();
    for function in ["TIMESTAMPADD", "TIMESTAMPDIFF"] {
        out = rewrite_calls(&out, function, '(', |inner| {
            let args = split_top_level(&rewrite_time_units(inner)?);
            let Some(first) = args.first() else {
                return Ok(None);
            };
            if unit(first).is_some() {
                let rest = args[1..]
                    .iter()
                    .map(|a| format!(", {a}"))
                    .collect::<String>();
                return Ok(Some(format!(
                    "{function}('{}'{rest})",
                    first.to_ascii_uppercase()
                )));
            }
            if first.starts_with('\'') {
                return Ok(None);
            }
            Err(SqlError::Plan(format!(
                "{function}: unknown unit '{first}': use {UNITS}"
            )))
        })?;
    }
    Ok(out)
}

/// Refuses Flink syntax DataFusion's parser does not take and Fungi does not rewrite,
/// naming what to write instead (the parser alone would only say what token it expected).
pub(crate) fn refuse_unparsed(sql: &str) -> Result<()> {
    let mut from = 0;
    while let Some(pos) = find_keyword(sql, "IS", from) {
        from = pos + 2;
        let rest = sql[from..].trim_start();
        let rest = match rest.get(..4) {
            Some(not) if not.eq_ignore_ascii_case("NOT ") => rest[4..].trim_start(),
            _ => rest,
        };
        if find_keyword(rest, "JSON", 0) == Some(0) {
            return Err(SqlError::Plan(
                "`x IS [NOT] JSON` is not supported: write JSON_EXISTS(x, 'lax $') (TRUE when x \
                 is JSON text, FALSE when it is not)"
                    .into(),
            ));
        }
    }
    if find_keyword(sql, "ROW", 0).is_some() && sql.contains("EXPR$") {
        return Err(SqlError::Plan(
            "fields of an unnamed ROW (`EXPR$0`) are not supported: build the row with \
             named_struct('a', x, 'b', y) and read a field as r['a']"
                .into(),
        ));
    }
    Ok(())
}

/// Flink's constructors that DataFusion's parser does not take: `MAP[k1, v1, ...]`
/// becomes `make_map(k1, v1, ...)`, and `JSON_OBJECT(KEY k VALUE v, ... [NULL | ABSENT
/// ON NULL])` (also `k VALUE v` and `k : v`) becomes `json_object(k, v, ...)` (or
/// `json_object_absent_on_null`).
pub(crate) fn rewrite_constructors(sql: &str) -> Result<String> {
    let maps = rewrite_calls(sql, "MAP", '[', |inner| {
        Ok(Some(format!("make_map({})", rewrite_constructors(inner)?)))
    })?;
    rewrite_calls(&maps, "JSON_OBJECT", '(', |inner| {
        let mut entries = split_top_level(inner);
        let mut function = "json_object";
        if let Some(last) = entries.last_mut() {
            let upper = last.to_ascii_uppercase();
            for (clause, name) in [
                ("ABSENT ON NULL", "json_object_absent_on_null"),
                ("NULL ON NULL", "json_object"),
            ] {
                if upper.ends_with(clause) {
                    function = name;
                    last.truncate(last.len() - clause.len());
                    break;
                }
            }
        }
        let mut args = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let entry = match entry.get(..4) {
                Some(k) if k.eq_ignore_ascii_case("KEY ") => entry[4..].trim(),
                _ => entry,
            };
            let (key, value) = match find_keyword(entry, "VALUE", 0) {
                Some(at) => (&entry[..at], &entry[at + "VALUE".len()..]),
                None => entry.split_once(':').ok_or_else(|| {
                    SqlError::Plan(format!(
                        "JSON_OBJECT: '{entry}' is not KEY k VALUE v (or k VALUE v, k : v)"
                    ))
                })?,
            };
            // A nested JSON_OBJECT (or MAP) in a value is rewritten on its own.
            let value = rewrite_constructors(value.trim())?;
            args.push(format!("{}, {value}", key.trim()));
        }
        Ok(Some(format!("{function}({})", args.join(", "))))
    })
}

/// `FLOOR(x TO unit)` becomes `date_trunc('unit', x)` (weeks from Sunday); `CEIL(x TO
/// unit)` (or `CEILING`) the same, plus one unit when `x` is not already on a boundary,
/// where for weeks, months, quarters and years `x`'s day counts, not its time, as in
/// Flink.
pub(crate) fn rewrite_floor_ceil(sql: &str) -> Result<String> {
    let mut out = sql.to_string();
    for function in ["FLOOR", "CEILING", "CEIL"] {
        out = rewrite_calls(&out, function, '(', |inner| {
            // The last TO, followed by a unit.
            let mut to = None;
            let mut at = 0;
            while let Some(p) = find_keyword(inner, "TO", at) {
                to = Some(p);
                at = p + 2;
            }
            let Some(to) = to else { return Ok(None) };
            let name = inner[to + 2..].trim().to_ascii_uppercase();
            if unit(&name).is_none() || name == "MILLISECOND" {
                return Err(SqlError::Plan(format!(
                    "{function}(... TO {name}): unknown unit: use SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER or YEAR"
                )));
            }
            let x = rewrite_floor_ceil(inner[..to].trim())?;
            let floor = if name == "WEEK" {
                // Flink's weeks start on Sunday, DataFusion's on Monday.
                format!("(date_trunc('week', ({x}) + INTERVAL '1' DAY) - INTERVAL '1' DAY)")
            } else {
                format!("date_trunc('{}', {x})", name.to_ascii_lowercase())
            };
            // Flink rounds up to a week, month, quarter or year from the row's day (the
            // time of day does not count).
            let reference = if matches!(name.as_str(), "WEEK" | "MONTH" | "QUARTER" | "YEAR") {
                format!("date_trunc('day', {x})")
            } else {
                format!("({x})")
            };
            Ok(Some(if function == "FLOOR" {
                floor
            } else {
                format!(
                    "(CASE WHEN {floor} = {reference} THEN {floor} ELSE {floor} + INTERVAL '1' {name} END)"
                )
            }))
        })?;
    }
    Ok(out)
}

/// `CAST(x AS STRING)` of a timestamp becomes `to_char` with Flink's layout
/// (`yyyy-MM-dd HH:mm:ss` and as many fraction digits as the type's precision); every
/// other expression is returned as it is.
pub(crate) fn flink_cast(expr: Expr, schema: &DFSchema) -> datafusion::common::Result<Expr> {
    let (inner, target) = match &expr {
        Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
        Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
        _ => return Ok(expr),
    };
    if !matches!(
        target,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    ) {
        return Ok(expr);
    }
    let unit = match inner.get_type(schema)? {
        DataType::Timestamp(unit, _) => unit,
        // Flink writes booleans as TRUE and FALSE.
        DataType::Boolean => {
            let text = when(
                inner.clone(),
                Expr::Literal(ScalarValue::from("TRUE"), None),
            )
            .when(
                Expr::Not(Box::new(inner.clone())),
                Expr::Literal(ScalarValue::from("FALSE"), None),
            )
            .end()?;
            return text.cast_to(target, schema);
        }
        _ => return Ok(expr),
    };
    let layout = match unit {
        TimeUnit::Second => "%Y-%m-%d %H:%M:%S",
        TimeUnit::Millisecond => "%Y-%m-%d %H:%M:%S%.3f",
        TimeUnit::Microsecond => "%Y-%m-%d %H:%M:%S%.6f",
        TimeUnit::Nanosecond => "%Y-%m-%d %H:%M:%S%.9f",
    };
    let formatted = Expr::ScalarFunction(ScalarFunction::new_udf(
        datafusion::functions::datetime::to_char(),
        vec![
            inner.clone(),
            Expr::Literal(ScalarValue::from(layout), None),
        ],
    ));
    formatted.cast_to(target, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_quoted_and_months_clamp() {
        assert_eq!(
            rewrite_time_units("SELECT TIMESTAMPADD(day, 1, ts), TIMESTAMPDIFF (MONTH, a, b)")
                .unwrap(),
            "SELECT TIMESTAMPADD('DAY', 1, ts), TIMESTAMPDIFF('MONTH', a, b)"
        );
        assert!(rewrite_time_units("SELECT TIMESTAMPADD(fortnight, 1, ts)").is_err());
        let jan31 = 1_706_659_200_000; // 2024-01-31 00:00:00
        let feb29 = 1_709_164_800_000; // 2024-02-29 00:00:00
        assert_eq!(add_months(jan31, 1), Some(feb29));
        assert_eq!(months_between(jan31, feb29), Some(1));
        assert_eq!(months_between(feb29, jan31), Some(-1));
        assert_eq!(months_between(feb29, jan31 + 31 * 86_400_000 - 1), Some(0));
        assert_eq!(
            months_between(jan31, add_months(jan31, 14).unwrap()),
            Some(14)
        );
    }

    #[test]
    fn unparsed_flink_syntax_names_what_to_write() {
        let err = refuse_unparsed("SELECT s IS NOT JSON FROM t").unwrap_err();
        assert!(err.to_string().contains("JSON_EXISTS"), "{err}");
        let err = refuse_unparsed("SELECT (ROW(a, b)).EXPR$0 FROM t").unwrap_err();
        assert!(err.to_string().contains("named_struct"), "{err}");
        assert!(refuse_unparsed("SELECT 'x IS JSON', a IS NULL FROM t").is_ok());
    }

    #[test]
    fn map_and_json_object_constructors_are_rewritten() {
        assert_eq!(
            rewrite_constructors("SELECT MAP['a', 1, 'b', f(x)]['b'], m MAP<STRING, INT> FROM t")
                .unwrap(),
            "SELECT make_map('a', 1, 'b', f(x))['b'], m MAP<STRING, INT> FROM t"
        );
        assert_eq!(
            rewrite_constructors(
                "SELECT JSON_OBJECT(KEY 'k' VALUE v, 'n' VALUE JSON_OBJECT('x' : 1) ABSENT ON NULL)"
            )
            .unwrap(),
            "SELECT json_object_absent_on_null('k', v, 'n', json_object('x', 1))"
        );
        let err = rewrite_constructors("SELECT JSON_OBJECT(KEY 'k')").unwrap_err();
        assert!(err.to_string().contains("KEY k VALUE v"), "{err}");
    }

    #[test]
    fn floor_and_ceil_to_a_unit_become_date_trunc() {
        assert_eq!(
            rewrite_floor_ceil("SELECT FLOOR(price), floor(FLOOR(ts TO day) to Hour) FROM t")
                .unwrap(),
            "SELECT FLOOR(price), date_trunc('hour', date_trunc('day', ts)) FROM t"
        );
        assert_eq!(
            rewrite_floor_ceil("SELECT CEIL(ts TO MINUTE)").unwrap(),
            "SELECT (CASE WHEN date_trunc('minute', ts) = (ts) THEN date_trunc('minute', ts) \
             ELSE date_trunc('minute', ts) + INTERVAL '1' MINUTE END)"
        );
        let err = rewrite_floor_ceil("SELECT FLOOR(ts TO fortnight)").unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
    }
}
