//! Regular joins: inner equi-joins without a window or time bounds, and lookup joins.
//!
//! Every row of each input is kept (in a [`RowStore`], indexed by join key), because a
//! row arriving later on the other side may still match it; a batch arriving on one side
//! is probed against the other side's index with one key interning per batch. Each
//! matching pair is emitted once, by whichever of its rows arrived second.
//!
//! Inputs may be changelogs (an aggregation without a window upstream): a retraction
//! (`-U`/`-D`) removes the equal stored row and emits `-D` for each of its pairs; an
//! addition emits `+I` (Flink's inner join does the same). The output is a changelog if
//! either input is one. A state TTL bounds what is kept: rows older than it are
//! forgotten, as in Flink with `table.exec.state.ttl`.
//!
//! Outer joins (LEFT, RIGHT, FULL) also emit each row of an outer input that has no
//! partner, padded with NULLs, as Flink does: a row arriving with no partner emits
//! `+I (row, NULL...)`; when its key's first partner arrives on the other side, that
//! padded row is taken back (`-D`) before the pairs are emitted, and when its key's last
//! partner is retracted it is emitted again. Matching is by the equality keys alone, so
//! whether a row has a partner is whether the other side keeps a row with its key: no
//! count per row is kept. A row with a NULL key has no partner. The output of an outer
//! join is a changelog.
//!
//! In lookup mode (`JOIN t FOR SYSTEM_TIME AS OF ...` on a bounded table) the right
//! input is the table: left rows are not kept; they are probed against the whole table,
//! waiting (with their watermarks) until the table has been read. A LEFT lookup join
//! emits a probe row without a partner padded, once: the table is complete, so its
//! output stays append-only.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array,
    new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{SortOptions, cast, take};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use fungi_checkpoint::RestoredState;
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::time::now_millis;
use fungi_common::{FungiError, Result, Watermark};
use fungi_streaming::keys::KeyTable;
use fungi_streaming::row_store::{RowRef, RowStore};
use fungi_streaming::state_codec::{decode_batch, encode_batch};

use crate::operator::{Operator, OperatorFactory, Output};
use crate::operators::window::rescale_filter;

/// Columns and options of a regular join.
#[derive(Debug, Clone)]
pub struct RegularJoinSpec {
    /// Pairs of (left, right) key columns that must be equal (none: every pair matches).
    pub keys: Vec<(usize, usize)>,
    /// The change column of each input, if that input is a changelog.
    pub ops: [Option<usize>; 2],
    /// The right input is a bounded lookup table (see the module docs).
    pub lookup: bool,
    /// Forget rows kept for longer than this (ms).
    pub ttl_ms: Option<i64>,
    /// Which inputs also emit their rows that have no partner, padded with NULLs:
    /// `[true, false]` is a LEFT join, `[false, true]` a RIGHT one, both a FULL one.
    pub outer: [bool; 2],
}

/// One output row of a probe: a row of the probing batch, a kept row of the other
/// side, or both (a pair); a missing side is padded with NULLs.
#[derive(Debug, Clone, Copy)]
struct Emitted {
    own: Option<u32>,
    other: Option<RowRef>,
    kind: RowKind,
}

/// One input's kept rows: the rows, and for each key id the rows with that key.
struct Side {
    store: RowStore,
    index: Vec<Vec<RowRef>>,
    /// Data columns (without the change column) and the change column's position.
    columns: Vec<usize>,
    op: Option<usize>,
}

/// An inner regular (or lookup) join; output columns are the left input's columns, then
/// the right's (change columns dropped), then a change column if an input is a changelog.
pub struct RegularJoinOperator {
    spec: RegularJoinSpec,
    output: SchemaRef,
    updating: bool,
    keys: KeyTable,
    sides: [Side; 2],
    /// Lookup mode: left batches (and the watermark) waiting for the table.
    pending: Vec<RecordBatch>,
    held_watermark: Option<Watermark>,
    table_loaded: bool,
    key_ids: Vec<u32>,
    subtask: SubtaskInfo,
}

