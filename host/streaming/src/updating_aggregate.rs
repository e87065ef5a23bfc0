//! Aggregation without a window: an updating result, emitted as a changelog.
//!
//! Each batch is folded into per-key accumulators with one vectorized call per
//! aggregate; then, for every key the batch touched (once per key, not per row: Flink's
//! mini-batch), the operator emits `-U` with the previous result and `+U` with the new
//! one, or `+I` for a key seen for the first time. With a state TTL, keys not updated
//! for that long are forgotten (their next row starts over with `+I`), which bounds the
//! state of queries over unbounded key spaces.
//!
//! The input may itself be a changelog (an aggregation over an aggregation, or over a
//! join of changelogs): rows marked `-U`/`-D` are taken back out of the accumulators
//! (which must be able to: count, sum, avg), and a key none of whose rows is left is
//! deleted (`-D`).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::datatypes::{Int8Type, Int64Type};
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::{FungiError, Result};

use crate::aggregate::{AggregateCall, GroupsAccumulator, bind, merge_saved_states, save_states};
use crate::keys::KeyTable;
use crate::state_codec::{KeyGroupFilter, decode_batch, encode_batch};
use crate::unknown_column;

/// What an updating aggregation computes.
#[derive(Debug, Clone)]
pub struct UpdatingAggregateSpec {
    /// Grouping key columns (empty: one global group).
    pub keys: Vec<String>,
    /// Aggregates per key.
    pub aggregates: Vec<AggregateCall>,
    /// Forget keys not updated for this many ms.
    pub ttl_ms: Option<i64>,
    /// The input's change column, if the input is a changelog.
    pub op_column: Option<String>,
}

/// Per-key accumulators and the changelog they produce.
pub struct UpdatingAggregator {
    key_indices: Vec<usize>,
    agg_inputs: Vec<Vec<usize>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    output_schema: SchemaRef,
    keys: KeyTable,
    emitted: Vec<bool>,
    /// Input rows currently aggregated per key (additions minus retractions).
    row_counts: Vec<i64>,
    op_index: Option<usize>,
    last_update: Vec<i64>,
    ttl_ms: Option<i64>,
    // Scratch, reused across batches.
    key_ids: Vec<u32>,
    touched_mark: Vec<u64>,
    batch_no: u64,
}

