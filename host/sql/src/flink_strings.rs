//! Flink's text functions that DataFusion lacks or answers differently, as columnar
//! kernels (one type dispatch per batch; results written into one reused buffer):
//!
//! | Flink | result | notes |
//! |---|---|---|
//! | `HEX(n)`, `HEX(s)` | STRING | upper-case hex of a BIGINT's 64 bits, or of a string's UTF-8 bytes |
//! | `BIN(n)` | STRING | the 64 bits of a BIGINT in base 2 |
//! | `UNHEX(s)` | BYTES | NULL when `s` is not hex (an odd length reads as if led by `0`) |
//! | `URL_ENCODE(s)`, `URL_DECODE(s)` | STRING | `application/x-www-form-urlencoded`; NULL for a malformed escape |
//! | `PARSE_URL(url, part [, key])` | STRING | `HOST`, `PATH`, `QUERY`, `REF`, `PROTOCOL`, `FILE`, `AUTHORITY`, `USERINFO`; NULL when absent or not a URL |
//! | `IS_ALPHA(s)`, `IS_DIGIT(s)`, `IS_DECIMAL(s)` | BOOLEAN | FALSE for NULL and for the empty string |
//! | `INITCAP(s)` | STRING | words are runs of ASCII letters and digits |
//! | `SPLIT(s, delim)` | ARRAY<STRING> | empty for an empty string; an empty `delim` splits into characters |
//! | `JSON_QUOTE(s)`, `JSON_UNQUOTE(s)` | STRING | non-ASCII quoted as `\uXXXX`; a string that is not a JSON string literal is unquoted as itself |
//! | `SHA1(s)` | STRING | lower-case hex |
//! | `FROM_UNIXTIME(n [, format])` | STRING | seconds since the epoch, in UTC, `yyyy-MM-dd HH:mm:ss` by default |
//! | `UNIX_TIMESTAMP([s [, format]])` | BIGINT | seconds since the epoch; the smallest BIGINT when `s` does not parse (as Flink) |
//!
//! `PARSE_URL` splits the URL as Java's `java.net.URL` does (host case kept, no path
//! added), which is what Flink answers; the `url` crate would normalise both.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, Int64Array, ListBuilder, StringArray,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use sha1::Digest as _;

/// The functions of this module, to register in a session.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    use Kind::*;
    [
        ("hex", Hex),
        ("bin", Bin),
        ("unhex", Unhex),
        ("url_encode", UrlEncode),
        ("url_decode", UrlDecode),
        ("parse_url", ParseUrl),
        ("is_alpha", IsAlpha),
        ("is_digit", IsDigit),
        ("is_decimal", IsDecimal),
        ("initcap", Initcap),
        ("split", Split),
        ("json_quote", JsonQuote),
        ("json_unquote", JsonUnquote),
        ("sha1", Sha1),
        ("from_unixtime", FromUnixtime),
        ("unix_timestamp", UnixTimestamp),
    ]
    .into_iter()
    .map(|(name, kind)| ScalarUDF::new_from_impl(Kernel::new(name, kind)))
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Hex,
    Bin,
    Unhex,
    UrlEncode,
    UrlDecode,
    ParseUrl,
    IsAlpha,
    IsDigit,
    IsDecimal,
    Initcap,
    Split,
    JsonQuote,
    JsonUnquote,
    Sha1,
    FromUnixtime,
    UnixTimestamp,
}

/// One of the functions of this module (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Kernel {
    name: &'static str,
    kind: Kind,
    signature: Signature,
}

