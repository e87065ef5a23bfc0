//! Encoding a batch into one record per row: every row's bytes in one buffer, split
//! without copying, and a JSON writer whose timestamps skip `chrono`'s formatter.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrowPrimitiveType, AsArray, BinaryArray, PrimitiveArray};
use arrow::datatypes::{
    DataType, FieldRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::error::ArrowError;
use arrow::json::writer::{EncoderOptions, LineDelimited, NullableEncoder, Writer};
use arrow::json::{Encoder, EncoderFactory, WriterBuilder};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fungi_common::{FungiError, Result};

use super::{RecordFormat, avro};

/// The rows of a batch, encoded: the bytes of all of them in one buffer and where each
/// one lies in it.
#[derive(Debug, Default)]
pub struct EncodedRows {
    buf: Vec<u8>,
    spans: Vec<Range<usize>>,
}

impl EncodedRows {
    /// Rows back to back in `buf`, each ending at the offset in `ends`.
    pub(crate) fn from_ends(buf: Vec<u8>, ends: impl IntoIterator<Item = usize>) -> Self {
        let mut start = 0;
        let spans = ends
            .into_iter()
            .map(|end| {
                let span = start..end;
                start = end;
                span
            })
            .collect();
        Self { buf, spans }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The bytes of row `i`.
    pub fn row(&self, i: usize) -> &[u8] {
        &self.buf[self.spans[i].clone()]
    }

    /// The bytes of every row, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.spans.iter().map(|s| &self.buf[s.clone()])
    }

    /// The bytes of all rows together (separators included).
    pub fn total_bytes(&self) -> usize {
        self.buf.len()
    }
}

/// A line-delimited JSON writer into `out`, formatting values as `arrow-json` does;
/// timestamps without a time zone take a direct path instead of `chrono`'s formatter
/// (the largest share of encoding a row with a timestamp), with the same output.
pub fn json_writer<W: std::io::Write>(out: W) -> Writer<W, LineDelimited> {
    WriterBuilder::new()
        .with_encoder_factory(Arc::new(FastTimestamps))
        .build(out)
}

/// Encodes every row of `batch` as one record of `format`.
pub fn encode_rows(batch: &RecordBatch, format: RecordFormat) -> Result<EncodedRows> {
    match format {
        RecordFormat::Avro => avro::encode_rows(batch),
        RecordFormat::Raw => {
            let column = batch.column(0);
            let values = arrow::compute::cast(column, &DataType::Binary)?;
            let values = values
                .as_any()
                .downcast_ref::<BinaryArray>()
                .expect("cast to binary");
            let mut buf = Vec::with_capacity(values.value_data().len());
            let mut ends = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                if values.is_valid(i) {
                    buf.extend_from_slice(values.value(i));
                }
                ends.push(buf.len());
            }
            Ok(EncodedRows::from_ends(buf, ends))
        }
        RecordFormat::DebeziumJson { .. } => Err(FungiError::Config(
            "format 'debezium-json' is read, not written: write 'json', or use \
             upsert-kafka for an updating result"
                .into(),
        )),
        RecordFormat::Json => {
            let mut buf = Vec::new();
            let mut writer = json_writer(&mut buf);
            writer.write(batch)?;
            writer.finish()?;
            // JSON escapes line breaks inside values: every newline ends a row.
            let mut spans = Vec::with_capacity(batch.num_rows());
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &buf) {
                spans.push(start..end);
                start = end + 1;
            }
            checked(EncodedRows { buf, spans }, batch)
        }
        RecordFormat::Csv { delimiter } => {
            let mut buf = Vec::new();
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(false)
                .with_delimiter(delimiter)
                .build(&mut buf);
            writer.write(batch)?;
            drop(writer);
            // A newline inside a quoted value is part of it (a quote inside one is
            // doubled, so counting quotes tells whether a newline is inside one).
            let mut spans = Vec::with_capacity(batch.num_rows());
            let mut start = 0;
            let mut quoted = false;
            for at in memchr::memchr2_iter(b'"', b'\n', &buf) {
                if buf[at] == b'"' {
                    quoted = !quoted;
                } else if !quoted {
                    let end = if at > start && buf[at - 1] == b'\r' {
                        at - 1
                    } else {
                        at
                    };
                    spans.push(start..end);
                    start = at + 1;
                }
            }
            checked(EncodedRows { buf, spans }, batch)
        }
    }
}

