//! Flink's JSON functions over JSON text: `JSON_VALUE`, `JSON_QUERY` and `JSON_EXISTS`,
//! with SQL/JSON paths in lax mode (Flink's default) and Flink's default error handling
//! (`NULL ON EMPTY NULL ON ERROR`, `FALSE ON ERROR`).
//!
//! Paths: `$`, then any of `.key`, `."key"`, `['key']`, `[n]` and `[*]`, `.*`, after an
//! optional `lax` or `strict`. In lax mode a member step over an array applies to each
//! element. Objects keep their keys in document order, so `JSON_QUERY` returns what Flink
//! does: the value's compact text.
//!
//! The path is parsed once per batch when it is a literal (it nearly always is); each
//! document is parsed once.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};

/// The functions of this module, to register in a session.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    [
        ("json_value", Kind::Value),
        ("json_query", Kind::Query),
        ("json_exists", Kind::Exists),
    ]
    .into_iter()
    .map(|(name, kind)| {
        ScalarUDF::new_from_impl(JsonFunction {
            name,
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        })
    })
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Value,
    Query,
    Exists,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

/// A JSON document with its objects' keys in document order.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Ok(Json::Object(members))
    }
}

impl Json {
    /// Compact JSON text, as Flink writes it.
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Json::String(s) => out.push_str(&quoted(s)),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quoted(k));
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Member(String),
    AnyMember,
    Index(usize),
    AnyIndex,
}

/// Parses a SQL/JSON path; `Err` names what is wrong.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let trimmed = path.trim();
    let rest = ["lax ", "strict "]
        .iter()
        .find_map(|mode| trimmed.strip_prefix(mode))
        .unwrap_or(trimmed)
        .trim_start();
    let Some(mut rest) = rest.strip_prefix('$') else {
        return Err(format!("the JSON path '{path}' must start with $"));
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(".*") {
            steps.push(Step::AnyMember);
            rest = after;
        } else if let Some(after) = rest.strip_prefix('.') {
            if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| format!("unclosed quote in the JSON path '{path}'"))?;
                steps.push(Step::Member(quoted[..end].to_string()));
                rest = &quoted[end + 1..];
            } else {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(format!("an empty member name in the JSON path '{path}'"));
                }
                steps.push(Step::Member(after[..end].trim().to_string()));
                rest = &after[end..];
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unclosed [ in the JSON path '{path}'"))?;
            let inner = after[..end].trim();
            steps.push(if inner == "*" {
                Step::AnyIndex
            } else if let Some(name) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                Step::Member(name.to_string())
            } else {
                Step::Index(inner.parse().map_err(|_| {
                    format!("'{inner}' is not an array index in the JSON path '{path}'")
                })?)
            });
            rest = &after[end + 1..];
        } else {
            return Err(format!("unexpected '{rest}' in the JSON path '{path}'"));
        }
    }
    Ok(steps)
}

