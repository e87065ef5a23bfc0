//! Top-N and deduplication without a window: `ROW_NUMBER() OVER (PARTITION BY ...
//! ORDER BY ...)` filtered to the first N rows, as an updating result.
//!
//! Each partition keeps its current top N rows, sorted (rows in a [`RowStore`] that keeps
//! the order columns' row encoding, so comparing two rows is a byte comparison). A batch
//! is folded in row by row against those small lists; then, once per partition the batch
//! touched (a mini-batch, as Flink's), the difference between the old and the new top N
//! is emitted as a changelog:
//!
//! - when the query uses the row number, each position whose row changed gets `-U` (old
//!   row, its number) and `+U` (new row) - or `+I` for a position filled for the first
//!   time - as in Flink's `AppendOnlyTopNFunction`;
//! - otherwise rows that left the top N get `-D` and rows that entered get `+I`.
//!
//! A new row that ties with kept rows goes after them, except when deduplicating on a
//! time column in descending order (keep the last row), where the newest row wins.
//!
//! Deduplication keeping the first row by event time drops rows behind the watermark (to
//! the `late` side output), as Flink's `RowTimeDeduplicateKeepFirstRowFunction` does: a
//! late row could otherwise replace a first row that was already final downstream.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use arrow::compute::{SortOptions, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use fungi_checkpoint::RestoredState;
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::time::now_millis;
use fungi_common::{FungiError, Result, Watermark};
use fungi_streaming::keys::KeyTable;
use fungi_streaming::row_store::{RowRef, RowStore};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};
use crate::operators::window::{LATE_TAG, rescale_filter};

/// Schema metadata of a snapshot: the watermark when it was taken.
const WATERMARK_KEY: &str = "fungi.rank.watermark";

/// What a Top-N computes.
#[derive(Debug, Clone)]
pub struct RankSpec {
    /// Partition columns.
    pub partition: Vec<usize>,
    /// Order columns and their directions.
    pub order: Vec<(usize, SortOptions)>,
    /// How many rows per partition are kept (`rownum <= limit`).
    pub limit: usize,
    /// Name of the row-number column appended to the output.
    pub rank_column: String,
    /// Whether anything downstream reads the row number (see the module docs).
    pub rank_used: bool,
    /// A new row wins ties with kept rows.
    pub newest_wins_ties: bool,
    /// Forget partitions not updated for this long (ms).
    pub ttl_ms: Option<i64>,
    /// An event-time column (timestamp in ms): rows whose time is behind the watermark
    /// are late and dropped. Set for deduplication keeping the first row by event time.
    pub drop_late: Option<usize>,
}

/// Keeps the top N rows per partition and emits how they change.
pub struct RankOperator {
    spec: RankSpec,
    output: SchemaRef,
    store: RowStore,
    keys: KeyTable,
    lists: Vec<Vec<RowRef>>,
    last_update: Vec<i64>,
    // Scratch, reused across batches.
    key_ids: Vec<u32>,
    touched_mark: Vec<u64>,
    batch_no: u64,
    subtask: SubtaskInfo,
    watermark: i64,
    metrics: Option<Arc<OperatorMetrics>>,
    late_tag: Arc<str>,
}

