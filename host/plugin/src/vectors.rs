//! Test vectors: known inputs and outputs of a plugin's functions, kept as JSON in
//! `conformance/vectors/<plugin name>.json`:
//!
//! ```json
//! { "scalar": [ { "function": "gcd", "args": [[12, 10], [18, 4]], "expected": [6, 2] } ],
//!   "aggregate": [ { "function": "hll_distinct", "args": [[1, 2, 2]], "groups": [0, 0, 1],
//!                    "expected": [2, 1] } ],
//!   "table": [ { "function": "split_words", "args": [["a b", null]], "input_rows": [0, 0],
//!                "expected": [["a", "b"], [1, 2]] } ] }
//! ```
//!
//! (a table vector's `expected` holds one list per output column).
//!
//! Values are JSON numbers, strings, booleans or `null`, read as the function's declared
//! Arrow types; floating-point results compare with a relative tolerance of 1e-9.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Float64Type};
use fungi_streaming::aggregate::GroupsAccumulator;
use serde::Deserialize;
use serde_json::Value;

use crate::aggregate::AggregateUdf;
use crate::conformance::Report;
use crate::limits::PluginTenant;
use crate::plugin::{FunctionSignature, Plugin};
use crate::scalar::ScalarUdf;
use crate::table::TableUdf;

#[derive(Debug, Deserialize, Default)]
struct Vectors {
    #[serde(default)]
    scalar: Vec<ScalarVector>,
    #[serde(default)]
    aggregate: Vec<AggregateVector>,
    #[serde(default)]
    table: Vec<TableVector>,
}

#[derive(Debug, Deserialize)]
struct TableVector {
    function: String,
    args: Vec<Vec<Value>>,
    input_rows: Vec<u32>,
    expected: Vec<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct ScalarVector {
    function: String,
    args: Vec<Vec<Value>>,
    expected: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct AggregateVector {
    function: String,
    args: Vec<Vec<Value>>,
    groups: Vec<u32>,
    expected: Vec<Value>,
}

/// `values` as an array `A`, each non-null one read with `get`.
fn read<T, A: FromIterator<Option<T>>>(
    t: &DataType,
    values: &[Value],
    get: impl Fn(&Value) -> Option<T>,
) -> Result<A, String> {
    values
        .iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            v => get(v).map(Some).ok_or_else(|| format!("{v} is not a {t}")),
        })
        .collect()
}

fn array(t: &DataType, values: &[Value]) -> Result<ArrayRef, String> {
    Ok(match t {
        DataType::Int64 => Arc::new(read::<_, Int64Array>(t, values, Value::as_i64)?),
        DataType::Int32 => Arc::new(read::<_, Int32Array>(t, values, |v| {
            v.as_i64().and_then(|x| i32::try_from(x).ok())
        })?),
        DataType::Float64 => Arc::new(read::<_, Float64Array>(t, values, Value::as_f64)?),
        DataType::Utf8 => Arc::new(read::<_, StringArray>(t, values, |v| {
            v.as_str().map(str::to_string)
        })?),
        DataType::Boolean => Arc::new(read::<_, BooleanArray>(t, values, Value::as_bool)?),
        other => return Err(format!("vectors cannot express {other}")),
    })
}

fn same(got: &ArrayRef, want: &ArrayRef) -> bool {
    if got.data_type() == &DataType::Float64 && want.data_type() == &DataType::Float64 {
        let (g, w) = (
            got.as_primitive::<Float64Type>(),
            want.as_primitive::<Float64Type>(),
        );
        return g.len() == w.len()
            && g.iter().zip(w.iter()).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                (None, None) => true,
                _ => false,
            });
    }
    got.to_data() == want.to_data()
}

/// Checks the vectors of `plugin` found in `dir` (nothing if there is no file for it).
pub(crate) fn check(
    plugin: &Arc<Plugin>,
    tenant: &Arc<PluginTenant>,
    dir: &Path,
    report: &mut Report,
) {
    let file = dir.join(format!("{}.json", plugin.manifest().name));
    let Ok(text) = std::fs::read_to_string(&file) else {
        return;
    };
    let vectors: Vectors = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return report.record_failure("", &file.display().to_string(), e.to_string()),
    };
    let each = |report: &mut Report, function: &str, i: usize, result: Result<(), String>| {
        report.record_result(function, &format!("vector {}", i + 1), result)
    };
    for (i, v) in vectors.scalar.iter().enumerate() {
        let result = (|| -> Result<(), String> {
            let f = ScalarUdf::new(plugin.clone(), tenant.clone(), &v.function, Vec::new())
                .map_err(|e| e.to_string())?;
            let args = arguments(f.signature(), &v.args)?;
            let got = f.call(&args, v.expected.len()).map_err(|e| e.to_string())?;
            expect(&got, f.signature().returns.data_type(), &v.expected)
        })();
        each(report, &v.function, i, result);
    }
    for (i, v) in vectors.aggregate.iter().enumerate() {
        let result = (|| -> Result<(), String> {
            let f = AggregateUdf::new(plugin.clone(), tenant.clone(), &v.function, Vec::new())
                .map_err(|e| e.to_string())?;
            let args = arguments(f.signature(), &v.args)?;
            let total = v.expected.len();
            let mut acc = f.create_accumulator().map_err(|e| e.to_string())?;
            acc.update_batch(&args, &v.groups, total)
                .map_err(|e| e.to_string())?;
            let groups: Vec<u32> = (0..total as u32).collect();
            let got = acc.evaluate(&groups).map_err(|e| e.to_string())?;
            expect(&got, f.signature().returns.data_type(), &v.expected)
        })();
        each(report, &v.function, i, result);
    }
    for (i, v) in vectors.table.iter().enumerate() {
        let result = (|| -> Result<(), String> {
            let f = TableUdf::new(plugin.clone(), tenant.clone(), &v.function, Vec::new())
                .map_err(|e| e.to_string())?;
            let args = arguments(f.signature(), &v.args)?;
            let rows = v.args.first().map_or(0, Vec::len);
            let got = f.call(&args, rows).map_err(|e| e.to_string())?;
            if got.input_rows.values().as_ref() != v.input_rows.as_slice() {
                return Err(format!(
                    "input rows {:?}, expected {:?}",
                    got.input_rows.values(),
                    v.input_rows
                ));
            }
            if v.expected.len() != f.columns().len() {
                return Err(format!(
                    "the vector has {} columns, the function {}",
                    v.expected.len(),
                    f.columns().len()
                ));
            }
            for ((column, field), values) in
                got.rows.columns().iter().zip(f.columns()).zip(&v.expected)
            {
                expect(column, field.data_type(), values)
                    .map_err(|e| format!("{}: {e}", field.name()))?;
            }
            Ok(())
        })();
        each(report, &v.function, i, result);
    }
}

/// The vector's argument values as arrays of the function's argument types.
fn arguments(sig: &FunctionSignature, values: &[Vec<Value>]) -> Result<Vec<ArrayRef>, String> {
    sig.arguments
        .iter()
        .zip(values)
        .map(|(a, values)| array(a.data_type(), values))
        .collect()
}

/// `got` holds `expected` (read as `t`).
fn expect(got: &ArrayRef, t: &DataType, expected: &[Value]) -> Result<(), String> {
    let want = array(t, expected)?;
    same(got, &want)
        .then_some(())
        .ok_or_else(|| format!("got {got:?}, expected {want:?}"))
}