impl Kernel {
    fn new(name: &'static str, kind: Kind) -> Self {
        let signature = match kind {
            Kind::UnixTimestamp => Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::UserDefined],
                Volatility::Volatile,
            ),
            _ => Signature::user_defined(Volatility::Immutable),
        };
        Kernel {
            name,
            kind,
            signature,
        }
    }

    fn label(&self) -> String {
        self.name.to_uppercase()
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

impl ScalarUDFImpl for Kernel {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::common::Result<Vec<DataType>> {
        let strings = |range: std::ops::RangeInclusive<usize>| {
            if range.contains(&arg_types.len()) && arg_types.iter().all(is_text) {
                Ok(vec![DataType::Utf8; arg_types.len()])
            } else {
                plan_err!(
                    "{} takes {} STRING argument(s), got {arg_types:?}",
                    self.label(),
                    if range.start() == range.end() {
                        range.start().to_string()
                    } else {
                        format!("{} to {}", range.start(), range.end())
                    }
                )
            }
        };
        match self.kind {
            Kind::Hex => match arg_types {
                [t] if t.is_integer() => Ok(vec![DataType::Int64]),
                [t] if is_text(t) => Ok(vec![DataType::Utf8]),
                _ => plan_err!("HEX takes a BIGINT or a STRING, got {arg_types:?}"),
            },
            Kind::Bin => match arg_types {
                [t] if t.is_integer() || t.is_null() => Ok(vec![DataType::Int64]),
                _ => plan_err!("BIN takes a BIGINT, got {arg_types:?}"),
            },
            Kind::FromUnixtime => match arg_types {
                [n] | [n, _] if !(n.is_integer() || n.is_null()) => {
                    plan_err!("FROM_UNIXTIME takes BIGINT seconds, got {n}")
                }
                [_] => Ok(vec![DataType::Int64]),
                [_, f] if is_text(f) => Ok(vec![DataType::Int64, DataType::Utf8]),
                _ => plan_err!(
                    "FROM_UNIXTIME takes BIGINT seconds and an optional format, got {arg_types:?}"
                ),
            },
            Kind::UnixTimestamp => strings(0..=2),
            Kind::ParseUrl => strings(2..=3),
            Kind::Split => strings(2..=2),
            _ => strings(1..=1),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(match self.kind {
            Kind::Unhex => DataType::Binary,
            Kind::IsAlpha | Kind::IsDigit | Kind::IsDecimal => DataType::Boolean,
            Kind::Split => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            Kind::UnixTimestamp => DataType::Int64,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let rows = args.number_rows;
        if self.kind == Kind::UnixTimestamp && args.args.is_empty() {
            let now = chrono::Utc::now().timestamp();
            return Ok(ColumnarValue::Scalar(now.into()));
        }
        let scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(if scalars { 1 } else { rows }))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let out = self.run(&arrays)?;
        Ok(if scalars {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// A Utf8 view of `array` (the coerced types are Utf8; a NULL literal is cast).
fn text(array: &ArrayRef) -> datafusion::common::Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

/// `f` over every string of `input`: it writes the result into the buffer it is given,
/// or answers `false` for NULL. NULL inputs give NULL.
fn map_text(input: &StringArray, mut f: impl FnMut(&str, &mut String) -> bool) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(input.len(), input.value_data().len());
    let mut buffer = String::new();
    for value in input.iter() {
        buffer.clear();
        match value {
            Some(v) if f(v, &mut buffer) => out.append_value(&buffer),
            _ => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// `f` over every string of `input`; NULL inputs give `FALSE`.
fn test_text(input: &StringArray, f: impl Fn(&str) -> bool) -> ArrayRef {
    Arc::new(
        input
            .iter()
            .map(|v| Some(v.is_some_and(&f)))
            .collect::<BooleanArray>(),
    )
}

impl Kernel {
    fn run(&self, args: &[ArrayRef]) -> datafusion::common::Result<ArrayRef> {
        let first = &args[0];
        Ok(match self.kind {
            Kind::Hex if first.data_type() == &DataType::Int64 => {
                map_int(first, |n, out| write!(out, "{:X}", n as u64))
            }
            Kind::Hex => map_text(&text(first)?, |s, out| {
                s.bytes().for_each(|b| {
                    let _ = write!(out, "{b:02X}");
                });
                true
            }),
            Kind::Bin => map_int(first, |n, out| write!(out, "{:b}", n as u64)),
            Kind::Unhex => {
                let input = text(first)?;
                let mut out = BinaryBuilder::with_capacity(input.len(), 0);
                let mut bytes = Vec::new();
                for value in input.iter() {
                    match value.filter(|s| unhex(s, &mut bytes)) {
                        Some(_) => out.append_value(&bytes),
                        None => out.append_null(),
                    }
                }
                Arc::new(out.finish())
            }
            Kind::UrlEncode => map_text(&text(first)?, |s, out| {
                out.extend(form_urlencoded::byte_serialize(s.as_bytes()));
                true
            }),
            Kind::UrlDecode => {
                let mut bytes = Vec::new();
                map_text(&text(first)?, |s, out| {
                    url_decode(s, &mut bytes) && {
                        out.push_str(&String::from_utf8_lossy(&bytes));
                        true
                    }
                })
            }
            Kind::ParseUrl => parse_url(args)?,
            Kind::IsAlpha => test_text(&text(first)?, |s| {
                !s.is_empty() && s.chars().all(char::is_alphabetic)
            }),
            Kind::IsDigit => test_text(&text(first)?, |s| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
            }),
            Kind::IsDecimal => test_text(&text(first)?, is_decimal),
            Kind::Initcap => map_text(&text(first)?, |s, out| {
                let mut start = true;
                for c in s.chars() {
                    if c.is_ascii_alphanumeric() {
                        out.push(if start {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        });
                        start = false;
                    } else {
                        out.push(c);
                        start = true;
                    }
                }
                true
            }),
            Kind::Split => split(&text(first)?, &text(&args[1])?),
            Kind::JsonQuote => map_text(&text(first)?, |s, out| {
                json_quote(s, out);
                true
            }),
            Kind::JsonUnquote => map_text(&text(first)?, |s, out| {
                if !s.starts_with('"') || json_unquote(s, out).is_err() {
                    out.clear();
                    out.push_str(s);
                }
                true
            }),
            Kind::Sha1 => map_text(&text(first)?, |s, out| {
                for b in sha1::Sha1::digest(s.as_bytes()) {
                    let _ = write!(out, "{b:02x}");
                }
                true
            }),
            Kind::FromUnixtime => from_unixtime(args)?,
            Kind::UnixTimestamp => unix_timestamp(args)?,
        })
    }
}

/// Appends the string a JSON string literal `s` stands for to `out`, without allocating
/// (serde_json hands the decoded text to [`AppendStr`] directly, borrowed when `s` has no
/// escapes); an error when `s` is not exactly one JSON string.
fn json_unquote(s: &str, out: &mut String) -> serde_json::Result<()> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_str(s);
    AppendStr(out).deserialize(&mut de)?;
    de.end()
}

/// A serde seed that appends the string it is given to a buffer.
struct AppendStr<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for AppendStr<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

/// `f` over every BIGINT of `input` (NULL gives NULL).
fn map_int(input: &ArrayRef, f: impl Fn(i64, &mut String) -> std::fmt::Result) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(input.len(), input.len() * 8);
    let mut buffer = String::new();
    for value in input.as_primitive::<Int64Type>().iter() {
        buffer.clear();
        match value {
            Some(n) if f(n, &mut buffer).is_ok() => out.append_value(&buffer),
            _ => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// Decodes hex digits into `bytes`; `false` when `s` holds anything else.
fn unhex(s: &str, bytes: &mut Vec<u8>) -> bool {
    bytes.clear();
    let digits = s.as_bytes();
    let value = |d: u8| (d as char).to_digit(16).map(|v| v as u8);
    let (head, rest) = if digits.len() % 2 == 1 {
        (Some(digits[0]), &digits[1..])
    } else {
        (None, digits)
    };
    if let Some(d) = head {
        let Some(v) = value(d) else { return false };
        bytes.push(v);
    }
    for pair in rest.chunks_exact(2) {
        let (Some(hi), Some(lo)) = (value(pair[0]), value(pair[1])) else {
            return false;
        };
        bytes.push(hi << 4 | lo);
    }
    true
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space) into `bytes`;
/// `false` for a `%` not followed by two hex digits.
fn url_decode(s: &str, bytes: &mut Vec<u8>) -> bool {
    bytes.clear();
    let mut input = s.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next(), input.next()];
                let [Some(hi), Some(lo)] = hex.map(|d| d.and_then(|d| (d as char).to_digit(16)))
                else {
                    return false;
                };
                bytes.push((hi << 4 | lo) as u8);
            }
            b => bytes.push(b),
        }
    }
    true
}

/// A number as Java's `Double.parseDouble` reads a plain decimal: a sign, digits with at
/// most one point, an optional exponent.
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let points = mantissa.bytes().filter(|b| *b == b'.').count();
    let mantissa_ok = digits > 0 && points <= 1 && digits + points == mantissa.len();
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// A JSON string literal of `s`, escaped as Flink's `JSON_QUOTE` does (`/` and every
/// non-ASCII UTF-16 unit as escapes).
fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `SPLIT(s, delim)` row by row into one list array.
fn split(input: &StringArray, delimiters: &StringArray) -> ArrayRef {
    let mut out = ListBuilder::new(StringBuilder::new());
    for (s, delim) in input.iter().zip(delimiters.iter()) {
        let (Some(s), Some(delim)) = (s, delim) else {
            out.append_null();
            continue;
        };
        let values = out.values();
        if s.is_empty() {
        } else if delim.is_empty() {
            let mut units = [0u8; 4];
            s.chars()
                .for_each(|c| values.append_value(c.encode_utf8(&mut units)));
        } else {
            s.split(delim).for_each(|piece| values.append_value(piece));
        }
        out.append(true);
    }
    Arc::new(out.finish())
}

/// The parts of a URL, split as `java.net.URL` does.
struct Url<'s> {
    protocol: &'s str,
    authority: Option<&'s str>,
    path: &'s str,
    query: Option<&'s str>,
    reference: Option<&'s str>,
}

impl<'s> Url<'s> {
    fn parse(s: &'s str) -> Option<Self> {
        let colon = s.find(':')?;
        let protocol = &s[..colon];
        let scheme_ok = protocol.starts_with(|c: char| c.is_ascii_alphabetic())
            && protocol
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return None;
        }
        let rest = &s[colon + 1..];
        let (rest, reference) = match rest.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(r) => {
                let end = r.find('/').unwrap_or(r.len());
                (Some(&r[..end]), &r[end..])
            }
            None => (None, rest),
        };
        Some(Url {
            protocol,
            authority,
            path,
            query,
            reference,
        })
    }

    fn user_info(&self) -> Option<&'s str> {
        self.authority?.rsplit_once('@').map(|(user, _)| user)
    }

    fn host(&self) -> Option<&'s str> {
        let authority = self.authority?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        Some(match host.rfind(':') {
            Some(at) if !host[at..].contains(']') => &host[..at],
            _ => host,
        })
    }

    /// The value of `key` in the query: what follows the first `key=` up to `&`.
    fn query_value(&self, key: &str) -> Option<&'s str> {
        self.query?
            .split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
    }
}

