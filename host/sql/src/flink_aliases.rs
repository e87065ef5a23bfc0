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

use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::functions::{crypto, encoding, math, regex, string, unicode};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    expr::ScalarFunction,
};

use arrow::datatypes::DataType;

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

fn call(udf: std::sync::Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
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
        })
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