/// The items `steps` select in `doc`, in lax mode.
fn select<'a>(doc: &'a Json, steps: &[Step]) -> Vec<&'a Json> {
    let mut current = vec![doc];
    for step in steps {
        let mut next = Vec::new();
        for item in current {
            apply(item, step, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'a>(item: &'a Json, step: &Step, out: &mut Vec<&'a Json>) {
    match (item, step) {
        (Json::Object(members), Step::Member(name)) => {
            out.extend(members.iter().filter(|(k, _)| k == name).map(|(_, v)| v));
        }
        (Json::Object(members), Step::AnyMember) => out.extend(members.iter().map(|(_, v)| v)),
        // Lax mode: a member step over an array applies to its elements.
        (Json::Array(items), Step::Member(_) | Step::AnyMember) => {
            for i in items {
                apply(i, step, out);
            }
        }
        (Json::Array(items), Step::Index(i)) => out.extend(items.get(*i)),
        (Json::Array(items), Step::AnyIndex) => out.extend(items.iter()),
        // Lax mode: an array step over a non-array sees it as an array of one.
        (other, Step::Index(0) | Step::AnyIndex) => out.push(other),
        _ => {}
    }
}

impl JsonFunction {
    fn label(&self) -> String {
        self.name.to_uppercase()
    }
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let text = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        match arg_types {
            [a, b] if text(a) && text(b) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            _ => plan_err!(
                "{} takes a JSON STRING and a path STRING (such as '$.a.b'), got {arg_types:?}",
                self.label()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.kind {
            Kind::Value | Kind::Query => DataType::Utf8,
            Kind::Exists => DataType::Boolean,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let n = args.number_rows;
        let docs = args.args[0].to_array(n)?;
        let docs = docs
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("coerced to Utf8");
        // A literal path is parsed once; a path column per row.
        let literal = match &args.args[1] {
            ColumnarValue::Scalar(s) if s.is_null() => return null_result(self.kind, n),
            ColumnarValue::Scalar(s) => match parse_path(&s.to_string()) {
                Ok(steps) => Some(steps),
                Err(e) => return exec_err!("{}: {e}", self.label()),
            },
            ColumnarValue::Array(_) => None,
        };
        let paths = args.args[1].to_array(n)?;
        let paths = paths
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("coerced to Utf8");
        let mut text = String::new();
        let mut strings: Vec<Option<String>> = Vec::new();
        let mut bools: Vec<Option<bool>> = Vec::new();
        for i in 0..n {
            let parsed;
            let steps = match &literal {
                Some(steps) => steps,
                None if paths.is_null(i) => {
                    strings.push(None);
                    bools.push(None);
                    continue;
                }
                None => match parse_path(paths.value(i)) {
                    Ok(s) => {
                        parsed = s;
                        &parsed
                    }
                    Err(e) => return exec_err!("{}: {e}", self.label()),
                },
            };
            if docs.is_null(i) {
                strings.push(None);
                bools.push(None);
                continue;
            }
            let doc: Option<Json> = serde_json::from_str(docs.value(i)).ok();
            let found = doc.as_ref().map(|d| select(d, steps)).unwrap_or_default();
            match self.kind {
                Kind::Exists => bools.push(Some(!found.is_empty())),
                Kind::Value => strings.push(match found.as_slice() {
                    [Json::String(s)] => Some(s.clone()),
                    [Json::Bool(b)] => Some(b.to_string()),
                    [Json::Number(x)] => Some(x.to_string()),
                    _ => None,
                }),
                Kind::Query => strings.push(match found.as_slice() {
                    [v @ (Json::Array(_) | Json::Object(_))] => {
                        text.clear();
                        v.write(&mut text);
                        Some(text.clone())
                    }
                    _ => None,
                }),
            }
        }
        let out: ArrayRef = match self.kind {
            Kind::Exists => Arc::new(BooleanArray::from(bools)),
            Kind::Value | Kind::Query => Arc::new(StringArray::from(strings)),
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn null_result(kind: Kind, n: usize) -> datafusion::common::Result<ColumnarValue> {
    let out: ArrayRef = match kind {
        Kind::Exists => Arc::new(BooleanArray::new_null(n)),
        Kind::Value | Kind::Query => Arc::new(StringArray::new_null(n)),
    };
    Ok(ColumnarValue::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(doc: &str, path: &str) -> Vec<String> {
        let doc: Json = serde_json::from_str(doc).unwrap();
        select(&doc, &parse_path(path).unwrap())
            .into_iter()
            .map(|v| {
                let mut s = String::new();
                v.write(&mut s);
                s
            })
            .collect()
    }

    #[test]
    fn paths_select_members_and_elements_keeping_key_order() {
        let doc = r#"{"z": 1, "a": {"y": [10, {"b": "x"}], "c": true}}"#;
        assert_eq!(
            query(doc, "$"),
            vec![r#"{"z":1,"a":{"y":[10,{"b":"x"}],"c":true}}"#]
        );
        assert_eq!(query(doc, "lax $.a.y[1].b"), vec![r#""x""#]);
        assert_eq!(query(doc, "$['a'].c"), vec!["true"]);
        assert_eq!(query(doc, "$.a.y[*]"), vec!["10", r#"{"b":"x"}"#]);
        assert_eq!(
            query(doc, "$.a.y.b"),
            vec![r#""x""#],
            "lax: members of elements"
        );
        assert_eq!(query(doc, "$.missing"), Vec::<String>::new());
        assert_eq!(
            query(doc, "$.*"),
            vec!["1", r#"{"y":[10,{"b":"x"}],"c":true}"#]
        );
    }

    #[test]
    fn bad_paths_name_the_problem() {
        assert!(parse_path("a.b").unwrap_err().contains("must start with $"));
        assert!(
            parse_path("$[x]")
                .unwrap_err()
                .contains("not an array index")
        );
        assert!(parse_path("$.a[1").unwrap_err().contains("unclosed"));
    }
}
