//! Kafka metadata columns (Flink's names): `topic`, `partition`, `offset`, `timestamp`,
//! `timestamp-type` and `headers` are read by the source; `headers` and `timestamp` are
//! written by the sink.
//!
//! The source builds each metadata column for a partition's records while it copies their
//! payloads, so a batch's metadata costs one array per column, not a value per row.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array, MapArray,
    MapBuilder, MapFieldNames, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use fungi_common::{FungiError, Result};
use rdkafka::Timestamp;

use crate::options::{MetadataColumn, Options, map_type};

/// A metadata key the Kafka connector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Topic,
    Partition,
    Offset,
    Timestamp,
    TimestampType,
    /// Header values as `BYTES` (Flink's type) or as `STRING`.
    Headers {
        strings: bool,
    },
}

const KEYS: &str = "topic, partition, offset, timestamp, timestamp-type, headers";

impl Key {
    fn parse(m: &MetadataColumn, data_type: &DataType) -> Result<Key> {
        let bad_type = |expected: &str| {
            FungiError::Config(format!(
                "connector 'kafka': metadata column '{}' (METADATA FROM '{}') is {data_type}; \
                 it must be {expected}",
                m.column, m.key
            ))
        };
        let key = match m.key.as_str() {
            "topic" => Key::Topic,
            "partition" => Key::Partition,
            "offset" => Key::Offset,
            "timestamp" => Key::Timestamp,
            "timestamp-type" => Key::TimestampType,
            "headers" => Key::Headers {
                strings: *data_type == map_type(DataType::Utf8, DataType::Utf8),
            },
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'kafka': column '{}' is METADATA FROM '{other}', which Kafka \
                     does not have; known keys: {KEYS}",
                    m.column
                )));
            }
        };
        let ok = match key {
            Key::Topic | Key::TimestampType => *data_type == DataType::Utf8,
            Key::Partition => *data_type == DataType::Int32,
            Key::Offset => *data_type == DataType::Int64,
            Key::Timestamp => matches!(data_type, DataType::Timestamp(TimeUnit::Millisecond, _)),
            Key::Headers { .. } => {
                *data_type == map_type(DataType::Utf8, DataType::Binary)
                    || *data_type == map_type(DataType::Utf8, DataType::Utf8)
            }
        };
        if !ok {
            return Err(bad_type(match key {
                Key::Topic | Key::TimestampType => "STRING",
                Key::Partition => "INT",
                Key::Offset => "BIGINT",
                Key::Timestamp => "TIMESTAMP(3)",
                Key::Headers { .. } => "MAP<STRING, BYTES> or MAP<STRING, STRING>",
            }));
        }
        Ok(key)
    }
}

/// The metadata columns of a table and the schema of what the payload holds.
#[derive(Debug, Clone)]
pub(crate) struct MetadataColumns {
    /// (index in the table's schema, key), in schema order.
    columns: Vec<(usize, Key)>,
    /// The table's columns that the payload holds.
    value_schema: SchemaRef,
    /// The table's schema.
    schema: SchemaRef,
}

