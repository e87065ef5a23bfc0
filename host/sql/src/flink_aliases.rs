//! Flink functions that are DataFusion's under another name, argument order or result
//! type. Each is rewritten into DataFusion's before the plan runs, with Flink's result
//! type:
//!
//! | Flink | rewritten to | result |
//! |---|---|---|
//! | `E()` | the constant | DOUBLE |
//! | `STARTSWITH(s, p)`, `ENDSWITH(s, p)` | `starts_with`, `ends_with` | BOOLEAN |
//! | `REGEXP(s, p)` | `regexp_like(s, p)` | BOOLEAN |
//! | `LOCATE(needle, s)` | `strpos(s, needle)` | INT |
//! | `TRUNCATE(x [, d])` | `trunc(x, d)` | the type of `x` |
//! | `TO_BASE64(s)` | `encode(s, 'base64pad')` | STRING |
//! | `FROM_BASE64(s)` | `decode(s, 'base64pad')` read as UTF-8 | STRING |
//! | `SHA2(s, bits)` | `sha224`, `sha256`, `sha384` or `sha512` | as `SHA256(s)` |
//! | `LOG(x)`, `LOG(b, x)` | `ln(x)`, `log(b, x)` | DOUBLE |
//! | `REGEXP_SUBSTR(s, p)` | `REGEXP_EXTRACT(s, p, 0)` | STRING |
//! | `ELT(n, a, b, ...)` | `CASE n WHEN 1 THEN a WHEN 2 THEN b ... END` | the arguments' common type |
//! | `TYPEOF(x)` | the constant: Flink's name of `x`'s type (`INT NOT NULL`, `STRING`, ...) | STRING |
//! | `ARRAY_REMOVE(a, x)` | `array_remove_all` (every occurrence) | ARRAY |
//! | `ARRAY_PREPEND(a, x)` | `array_prepend(x, a)` | ARRAY |
//! | `MAP_FROM_ARRAYS(keys, values)` | `map(keys, values)` | MAP |
//! | `ENCODE(s, 'UTF-8')`, `DECODE(b, 'UTF-8')` | casts to BYTES and back (DataFusion's `hex` and `base64` encodings still work) | BYTES, STRING |
//! | `TO_TIMESTAMP_LTZ(n [, 0 or 3])` | `to_timestamp_seconds` or `to_timestamp_millis` | TIMESTAMP(3) in UTC |
//!
//! and, applied to DataFusion's own expressions when a plan is built:
//! [`flink_overlay`] (`OVERLAY` past the end of the string leaves it as it is) and
//! [`flink_similar_to`] (`SIMILAR TO` matches the whole string).

use datafusion::common::{DFSchema, ScalarValue, exec_err, plan_err};
use datafusion::functions::{crypto, datetime, encoding, math, regex, string, unicode};
use datafusion::functions_nested::concat::array_prepend_udf;
use datafusion::functions_nested::remove::array_remove_all_udf;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ExprSchemable, Like, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
    expr::{Case, ScalarFunction},
};

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

/// The functions of this module, to register in a session.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    use Kind::*;
    [
        ("e", E),
        ("startswith", StartsWith),
        ("endswith", EndsWith),
        ("regexp", Regexp),
        ("locate", Locate),
        ("truncate", Truncate),
        ("to_base64", ToBase64),
        ("from_base64", FromBase64),
        ("sha2", Sha2),
        ("log", Log),
        ("regexp_substr", RegexpSubstr),
        ("elt", Elt),
        ("typeof", TypeOf),
        ("array_remove", ArrayRemove),
        ("to_timestamp_ltz", ToTimestampLtz),
        ("array_prepend", ArrayPrepend),
        ("map_from_arrays", MapFromArrays),
        ("encode", Encode),
        ("decode", Decode),
    ]
    .into_iter()
    .map(|(name, kind)| ScalarUDF::new_from_impl(Alias::new(name, kind)))
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    E,
    StartsWith,
    EndsWith,
    Regexp,
    Locate,
    Truncate,
    ToBase64,
    FromBase64,
    Sha2,
    Log,
    RegexpSubstr,
    Elt,
    TypeOf,
    ArrayRemove,
    ToTimestampLtz,
    ArrayPrepend,
    MapFromArrays,
    Encode,
    Decode,
}