fn parse_url(args: &[ArrayRef]) -> datafusion::common::Result<ArrayRef> {
    let urls = text(&args[0])?;
    let parts = text(&args[1])?;
    let keys = args.get(2).map(text).transpose()?;
    let mut out = StringBuilder::with_capacity(urls.len(), 0);
    let mut file = String::new();
    for row in 0..urls.len() {
        fn value(a: &StringArray, row: usize) -> Option<&str> {
            a.is_valid(row).then(|| a.value(row))
        }
        let (Some(url), Some(part)) = (value(&urls, row), value(&parts, row)) else {
            out.append_null();
            continue;
        };
        let Some(url) = Url::parse(url) else {
            out.append_null();
            continue;
        };
        let answer = match (part, &keys) {
            ("QUERY", Some(keys)) => value(keys, row).and_then(|k| url.query_value(k)),
            (_, Some(_)) => {
                return exec_err!("PARSE_URL: a key is taken only with the QUERY part");
            }
            ("HOST", None) => url.host(),
            ("PATH", None) => Some(url.path),
            ("QUERY", None) => url.query,
            ("REF", None) => url.reference,
            ("PROTOCOL", None) => Some(url.protocol),
            ("FILE", None) => {
                file.clear();
                file.push_str(url.path);
                if let Some(q) = url.query {
                    file.push('?');
                    file.push_str(q);
                }
                Some(file.as_str())
            }
            ("AUTHORITY", None) => url.authority,
            ("USERINFO", None) => url.user_info(),
            (other, None) => {
                return exec_err!(
                    "PARSE_URL: unknown part '{other}': use HOST, PATH, QUERY, REF, PROTOCOL, FILE, AUTHORITY or USERINFO"
                );
            }
        };
        out.append_option(answer);
    }
    Ok(Arc::new(out.finish()))
}