impl MetadataColumns {
    /// The metadata columns declared in `options` for a table of `schema`.
    pub(crate) fn new(schema: &SchemaRef, options: &Options) -> Result<Self> {
        let mut columns = Vec::new();
        for m in options.metadata() {
            let index = schema.index_of(&m.column).map_err(|_| {
                FungiError::Config(format!(
                    "connector 'kafka': metadata column '{}' is not a column of the table",
                    m.column
                ))
            })?;
            columns.push((index, Key::parse(m, schema.field(index).data_type())?));
        }
        columns.sort_by_key(|(i, _)| *i);
        let value_schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| !columns.iter().any(|(c, _)| c == i))
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>(),
        ));
        Ok(MetadataColumns {
            columns,
            value_schema,
            schema: schema.clone(),
        })
    }

    /// The columns the payload holds.
    pub(crate) fn value_schema(&self) -> &SchemaRef {
        &self.value_schema
    }

    /// A collector for one partition's records.
    pub(crate) fn collector(&self) -> Collector {
        let headers = self.columns.iter().find_map(|(_, k)| match k {
            Key::Headers { strings } => Some(*strings),
            _ => None,
        });
        Collector {
            offsets: Vec::new(),
            timestamps: Vec::new(),
            timestamp_types: Vec::new(),
            wants_time: self
                .columns
                .iter()
                .any(|(_, k)| matches!(k, Key::Timestamp | Key::TimestampType)),
            headers: headers.map(|strings| {
                let names = MapFieldNames {
                    entry: "entries".into(),
                    key: "key".into(),
                    value: "value".into(),
                };
                if strings {
                    HeaderBuilder::Strings(MapBuilder::new(
                        Some(names),
                        StringBuilder::new(),
                        StringBuilder::new(),
                    ))
                } else {
                    HeaderBuilder::Bytes(MapBuilder::new(
                        Some(names),
                        StringBuilder::new(),
                        BinaryBuilder::new(),
                    ))
                }
            }),
        }
    }

    /// The table's rows: `values` (decoded payloads) with the metadata columns of the
    /// records that `keep` selects (all when `None`) put in their places.
    pub(crate) fn assemble(
        &self,
        values: RecordBatch,
        topic: &str,
        partition: i32,
        collected: Collector,
        keep: Option<&BooleanArray>,
    ) -> Result<RecordBatch> {
        if self.columns.is_empty() {
            return Ok(values);
        }
        let rows = values.num_rows();
        let Collector {
            offsets,
            timestamps,
            timestamp_types,
            headers,
            ..
        } = collected;
        // Each array is built once (moving the collected vectors) and shared by every
        // column that reads it.
        let offsets: ArrayRef = Arc::new(Int64Array::from(offsets));
        let timestamps = TimestampMillisecondArray::from(timestamps);
        let headers = headers.map(HeaderBuilder::finish);
        let mut value_columns = values.columns().iter();
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for i in 0..self.schema.fields().len() {
            let Some((_, key)) = self.columns.iter().find(|(c, _)| *c == i) else {
                out.push(value_columns.next().expect("a value column").clone());
                continue;
            };
            let all: ArrayRef = match key {
                Key::Topic => {
                    out.push(Arc::new(StringArray::from_iter_values(
                        std::iter::repeat_n(topic, rows),
                    )));
                    continue;
                }
                Key::Partition => {
                    out.push(Arc::new(Int32Array::from_value(partition, rows)));
                    continue;
                }
                Key::Offset => offsets.clone(),
                Key::Timestamp => {
                    let tz = match self.schema.field(i).data_type() {
                        DataType::Timestamp(_, tz) => tz.clone(),
                        _ => None,
                    };
                    Arc::new(timestamps.clone().with_timezone_opt(tz))
                }
                Key::TimestampType => Arc::new(StringArray::from_iter_values(
                    timestamp_types.iter().copied(),
                )),
                Key::Headers { .. } => headers
                    .clone()
                    .expect("headers are collected when a headers column is declared"),
            };
            out.push(match keep {
                Some(mask) => arrow::compute::filter(&all, mask)?,
                None => all,
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), out)?)
    }
}

enum HeaderBuilder {
    Bytes(MapBuilder<StringBuilder, BinaryBuilder>),
    Strings(MapBuilder<StringBuilder, StringBuilder>),
}

impl HeaderBuilder {
    fn finish(self) -> ArrayRef {
        let map: MapArray = match self {
            HeaderBuilder::Bytes(mut b) => b.finish(),
            HeaderBuilder::Strings(mut b) => b.finish(),
        };
        Arc::new(map)
    }
}

/// The metadata of one partition's records, gathered while they are polled.
pub(crate) struct Collector {
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    timestamp_types: Vec<&'static str>,
    wants_time: bool,
    headers: Option<HeaderBuilder>,
}

impl Collector {
    /// Records the metadata of `message`.
    pub(crate) fn push(&mut self, message: &fungi_kafka_batch::Message<'_>) -> Result<()> {
        self.offsets.push(message.offset());
        if self.wants_time {
            let (millis, kind) = match message.timestamp() {
                Timestamp::NotAvailable => (None, "NoTimestampType"),
                Timestamp::CreateTime(t) => (Some(t), "CreateTime"),
                Timestamp::LogAppendTime(t) => (Some(t), "LogAppendTime"),
            };
            self.timestamps.push(millis);
            self.timestamp_types.push(kind);
        }
        match &mut self.headers {
            None => {}
            Some(HeaderBuilder::Bytes(b)) => {
                message.for_each_header(|key, value| {
                    b.keys().append_value(key);
                    b.values().append_option(value);
                });
                b.append(true)?;
            }
            Some(HeaderBuilder::Strings(b)) => {
                message.for_each_header(|key, value| {
                    b.keys().append_value(key);
                    // A value that is not UTF-8 reads as NULL in a STRING map.
                    b.values()
                        .append_option(value.and_then(|v| std::str::from_utf8(v).ok()));
                });
                b.append(true)?;
            }
        }
        Ok(())
    }