/// A Flink function rewritten into DataFusion's (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Alias {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl Alias {
    fn new(name: &'static str, kind: Kind) -> Self {
        let signature = match kind {
            Kind::E => Signature::nullary(Volatility::Immutable),
            _ => Signature::user_defined(Volatility::Immutable),
        };
        Alias {
            name,
            kind,
            signature,
        }
    }

    fn label(&self) -> String {
        self.name.to_uppercase()
    }
}

fn call(udf: Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(udf, args))
}

fn literal(value: impl Into<ScalarValue>) -> Expr {
    Expr::Literal(value.into(), None)
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

impl ScalarUDFImpl for Alias {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let strings = |n: usize| {
            if arg_types.len() == n && arg_types.iter().all(is_text) {
                Ok(vec![DataType::Utf8; n])
            } else {
                plan_err!(
                    "{} takes {n} STRING argument(s), got {arg_types:?}",
                    self.label()
                )
            }
        };
        match self.kind {
            Kind::E => Ok(vec![]),
            Kind::StartsWith | Kind::EndsWith | Kind::Regexp | Kind::Locate => strings(2),
            Kind::ToBase64 | Kind::FromBase64 => strings(1),
            Kind::Truncate => match arg_types {
                [x] if x.is_numeric() || x.is_null() => Ok(vec![x.clone()]),
                [x, d] if (x.is_numeric() || x.is_null()) && (d.is_integer() || d.is_null()) => {
                    Ok(vec![x.clone(), DataType::Int64])
                }
                _ => plan_err!(
                    "TRUNCATE takes a number and an optional INT of decimals, got {arg_types:?}"
                ),
            },
            Kind::Sha2 => match arg_types {
                [s, bits] if is_text(s) && (bits.is_integer() || bits.is_null()) => {
                    Ok(vec![DataType::Utf8, DataType::Int64])
                }
                _ => plan_err!("SHA2 takes a STRING and an INT (224, 256, 384 or 512)"),
            },
            Kind::Log => match arg_types {
                [_] | [_, _] if arg_types.iter().all(|t| t.is_numeric() || t.is_null()) => {
                    Ok(vec![DataType::Float64; arg_types.len()])
                }
                _ => plan_err!("LOG takes a number, or a base and a number, got {arg_types:?}"),
            },
            Kind::RegexpSubstr => strings(2),
            Kind::Elt => match arg_types {
                [n, rest @ ..] if !rest.is_empty() && (n.is_integer() || n.is_null()) => {
                    let common = type_union_resolution(rest).ok_or_else(|| {
                        datafusion::common::DataFusionError::Plan(format!(
                            "ELT: the values have no common type: {rest:?}"
                        ))
                    })?;
                    let mut types = vec![DataType::Int64];
                    types.extend(std::iter::repeat_n(common, rest.len()));
                    Ok(types)
                }
                _ => plan_err!("ELT takes an INT index and one or more values, got {arg_types:?}"),
            },
            Kind::TypeOf => match arg_types {
                [t] => Ok(vec![t.clone()]),
                _ => plan_err!("TYPEOF takes one argument"),
            },
            Kind::ArrayPrepend => match arg_types {
                [a @ DataType::List(item), _] => Ok(vec![a.clone(), item.data_type().clone()]),
                _ => plan_err!("ARRAY_PREPEND takes an ARRAY and a value, got {arg_types:?}"),
            },
            Kind::MapFromArrays => match arg_types {
                [k, v] => Ok(vec![k.clone(), v.clone()]),
                _ => plan_err!("MAP_FROM_ARRAYS takes an ARRAY of keys and an ARRAY of values"),
            },
            Kind::Encode | Kind::Decode => match arg_types {
                [_, c] if is_text(c) => Ok(vec![arg_types[0].clone(), DataType::Utf8]),
                _ => plan_err!(
                    "{} takes a value and a charset ('UTF-8') or encoding ('hex', 'base64')",
                    self.label()
                ),
            },
            Kind::ArrayRemove => match arg_types {
                [a @ DataType::List(item), x] if x.is_null() || x == item.data_type() => {
                    Ok(vec![a.clone(), item.data_type().clone()])
                }
                [a @ DataType::List(item), _] => Ok(vec![a.clone(), item.data_type().clone()]),
                _ => plan_err!("ARRAY_REMOVE takes an ARRAY and a value, got {arg_types:?}"),
            },
            Kind::ToTimestampLtz => match arg_types {
                [n] | [n, _] if !(n.is_integer() || n.is_null()) => {
                    plan_err!("TO_TIMESTAMP_LTZ takes a BIGINT, got {n}")
                }
                [_] => Ok(vec![DataType::Int64]),
                [_, p] if p.is_integer() => Ok(vec![DataType::Int64, DataType::Int64]),
                _ => plan_err!("TO_TIMESTAMP_LTZ takes a BIGINT and a precision (0 or 3)"),
            },
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.kind {
            Kind::E => DataType::Float64,
            Kind::StartsWith | Kind::EndsWith | Kind::Regexp => DataType::Boolean,
            Kind::Locate => DataType::Int32,
            Kind::Truncate => match arg_types.first() {
                Some(DataType::Null) | None => DataType::Float64,
                Some(t) => t.clone(),
            },
            Kind::ToBase64 | Kind::FromBase64 => DataType::Utf8,
            Kind::Sha2 => DataType::Binary,
            Kind::Log => DataType::Float64,
            Kind::RegexpSubstr | Kind::TypeOf => DataType::Utf8,
            Kind::Elt => arg_types.get(1).cloned().unwrap_or(DataType::Null),
            Kind::ArrayRemove | Kind::ArrayPrepend => arg_types[0].clone(),
            Kind::MapFromArrays => {
                datafusion::functions_nested::map::map_udf().return_type(arg_types)?
            }
            // With a charset; `return_field_from_args` sees the encodings.
            Kind::Encode => DataType::Binary,
            Kind::Decode => DataType::Utf8,
            Kind::ToTimestampLtz => DataType::Timestamp(TimeUnit::Millisecond, None),
        })
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<arrow::datatypes::FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let encoding = matches!(
            args.scalar_arguments.get(1),
            Some(Some(ScalarValue::Utf8(Some(e)))) if matches!(e.to_ascii_lowercase().as_str(), "hex" | "base64" | "base64pad")
        );
        let t = match self.kind {
            // DataFusion's encodings: text to text, text back to bytes.
            Kind::Encode if encoding => DataType::Utf8,
            Kind::Decode if encoding => DataType::Binary,
            _ => self.return_type(&types)?,
        };
        Ok(Arc::new(arrow::datatypes::Field::new(self.name, t, true)))
    }

    fn simplify(
        &self,
        mut args: Vec<Expr>,
        info: &SimplifyContext,
    ) -> datafusion::common::Result<ExprSimplifyResult> {
        let rewritten = match self.kind {
            Kind::E => literal(std::f64::consts::E),
            Kind::StartsWith => call(string::starts_with(), args),
            Kind::EndsWith => call(string::ends_with(), args),
            Kind::Regexp => call(regex::regexp_like(), args),
            Kind::Locate => {
                args.swap(0, 1);
                Expr::Cast(Cast::new(
                    Box::new(call(unicode::strpos(), args)),
                    DataType::Int32,
                ))
            }
            Kind::Truncate => {
                let to = info.get_data_type(&args[0])?;
                let to = if to == DataType::Null {
                    DataType::Float64
                } else {
                    to
                };
                // DataFusion's trunc works on floating point: go there and back.
                args[0] = Expr::Cast(Cast::new(Box::new(args[0].clone()), DataType::Float64));
                Expr::Cast(Cast::new(Box::new(call(math::trunc(), args)), to))
            }
            Kind::ToBase64 => {
                args.push(literal("base64pad"));
                call(encoding::encode(), args)
            }
            Kind::FromBase64 => {
                args.push(literal("base64pad"));
                Expr::Cast(Cast::new(
                    Box::new(call(encoding::decode(), args)),
                    DataType::Utf8,
                ))
            }
            Kind::Sha2 => {
                let bits = match &args[1] {
                    Expr::Literal(ScalarValue::Int64(Some(b)), _) => *b,
                    _ => return plan_err!("SHA2: the number of bits must be a literal"),
                };
                let hash = match bits {
                    224 => crypto::sha224(),
                    256 => crypto::sha256(),
                    384 => crypto::sha384(),
                    512 => crypto::sha512(),
                    other => {
                        return plan_err!("SHA2: {other} bits: use 224, 256, 384 or 512");
                    }
                };
                args.truncate(1);
                call(hash, args)
            }
            Kind::Log if args.len() == 1 => call(math::ln(), args),
            Kind::Log => call(math::log(), args),
            Kind::RegexpSubstr => call(crate::udfs::FlinkString::regexp_extract(), args),
            Kind::Elt => {
                let index = args.remove(0);
                let branches = args
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| (Box::new(literal(i as i64 + 1)), Box::new(value)))
                    .collect();
                Expr::Case(Case::new(Some(Box::new(index)), branches, None))
            }
            Kind::TypeOf => {
                let t = match &args[0] {
                    // Flink types an integer literal that fits as INT.
                    Expr::Literal(ScalarValue::Int64(Some(n)), _) if i32::try_from(*n).is_ok() => {
                        DataType::Int32
                    }
                    e => info.get_data_type(e)?,
                };
                let text = match &args[0] {
                    Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.as_str()),
                    _ => None,
                };
                let mut name = flink_type_name(&t, text);
                if !info.nullable(&args[0])? {
                    name.push_str(" NOT NULL");
                }
                literal(name)
            }
            Kind::ArrayRemove => call(array_remove_all_udf(), args),
            Kind::MapFromArrays => call(datafusion::functions_nested::map::map_udf(), args),
            Kind::ArrayPrepend => {
                args.swap(0, 1);
                call(array_prepend_udf(), args)
            }
            Kind::Encode | Kind::Decode => {
                let charset = match &args[1] {
                    Expr::Literal(ScalarValue::Utf8(Some(c)), _) => c.to_ascii_lowercase(),
                    _ => return plan_err!("{}: the charset must be a literal", self.label()),
                };
                match (charset.as_str(), self.kind) {
                    ("utf-8" | "utf8", Kind::Encode) => {
                        Expr::Cast(Cast::new(Box::new(args.remove(0)), DataType::Binary))
                    }
                    ("utf-8" | "utf8", _) => {
                        Expr::Cast(Cast::new(Box::new(args.remove(0)), DataType::Utf8))
                    }
                    ("hex" | "base64" | "base64pad", Kind::Encode) => {
                        call(encoding::encode(), args)
                    }
                    ("hex" | "base64" | "base64pad", _) => call(encoding::decode(), args),
                    (other, _) => {
                        return plan_err!(
                            "{}: charset '{other}' is not supported: use 'UTF-8' (or the encodings 'hex' and 'base64')",
                            self.label()
                        );
                    }
                }
            }
            Kind::ToTimestampLtz => {
                let seconds = match args.get(1) {
                    None | Some(Expr::Literal(ScalarValue::Int64(Some(3)), _)) => false,
                    Some(Expr::Literal(ScalarValue::Int64(Some(0)), _)) => true,
                    Some(_) => {
                        return plan_err!("TO_TIMESTAMP_LTZ: the precision must be 0 or 3");
                    }
                };
                args.truncate(1);
                let f = if seconds {
                    datetime::to_timestamp_seconds(info.config_options())
                } else {
                    datetime::to_timestamp_millis(info.config_options())
                };
                Expr::Cast(Cast::new(
                    Box::new(call(f, args)),
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                ))
            }
        };
        Ok(ExprSimplifyResult::Simplified(rewritten))
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        exec_err!("{} is rewritten before it runs", self.label())
    }
}