/// The format argument (constant) as a strftime pattern, or Flink's default.
fn format_argument(args: &[ArrayRef], at: usize) -> datafusion::common::Result<Option<String>> {
    match args.get(at) {
        None => Ok(Some("%Y-%m-%d %H:%M:%S".into())),
        Some(f) => {
            let f = text(f)?;
            if f.null_count() == f.len() {
                return Ok(None);
            }
            let first = f.value(0);
            if f.iter().any(|v| v != Some(first)) {
                return exec_err!(
                    "the format of FROM_UNIXTIME and UNIX_TIMESTAMP must be a constant"
                );
            }
            Ok(Some(crate::text::java_to_strftime(first)))
        }
    }
}

fn strftime_items(format: &str) -> datafusion::common::Result<Vec<chrono::format::Item<'_>>> {
    chrono::format::StrftimeItems::new(format)
        .parse()
        .map_err(|e| {
            datafusion::common::DataFusionError::Execution(format!(
                "bad time format '{format}': {e}"
            ))
        })
}

fn from_unixtime(args: &[ArrayRef]) -> datafusion::common::Result<ArrayRef> {
    let Some(format) = format_argument(args, 1)? else {
        return Ok(arrow::array::new_null_array(&DataType::Utf8, args[0].len()));
    };
    let items = strftime_items(&format)?;
    Ok(map_int(
        &args[0],
        |seconds, out| match chrono::DateTime::from_timestamp(seconds, 0) {
            Some(t) => write!(out, "{}", t.format_with_items(items.iter())),
            None => Err(std::fmt::Error),
        },
    ))
}