/// The input's schema without its change column, and the kept column indices.
fn data_schema(input: &SchemaRef, op: Option<usize>) -> (SchemaRef, Vec<usize>) {
    let columns: Vec<usize> = (0..input.fields().len())
        .filter(|&i| Some(i) != op)
        .collect();
    let fields: Vec<Field> = columns.iter().map(|&i| input.field(i).clone()).collect();
    (Arc::new(Schema::new(fields)), columns)
}

impl RegularJoinOperator {
    /// A factory joining rows of `left` and `right`; returns the output schema.
    pub fn factory(
        spec: RegularJoinSpec,
        left: SchemaRef,
        right: SchemaRef,
    ) -> Result<(OperatorFactory, SchemaRef)> {
        if spec.ttl_ms.is_some_and(|t| t <= 0) {
            return Err(FungiError::Plan("state TTL must be positive".into()));
        }
        let probe = Self::new(&spec, &left, &right)?;
        let output = probe.output.clone();
        let factory: OperatorFactory = Arc::new(move |s| {
            let mut join = Self::new(&spec, &left, &right)?;
            join.subtask = *s;
            Ok(Box::new(join) as Box<dyn Operator>)
        });
        Ok((factory, output))
    }

    fn new(spec: &RegularJoinSpec, left: &SchemaRef, right: &SchemaRef) -> Result<Self> {
        let side = |input: &SchemaRef, op: Option<usize>| -> Result<Side> {
            let (schema, columns) = data_schema(input, op);
            // Changelog inputs encode whole rows, to find the row a retraction removes.
            let encode: Vec<(usize, SortOptions)> = match op {
                Some(_) => (0..schema.fields().len())
                    .map(|i| (i, SortOptions::default()))
                    .collect(),
                None => Vec::new(),
            };
            Ok(Side {
                store: RowStore::new(schema, &encode)?,
                index: Vec::new(),
                columns,
                op,
            })
        };
        if spec.lookup && spec.outer[1] {
            return Err(FungiError::Plan(
                "a lookup join keeps the rows of its probe side only (INNER or LEFT)".into(),
            ));
        }
        let sides = [side(left, spec.ops[0])?, side(right, spec.ops[1])?];
        // A lookup join's padded rows are final (the table is complete when probed).
        let pads_change = !spec.lookup && spec.outer.iter().any(|&o| o);
        let updating = spec.ops.iter().any(Option::is_some) || pads_change;
        let mut fields: Vec<Field> = Vec::new();
        for (i, s) in sides.iter().enumerate() {
            // The columns of an input are NULL in the padded rows of the other one.
            let padded = spec.outer[1 - i];
            fields.extend(
                s.store
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(f.is_nullable() || padded)),
            );
        }
        if updating {
            fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        }
        let key_fields: Vec<Field> = spec
            .keys
            .iter()
            .map(|&(l, _)| left.field(l).clone().with_nullable(true))
            .collect();
        Ok(RegularJoinOperator {
            spec: spec.clone(),
            output: Arc::new(Schema::new(fields)),
            updating,
            keys: KeyTable::new(key_fields)?,
            sides,
            pending: Vec::new(),
            held_watermark: None,
            table_loaded: false,
            key_ids: Vec::new(),
            subtask: SubtaskInfo {
                index: 0,
                parallelism: 1,
                max_parallelism: 1,
            },
        })
    }

    /// Joins `batch` from `side` with the other side's rows and keeps it.
    fn process(&mut self, side: usize, batch: &RecordBatch, out: &mut Output) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let data = batch.project(&self.sides[side].columns)?;
        // Whether each row adds (+I/+U) or retracts (-U/-D).
        let retracts: Option<Vec<bool>> = match self.sides[side].op {
            None => None,
            Some(c) => {
                let codes = batch
                    .column(c)
                    .as_primitive_opt::<Int8Type>()
                    .ok_or_else(|| FungiError::Plan(format!("{OP_COLUMN} must be Int8")))?;
                Some(
                    codes
                        .values()
                        .iter()
                        .map(|&k| {
                            matches!(
                                RowKind::from_code(k),
                                Some(RowKind::UpdateBefore | RowKind::Delete)
                            )
                        })
                        .collect(),
                )
            }
        };
        // Intern the keys (cast to the left key types); rows with a NULL key match nothing.
        let mut key_columns = Vec::with_capacity(self.spec.keys.len());
        for (k, &(l, r)) in self.spec.keys.iter().enumerate() {
            let c = batch.column(if side == 0 { l } else { r });
            let want = self.keys.fields()[k].data_type();
            key_columns.push(if c.data_type() == want {
                c.clone()
            } else {
                cast(c, want)?
            });
        }
        let nulls = key_columns.iter().fold(None::<NullBuffer>, |acc, c| {
            NullBuffer::union(acc.as_ref(), c.logical_nulls().as_ref())
        });
        let mut ids = std::mem::take(&mut self.key_ids);
        self.keys.intern(&key_columns, n, &mut ids)?;
        let total = self.keys.len();
        for s in &mut self.sides {
            if s.index.len() < total {
                s.index.resize_with(total, Vec::new);
            }
        }
        let valid = |i: usize| nulls.as_ref().is_none_or(|b| b.is_valid(i));
        let emitted = self.probe(side, n, &ids, retracts.as_deref(), &valid);
        if !emitted.is_empty() {
            let joined = self.emitted_rows(side, &data, &emitted)?;
            out.emit(joined);
        }
        // Keep the rows (not the lookup join's probe side).
        if !(self.spec.lookup && side == 0) {
            self.keep(side, data, &ids, retracts.as_deref(), &valid)?;
        }
        self.key_ids = ids;
        Ok(())
    }

    /// The output rows of `n` rows of `side` (their key ids, which retract, which have a
    /// key), in input order: pairs with the other side's kept rows and, for outer
    /// inputs, padded rows and the padded rows they take back or bring back.
    fn probe(
        &mut self,
        side: usize,
        n: usize,
        ids: &[u32],
        retracts: Option<&[bool]>,
        valid: &dyn Fn(usize) -> bool,
    ) -> Vec<Emitted> {
        let other = 1 - side;
        let ttl = self.spec.ttl_ms.is_some();
        let (own_outer, other_outer) = (self.spec.outer[side], self.spec.outer[other]);
        // Rows of this batch seen so far per key (additions minus retractions): whether
        // the other side's rows of a key were padded depends on the rows before.
        let mut seen: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
        let mut emitted = Vec::new();
        for i in 0..n {
            let retract = retracts.is_some_and(|r| r[i]);
            let (kind, undo) = if retract {
                (RowKind::Delete, RowKind::Insert)
            } else {
                (RowKind::Insert, RowKind::Delete)
            };
            if !valid(i) {
                if own_outer {
                    emitted.push(Emitted {
                        own: Some(i as u32),
                        other: None,
                        kind,
                    });
                }
                continue;
            }
            let key = ids[i] as usize;
            let Side { store, index, .. } = &mut self.sides[other];
            let list = &mut index[key];
            if ttl {
                list.retain(|r| store.contains(*r));
            }
            if list.is_empty() {
                if own_outer {
                    emitted.push(Emitted {
                        own: Some(i as u32),
                        other: None,
                        kind,
                    });
                }
            } else {
                // The other side's rows of this key were padded while this side had
                // none: an addition to no rows takes the padding back, the retraction
                // of the last row brings it back.
                let flips = other_outer && {
                    let Side { store, index, .. } = &mut self.sides[side];
                    let mine = &mut index[key];
                    if ttl {
                        mine.retain(|r| store.contains(*r));
                    }
                    let count = seen.entry(ids[i]).or_insert(mine.len() as i64);
                    let before = *count;
                    *count += if retract { -1 } else { 1 };
                    if retract { before == 1 } else { before == 0 }
                };
                let list = &self.sides[other].index[key];
                for &r in list {
                    if flips && !retract {
                        emitted.push(Emitted {
                            own: None,
                            other: Some(r),
                            kind: undo,
                        });
                    }
                    emitted.push(Emitted {
                        own: Some(i as u32),
                        other: Some(r),
                        kind,
                    });
                    if flips && retract {
                        emitted.push(Emitted {
                            own: None,
                            other: Some(r),
                            kind: undo,
                        });
                    }
                }
            }
        }
        emitted
    }

    /// The rows `emitted` of a probe by `data` of `side`, in the output's columns.
    fn emitted_rows(
        &self,
        side: usize,
        data: &RecordBatch,
        emitted: &[Emitted],
    ) -> Result<RecordBatch> {
        let own_idx: UInt32Array = emitted.iter().map(|e| e.own).collect();
        let own: Vec<ArrayRef> = data
            .columns()
            .iter()
            .map(|c| take(c, &own_idx, None))
            .collect::<Result<_, _>>()?;
        // The other side's rows, gathered once, then placed (NULL where padded).
        let refs: Vec<RowRef> = emitted.iter().filter_map(|e| e.other).collect();
        let other_store = &self.sides[1 - side].store;
        let other_cols = if refs.is_empty() {
            other_store
                .schema()
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), emitted.len()))
                .collect()
        } else if refs.len() == emitted.len() {
            other_store.gather(&refs)?
        } else {
            let gathered = other_store.gather(&refs)?;
            let mut next = 0u32;
            let other_idx: UInt32Array = emitted
                .iter()
                .map(|e| {
                    e.other.map(|_| {
                        next += 1;
                        next - 1
                    })
                })
                .collect();
            gathered
                .iter()
                .map(|c| take(c, &other_idx, None))
                .collect::<Result<_, _>>()?
        };
        let mut columns = if side == 0 {
            [own, other_cols].concat()
        } else {
            [other_cols, own].concat()
        };
        if self.updating {
            columns.push(Arc::new(Int8Array::from_iter_values(
                emitted.iter().map(|e| e.kind as i8),
            )));
        }
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }

    fn keep(
        &mut self,
        side: usize,
        data: RecordBatch,
        ids: &[u32],
        retracts: Option<&[bool]>,
        valid: &dyn Fn(usize) -> bool,
    ) -> Result<()> {
        let now = now_millis();
        let Side { store, index, .. } = &mut self.sides[side];
        let n = data.num_rows();
        let batch = store.push(data, now)?;
        let retracted = |i: usize| retracts.is_some_and(|r| r[i]);
        for i in (0..n).filter(|&i| valid(i) && !retracted(i)) {
            let r = RowRef {
                batch,
                row: i as u32,
            };
            index[ids[i] as usize].push(r);
            store.retain(r);
        }
        for i in (0..n).filter(|&i| valid(i) && retracted(i)) {
            let this = RowRef {
                batch,
                row: i as u32,
            };
            let list = &mut index[ids[i] as usize];
            // A retraction of a row not kept (forgotten by TTL) removes nothing.
            if let Some(p) = list.iter().position(|&r| {
                r != this && store.contains(r) && store.encoded(r) == store.encoded(this)
            }) {
                let gone = list.swap_remove(p);
                store.release(gone);
            }
        }
        store.sweep();
        if store.should_compact() {
            for list in index.iter_mut() {
                list.retain(|r| store.contains(*r));
            }
            store.compact(index.iter_mut().flatten(), now)?;
        }
        Ok(())
    }

    /// Lookup mode: the table is loaded; probe the rows that waited for it.
    fn table_ready(&mut self, out: &mut Output) -> Result<()> {
        if self.table_loaded {
            return Ok(());
        }
        self.table_loaded = true;
        for batch in std::mem::take(&mut self.pending) {
            self.process(0, &batch, out)?;
        }
        if let Some(w) = self.held_watermark.take() {
            out.emit_watermark(w);
        }
        Ok(())
    }

    /// Rows kept per side (for tests and metrics).
    pub fn kept_rows(&self) -> [usize; 2] {
        [
            self.sides[0].store.live_rows(),
            self.sides[1].store.live_rows(),
        ]
    }
}