/// Flink's name of a type (`TYPEOF`); a string `literal` is a `CHAR` of its length.
fn flink_type_name(t: &DataType, literal: Option<&str>) -> String {
    use DataType::*;
    let precision = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match t {
        Null => "NULL".into(),
        Boolean => "BOOLEAN".into(),
        Int8 | UInt8 => "TINYINT".into(),
        Int16 | UInt16 => "SMALLINT".into(),
        Int32 | UInt32 => "INT".into(),
        Int64 | UInt64 => "BIGINT".into(),
        Float16 | Float32 => "FLOAT".into(),
        Float64 => "DOUBLE".into(),
        Decimal32(p, s) | Decimal64(p, s) => format!("DECIMAL({p}, {s})"),
        Decimal128(p, s) | Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        Utf8 | LargeUtf8 | Utf8View => match literal {
            Some(s) => format!("CHAR({})", s.chars().count()),
            None => "STRING".into(),
        },
        Binary | LargeBinary | BinaryView => "BYTES".into(),
        FixedSizeBinary(n) => format!("BINARY({n})"),
        Date32 | Date64 => "DATE".into(),
        Time32(unit) | Time64(unit) => format!("TIME({})", precision(unit)),
        Timestamp(unit, None) => format!("TIMESTAMP({})", precision(unit)),
        Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision(unit)),
        List(item) | LargeList(item) | FixedSizeList(item, _) => {
            format!("ARRAY<{}>", flink_type_name(item.data_type(), None))
        }
        other => other.to_string(),
    }
}

