//! Flink's functions that write JSON from SQL values: `JSON_STRING(x)` (the value as
//! JSON text: strings quoted, numbers and booleans bare, NULL for NULL) and
//! `JSON_ARRAY(x, ...)` (a JSON array of the values, NULLs left out as Flink's default
//! `ABSENT ON NULL` does) and `JSON_OBJECT(KEY k VALUE v, ...)`, which the SQL rewrite
//! turns into `json_object(k, v, ...)` (NULL values written as `null`, Flink's default)
//! or `json_object_absent_on_null(k, v, ...)`.
//!
//! Each argument column is written to JSON text once per batch, then the texts are
//! joined row by row into one buffer.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// The functions of this module, to register in a session.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(JsonBuild::new("json_string")),
        ScalarUDF::new_from_impl(JsonBuild::new("json_array")),
        ScalarUDF::new_from_impl(JsonBuild::new("json_object")),
        ScalarUDF::new_from_impl(JsonBuild::new("json_object_absent_on_null")),
    ]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuild {
    name: &'static str,
    signature: Signature,
}

impl JsonBuild {
    fn new(name: &'static str) -> Self {
        let types = if name != "json_string" {
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny]
        } else {
            vec![TypeSignature::Any(1)]
        };
        JsonBuild {
            name,
            signature: Signature::one_of(types, Volatility::Immutable),
        }
    }
}

/// Whether values of `t` can be written as JSON here.
fn writable(t: &DataType) -> bool {
    t.is_null()
        || t.is_numeric()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Time32(_)
                | DataType::Time64(_)
        )
}

impl ScalarUDFImpl for JsonBuild {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        if self.name.starts_with("json_object") && arg_types.len() % 2 == 1 {
            return plan_err!("JSON_OBJECT takes keys and values in pairs");
        }
        if let Some(t) = arg_types.iter().find(|t| !writable(t)) {
            return plan_err!(
                "{}: values of type {t} cannot be written as JSON here (numbers, booleans, strings and times can)",
                self.name.to_uppercase()
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalars { 1 } else { rows };
        let texts = args
            .args
            .iter()
            .map(|a| json_texts(&a.to_array(n)?))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let out: ArrayRef = match self.name {
            "json_string" => Arc::new(texts.into_iter().next().expect("one argument")),
            "json_array" => Arc::new(json_arrays(&texts, n)),
            name => {
                let keys = args
                    .args
                    .iter()
                    .step_by(2)
                    .map(|k| {
                        Ok(cast(&k.to_array(n)?, &DataType::Utf8)?
                            .as_string::<i32>()
                            .clone())
                    })
                    .collect::<datafusion::common::Result<Vec<StringArray>>>()?;
                let values: Vec<StringArray> = texts.into_iter().skip(1).step_by(2).collect();
                Arc::new(json_objects(&keys, &values, n, name == "json_object")?)
            }
        };
        Ok(if scalars {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Each value of `array` as JSON text; NULL stays NULL.
fn json_texts(array: &ArrayRef) -> datafusion::common::Result<StringArray> {
    let t = array.data_type();
    let bare = t.is_numeric() || t.is_null() || t == &DataType::Boolean;
    let text = cast(array, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    if bare {
        return Ok(text.clone());
    }
    let mut out =
        StringBuilder::with_capacity(text.len(), text.value_data().len() + 2 * text.len());
    let mut buffer = String::new();
    for value in text.iter() {
        match value {
            Some(v) => {
                buffer.clear();
                quote_into(v, &mut buffer);
                out.append_value(&buffer);
            }
            None => out.append_null(),
        }
    }
    Ok(out.finish())
}

/// `s` as a JSON string literal (non-ASCII kept, as Flink's `JSON_STRING` writes it).
fn quote_into(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Row `i` of the result: `[` the non-NULL texts of row `i`, comma separated, `]`.
fn json_arrays(texts: &[StringArray], rows: usize) -> StringArray {
    let mut out = StringBuilder::with_capacity(rows, 0);
    let mut buffer = String::new();
    for row in 0..rows {
        buffer.clear();
        buffer.push('[');
        for text in texts.iter().filter(|t| t.is_valid(row)) {
            if buffer.len() > 1 {
                buffer.push(',');
            }
            buffer.push_str(text.value(row));
        }
        buffer.push(']');
        out.append_value(&buffer);
    }
    out.finish()
}

/// Row `i` of the result: `{` each key and its value's text of row `i` `}`; a NULL
/// value is `null` when `null_on_null`, else left out. A NULL key is an error, as in
/// Flink.
fn json_objects(
    keys: &[StringArray],
    values: &[StringArray],
    rows: usize,
    null_on_null: bool,
) -> datafusion::common::Result<StringArray> {
    let mut out = StringBuilder::with_capacity(rows, 0);
    let mut buffer = String::new();
    for row in 0..rows {
        buffer.clear();
        buffer.push('{');
        for (key, value) in keys.iter().zip(values) {
            if key.is_null(row) {
                return datafusion::common::exec_err!("JSON_OBJECT: a key is NULL");
            }
            if value.is_null(row) && !null_on_null {
                continue;
            }
            if buffer.len() > 1 {
                buffer.push(',');
            }
            quote_into(key.value(row), &mut buffer);
            buffer.push(':');
            buffer.push_str(if value.is_null(row) {
                "null"
            } else {
                value.value(row)
            });
        }
        buffer.push('}');
        out.append_value(&buffer);
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};

    #[test]
    fn values_are_written_as_flink_writes_them() {
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![Some(100), None]));
        let doubles: ArrayRef = Arc::new(Float64Array::from(vec![Some(99.0), Some(0.25)]));
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("dá\"t"), None]));
        let texts = [&numbers, &doubles, &names]
            .map(|a| json_texts(a).unwrap())
            .to_vec();
        assert_eq!(texts[1].value(0), "99.0");
        assert_eq!(texts[2].value(0), r#""dá\"t""#);
        let arrays = json_arrays(&texts, 2);
        assert_eq!(arrays.value(0), r#"[100,99.0,"dá\"t"]"#);
        assert_eq!(arrays.value(1), "[0.25]");
    }
}