impl std::fmt::Debug for UpdatingAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdatingAggregator")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl UpdatingAggregator {
    /// Builds the aggregator for input rows of `input` schema.
    pub fn try_new(spec: &UpdatingAggregateSpec, input: &SchemaRef) -> Result<Self> {
        let index = |n: &String| input.index_of(n).map_err(|_| unknown_column(n, input));
        let key_indices = spec.keys.iter().map(index).collect::<Result<Vec<_>>>()?;
        let key_fields = KeyTable::key_fields_of(input, &spec.keys)?;
        let mut fields = key_fields.clone();
        let op_index = spec.op_column.as_ref().map(index).transpose()?;
        let bound = bind(&spec.aggregates, input, op_index.is_some())?;
        fields.extend(bound.fields);
        let (agg_inputs, accumulators) = (bound.inputs, bound.accumulators);
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        if spec.ttl_ms.is_some_and(|t| t <= 0) {
            return Err(FungiError::Plan("state TTL must be positive".into()));
        }
        Ok(UpdatingAggregator {
            key_indices,
            agg_inputs,
            accumulators,
            output_schema: Arc::new(Schema::new(fields)),
            keys: KeyTable::new(key_fields)?,
            emitted: Vec::new(),
            row_counts: Vec::new(),
            op_index,
            last_update: Vec::new(),
            ttl_ms: spec.ttl_ms,
            key_ids: Vec::new(),
            touched_mark: Vec::new(),
            batch_no: 0,
        })
    }

    /// Keys, aggregates, then the change column.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Number of keys holding state.
    pub fn live_keys(&self) -> usize {
        self.emitted.iter().filter(|e| **e).count()
    }

    fn rows(
        &mut self,
        groups: &[u32],
        kinds: impl Iterator<Item = RowKind>,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = self.keys.columns(groups)?;
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(groups)?);
        }
        columns.push(Arc::new(Int8Array::from_iter_values(
            kinds.map(|k| k as i8),
        )));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(groups.len()));
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            columns,
            &options,
        )?)
    }

    /// Folds in a batch; returns the changes it causes (retractions first).
    pub fn process_batch(&mut self, batch: &RecordBatch, now_ms: i64) -> Result<Vec<RecordBatch>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let key_columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let mut key_ids = std::mem::take(&mut self.key_ids);
        self.keys
            .intern(&key_columns, batch.num_rows(), &mut key_ids)?;
        let total = self.keys.len();
        self.emitted.resize(total, false);
        self.row_counts.resize(total, 0);
        self.last_update.resize(total, now_ms);
        self.touched_mark.resize(total, 0);
        self.batch_no += 1;
        // Which rows take values back (`-U`/`-D` rows of a changelog input).
        let retract: Option<BooleanArray> = match self.op_index {
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
                            Some(matches!(
                                RowKind::from_code(k),
                                Some(RowKind::UpdateBefore | RowKind::Delete)
                            ))
                        })
                        .collect(),
                )
            }
        };
        let mut touched = Vec::new();
        for (i, &id) in key_ids.iter().enumerate() {
            let back = retract.as_ref().is_some_and(|r| r.value(i));
            self.row_counts[id as usize] += if back { -1 } else { 1 };
            let mark = &mut self.touched_mark[id as usize];
            if *mark != self.batch_no {
                *mark = self.batch_no;
                touched.push(id);
            }
        }
        // The results being replaced: updated keys (`-U`) and emptied keys (`-D`).
        let updated: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|&g| self.emitted[g as usize])
            .collect();
        let mut out = Vec::new();
        if !updated.is_empty() {
            let kinds: Vec<RowKind> = updated
                .iter()
                .map(|&g| {
                    if self.row_counts[g as usize] > 0 {
                        RowKind::UpdateBefore
                    } else {
                        RowKind::Delete
                    }
                })
                .collect();
            out.push(self.rows(&updated, kinds.into_iter())?);
        }
        match &retract {
            None => {
                for (acc, inputs) in self.accumulators.iter_mut().zip(&self.agg_inputs) {
                    let values: Vec<ArrayRef> =
                        inputs.iter().map(|&i| batch.column(i).clone()).collect();
                    acc.update_batch(&values, &key_ids, total)?;
                }
            }
            Some(retract) => {
                let add = arrow::compute::not(retract)?;
                for (mask, back) in [(&add, false), (retract, true)] {
                    if mask.true_count() == 0 {
                        continue;
                    }
                    let groups: Vec<u32> = key_ids
                        .iter()
                        .zip(mask.values().iter())
                        .filter_map(|(&g, m)| m.then_some(g))
                        .collect();
                    for (acc, inputs) in self.accumulators.iter_mut().zip(&self.agg_inputs) {
                        let values: Vec<ArrayRef> = inputs
                            .iter()
                            .map(|&i| arrow::compute::filter(batch.column(i), mask))
                            .collect::<Result<_, _>>()?;
                        if back {
                            acc.retract_batch(&values, &groups, total)?;
                        } else {
                            acc.update_batch(&values, &groups, total)?;
                        }
                    }
                }
            }
        }
        // The new results of keys that still have rows.
        let live: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|&g| self.row_counts[g as usize] > 0)
            .collect();
        let kinds: Vec<RowKind> = live
            .iter()
            .map(|&g| {
                if self.emitted[g as usize] {
                    RowKind::UpdateAfter
                } else {
                    RowKind::Insert
                }
            })
            .collect();
        if !live.is_empty() {
            out.push(self.rows(&live, kinds.into_iter())?);
        }
        for &g in &live {
            self.emitted[g as usize] = true;
            self.last_update[g as usize] = now_ms;
        }
        // Keys left without rows start over (a retraction of a forgotten key, after a
        // TTL, counts as nothing).
        let emptied: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|&g| self.row_counts[g as usize] <= 0)
            .collect();
        if !emptied.is_empty() {
            for acc in &mut self.accumulators {
                acc.reset(&emptied)?;
            }
            for &g in &emptied {
                self.emitted[g as usize] = false;
                self.row_counts[g as usize] = 0;
            }
        }
        self.key_ids = key_ids;
        Ok(out)
    }

    /// The state for a checkpoint: one row per live key with its row count, last update
    /// and accumulator state.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let live: Vec<u32> = (0..self.emitted.len() as u32)
            .filter(|&g| self.emitted[g as usize])
            .collect();
        let mut fields: Vec<Field> = self.keys.fields().to_vec();
        let mut columns = self.keys.columns(&live)?;
        fields.push(Field::new("__rows", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from_iter_values(
            live.iter().map(|&g| self.row_counts[g as usize]),
        )));
        fields.push(Field::new("__updated", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from_iter_values(
            live.iter().map(|&g| self.last_update[g as usize]),
        )));
        let widths = save_states(&mut self.accumulators, &live, &mut fields, &mut columns)?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(live.len()));
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?;
        let state = (widths, encode_batch(&batch)?);
        Ok(postcard::to_stdvec(&state).expect("aggregate state encoding cannot fail"))
    }

    /// Restores state saved by [`snapshot`](Self::snapshot) (several, after a change of
    /// parallelism); with a `filter`, only the keys of the owned key groups.
    pub fn restore(&mut self, bytes: &[u8], filter: Option<&KeyGroupFilter>) -> Result<()> {
        let (widths, rows): (Vec<u32>, Vec<u8>) = postcard::from_bytes(bytes)
            .map_err(|e| FungiError::State(format!("bad aggregate state: {e}")))?;
        let nkeys = self.key_indices.len();
        let mut batch = decode_batch(&rows)?;
        if let Some(f) = filter {
            batch = f.retain(batch, &(0..nkeys).collect::<Vec<_>>())?;
        }
        let n = batch.num_rows();
        let mut ids = Vec::with_capacity(n);
        self.keys.intern(&batch.columns()[..nkeys], n, &mut ids)?;
        let total = self.keys.len();
        self.emitted.resize(total, false);
        self.row_counts.resize(total, 0);
        self.last_update.resize(total, 0);
        self.touched_mark.resize(total, 0);
        let counts = batch.column(nkeys).as_primitive::<Int64Type>();
        let updated = batch.column(nkeys + 1).as_primitive::<Int64Type>();
        for (i, &g) in ids.iter().enumerate() {
            self.emitted[g as usize] = true;
            self.row_counts[g as usize] = counts.value(i);
            self.last_update[g as usize] = updated.value(i);
        }
        merge_saved_states(
            &mut self.accumulators,
            &widths,
            &batch.columns()[nkeys + 2..],
            &ids,
            total,
            "aggregate",
        )
    }

    /// Forgets keys not updated within the TTL. Returns how many were dropped.
    pub fn expire(&mut self, now_ms: i64) -> Result<usize> {
        let Some(ttl) = self.ttl_ms else { return Ok(0) };
        let expired: Vec<u32> = (0..self.emitted.len() as u32)
            .filter(|&g| self.emitted[g as usize] && now_ms - self.last_update[g as usize] >= ttl)
            .collect();
        for acc in &mut self.accumulators {
            acc.reset(&expired)?;
        }
        for &g in &expired {
            self.emitted[g as usize] = false;
            self.row_counts[g as usize] = 0;
        }
        if self.live_keys() == 0 {
            // Nothing is left: drop the interned keys too.
            self.keys.clear();
            self.emitted.clear();
            self.row_counts.clear();
            self.last_update.clear();
            self.touched_mark.clear();
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{count_star, sum};
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn changes(out: &[RecordBatch]) -> Vec<(String, i64, i64, &'static str)> {
        let mut v = Vec::new();
        for b in out {
            for i in 0..b.num_rows() {
                v.push((
                    b.column(0).as_string::<i32>().value(i).to_string(),
                    b.column(1).as_primitive::<Int64Type>().value(i),
                    b.column(2).as_primitive::<Int64Type>().value(i),
                    RowKind::from_code(
                        b.column(3)
                            .as_primitive::<arrow::datatypes::Int8Type>()
                            .value(i),
                    )
                    .unwrap()
                    .short(),
                ));
            }
        }
        v
    }

    #[test]
    fn emits_insert_then_retract_and_update_per_key() {
        let spec = UpdatingAggregateSpec {
            keys: vec!["k".into()],
            aggregates: vec![count_star("n"), sum("v", "s")],
            ttl_ms: Some(1000),
            op_column: None,
        };
        let mut agg = UpdatingAggregator::try_new(&spec, &batch(&[]).schema()).unwrap();
        let out = agg
            .process_batch(&batch(&[("a", 1), ("b", 2), ("a", 3)]), 0)
            .unwrap();
        assert_eq!(
            changes(&out),
            vec![("a".into(), 2, 4, "+I"), ("b".into(), 1, 2, "+I")]
        );
        let out = agg.process_batch(&batch(&[("a", 10)]), 500).unwrap();
        assert_eq!(
            changes(&out),
            vec![("a".into(), 2, 4, "-U"), ("a".into(), 3, 14, "+U")]
        );
        // b is idle for 1 s: forgotten; a is not.
        assert_eq!(agg.expire(1200).unwrap(), 1);
        let out = agg.process_batch(&batch(&[("b", 5)]), 1300).unwrap();
        assert_eq!(changes(&out), vec![("b".into(), 1, 5, "+I")]);
    }

    #[test]
    fn state_restores_as_it_was_and_splits_by_key_group() {
        use crate::state_codec::KeyGroupFilter;
        use fungi_common::keys::KeyGroups;
        let spec = UpdatingAggregateSpec {
            keys: vec!["k".into()],
            aggregates: vec![count_star("n"), sum("v", "s")],
            ttl_ms: None,
            op_column: None,
        };
        let schema = batch(&[]).schema();
        let mut agg = UpdatingAggregator::try_new(&spec, &schema).unwrap();
        agg.process_batch(&batch(&[("a", 1), ("b", 2), ("a", 3)]), 0)
            .unwrap();
        let state = agg.snapshot().unwrap();
        let next = batch(&[("a", 10), ("c", 1)]);
        let expected = changes(&agg.process_batch(&next, 1).unwrap());
        // Restored: the next batch updates a (-U/+U) and inserts c, as without a restart.
        let mut restored = UpdatingAggregator::try_new(&spec, &schema).unwrap();
        restored.restore(&state, None).unwrap();
        assert_eq!(
            changes(&restored.process_batch(&next, 1).unwrap()),
            expected
        );
        assert_eq!(expected[0].3, "-U");
        // Split over two subtasks: every key lands in exactly one of them.
        let groups = KeyGroups::new(128);
        let mut live = 0;
        for index in 0..2 {
            let filter = KeyGroupFilter {
                key_groups: groups,
                owned: groups.range_for_subtask(index, 2),
            };
            let mut part = UpdatingAggregator::try_new(&spec, &schema).unwrap();
            part.restore(&state, Some(&filter)).unwrap();
            live += part.live_keys();
        }
        assert_eq!(live, 2);
    }

    fn changelog(rows: &[(&str, i64, RowKind)]) -> RecordBatch {
        let plain = batch(&rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>());
        let mut fields: Vec<Field> = plain
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(OP_COLUMN, DataType::Int8, false));
        let mut columns = plain.columns().to_vec();
        columns.push(Arc::new(Int8Array::from_iter_values(
            rows.iter().map(|r| r.2 as i8),
        )));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn retractions_update_and_delete_keys() {
        let spec = UpdatingAggregateSpec {
            keys: vec!["k".into()],
            aggregates: vec![count_star("n"), sum("v", "s")],
            ttl_ms: None,
            op_column: Some(OP_COLUMN.into()),
        };
        let input = changelog(&[]).schema();
        let mut agg = UpdatingAggregator::try_new(&spec, &input).unwrap();
        use RowKind::*;
        agg.process_batch(
            &changelog(&[("a", 1, Insert), ("a", 2, Insert), ("b", 7, Insert)]),
            0,
        )
        .unwrap();
        // a: 2 is updated to 5; b's only row goes away.
        let out = agg
            .process_batch(
                &changelog(&[
                    ("a", 2, UpdateBefore),
                    ("a", 5, UpdateAfter),
                    ("b", 7, Delete),
                ]),
                0,
            )
            .unwrap();
        assert_eq!(
            changes(&out),
            vec![
                ("a".into(), 2, 3, "-U"),
                ("b".into(), 1, 7, "-D"),
                ("a".into(), 2, 6, "+U")
            ]
        );
        assert_eq!(agg.live_keys(), 1);
    }

    #[test]
    fn min_and_max_refuse_updating_input() {
        let spec = UpdatingAggregateSpec {
            keys: vec!["k".into()],
            aggregates: vec![crate::aggregate::max("v", "m")],
            ttl_ms: None,
            op_column: Some(OP_COLUMN.into()),
        };
        let err = UpdatingAggregator::try_new(&spec, &changelog(&[]).schema())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max cannot aggregate an updating result"),
            "{err}"
        );
    }
}