    /// The offset of each record, in poll order.
    pub(crate) fn offsets(&self) -> &[i64] {
        &self.offsets
    }
}

/// What a sink writes besides the payload: the message timestamp and headers.
#[derive(Debug, Clone, Default)]
pub(crate) struct SinkMetadata {
    /// Columns that are not part of the payload.
    skipped: Vec<String>,
    timestamp: Option<String>,
    headers: Option<String>,
}

/// One batch's message headers and timestamps.
pub(crate) struct RowMetadata {
    timestamps: Option<TimestampMillisecondArray>,
    /// The header maps, with all their keys and values cast once per batch.
    headers: Option<(MapArray, StringArray, BinaryArray)>,
}

impl SinkMetadata {
    /// The writable metadata columns declared in `options`; a read-only key that is not
    /// `VIRTUAL` is refused.
    pub(crate) fn new(options: &Options) -> Result<Self> {
        let mut out = SinkMetadata::default();
        for m in options.metadata() {
            out.skipped.push(m.column.clone());
            if m.is_virtual {
                continue;
            }
            match m.key.as_str() {
                "timestamp" => out.timestamp = Some(m.column.clone()),
                "headers" => out.headers = Some(m.column.clone()),
                other => {
                    return Err(FungiError::Config(format!(
                        "connector 'kafka': metadata column '{}' (METADATA FROM '{other}') \
                         cannot be written; a sink writes 'headers' and 'timestamp', declare \
                         others VIRTUAL",
                        m.column
                    )));
                }
            }
        }
        Ok(out)
    }

    /// `batch` without the metadata columns (what the payload encodes).
    pub(crate) fn payload(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if self.skipped.is_empty() {
            return Ok(batch.clone());
        }
        let schema = batch.schema();
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| !self.skipped.contains(schema.field(i).name()))
            .collect();
        Ok(batch.project(&keep)?)
    }

    /// The timestamps and headers of `batch`'s rows.
    pub(crate) fn rows(&self, batch: &RecordBatch) -> Result<RowMetadata> {
        let column = |name: &String| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                FungiError::Config(format!(
                    "connector 'kafka': the rows have no metadata column '{name}'"
                ))
            })
        };
        let timestamps = match &self.timestamp {
            Some(name) => {
                let c = arrow::compute::cast(
                    &column(name)?,
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )?;
                Some(
                    c.as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .expect("cast to timestamps")
                        .clone(),
                )
            }
            None => None,
        };
        let headers = match &self.headers {
            Some(name) => {
                let c = column(name)?;
                let map = c.as_any().downcast_ref::<MapArray>().ok_or_else(|| {
                    FungiError::Config(format!(
                        "connector 'kafka': headers column '{name}' is {}, not a MAP",
                        c.data_type()
                    ))
                })?;
                let keys = arrow::compute::cast(map.keys(), &DataType::Utf8)?;
                let values = arrow::compute::cast(map.values(), &DataType::Binary)?;
                Some((
                    map.clone(),
                    keys.as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to strings")
                        .clone(),
                    values
                        .as_any()
                        .downcast_ref::<BinaryArray>()
                        .expect("cast to bytes")
                        .clone(),
                ))
            }
            None => None,
        };
        Ok(RowMetadata {
            timestamps,
            headers,
        })
    }
}

impl RowMetadata {
    /// The timestamp of `row`, if one is written.
    pub(crate) fn timestamp(&self, row: usize) -> Option<i64> {
        self.timestamps
            .as_ref()
            .filter(|t| t.is_valid(row))
            .map(|t| t.value(row))
    }

    /// The headers of `row`, as librdkafka wants them (one list per message).
    pub(crate) fn headers(&self, row: usize) -> Option<rdkafka::message::OwnedHeaders> {
        let (map, keys, values) = self.headers.as_ref().filter(|(m, _, _)| m.is_valid(row))?;
        let offsets = map.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let mut out = rdkafka::message::OwnedHeaders::new_with_capacity(end - start);
        for i in start..end {
            out = out.insert(rdkafka::message::Header {
                key: keys.value(i),
                value: values.is_valid(i).then(|| values.value(i)),
            });
        }
        Some(out)
    }
}