/// `rows`, if there is one per row of `batch`.
fn checked(rows: EncodedRows, batch: &RecordBatch) -> Result<EncodedRows> {
    if rows.len() != batch.num_rows() {
        return Err(FungiError::Internal(format!(
            "encoded {} records for {} rows",
            rows.len(),
            batch.num_rows()
        )));
    }
    Ok(rows)
}

/// Encodes timestamps without a time zone as `chrono`'s `NaiveDateTime` debug form, which
/// is `arrow-json`'s default (`2024-01-02T03:04:05.678`), by arithmetic on the value.
#[derive(Debug)]
struct FastTimestamps;

impl EncoderFactory for FastTimestamps {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, ArrowError> {
        let DataType::Timestamp(unit, None) = array.data_type() else {
            return Ok(None);
        };
        if options.timestamp_format().is_some() {
            return Ok(None);
        }
        let nulls = array.nulls().cloned();
        let encoder: Box<dyn Encoder + 'a> = match unit {
            TimeUnit::Second => Box::new(TimestampEncoder::new(
                array.as_primitive::<TimestampSecondType>(),
                1,
            )?),
            TimeUnit::Millisecond => Box::new(TimestampEncoder::new(
                array.as_primitive::<TimestampMillisecondType>(),
                1_000,
            )?),
            TimeUnit::Microsecond => Box::new(TimestampEncoder::new(
                array.as_primitive::<TimestampMicrosecondType>(),
                1_000_000,
            )?),
            TimeUnit::Nanosecond => Box::new(TimestampEncoder::new(
                array.as_primitive::<TimestampNanosecondType>(),
                1_000_000_000,
            )?),
        };
        Ok(Some(NullableEncoder::new(encoder, nulls)))
    }
}

/// One timestamp column's encoder: values in years 0 to 9999 are written directly,
/// others (signed years, or out of `chrono`'s range) by `arrow`'s formatter.
struct TimestampEncoder<'a, T: ArrowPrimitiveType<Native = i64>> {
    values: &'a PrimitiveArray<T>,
    /// Values per second, and nanoseconds per value.
    per_second: i64,
    nanos_per_value: i64,
    fallback: ArrayFormatter<'a>,
}

impl<'a, T: ArrowPrimitiveType<Native = i64>> TimestampEncoder<'a, T> {
    fn new(
        values: &'a PrimitiveArray<T>,
        per_second: i64,
    ) -> std::result::Result<Self, ArrowError> {
        let fallback =
            ArrayFormatter::try_new(values, &FormatOptions::new().with_display_error(true))?;
        Ok(Self {
            values,
            per_second,
            nanos_per_value: 1_000_000_000 / per_second,
            fallback,
        })
    }
}