impl RankOperator {
    /// A factory over rows of `input`; returns the output schema (input, row number,
    /// change column).
    pub fn factory(spec: RankSpec, input: SchemaRef) -> Result<(OperatorFactory, SchemaRef)> {
        if spec.limit == 0 {
            return Err(FungiError::Plan(
                "a Top-N must keep at least one row per partition".into(),
            ));
        }
        let output = Self::new(&spec, &input)?.output;
        let out = output.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            let mut rank = Self::new(&spec, &input)?;
            rank.subtask = *s;
            Ok(Box::new(rank) as Box<dyn Operator>)
        });
        Ok((factory, out))
    }

    fn new(spec: &RankSpec, input: &SchemaRef) -> Result<Self> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&spec.rank_column, DataType::UInt64, false));
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        let key_fields = spec
            .partition
            .iter()
            .map(|&p| input.field(p).clone())
            .collect();
        Ok(RankOperator {
            spec: spec.clone(),
            output: Arc::new(Schema::new(fields)),
            store: RowStore::new(input.clone(), &spec.order)?,
            keys: KeyTable::new(key_fields)?,
            lists: Vec::new(),
            last_update: Vec::new(),
            key_ids: Vec::new(),
            touched_mark: Vec::new(),
            batch_no: 0,
            subtask: SubtaskInfo {
                index: 0,
                parallelism: 1,
                max_parallelism: 1,
            },
            watermark: i64::MIN,
            metrics: None,
            late_tag: Arc::from(LATE_TAG),
        })
    }

    /// Rows currently in some partition's top N.
    pub fn kept_rows(&self) -> usize {
        self.store.live_rows()
    }

    /// `batch` without its late rows, which go to the side output.
    fn drop_late(&mut self, batch: RecordBatch, out: &mut Output) -> Result<RecordBatch> {
        let Some(column) = self.spec.drop_late else {
            return Ok(batch);
        };
        let time = arrow::compute::cast(
            batch.column(column),
            &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
        )?;
        let time = time
            .as_any()
            .downcast_ref::<arrow::array::TimestampMillisecondArray>()
            .expect("cast to milliseconds");
        let watermark = self.watermark;
        if !time.values().iter().any(|&t| t <= watermark) {
            return Ok(batch);
        }
        // A row without a time is never late (nothing can order before it).
        let on_time: BooleanArray = (0..time.len())
            .map(|i| Some(time.is_null(i) || time.value(i) > watermark))
            .collect();
        let late = filter_record_batch(&batch, &arrow::compute::not(&on_time)?)?;
        if let Some(m) = &self.metrics {
            m.late_records
                .fetch_add(late.num_rows() as u64, Ordering::Relaxed);
        }
        out.emit_side(&self.late_tag, late);
        Ok(filter_record_batch(&batch, &on_time)?)
    }
}

/// Changes to emit: rows, their numbers and kinds.
#[derive(Default)]
struct Changes {
    rows: Vec<RowRef>,
    ranks: Vec<u64>,
    kinds: Vec<i8>,
}

impl Changes {
    fn push(&mut self, row: RowRef, position: usize, kind: RowKind) {
        self.rows.push(row);
        self.ranks.push(position as u64 + 1);
        self.kinds.push(kind as i8);
    }
}