/// Flink's `OVERLAY(s PLACING r FROM start [FOR n])`: a start past the end of `s` (by
/// more than one) leaves `s` as it is, where DataFusion appends `r`. `args` are those of
/// DataFusion's `overlay`, `to` the type it returns.
pub(crate) fn flink_overlay(args: Vec<Expr>, to: DataType) -> Expr {
    let cast = |e: Expr| Expr::Cast(Cast::new(Box::new(e), to.clone()));
    let string = args[0].clone();
    let start = args[2].clone();
    let length = call(unicode::character_length(), vec![string.clone()]);
    let past_end =
        start.gt(Expr::Cast(Cast::new(Box::new(length), DataType::Int64)) + literal(1i64));
    datafusion::logical_expr::when(past_end, cast(string))
        .otherwise(cast(call(datafusion::functions::core::overlay(), args)))
        .expect("a CASE with one branch")
}

/// Flink's `s SIMILAR TO p`: the pattern (a regular expression where `%` is any text and
/// `_` any character) must match the whole string; DataFusion's matches anywhere in it.
/// A pattern that is not a literal is left as it is.
pub(crate) fn flink_similar_to(mut like: Like, schema: &DFSchema) -> Like {
    let literal = match like.pattern.as_ref() {
        Expr::Cast(Cast { expr, .. }) => expr.as_ref(),
        pattern => pattern,
    };
    if let Expr::Literal(
        ScalarValue::Utf8(Some(p))
        | ScalarValue::Utf8View(Some(p))
        | ScalarValue::LargeUtf8(Some(p)),
        meta,
    ) = literal
    {
        let mut regex = String::with_capacity(p.len() + 8);
        regex.push_str("^(?:");
        let escape = like.escape_char;
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            match c {
                c if Some(c) == escape => {
                    if let Some(next) = chars.next() {
                        regex.push_str(&regex_escape(next));
                    }
                }
                '%' => regex.push_str(".*"),
                '_' => regex.push('.'),
                c => regex.push(c),
            }
        }
        regex.push_str(")$");
        let t = like.pattern.get_type(schema).unwrap_or(DataType::Utf8);
        let pattern = Expr::Literal(ScalarValue::Utf8(Some(regex)), meta.clone());
        like.pattern = Box::new(Expr::Cast(Cast::new(Box::new(pattern), t)));
        like.escape_char = None;
    }
    like
}

fn regex_escape(c: char) -> String {
    if c.is_ascii_punctuation() {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}
