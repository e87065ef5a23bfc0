//! Row formats shared by connectors: decoding many records into one Arrow batch and
//! encoding a batch into one record per row, without a per-row allocation.

pub mod avro;
pub mod debezium;
mod encode;

pub use encode::{EncodedRows, encode_rows, json_writer};

use arrow::array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use fungi_common::{FungiError, Result};

/// Decoded records: the rows of the good ones, and `(record index, reason)` of each bad
/// one.
pub type Decoded = (Option<RecordBatch>, Vec<(usize, String)>);

/// A record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per record.
    Json,
    /// One delimited line per record (no header).
    Csv {
        /// Field delimiter.
        delimiter: u8,
    },
    /// The record's bytes as they are: one `STRING` or `BYTES` column.
    Raw,
    /// One Avro binary datum per record, of the schema derived from the table's columns
    /// (Flink's `avro` format).
    Avro,
    /// One Debezium change event (JSON) per record, read as a changelog (Flink's
    /// `debezium-json`; see [`debezium`]).
    DebeziumJson {
        /// The event is inside `payload`, next to Debezium's `schema`
        /// (`debezium-json.schema-include`).
        schema_include: bool,
    },
}

impl RecordFormat {
    /// Parses `format` (`json`, `csv`, `raw`, `avro`, `debezium-json`) with
    /// `csv.field-delimiter` and `debezium-json.schema-include` for `connector`.
    pub fn from_options(connector: &str, options: &crate::options::Options) -> Result<Self> {
        Self::from_option(connector, options, "format")
    }