impl Operator for RankOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.metrics = Some(ctx.metrics.clone());
        Ok(())
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark {
            self.watermark = self.watermark.max(t);
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    // Every partition's top N, in order: the rows of all lists one after the other, and
    // the watermark in the schema's metadata.
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        // After the end of input nothing follows that would need the rows.
        if checkpoint.is_final() {
            return Ok(None);
        }
        let refs: Vec<RowRef> = self.lists.iter().flatten().copied().collect();
        let columns = self.store.gather(&refs)?;
        let options = RecordBatchOptions::new().with_row_count(Some(refs.len()));
        let schema = self
            .store
            .schema()
            .as_ref()
            .clone()
            .with_metadata([(WATERMARK_KEY.to_string(), self.watermark.to_string())].into());
        let rows = RecordBatch::try_new_with_options(Arc::new(schema), columns, &options)?;
        Ok(Some(encode_batch(&rows)?))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        let now = now_millis();
        for (_, bytes) in &state.states {
            let rows = decode_batch(bytes)?;
            if let Some(w) = rows.schema().metadata().get(WATERMARK_KEY) {
                // Rescaled: the smallest of the merged subtasks' watermarks.
                let w: i64 = w.parse().map_err(|_| {
                    FungiError::State(format!("a Top-N snapshot has a bad watermark '{w}'"))
                })?;
                self.watermark = if self.watermark == i64::MIN {
                    w
                } else {
                    self.watermark.min(w)
                };
            }
            let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
            let mut rows = RecordBatch::try_new_with_options(
                self.store.schema().clone(),
                rows.columns().to_vec(),
                &options,
            )?;
            if let Some(f) = &filter {
                rows = f.retain(rows, &self.spec.partition)?;
            }
            let n = rows.num_rows();
            if n == 0 {
                continue;
            }
            let partition: Vec<ArrayRef> = self
                .spec
                .partition
                .iter()
                .map(|&p| rows.column(p).clone())
                .collect();
            let mut ids = Vec::with_capacity(n);
            self.keys.intern(&partition, n, &mut ids)?;
            let total = self.keys.len();
            self.lists.resize_with(total, Vec::new);
            self.last_update.resize(total, now);
            self.touched_mark.resize(total, 0);
            // Rows come list by list, in order: appending rebuilds each list.
            let b = self.store.push(rows, now)?;
            for (i, &id) in ids.iter().enumerate() {
                let r = RowRef {
                    batch: b,
                    row: i as u32,
                };
                self.lists[id as usize].push(r);
                self.store.retain(r);
            }
            self.store.sweep();
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let batch = self.drop_late(batch, out)?;
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let now = now_millis();
        let partition: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|&p| batch.column(p).clone())
            .collect();
        let mut ids = std::mem::take(&mut self.key_ids);
        self.keys.intern(&partition, n, &mut ids)?;
        let total = self.keys.len();
        self.lists.resize_with(total, Vec::new);
        self.last_update.resize(total, now);
        self.touched_mark.resize(total, 0);
        self.batch_no += 1;
        let b = self.store.push(batch, now)?;
        // Fold the rows in; remember each touched partition's list as it was.
        let mut touched: Vec<(u32, usize, usize)> = Vec::new();
        let mut before: Vec<RowRef> = Vec::new();
        let mut evicted: Vec<RowRef> = Vec::new();
        let limit = self.spec.limit;
        for (i, &id) in ids.iter().enumerate() {
            let new = RowRef {
                batch: b,
                row: i as u32,
            };
            let store = &self.store;
            let list = &self.lists[id as usize];
            let row = store.encoded(new);
            let pos = if self.spec.newest_wins_ties {
                list.partition_point(|r| store.encoded(*r) < row)
            } else {
                list.partition_point(|r| store.encoded(*r) <= row)
            };
            if pos >= limit {
                continue;
            }
            let id = id as usize;
            if self.touched_mark[id] != self.batch_no {
                self.touched_mark[id] = self.batch_no;
                touched.push((id as u32, before.len(), list.len()));
                before.extend_from_slice(list);
            }
            let list = &mut self.lists[id];
            list.insert(pos, new);
            self.store.retain(new);
            if list.len() > limit {
                evicted.extend(list.pop());
            }
            self.last_update[id] = now;
        }
        // The changes, per touched partition.
        let mut changes = Changes::default();
        for &(id, start, len) in &touched {
            let old = &before[start..start + len];
            let new = &self.lists[id as usize];
            if self.spec.rank_used {
                for k in 0..old.len().max(new.len()) {
                    match (old.get(k), new.get(k)) {
                        (Some(o), Some(nw)) if o == nw => {}
                        (Some(&o), Some(&nw)) => {
                            changes.push(o, k, RowKind::UpdateBefore);
                            changes.push(nw, k, RowKind::UpdateAfter);
                        }
                        (None, Some(&nw)) => changes.push(nw, k, RowKind::Insert),
                        (Some(&o), None) => changes.push(o, k, RowKind::Delete),
                        (None, None) => {}
                    }
                }
            } else {
                for (k, o) in old.iter().enumerate() {
                    if !new.contains(o) {
                        changes.push(*o, k, RowKind::Delete);
                    }
                }
                for (k, nw) in new.iter().enumerate() {
                    if !old.contains(nw) {
                        changes.push(*nw, k, RowKind::Insert);
                    }
                }
            }
        }
        if !changes.rows.is_empty() {
            let mut columns = self.store.gather(&changes.rows)?;
            columns.push(Arc::new(UInt64Array::from(changes.ranks)));
            columns.push(Arc::new(Int8Array::from(changes.kinds)));
            out.emit(RecordBatch::try_new(self.output.clone(), columns)?);
        }
        for r in evicted {
            self.store.release(r);
        }
        self.store.sweep();
        if self.store.should_compact() {
            self.store.compact(self.lists.iter_mut().flatten(), now)?;
        }
        self.key_ids = ids;
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, _out: &mut Output) -> Result<()> {
        let Some(ttl) = self.spec.ttl_ms else {
            return Ok(());
        };
        for (list, &t) in self.lists.iter_mut().zip(&self.last_update) {
            if !list.is_empty() && now_ms - t >= ttl {
                for r in list.drain(..) {
                    self.store.release(r);
                }
            }
        }
        self.store.sweep();
        if self.store.live_rows() == 0 {
            self.keys.clear();
            self.lists.clear();
            self.last_update.clear();
            self.touched_mark.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Int8Type, Int64Type, UInt64Type};

    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn run(op: &mut RankOperator, rows: &[(i64, i64)]) -> Vec<(i64, i64, u64, &'static str)> {
        let mut out = Output::default();
        op.process_batch(batch(rows), &mut out).unwrap();
        let mut v = Vec::new();
        for item in out.items {
            if let crate::operator::OutputItem::Batch(None, b) = item {
                for i in 0..b.num_rows() {
                    v.push((
                        b.column(0).as_primitive::<Int64Type>().value(i),
                        b.column(1).as_primitive::<Int64Type>().value(i),
                        b.column(2).as_primitive::<UInt64Type>().value(i),
                        RowKind::from_code(b.column(3).as_primitive::<Int8Type>().value(i))
                            .unwrap()
                            .short(),
                    ));
                }
            }
        }
        v
    }

    fn operator(limit: usize, rank_used: bool) -> RankOperator {
        let spec = RankSpec {
            partition: vec![0],
            order: vec![(
                1,
                SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            )],
            limit,
            rank_column: "rn".into(),
            rank_used,
            newest_wins_ties: false,
            ttl_ms: None,
            drop_late: None,
        };
        RankOperator::new(&spec, &batch(&[]).schema()).unwrap()
    }

    #[test]
    fn the_top_rows_survive_a_checkpoint_in_order() {
        let mut op = operator(2, true);
        run(&mut op, &[(1, 10), (1, 5), (2, 7)]);
        let state = op
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        let mut restored = operator(2, true);
        restored
            .restore_state(&RestoredState {
                checkpoint: 1,
                old_parallelism: 1,
                states: vec![(0, state)],
                root: Default::default(),
            })
            .unwrap();
        assert_eq!(restored.kept_rows(), 3);
        // The same changes as without the restart.
        let next = [(1, 20), (1, 1), (2, 8)];
        assert_eq!(run(&mut restored, &next), run(&mut op, &next));
    }

    #[test]
    fn first_row_by_event_time_drops_late_rows_and_keeps_its_watermark() {
        let spec = RankSpec {
            partition: vec![0],
            order: vec![(1, SortOptions::default())],
            limit: 1,
            rank_column: "rn".into(),
            rank_used: false,
            newest_wins_ties: false,
            ttl_ms: None,
            drop_late: Some(1),
        };
        let mut op = RankOperator::new(&spec, &batch(&[]).schema()).unwrap();
        op.process_watermark(Watermark::EventTime(10), &mut Output::default())
            .unwrap();
        // 5 is behind the watermark; 20 is the first on-time row of key 1.
        assert_eq!(run(&mut op, &[(1, 5), (1, 20)]), vec![(1, 20, 1, "+I")]);
        let state = op
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        let mut restored = RankOperator::new(&spec, &batch(&[]).schema()).unwrap();
        restored
            .restore_state(&RestoredState {
                checkpoint: 1,
                old_parallelism: 1,
                states: vec![(0, state)],
                root: Default::default(),
            })
            .unwrap();
        assert_eq!(run(&mut restored, &[(2, 7)]), vec![]);
        assert_eq!(
            run(&mut restored, &[(1, 15), (2, 11)]),
            vec![(1, 20, 1, "-D"), (1, 15, 1, "+I"), (2, 11, 1, "+I")]
        );
    }

    #[test]
    fn top_two_with_row_numbers_updates_shifted_positions() {
        let mut op = operator(2, true);
        assert_eq!(
            run(&mut op, &[(1, 10), (1, 5), (2, 7)]),
            vec![(1, 10, 1, "+I"), (1, 5, 2, "+I"), (2, 7, 1, "+I")]
        );
        // 20 takes first place; 10 moves to second; 5 drops out.
        assert_eq!(
            run(&mut op, &[(1, 20), (1, 1)]),
            vec![
                (1, 10, 1, "-U"),
                (1, 20, 1, "+U"),
                (1, 5, 2, "-U"),
                (1, 10, 2, "+U")
            ]
        );
        assert_eq!(op.kept_rows(), 3);
    }

    #[test]
    fn top_one_without_row_numbers_deletes_and_inserts() {
        let mut op = operator(1, false);
        run(&mut op, &[(1, 10)]);
        assert_eq!(
            run(&mut op, &[(1, 30), (1, 20)]),
            vec![(1, 10, 1, "-D"), (1, 30, 1, "+I")]
        );
        // A tie keeps the row already there.
        assert_eq!(run(&mut op, &[(1, 30)]), vec![]);
    }
}