impl<T: ArrowPrimitiveType<Native = i64>> Encoder for TimestampEncoder<'_, T> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = self.values.value(idx);
        let seconds = value.div_euclid(self.per_second);
        // Nanoseconds within the second.
        let nanos = value.rem_euclid(self.per_second) * self.nanos_per_value;
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            use std::io::Write;
            out.push(b'"');
            let _ = write!(out, "{}", self.fallback.value(idx));
            out.push(b'"');
            return;
        }
        let second_of_day = seconds.rem_euclid(86_400);
        let mut text = *b"\"0000-00-00T00:00:00";
        let two = |text: &mut [u8], at: usize, v: i64| {
            text[at] = b'0' + (v / 10) as u8;
            text[at + 1] = b'0' + (v % 10) as u8;
        };
        two(&mut text, 1, year / 100);
        two(&mut text, 3, year % 100);
        two(&mut text, 6, month);
        two(&mut text, 9, day);
        two(&mut text, 12, second_of_day / 3600);
        two(&mut text, 15, second_of_day / 60 % 60);
        two(&mut text, 18, second_of_day % 60);
        out.extend_from_slice(&text);
        // The fraction as `chrono` writes it: none, or 3, 6 or 9 digits.
        let (fraction, digits) = if nanos == 0 {
            (0, 0)
        } else if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        if digits > 0 {
            let mut text = [b'.', 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let mut rest = fraction;
            for at in (1..=digits).rev() {
                text[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            out.extend_from_slice(&text[..=digits]);
        }
        out.push(b'"');
    }
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::decode_records;
    use arrow::array::{
        Int64Array, StringArray, TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::{Field, Schema, SchemaRef};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn rows_encode_one_record_each_and_decode_back() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![
                    Some("line\nbreak"),
                    None,
                    Some("\"quoted,\r\n\""),
                ])),
            ],
        )
        .unwrap();
        for format in [
            RecordFormat::Json,
            RecordFormat::Csv { delimiter: b',' },
            RecordFormat::Avro,
        ] {
            let rows = encode_rows(&batch, format).unwrap();
            assert_eq!(rows.len(), 3, "{format:?}");
            let records: Vec<&[u8]> = rows.iter().collect();
            assert!(
                records.iter().all(|r| !r.ends_with(b"\n")),
                "{format:?}: {records:?}"
            );
            if format != (RecordFormat::Csv { delimiter: b',' }) {
                let (back, bad) = decode_records(&schema(), format, &records);
                assert!(bad.is_empty(), "{bad:?}");
                assert_eq!(back.unwrap(), batch);
            }
        }
        let csv = encode_rows(&batch, RecordFormat::Csv { delimiter: b',' }).unwrap();
        assert_eq!(csv.row(0), b"1,\"line\nbreak\"");
        assert_eq!(csv.row(1), b"2,");
    }

    /// What `arrow-json` writes for `array` without the fast path.
    fn arrow_default(array: Arc<dyn Array>) -> Vec<u8> {
        let schema = Schema::new(vec![Field::new("t", array.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap();
        let mut out = Vec::new();
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        out
    }

    fn fast(array: Arc<dyn Array>) -> Vec<u8> {
        let schema = Schema::new(vec![Field::new("t", array.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![array]).unwrap();
        let mut out = Vec::new();
        let mut writer = json_writer(&mut out);
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn timestamps_encode_exactly_as_arrow_does() {
        // Epoch, before it, leap days, the ends of the four-digit years, beyond them,
        // every fraction length, nulls.
        let days = [
            0i64, -1, 59, 60, 365, 10_957, 11_016, 11_017, -719_528, -719_529, 2_932_896,
            2_932_897, 19_000, 47_482, -25_567, 1_000_000,
        ];
        let mut millis = Vec::new();
        let mut nanos = Vec::new();
        for d in days {
            for within in [0i64, 1, 999, 1_000, 43_199_123, 86_399_999] {
                millis.push(Some(d * 86_400_000 + within));
            }
            for within in [0i64, 1, 1_000, 1_000_000, 123_456_789, 86_399_999_999_999] {
                // Nanoseconds reach only the years 1677 to 2262.
                if let Some(n) = d.checked_mul(86_400_000_000_000) {
                    nanos.push(Some(n + within));
                }
            }
        }
        millis.extend([None, Some(i64::MAX), Some(i64::MIN)]);
        nanos.extend([None, Some(i64::MAX), Some(i64::MIN)]);
        let arrays: Vec<Arc<dyn Array>> = vec![
            Arc::new(TimestampMillisecondArray::from(millis.clone())),
            Arc::new(TimestampNanosecondArray::from(nanos)),
            Arc::new(arrow::array::TimestampSecondArray::from(
                millis.iter().map(|m| m.map(|m| m / 7)).collect::<Vec<_>>(),
            )),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(
                millis.iter().map(|m| m.map(|m| m / 3)).collect::<Vec<_>>(),
            )),
        ];
        for array in arrays {
            let expected = arrow_default(array.clone());
            let got = fast(array.clone());
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "{}",
                array.data_type()
            );
        }
        // A time zone keeps arrow's own encoder.
        let zoned: Arc<dyn Array> = Arc::new(
            TimestampMillisecondArray::from(vec![1_700_000_000_123]).with_timezone("+02:00"),
        );
        assert_eq!(fast(zoned.clone()), arrow_default(zoned));
    }
}
