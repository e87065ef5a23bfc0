//! The `datagen` source: rows of a declared schema, at a rate, bounded or not.
//!
//! Options follow Flink's datagen connector: `rows-per-second` (default 10000, across all
//! subtasks; `0` for as fast as possible), `number-of-rows` (bounded if set), and per field
//! `fields.<name>.kind` = `random` (default) or `sequence`, with `fields.<name>.min` /
//! `.max` for random numbers, `.length` for random strings, `.start` / `.end` for
//! sequences. TIMESTAMP fields get the wall-clock time at generation. Values are derived
//! from the row number, so runs are reproducible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::compute::kernels::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use fungi_common::ids::CheckpointId;
use fungi_common::ids::SubtaskInfo;
use fungi_common::{FungiError, Result};
use fungi_execution::RestoredState;
use fungi_execution::source::{Source, SourceContext, SourceEvent, SourceFactory};

use crate::options::Options;
use crate::rng::SplitMix64;

#[derive(Debug, Clone)]
enum FieldGen {
    Sequence { start: i64, end: i64 },
    Random { min: i64, max: i64, length: usize },
    Now,
}

#[derive(Debug, Clone)]
struct DatagenSpec {
    schema: SchemaRef,
    fields: Vec<FieldGen>,
    rows_per_second: u64,
    number_of_rows: Option<u64>,
}

/// Generates rows; each subtask produces rows `index, index + parallelism, ...`.
#[derive(Debug)]
pub struct DatagenSource {
    spec: Arc<DatagenSpec>,
    subtask: SubtaskInfo,
    batch_size: usize,
    next_row: u64,
    emitted: u64,
    started: Option<Instant>,
}

impl DatagenSource {
    /// A factory for rows of `schema` configured by `options`.
    pub fn factory(schema: SchemaRef, options: &Options) -> Result<SourceFactory> {
        let rows_per_second = options.get_u64("rows-per-second")?.unwrap_or(10_000);
        let number_of_rows = options.get_u64("number-of-rows")?;
        let mut fields = Vec::new();
        for field in schema.fields() {
            let prefix = format!("fields.{}.", field.name());
            let opt = |k: &str| options.get(&format!("{prefix}{k}")).map(str::to_string);
            let int = |k: &str| -> Result<Option<i64>> { options.get_i64(&format!("{prefix}{k}")) };
            let kind = opt("kind").unwrap_or_else(|| "random".into());
            let numeric = field.data_type().is_numeric();
            let generator = match (kind.as_str(), field.data_type()) {
                (_, DataType::Timestamp(_, _)) => FieldGen::Now,
                ("sequence", _) if numeric || field.data_type() == &DataType::Utf8 => {
                    FieldGen::Sequence {
                        start: int("start")?.unwrap_or(0),
                        end: int("end")?.unwrap_or(i64::MAX),
                    }
                }
                (
                    "random",
                    DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Utf8
                    | DataType::Boolean,
                ) => FieldGen::Random {
                    min: int("min")?.unwrap_or(0),
                    max: int("max")?.unwrap_or(if numeric { 1_000_000 } else { 1 }),
                    length: int("length")?.unwrap_or(10).max(0) as usize,
                },
                (k @ ("random" | "sequence"), t) => {
                    return Err(FungiError::Config(format!(
                        "connector 'datagen': field '{}' of type {t} cannot be generated with kind '{k}'",
                        field.name()
                    )));
                }
                (k, _) => {
                    return Err(FungiError::Config(format!(
                        "connector 'datagen', option 'fields.{}.kind': '{k}' is not random or sequence",
                        field.name()
                    )));
                }
            };
            if let FieldGen::Random { min, max, .. } = generator
                && min > max
            {
                return Err(FungiError::Config(format!(
                    "connector 'datagen': field '{}' has min {min} > max {max}",
                    field.name()
                )));
            }
            fields.push(generator);
        }
        let mut known: Vec<String> = vec!["rows-per-second".into(), "number-of-rows".into()];
        for f in schema.fields() {
            for k in ["kind", "min", "max", "length", "start", "end"] {
                known.push(format!("fields.{}.{k}", f.name()));
            }
        }
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        options.check_all_used(&known)?;
        let spec = Arc::new(DatagenSpec {
            schema,
            fields,
            rows_per_second,
            number_of_rows,
        });
        Ok(Arc::new(move |s: &SubtaskInfo| {
            Ok(Box::new(DatagenSource {
                spec: spec.clone(),
                subtask: *s,
                batch_size: 8192,
                next_row: s.index as u64,
                emitted: 0,
                started: None,
            }) as Box<dyn Source>)
        }))
    }

    fn limit(&self) -> Option<u64> {
        let seq_limit = self.spec.fields.iter().filter_map(|f| match f {
            FieldGen::Sequence { start, end } => {
                Some((end - start).max(-1).saturating_add(1) as u64)
            }
            _ => None,
        });
        self.spec.number_of_rows.into_iter().chain(seq_limit).min()
    }