    /// [`from_options`](Self::from_options) with the format named by option `key`
    /// (`upsert-kafka`'s `key.format` and `value.format`).
    pub fn from_option(
        connector: &str,
        options: &crate::options::Options,
        key: &str,
    ) -> Result<Self> {
        let format = options.require(key)?;
        match format.to_ascii_lowercase().as_str() {
            "json" => Ok(RecordFormat::Json),
            "raw" => Ok(RecordFormat::Raw),
            "avro" => Ok(RecordFormat::Avro),
            "debezium-json" => Ok(RecordFormat::DebeziumJson {
                schema_include: match options.get("debezium-json.schema-include") {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(FungiError::Config(format!(
                            "connector '{connector}', option \
                             'debezium-json.schema-include': '{other}' is not true or false"
                        )));
                    }
                },
            }),
            "csv" => Ok(RecordFormat::Csv {
                delimiter: csv_delimiter(connector, options)?,
            }),
            other => Err(FungiError::Config(format!(
                "connector '{connector}', option '{key}': '{other}' is not json, csv, raw, avro \
                 or debezium-json"
            ))),
        }
    }

    /// Checks that `schema` suits the format (raw needs one string or bytes column, Avro
    /// a schema it can express).
    pub fn check_schema(self, connector: &str, schema: &SchemaRef) -> Result<()> {
        if self == RecordFormat::Avro {
            avro::avro_schema(schema)
                .map_err(|e| FungiError::Config(format!("connector '{connector}': {e}")))?;
        }
        if self == RecordFormat::Raw
            && (schema.fields().len() != 1
                || !matches!(
                    schema.field(0).data_type(),
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                ))
        {
            return Err(FungiError::Config(format!(
                "connector '{connector}': format 'raw' needs exactly one STRING or BYTES column, \
                 the table has {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

/// `csv.field-delimiter`: one character, `\t` for a tab; `,` by default.
pub fn csv_delimiter(connector: &str, options: &crate::options::Options) -> Result<u8> {
    match options.get("csv.field-delimiter") {
        None => Ok(b','),
        Some(d) if d.len() == 1 => Ok(d.as_bytes()[0]),
        Some("\\t") => Ok(b'\t'),
        Some(d) => Err(FungiError::Config(format!(
            "connector '{connector}', option 'csv.field-delimiter': '{d}' must be one character"
        ))),
    }
}

/// Decodes `bytes`, `rows` newline-terminated JSON or CSV records, into one batch.
pub fn decode_lines(
    schema: &SchemaRef,
    format: RecordFormat,
    bytes: &[u8],
    rows: usize,
) -> std::result::Result<Option<RecordBatch>, String> {
    let rows = rows.max(1);
    match format {
        RecordFormat::Json => {
            let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(rows)
                .build_decoder()
                .map_err(|e| e.to_string())?;
            let consumed = decoder.decode(bytes).map_err(|e| e.to_string())?;
            if consumed < bytes.len() {
                return Err("trailing data after the last record".into());
            }
            decoder.flush().map_err(|e| e.to_string())
        }
        RecordFormat::Csv { delimiter } => {
            let mut decoder = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(false)
                .with_delimiter(delimiter)
                .with_batch_size(rows)
                .build_decoder();
            let mut offset = 0;
            while offset < bytes.len() {
                let n = decoder
                    .decode(&bytes[offset..])
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                offset += n;
            }
            decoder.decode(&[]).map_err(|e| e.to_string())?;
            decoder.flush().map_err(|e| e.to_string())
        }
        RecordFormat::Raw | RecordFormat::Avro | RecordFormat::DebeziumJson { .. } => {
            Err(format!("{format:?} records are not line based"))
        }
    }
}

/// Decodes whole records (Kafka messages): all at once, and one by one only when that
/// fails, to tell the bad ones. Returns the good rows and `(record index, reason)` of
/// each bad one.
pub fn decode_records(schema: &SchemaRef, format: RecordFormat, records: &[&[u8]]) -> Decoded {
    if format == RecordFormat::Avro {
        return avro::decode_records(schema, records);
    }
    if format == RecordFormat::Raw {
        return decode_raw(schema, records);
    }
    if let RecordFormat::DebeziumJson { schema_include } = format {
        return decode_change_events(schema, schema_include, records);
    }
    let mut all = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
    let mut spans = Vec::with_capacity(records.len());
    for r in records {
        let start = all.len();
        all.extend_from_slice(r);
        spans.push((start, all.len()));
        all.push(b'\n');
    }
    // A record with a newline inside would split; such records take the slow path.
    let clean = records.iter().all(|r| memchr::memchr(b'\n', r).is_none());
    decode_lined_records(schema, format, &all, &spans, clean)
}

/// [`decode_records`] for JSON or CSV records that lie in `buf` one after another, each
/// followed by a newline, at `spans`; `clean` says that no record holds a newline. The
/// records are decoded where they are, without gathering them first.
pub fn decode_lined_records(
    schema: &SchemaRef,
    format: RecordFormat,
    buf: &[u8],
    spans: &[(usize, usize)],
    clean: bool,
) -> Decoded {
    let lined = matches!(format, RecordFormat::Json | RecordFormat::Csv { .. });
    if lined
        && clean
        && let Ok(batch) = decode_lines(schema, format, buf, spans.len())
        && batch.as_ref().is_none_or(|b| b.num_rows() == spans.len())
    {
        return (batch, Vec::new());
    }
    let records: Vec<&[u8]> = spans.iter().map(|&(s, e)| &buf[s..e]).collect();
    if lined {
        decode_each(schema, format, &records)
    } else {
        decode_records(schema, format, &records)
    }
}

/// JSON or CSV records decoded one by one, to tell the bad ones.
fn decode_each(schema: &SchemaRef, format: RecordFormat, records: &[&[u8]]) -> Decoded {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let mut one = r.to_vec();
        one.push(b'\n');
        let decoded = if r.contains(&b'\n') && format == RecordFormat::Json {
            // JSON may span lines; it is still one record.
            decode_lines(schema, format, &one, 1)
        } else if r.contains(&b'\n') {
            Err("a CSV record holds a line break".into())
        } else {
            decode_lines(schema, format, &one, 1)
        };
        match decoded {
            Ok(Some(b)) if b.num_rows() == 1 => good.push(b),
            Ok(Some(b)) => bad.push((i, format!("{} rows in one record", b.num_rows()))),
            Ok(None) => bad.push((i, "an empty record".into())),
            Err(reason) => bad.push((i, reason)),
        }
    }
    let batch = (!good.is_empty()).then(|| {
        arrow::compute::concat_batches(schema, &good).expect("batches of the same schema")
    });
    (batch, bad)
}

/// Decodes Debezium change events into changelog rows of `schema` (the table's columns;
/// the rows get the change column): the envelopes as JSON, then the changes.
fn decode_change_events(schema: &SchemaRef, schema_include: bool, records: &[&[u8]]) -> Decoded {
    let envelope = debezium::envelope_schema(schema, schema_include);
    let (events, mut bad) = decode_records(&envelope, RecordFormat::Json, records);
    let Some(events) = events else {
        return (None, bad);
    };
    // Event `i` of the decoded batch is the `i`-th record that decoded.
    let mut good = vec![true; records.len()];
    for (i, _) in &bad {
        good[*i] = false;
    }
    let decoded: Vec<usize> = (0..records.len()).filter(|&i| good[i]).collect();
    match debezium::to_changelog(&events, schema, schema_include) {
        Ok((rows, unusable)) => {
            bad.extend(unusable.into_iter().map(|(i, reason)| (decoded[i], reason)));
            bad.sort_by_key(|(i, _)| *i);
            (rows, bad)
        }
        Err(e) => (
            None,
            decoded.into_iter().map(|i| (i, e.to_string())).collect(),
        ),
    }
}

/// Decodes raw records into the table's one column: bytes as they are, or text (a record
/// that is not UTF-8 is bad); built as `Binary` or `Utf8`, then cast to the column's type
/// (`VARCHAR` is `Utf8View`).
fn decode_raw(schema: &SchemaRef, records: &[&[u8]]) -> Decoded {
    let target = schema.field(0).data_type();
    let binary = matches!(
        target,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    );
    let mut bad = Vec::new();
    let column: ArrayRef = if binary {
        std::sync::Arc::new(BinaryArray::from_iter_values(records))
    } else {
        let strings: StringArray = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match std::str::from_utf8(r) {
                Ok(s) => Some(s),
                Err(e) => {
                    bad.push((i, format!("not UTF-8: {e}")));
                    None
                }
            })
            .map(Some)
            .collect();
        std::sync::Arc::new(strings)
    };
    let column = match arrow::compute::cast(&column, target) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot be read as {target}: {e}");
            return (
                None,
                (0..records.len()).map(|i| (i, reason.clone())).collect(),
            );
        }
    };
    let batch = RecordBatch::try_new(schema.clone(), vec![column]).expect("one column");
    ((batch.num_rows() > 0).then_some(batch), bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn records_decode_at_once_and_bad_ones_are_named() {
        let records: Vec<&[u8]> = vec![
            br#"{"id": 1, "name": "a"}"#,
            br#"{"id": "x"}"#,
            b"not json",
            br#"{"id": 4, "name": "d"}"#,
        ];
        let (batch, bad) = decode_records(&schema(), RecordFormat::Json, &records);
        assert_eq!(batch.unwrap().num_rows(), 2);
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        let (batch, bad) = decode_records(&schema(), RecordFormat::Json, &[records[0], records[3]]);
        assert_eq!((batch.unwrap().num_rows(), bad.len()), (2, 0));
    }

    #[test]
    fn lined_records_decode_in_place_and_bad_ones_are_named() {
        let records: [&[u8]; 5] = [
            br#"{"id": 1, "name": "a"}"#,
            b"{\"id\": 2,\n \"name\": \"spans lines\"}",
            br#"{"id": "x"}"#,
            br#"{"id": 4}{"id": 5}"#,
            br#"{"id": 6, "name": "f"}"#,
        ];
        let lay_out = |records: &[&[u8]]| {
            let mut buf = Vec::new();
            let mut spans = Vec::new();
            for r in records {
                let start = buf.len();
                buf.extend_from_slice(r);
                spans.push((start, buf.len()));
                buf.push(b'\n');
            }
            (buf, spans)
        };
        // Clean records decode at once.
        let clean = [records[0], records[4]];
        let (buf, spans) = lay_out(&clean);
        let (batch, bad) = decode_lined_records(&schema(), RecordFormat::Json, &buf, &spans, true);
        assert_eq!((batch.unwrap().num_rows(), bad.len()), (2, 0));
        // A record spanning lines still is one row; two objects in one record and a
        // wrong type are named, whatever the layout says.
        let (buf, spans) = lay_out(&records);
        for clean in [false, true] {
            let (batch, bad) =
                decode_lined_records(&schema(), RecordFormat::Json, &buf, &spans, clean);
            let batch = batch.unwrap();
            let ids = batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>();
            assert_eq!(ids.values().to_vec(), vec![1, 2, 6]);
            assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 3]);
        }
    }

    #[test]
    fn avro_rows_decode_back_and_bad_records_are_named() {
        use arrow::array::{BooleanArray, Float64Array, Int64Array, TimestampMillisecondArray};
        use arrow::datatypes::TimeUnit;
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, false),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        RecordFormat::Avro.check_schema("kafka", &schema).unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, -2, 3])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("line\nbreak"),
                ])),
                Arc::new(Float64Array::from(vec![1.5, 2.0, -0.25])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(TimestampMillisecondArray::from(vec![
                    0,
                    1_700_000_000_000,
                    5,
                ])),
            ],
        )
        .unwrap();
        let rows = encode_rows(&batch, RecordFormat::Avro).unwrap();
        assert_eq!(rows.len(), 3);
        let mut records: Vec<&[u8]> = rows.iter().collect();
        let (back, bad) = decode_records(&schema, RecordFormat::Avro, &records);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back.unwrap(), batch);

        // A truncated record, one with trailing bytes, and garbage, between good ones.
        let truncated = &records[1][..records[1].len() - 1];
        let mut longer = records[0].to_vec();
        longer.push(7);
        records.insert(1, truncated);
        records.insert(2, &longer);
        records.push(b"\xff\xff\xff");
        let (good, bad) = decode_records(&schema, RecordFormat::Avro, &records);
        assert_eq!(good.unwrap().num_rows(), 3);
        assert_eq!(
            bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 5]
        );
        assert!(bad[0].1.contains("not an Avro record"), "{bad:?}");
    }
}