fn unix_timestamp(args: &[ArrayRef]) -> datafusion::common::Result<ArrayRef> {
    let Some(format) = format_argument(args, 1)? else {
        return Ok(arrow::array::new_null_array(
            &DataType::Int64,
            args[0].len(),
        ));
    };
    let items = strftime_items(&format)?;
    let input = text(&args[0])?;
    let seconds = input.iter().map(|s| {
        s.map(|s| {
            let mut parsed = chrono::format::Parsed::new();
            chrono::format::parse(&mut parsed, s, items.iter())
                .ok()
                .and_then(|()| to_epoch_seconds(&mut parsed))
                // Flink answers the smallest BIGINT for a string that does not parse.
                .unwrap_or(i64::MIN)
        })
    });
    Ok(Arc::new(seconds.collect::<Int64Array>()))
}

/// The instant `parsed` names in UTC, fields it lacks at their smallest (a format
/// without minutes reads `:00`, as Java's parser does).
fn to_epoch_seconds(parsed: &mut chrono::format::Parsed) -> Option<i64> {
    if parsed.hour_div_12().is_none() && parsed.hour_mod_12().is_none() {
        parsed.set_hour(0).ok()?;
    }
    if parsed.minute().is_none() {
        parsed.set_minute(0).ok()?;
    }
    if parsed.month().is_none() && parsed.day().is_none() && parsed.ordinal().is_none() {
        parsed.set_month(1).ok()?;
        parsed.set_day(1).ok()?;
    }
    let date = parsed.to_naive_date().ok()?;
    let time = parsed.to_naive_time().ok()?;
    Some(date.and_time(time).and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, args: Vec<ArrayRef>) -> ArrayRef {
        Kernel::new("f", kind).run(&args).unwrap()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn texts(out: &ArrayRef) -> Vec<Option<String>> {
        out.as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn hex_bin_and_unhex_read_bits_as_flink() {
        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(100), Some(-7), None]));
        assert_eq!(
            texts(&run(Kind::Hex, vec![n.clone()])),
            [Some("64".into()), Some("FFFFFFFFFFFFFFF9".into()), None]
        );
        assert_eq!(
            texts(&run(Kind::Bin, vec![n]))[0].as_deref(),
            Some("1100100")
        );
        let out = run(
            Kind::Unhex,
            vec![strings(&[Some("666C"), Some("xz"), Some("F")])],
        );
        let out = out.as_binary::<i32>();
        assert_eq!(out.value(0), b"fl");
        assert!(out.is_null(1));
        assert_eq!(out.value(2), [15]);
    }

    #[test]
    fn urls_split_as_java_does() {
        let url = "http://u:p@X.org:81/a/b.html?q=1&r=2#frag";
        let part = |p: &str| {
            texts(&run(
                Kind::ParseUrl,
                vec![strings(&[Some(url)]), strings(&[Some(p)])],
            ))[0]
                .clone()
        };
        assert_eq!(part("HOST").as_deref(), Some("X.org"));
        assert_eq!(part("FILE").as_deref(), Some("/a/b.html?q=1&r=2"));
        assert_eq!(part("AUTHORITY").as_deref(), Some("u:p@X.org:81"));
        assert_eq!(part("USERINFO").as_deref(), Some("u:p"));
        assert_eq!(part("REF").as_deref(), Some("frag"));
        let key = run(
            Kind::ParseUrl,
            vec![
                strings(&[Some(url), Some("apple")]),
                strings(&[Some("QUERY"); 2]),
                strings(&[Some("r"); 2]),
            ],
        );
        assert_eq!(texts(&key), [Some("2".into()), None]);
        let decoded = run(
            Kind::UrlDecode,
            vec![strings(&[Some("a+b%41"), Some("%4")])],
        );
        assert_eq!(texts(&decoded), [Some("a bA".into()), None]);
    }

    #[test]
    fn tests_initcap_and_json_quotes_match_flink() {
        let input = strings(&[Some("dátil 42 hELLO-wORLD_x"), Some(""), None]);
        assert_eq!(
            texts(&run(Kind::Initcap, vec![input])),
            [Some("DáTil 42 Hello-World_X".into()), Some("".into()), None]
        );
        let quoted = run(Kind::JsonQuote, vec![strings(&[Some("á\"/")])]);
        assert_eq!(texts(&quoted)[0].as_deref(), Some(r#""\u00e1\"\/""#));
        let back = run(Kind::JsonUnquote, vec![quoted]);
        assert_eq!(texts(&back)[0].as_deref(), Some("á\"/"));
        // What is not exactly one JSON string literal comes back as itself.
        let odd = [
            r#""a" x"#, r#""\q""#, r#""open"#, "plain", "42", r#"["a"]"#, r#""""#,
        ];
        let back = run(Kind::JsonUnquote, vec![strings(&odd.map(Some))]);
        let expected = odd.map(|s| {
            Some(if s == r#""""# {
                String::new()
            } else {
                s.into()
            })
        });
        assert_eq!(texts(&back), expected);
        assert!(is_decimal("-1.5e3") && is_decimal("99.0") && !is_decimal("1.2.3"));
        assert!(!is_decimal("") && !is_decimal("e5") && !is_decimal("."));
    }

    #[test]
    fn unix_times_read_and_write_java_patterns() {
        let seconds: ArrayRef = Arc::new(Int64Array::from(vec![Some(1704067300), None]));
        assert_eq!(
            texts(&run(Kind::FromUnixtime, vec![seconds])),
            [Some("2024-01-01 00:01:40".into()), None]
        );
        let out = run(
            Kind::UnixTimestamp,
            vec![
                strings(&[Some("2024/01/02 03"), Some("nope"), None]),
                strings(&[Some("yyyy/MM/dd HH"); 3]),
            ],
        );
        let out = out.as_primitive::<Int64Type>();
        assert_eq!(out.value(0), 1704164400);
        assert_eq!(out.value(1), i64::MIN);
        assert!(out.is_null(2));
    }
}
