//! Window Top-N: `ROW_NUMBER() OVER (PARTITION BY window_start, window_end, ... ORDER BY
//! ...)` over windowed rows.
//!
//! Rows are buffered per window until the watermark passes the window's last timestamp;
//! then the window's rows are sorted by (partition, order) in one vectorized sort, numbered
//! within each partition, and emitted with the row number as an extra last column (a
//! filter on it above keeps the top N). Rows that arrive for a window already ranked are
//! late: counted and dropped, as Flink does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMillisecondType};
use arrow::row::{RowConverter, SortField};
use fungi_checkpoint::RestoredState;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result, Watermark};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

/// What a window rank computes.
#[derive(Debug, Clone)]
pub struct WindowRankSpec {
    /// Index of the `window_end` column.
    pub window_end: usize,
    /// Partition columns (the window's among them).
    pub partition: Vec<usize>,
    /// The columns the input is hash-partitioned by: the partition columns without the
    /// window's (restores at another parallelism split the state by them).
    pub keys: Vec<usize>,
    /// Order columns and their directions.
    pub order: Vec<(usize, SortOptions)>,
    /// Name of the row-number column appended to the output.
    pub rank_column: String,
}

/// Numbers the rows of each window partition in order.
pub struct WindowRankOperator {
    spec: WindowRankSpec,
    input: SchemaRef,
    output: SchemaRef,
    windows: BTreeMap<i64, Vec<RecordBatch>>,
    watermark: i64,
    metrics: Option<Arc<OperatorMetrics>>,
    subtask: SubtaskInfo,
}

impl WindowRankOperator {
    /// A factory over rows of `input`; returns the output schema (input + row number).
    pub fn factory(spec: WindowRankSpec, input: SchemaRef) -> Result<(OperatorFactory, SchemaRef)> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&spec.rank_column, DataType::UInt64, false));
        let output = Arc::new(Schema::new(fields));
        let out = output.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            Ok(Box::new(WindowRankOperator {
                subtask: *s,
                spec: spec.clone(),
                input: input.clone(),
                output: out.clone(),
                windows: BTreeMap::new(),
                watermark: i64::MIN,
                metrics: None,
            }) as Box<dyn Operator>)
        });
        Ok((factory, output))
    }

    fn rank(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut sort = Vec::new();
        for &p in &self.spec.partition {
            sort.push(SortColumn {
                values: batch.column(p).clone(),
                options: None,
            });
        }
        for &(o, options) in &self.spec.order {
            sort.push(SortColumn {
                values: batch.column(o).clone(),
                options: Some(options),
            });
        }
        let sorted = if sort.is_empty() {
            batch.clone()
        } else {
            take_record_batch(batch, &lexsort_to_indices(&sort, None)?)?
        };
        let n = sorted.num_rows();
        let mut ranks = Vec::with_capacity(n);
        if self.spec.partition.is_empty() {
            ranks.extend(1..=n as u64);
        } else {
            let columns: Vec<ArrayRef> = self
                .spec
                .partition
                .iter()
                .map(|&p| sorted.column(p).clone())
                .collect();
            let converter = RowConverter::new(
                columns
                    .iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )?;
            let rows = converter.convert_columns(&columns)?;
            let mut rank = 0u64;
            for i in 0..n {
                rank = if i > 0 && rows.row(i) == rows.row(i - 1) {
                    rank + 1
                } else {
                    1
                };
                ranks.push(rank);
            }
        }
        let mut columns = sorted.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(ranks)));
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }
}

impl Operator for WindowRankOperator {
    // The rows of windows not ranked yet (each carries its window), and the watermark.
    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        let batches: Vec<RecordBatch> = self.windows.values().flatten().cloned().collect();
        let rows = encode_batch(&concat_batches(&self.input, &batches)?)?;
        Ok(Some(
            postcard::to_stdvec(&(self.watermark, rows)).expect("rank state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        let mut watermark = None::<i64>;
        for (_, bytes) in &state.states {
            let (w, rows): (i64, Vec<u8>) = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad window rank state: {e}")))?;
            watermark = Some(watermark.map_or(w, |m| m.min(w)));
            let mut batch = decode_batch(&rows)?;
            if let Some(f) = &filter {
                batch = f.retain(batch, &self.spec.keys)?;
            }
            if batch.num_rows() > 0 {
                // Before the watermark is set, so that no restored row counts as late.
                self.process_batch(batch, &mut Output::default())?;
            }
        }
        if let Some(w) = watermark {
            self.watermark = w;
        }
        Ok(())
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let ends = batch
            .column(self.spec.window_end)
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let mut distinct: Vec<i64> = ends.iter().flatten().collect();
        if distinct.len() != batch.num_rows() {
            return Err(FungiError::Operator {
                operator: "window rank".into(),
                message: "a row has no window_end".into(),
            });
        }
        distinct.sort_unstable();
        distinct.dedup();
        for end in distinct {
            let part = if distinct_single(&ends, end) {
                batch.clone()
            } else {
                let mask: arrow::array::BooleanArray =
                    ends.values().iter().map(|&e| Some(e == end)).collect();
                arrow::compute::filter_record_batch(&batch, &mask)?
            };
            if end - 1 <= self.watermark {
                // The window was ranked already: late.
                if let Some(m) = &self.metrics {
                    m.late_records
                        .fetch_add(part.num_rows() as u64, Ordering::Relaxed);
                }
                continue;
            }
            self.windows.entry(end).or_default().push(part);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark {
            self.watermark = self.watermark.max(t);
            while let Some((&end, _)) = self.windows.first_key_value() {
                if end - 1 > t {
                    break;
                }
                let (_, batches) = self.windows.pop_first().expect("exists");
                let batch = concat_batches(&self.input, &batches)?;
                out.emit(self.rank(&batch)?);
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }
}

fn distinct_single(ends: &arrow::array::TimestampMillisecondArray, end: i64) -> bool {
    ends.values().iter().all(|&e| e == end)
}