impl Operator for RegularJoinOperator {
    // The kept rows of each side (data columns), and probe rows a lookup join holds.
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        // After the end of input nothing follows that would need the rows.
        if checkpoint.is_final() {
            return Ok(None);
        }
        let mut sides = Vec::with_capacity(2);
        for s in &self.sides {
            let refs: Vec<RowRef> = s
                .index
                .iter()
                .flatten()
                .copied()
                .filter(|r| s.store.contains(*r))
                .collect();
            let columns = s.store.gather(&refs)?;
            let options = RecordBatchOptions::new().with_row_count(Some(refs.len()));
            let rows =
                RecordBatch::try_new_with_options(s.store.schema().clone(), columns, &options)?;
            sides.push(encode_batch(&rows)?);
        }
        let pending = self
            .pending
            .iter()
            .map(encode_batch)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(
            postcard::to_stdvec(&(sides, pending)).expect("join state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        let filter = rescale_filter(state, &self.subtask);
        for (_, bytes) in &state.states {
            let (sides, pending): (Vec<Vec<u8>>, Vec<Vec<u8>>) = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad regular join state: {e}")))?;
            for (side, bytes) in sides.iter().enumerate().take(2) {
                // Where the join keys are among the kept (data) columns.
                let positions = self
                    .spec
                    .keys
                    .iter()
                    .map(|&(l, r)| {
                        let input = if side == 0 { l } else { r };
                        self.sides[side].columns.iter().position(|&c| c == input)
                    })
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| FungiError::State("a join key is the change column".into()))?;
                let mut data = decode_batch(bytes)?;
                if let Some(f) = &filter {
                    data = f.retain(data, &positions)?;
                }
                if data.num_rows() == 0 {
                    continue;
                }
                let mut key_columns = Vec::with_capacity(positions.len());
                for (k, &i) in positions.iter().enumerate() {
                    let want = self.keys.fields()[k].data_type();
                    let c = data.column(i);
                    key_columns.push(if c.data_type() == want {
                        c.clone()
                    } else {
                        cast(c, want)?
                    });
                }
                let mut ids = Vec::new();
                self.keys.intern(&key_columns, data.num_rows(), &mut ids)?;
                let total = self.keys.len();
                for s in &mut self.sides {
                    if s.index.len() < total {
                        s.index.resize_with(total, Vec::new);
                    }
                }
                self.keep(side, data, &ids, None, &|_| true)?;
            }
            for bytes in pending {
                let mut batch = decode_batch(&bytes)?;
                if let Some(f) = &filter {
                    let left: Vec<usize> = self.spec.keys.iter().map(|k| k.0).collect();
                    batch = f.retain(batch, &left)?;
                }
                if batch.num_rows() > 0 {
                    self.pending.push(batch);
                }
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        self.process_batch_from(0, batch, out)
    }

    fn process_batch_from(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        let side = input.min(1);
        if self.spec.lookup && side == 0 && !self.table_loaded {
            self.pending.push(batch);
            return Ok(());
        }
        self.process(side, &batch, out)
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if self.spec.lookup && !self.table_loaded {
            self.held_watermark = Some(watermark);
        } else {
            out.emit_watermark(watermark);
        }
        Ok(())
    }

    fn input_ended(&mut self, input: usize, out: &mut Output) -> Result<()> {
        if self.spec.lookup && input == 1 {
            self.table_ready(out)?;
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, _out: &mut Output) -> Result<()> {
        if let Some(ttl) = self.spec.ttl_ms {
            for s in &mut self.sides {
                s.store.expire(now_ms, ttl);
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> Result<()> {
        self.table_ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::OutputItem;
    use arrow::array::{Int64Array, StringArray};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    fn schema(op: bool) -> SchemaRef {
        let mut fields = vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, false),
        ];
        if op {
            fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        }
        Arc::new(Schema::new(fields))
    }

    fn batch(rows: &[(Option<i64>, &str)], kinds: Option<&[RowKind]>) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ];
        if let Some(k) = kinds {
            columns.push(Arc::new(Int8Array::from_iter_values(
                k.iter().map(|k| *k as i8),
            )));
        }
        RecordBatch::try_new(schema(kinds.is_some()), columns).unwrap()
    }

    fn rows(out: Output) -> Vec<String> {
        let mut v = Vec::new();
        for item in out.items {
            if let OutputItem::Batch(None, b) = item {
                let options = FormatOptions::default();
                let f: Vec<ArrayFormatter<'_>> = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for i in 0..b.num_rows() {
                    v.push(
                        f.iter()
                            .map(|f| f.value(i).to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                }
            }
        }
        v
    }

    /// A join on the first column; the left input a changelog (change column 2) if
    /// `left_op`.
    fn spec(left_op: bool, lookup: bool, outer: [bool; 2]) -> RegularJoinSpec {
        RegularJoinSpec {
            keys: vec![(0, 0)],
            ops: [left_op.then_some(2), None],
            lookup,
            ttl_ms: None,
            outer,
        }
    }

    fn join(spec: RegularJoinSpec) -> RegularJoinOperator {
        let left_op = spec.ops[0].is_some();
        RegularJoinOperator::new(&spec, &schema(left_op), &schema(false)).unwrap()
    }

    fn feed(j: &mut RegularJoinOperator, input: usize, b: RecordBatch) -> Vec<String> {
        let mut out = Output::default();
        j.process_batch_from(input, b, &mut out).unwrap();
        rows(out)
    }

    #[test]
    fn kept_rows_survive_a_checkpoint_and_split_by_key_group() {
        let spec = spec(false, false, [false, false]);
        let mut j = join(spec.clone());
        feed(
            &mut j,
            0,
            batch(&[(Some(1), "a"), (Some(2), "b"), (None, "x")], None),
        );
        feed(&mut j, 1, batch(&[(Some(2), "B")], None));
        let state = j
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        let restored = |index: u32, parallelism: u32, old: u32| {
            let mut j = join(spec.clone());
            j.subtask = SubtaskInfo {
                index,
                parallelism,
                max_parallelism: 128,
            };
            j.restore_state(&RestoredState {
                checkpoint: 1,
                old_parallelism: old,
                states: vec![(0, state.clone())],
                root: Default::default(),
            })
            .unwrap();
            j
        };
        // Restored as it was: a new right row meets the kept left rows, a new left row
        // the kept right row.
        let mut j = restored(0, 1, 1);
        assert_eq!(j.kept_rows(), [2, 1]);
        assert_eq!(
            feed(&mut j, 1, batch(&[(Some(1), "A")], None)),
            vec!["1,a,1,A"]
        );
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(2), "c")], None)),
            vec!["2,c,2,B"]
        );
        // Split over two subtasks: each row kept exactly once.
        let kept: Vec<[usize; 2]> = (0..2).map(|i| restored(i, 2, 1).kept_rows()).collect();
        assert_eq!(kept[0][0] + kept[1][0], 2);
        assert_eq!(kept[0][1] + kept[1][1], 1);
    }

    #[test]
    fn changelog_input_retracts_pairs() {
        use RowKind::*;
        let spec = spec(true, false, [false, false]);
        let mut j = join(spec);
        assert!(
            feed(
                &mut j,
                0,
                batch(&[(Some(1), "a"), (None, "n")], Some(&[Insert, Insert]))
            )
            .is_empty()
        );
        assert_eq!(
            feed(&mut j, 1, batch(&[(Some(1), "x"), (None, "y")], None)),
            vec!["1,a,1,x,0"],
            "NULL keys match nothing"
        );
        // a is updated to b: its pair is deleted, the new one inserted.
        assert_eq!(
            feed(
                &mut j,
                0,
                batch(
                    &[(Some(1), "a"), (Some(1), "b")],
                    Some(&[UpdateBefore, UpdateAfter])
                )
            ),
            vec!["1,a,1,x,3", "1,b,1,x,0"]
        );
        assert_eq!(j.kept_rows(), [1, 1]);
    }

    #[test]
    fn lookup_rows_wait_for_the_table_and_are_not_kept() {
        let spec = spec(false, true, [false, false]);
        let mut j = join(spec);
        assert!(feed(&mut j, 0, batch(&[(Some(1), "probe")], None)).is_empty());
        let mut out = Output::default();
        j.process_watermark(Watermark::EventTime(10), &mut out)
            .unwrap();
        assert!(out.items.is_empty(), "the watermark waits with the rows");
        assert!(feed(&mut j, 1, batch(&[(Some(1), "t")], None)).is_empty());
        let mut out = Output::default();
        j.input_ended(1, &mut out).unwrap();
        assert_eq!(rows(out), vec!["1,probe,1,t"]);
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "p2")], None)),
            vec!["1,p2,1,t"]
        );
        assert_eq!(j.kept_rows(), [0, 1]);
    }

    #[test]
    fn a_left_join_pads_rows_without_a_partner_and_takes_the_padding_back() {
        let spec = spec(false, false, [true, false]);
        let mut j = join(spec);
        assert!(j.output.field(2).is_nullable() && j.output.field(3).is_nullable());
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "a"), (None, "n")], None)),
            vec!["1,a,,,0", ",n,,,0"],
            "rows without a partner (and NULL keys) are padded"
        );
        assert_eq!(
            feed(&mut j, 1, batch(&[(Some(1), "x"), (Some(2), "z")], None)),
            vec!["1,a,,,3", "1,a,1,x,0"],
            "the first partner takes the padded row back; the right side is not padded"
        );
        assert_eq!(
            feed(&mut j, 1, batch(&[(Some(1), "y")], None)),
            vec!["1,a,1,y,0"]
        );
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "b"), (Some(3), "c")], None)),
            vec!["1,b,1,x,0", "1,b,1,y,0", "3,c,,,0"]
        );
    }

    #[test]
    fn a_full_join_over_a_changelog_pads_both_sides_in_order() {
        use RowKind::*;
        let spec = spec(true, false, [true, true]);
        let mut j = join(spec.clone());
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "a")], Some(&[Insert]))),
            vec!["1,a,,,0"]
        );
        assert_eq!(
            feed(&mut j, 1, batch(&[(Some(1), "x"), (Some(2), "z")], None)),
            vec!["1,a,,,3", "1,a,1,x,0", ",,2,z,0"]
        );
        // An update of the only left row of key 1: its pair goes, x is padded for a
        // moment, then taken back by the new row.
        assert_eq!(
            feed(
                &mut j,
                0,
                batch(
                    &[(Some(1), "a"), (Some(1), "b")],
                    Some(&[UpdateBefore, UpdateAfter])
                )
            ),
            vec!["1,a,1,x,3", ",,1,x,0", ",,1,x,3", "1,b,1,x,0"]
        );
        // What was padded survives a checkpoint: a left row of key 2 takes z's
        // padding back after a restore.
        let state = j
            .snapshot_state(CheckpointId(1), &mut Output::default())
            .unwrap()
            .unwrap();
        let mut j = join(spec);
        j.restore_state(&RestoredState {
            checkpoint: 1,
            old_parallelism: 1,
            states: vec![(0, state)],
            root: Default::default(),
        })
        .unwrap();
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(2), "c")], Some(&[Insert]))),
            vec![",,2,z,3", "2,c,2,z,0"]
        );
        // The last left row of key 1 leaves: x is padded again.
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "b")], Some(&[Delete]))),
            vec!["1,b,1,x,3", ",,1,x,0"]
        );
        assert_eq!(j.kept_rows(), [1, 2]);
    }

    #[test]
    fn a_left_lookup_join_pads_once_and_stays_append_only() {
        let spec = spec(false, true, [true, false]);
        let mut j = join(spec.clone());
        assert!(!j.updating);
        assert!(feed(&mut j, 1, batch(&[(Some(2), "t")], None)).is_empty());
        let mut out = Output::default();
        j.input_ended(1, &mut out).unwrap();
        assert_eq!(
            feed(&mut j, 0, batch(&[(Some(1), "p"), (Some(2), "q")], None)),
            vec!["1,p,,", "2,q,2,t"]
        );
        let right_outer = RegularJoinSpec {
            outer: [false, true],
            ..spec
        };
        assert!(
            RegularJoinOperator::new(&right_outer, &schema(false), &schema(false)).is_err(),
            "a lookup join cannot keep the table's rows without a partner"
        );
    }
}