    fn column(&self, i: usize, rows: &[u64]) -> Result<ArrayRef> {
        let field = self.spec.schema.field(i);
        let salt = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let array: ArrayRef = match &self.spec.fields[i] {
            FieldGen::Now => {
                let now = fungi_common::time::now_millis();
                let mut b = TimestampMillisecondBuilder::with_capacity(rows.len());
                b.append_value_n(now, rows.len());
                cast::cast(&b.finish(), field.data_type())?
            }
            FieldGen::Sequence { start, .. } => {
                let values = Int64Builder::with_capacity(rows.len());
                let mut values = values;
                for &r in rows {
                    values.append_value(start + r as i64);
                }
                cast::cast(&values.finish(), field.data_type())?
            }
            FieldGen::Random { min, max, length } => {
                let span = (max - min) as u64 + 1;
                match field.data_type() {
                    DataType::Utf8 => {
                        let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * length);
                        let mut buf = Vec::with_capacity(*length);
                        for &r in rows {
                            buf.clear();
                            SplitMix64::new(r ^ salt).letters(*length, &mut buf);
                            b.append_value(std::str::from_utf8(&buf).expect("ascii"));
                        }
                        Arc::new(b.finish())
                    }
                    DataType::Boolean => {
                        let mut b = BooleanBuilder::with_capacity(rows.len());
                        for &r in rows {
                            b.append_value(SplitMix64::new(r ^ salt).next_u64() & 1 == 1);
                        }
                        Arc::new(b.finish())
                    }
                    DataType::Float32 | DataType::Float64 => {
                        let mut b = Float64Builder::with_capacity(rows.len());
                        for &r in rows {
                            b.append_value(
                                *min as f64
                                    + SplitMix64::new(r ^ salt).next_f64() * (max - min) as f64,
                            );
                        }
                        cast::cast(&b.finish(), field.data_type())?
                    }
                    _ => {
                        let mut b = Int64Builder::with_capacity(rows.len());
                        for &r in rows {
                            b.append_value(min + SplitMix64::new(r ^ salt).below(span) as i64);
                        }
                        cast::cast(&b.finish(), field.data_type())?
                    }
                }
            }
        };
        Ok(array)
    }
}

#[async_trait::async_trait]
impl Source for DatagenSource {
    fn schema(&self) -> SchemaRef {
        self.spec.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<Vec<u32>> {
        self.batch_size = ctx.batch_size;
        Ok(vec![self.subtask.index])
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        let p = self.subtask.parallelism as u64;
        let limit = self.limit();
        let mut n = self.batch_size as u64;
        if self.spec.rows_per_second > 0 {
            let started = *self.started.get_or_insert_with(Instant::now);
            let rate = self.spec.rows_per_second as f64 / p as f64;
            let due = (started.elapsed().as_secs_f64() * rate).ceil() as u64;
            if due <= self.emitted {
                return Ok(SourceEvent::Pending(Duration::from_millis(10)));
            }
            n = n.min(due - self.emitted);
        }
        let mut rows = Vec::with_capacity(n as usize);
        while (rows.len() as u64) < n && limit.is_none_or(|l| self.next_row < l) {
            rows.push(self.next_row);
            self.next_row += p;
        }
        if rows.is_empty() {
            return Ok(SourceEvent::Finished);
        }
        self.emitted += rows.len() as u64;
        let columns = (0..self.spec.fields.len())
            .map(|i| self.column(i, &rows))
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(self.spec.schema.clone(), columns)?;
        Ok(SourceEvent::Batch {
            split: self.subtask.index,
            batch,
        })
    }

    // Rows are numbered: the next row number is the position.
    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        Ok(self.next_row.to_le_bytes().to_vec())
    }

    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        let [(_, bytes)] = state.states.as_slice() else {
            return Err(FungiError::State(format!(
                "the datagen source cannot change its parallelism on restore (checkpointed at {}, now {})",
                state.old_parallelism, self.subtask.parallelism
            )));
        };
        self.next_row = bytes
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| FungiError::State("bad datagen position".into()))?;
        Ok(())
    }
}

/// Parses a SQL-ish type name (`BIGINT`, `INT`, `DOUBLE`, `FLOAT`, `STRING`, `VARCHAR`,
/// `BOOLEAN`, `TIMESTAMP`, `TIMESTAMP(3)`) into an Arrow type, for job files.
pub fn parse_type(name: &str) -> Result<DataType> {
    let upper = name.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    Ok(match base {
        "BIGINT" | "LONG" | "INT64" => DataType::Int64,
        "INT" | "INTEGER" | "INT32" => DataType::Int32,
        "SMALLINT" => DataType::Int16,
        "TINYINT" => DataType::Int8,
        "DOUBLE" | "FLOAT64" => DataType::Float64,
        "FLOAT" | "REAL" | "FLOAT32" => DataType::Float32,
        "STRING" | "VARCHAR" | "TEXT" | "UTF8" => DataType::Utf8,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TIMESTAMP" | "TIMESTAMP_LTZ" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "DATE" => DataType::Date32,
        _ => {
            return Err(FungiError::Config(format!(
                "unknown column type '{name}'; use BIGINT, INT, DOUBLE, FLOAT, STRING, BOOLEAN, TIMESTAMP or DATE"
            )));
        }
    })
}
