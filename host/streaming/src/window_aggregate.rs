//! Windowed aggregation: the state machine behind the window operator.
//!
//! Input rows are split into *on time* and *late* (every window they belong to has
//! already been finalised: end - 1 + allowed lateness <= watermark); late rows are
//! returned for the side output and counted, never dropped. On-time rows are grouped by
//! (key, slice) for sliced assigners or by (key, session) for session windows, and folded
//! into the [`GroupsAccumulator`]s with one vectorized call per aggregate and batch.
//!
//! When the watermark passes a window's last timestamp the window fires: its slices are
//! merged per key and evaluated, producing rows `keys..., window_start, window_end,
//! aggregates...`. With allowed lateness the window's state is kept until the watermark
//! passes `end - 1 + lateness`, and rows arriving meanwhile re-emit the window with the
//! updated result. End of input is a watermark at `i64::MAX`, which fires everything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray};
use arrow::compute::{concat_batches, filter_record_batch, not};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fungi_common::time::timestamps_millis;
use fungi_common::{FungiError, Result};
use hashbrown::HashMap;

use crate::aggregate::{AggregateCall, GroupsAccumulator, bind, merge_saved_states, save_states};
use crate::keys::KeyTable;
use crate::state_codec::{KeyGroupFilter, decode_batch, encode_batch};
use crate::unknown_column;
use crate::window::{TimeWindow, WindowAssigner};
use crate::window_partial::{PARTIAL_ROWS, PARTIAL_TIME, partial_schema};

/// What a windowed aggregation computes.
#[derive(Debug, Clone)]
pub struct WindowAggregateSpec {
    /// Grouping key columns (empty for a global window).
    pub keys: Vec<String>,
    /// The event-time column.
    pub time_column: String,
    /// How rows are assigned to windows.
    pub assigner: WindowAssigner,
    /// How long after a window fires late rows still update it, in ms.
    pub allowed_lateness: i64,
    /// The aggregates to compute per key and window.
    pub aggregates: Vec<AggregateCall>,
}

/// The result of processing one input batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Rows too late for any window, for the late side output.
    pub late: Option<RecordBatch>,
    /// Updated results of windows that had fired and received rows within the allowed
    /// lateness.
    pub updates: Option<RecordBatch>,
}

/// Dense group ids with reuse.
#[derive(Debug, Default)]
pub(crate) struct GroupIds {
    next: u32,
    free: Vec<u32>,
}

impl GroupIds {
    pub(crate) fn alloc(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
    /// Gives `groups` back for reuse.
    pub(crate) fn release(&mut self, groups: &[u32]) {
        self.free.extend_from_slice(groups);
    }
    pub(crate) fn total(&self) -> usize {
        self.next as usize
    }
    pub(crate) fn live(&self) -> usize {
        self.next as usize - self.free.len()
    }
}

#[derive(Debug, Default)]
struct SlicedState {
    slice: i64,
    /// (key id, slice start) -> group id.
    groups: HashMap<(u32, i64), u32>,
    /// slice start -> (key id, group id) of every key with data in that slice.
    slices: BTreeMap<i64, Vec<(u32, u32)>>,
    /// Windows with data that have not fired yet, by (end, start).
    pending: BTreeSet<(i64, i64)>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    group: u32,
    fired: bool,
}

#[derive(Debug, Default)]
struct SessionState {
    gap: i64,
    /// key id -> its sessions, sorted by start, not overlapping.
    sessions: HashMap<u32, Vec<Session>>,
    /// Every open session by (end, key id, start): firing and cleanup order.
    by_end: BTreeSet<(i64, u32, i64)>,
}

#[derive(Debug)]
enum Windows {
    Sliced(SlicedState),
    Session(SessionState),
}

/// What [`WindowAggregator::snapshot`] saves.
#[derive(serde::Serialize, serde::Deserialize)]
struct WindowState {
    watermark: i64,
    late_records: u64,
    /// Sliced windows not fired yet, as (end, start).
    pending: Vec<(i64, i64)>,
    /// State columns per accumulator.
    widths: Vec<u32>,
    /// Arrow IPC: keys, `__start`, `__end`, `__fired`, accumulator states.
    rows: Vec<u8>,
}

/// Windowed aggregation over one operator subtask's keys.
pub struct WindowAggregator {
    assigner: WindowAssigner,
    lateness: i64,
    time_column: String,
    time_index: usize,
    key_indices: Vec<usize>,
    agg_inputs: Vec<Vec<usize>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    output_schema: SchemaRef,
    keys: KeyTable,
    ids: GroupIds,
    windows: Windows,
    watermark: i64,
    late_records: u64,
    /// Interned keys at which the next compaction check runs (see `advance_watermark`).
    compact_at: usize,
    // Scratch buffers reused across batches.
    key_ids: Vec<u32>,
    group_indices: Vec<u32>,
    dirty: BTreeSet<(i64, i64)>,
    dirty_sessions: BTreeSet<(u32, i64)>,
    /// In the global phase of a two-phase aggregation ([`Self::merging`]): the input
    /// column counting the rows each partial row stands for.
    partial_rows: Option<usize>,
}

impl std::fmt::Debug for WindowAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregator")
            .field("assigner", &self.assigner)
            .field("watermark", &self.watermark)
            .field("live_groups", &self.ids.live())
            .finish()
    }
}

/// Below this many interned keys the key table is never compacted.
const MIN_COMPACT_KEYS: usize = 1024;

fn column_index(schema: &SchemaRef, name: &str) -> Result<usize> {
    schema
        .index_of(name)
        .map_err(|_| unknown_column(name, schema))
}

impl WindowAggregator {
    /// Builds the aggregator for input rows of `input` schema.
    pub fn try_new(spec: &WindowAggregateSpec, input: &SchemaRef) -> Result<Self> {
        if spec.allowed_lateness < 0 {
            return Err(FungiError::Plan(
                "allowed lateness must not be negative".into(),
            ));
        }
        let time_index = column_index(input, &spec.time_column)?;
        let key_indices = spec
            .keys
            .iter()
            .map(|k| column_index(input, k))
            .collect::<Result<Vec<_>>>()?;
        let key_fields = KeyTable::key_fields_of(input, &spec.keys)?;
        let mut fields: Vec<Field> = key_fields.clone();
        let ts_type = DataType::Timestamp(TimeUnit::Millisecond, None);
        fields.push(Field::new("window_start", ts_type.clone(), false));
        fields.push(Field::new("window_end", ts_type, false));
        let bound = bind(&spec.aggregates, input, false)?;
        fields.extend(bound.fields);
        let (agg_inputs, accumulators) = (bound.inputs, bound.accumulators);
        let windows = match spec.assigner {
            WindowAssigner::Session { gap } => Windows::Session(SessionState {
                gap,
                ..Default::default()
            }),
            a => Windows::Sliced(SlicedState {
                slice: a.slice_size().expect("sliced assigner"),
                ..Default::default()
            }),
        };
        Ok(WindowAggregator {
            assigner: spec.assigner,
            lateness: spec.allowed_lateness,
            time_column: spec.time_column.clone(),
            time_index,
            key_indices,
            agg_inputs,
            accumulators,
            output_schema: Arc::new(Schema::new(fields)),
            keys: KeyTable::new(key_fields)?,
            ids: GroupIds::default(),
            windows,
            watermark: i64::MIN,
            late_records: 0,
            compact_at: MIN_COMPACT_KEYS,
            key_ids: Vec::new(),
            group_indices: Vec::new(),
            dirty: BTreeSet::new(),
            dirty_sessions: BTreeSet::new(),
            partial_rows: None,
        })
    }

    /// The global phase of a two-phase aggregation: merges the partial rows that
    /// [`PartialWindowAggregator`]s computing `spec` over rows of `input` schema send
    /// (see [`crate::window_partial`]). Emits what [`try_new`](Self::try_new) would.
    ///
    /// [`PartialWindowAggregator`]: crate::window_partial::PartialWindowAggregator
    pub fn merging(spec: &WindowAggregateSpec, input: &SchemaRef) -> Result<Self> {
        let (partial, widths) = partial_schema(spec, input)?;
        let mut aggregator = Self::try_new(spec, input)?;
        aggregator.time_column = PARTIAL_TIME.into();
        aggregator.time_index = column_index(&partial, PARTIAL_TIME)?;
        aggregator.partial_rows = Some(column_index(&partial, PARTIAL_ROWS)?);
        let mut next = aggregator.partial_rows.expect("just set") + 1;
        aggregator.agg_inputs = widths
            .iter()
            .map(|&w| {
                next += w;
                (next - w..next).collect()
            })
            .collect();
        Ok(aggregator)
    }

    /// Schema of the emitted rows: keys, `window_start`, `window_end`, aggregates.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Rows sent to the late side output so far.
    pub fn late_records(&self) -> u64 {
        self.late_records
    }

    /// Number of (key, slice or session) groups holding state.
    pub fn live_groups(&self) -> usize {
        self.ids.live()
    }

    /// The last timestamp that may still be added to some window of a row at `ts`.
    #[inline]
    fn expiry(&self, ts: i64) -> i64 {
        let last_end = match self.windows {
            Windows::Sliced(ref s) => self
                .assigner
                .last_window_end(self.assigner.slice_start(ts, s.slice)),
            Windows::Session(ref s) => ts.saturating_add(s.gap),
        };
        last_end.saturating_sub(1).saturating_add(self.lateness)
    }

    /// Adds a batch. Returns late rows and updates of already fired windows.
    ///
    /// A row is late when every window it belongs to has been finalised. For session
    /// windows that is decided, as in Flink, against the session the row merges into:
    /// a row whose own `[t, t + gap)` has passed the watermark still counts when it
    /// touches a session of its key that is open (or within the allowed lateness),
    /// including one the on-time rows of the same batch opened.
    pub fn process_batch(&mut self, batch: &RecordBatch) -> Result<BatchOutcome> {
        let ts = timestamps_millis(batch.column(self.time_index), &self.time_column)?;
        let watermark = self.watermark;
        if watermark == i64::MIN || !ts.values().iter().any(|&t| self.expiry(t) <= watermark) {
            return self.add_rows(batch.clone(), ts);
        }
        // Split off late rows (vectorized mask; the common case has none).
        let late: BooleanArray = ts
            .values()
            .iter()
            .map(|&t| Some(self.expiry(t) <= watermark))
            .collect();
        let keep = not(&late)?;
        let mut outcome =
            self.add_rows(filter_record_batch(batch, &keep)?, filtered(&ts, &keep)?)?;
        let late_rows = filter_record_batch(batch, &late)?;
        let late_ts = filtered(&ts, &late)?;
        let late_rows = match self.joins_open_session(&late_rows, &late_ts)? {
            Some(joins) => {
                let rescued = self.add_rows(
                    filter_record_batch(&late_rows, &joins)?,
                    filtered(&late_ts, &joins)?,
                )?;
                outcome.updates = match (outcome.updates.take(), rescued.updates) {
                    (Some(a), Some(b)) => Some(concat_batches(&a.schema(), [&a, &b])?),
                    (a, b) => a.or(b),
                };
                filter_record_batch(&late_rows, &not(&joins)?)?
            }
            None => late_rows,
        };
        if late_rows.num_rows() == 0 {
            return Ok(outcome);
        }
        match self.partial_rows {
            // Late partial rows stand for rows already folded upstream: count them.
            Some(rows) => {
                let rows = late_rows
                    .column(rows)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .ok_or_else(|| FungiError::Plan("partial rows lack their row count".into()))?;
                self.late_records += rows.values().iter().sum::<i64>().max(0) as u64;
            }
            None => {
                self.late_records += late_rows.num_rows() as u64;
                outcome.late = Some(late_rows);
            }
        }
        Ok(outcome)
    }

    /// For session windows: which of `rows` touch a session of their key held in state.
    fn joins_open_session(
        &mut self,
        rows: &RecordBatch,
        ts: &TimestampColumn,
    ) -> Result<Option<BooleanArray>> {
        let Windows::Session(state) = &self.windows else {
            return Ok(None);
        };
        if rows.num_rows() == 0 {
            return Ok(None);
        }
        let key_columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| rows.column(i).clone())
            .collect();
        let mut key_ids = Vec::new();
        self.keys
            .intern(&key_columns, rows.num_rows(), &mut key_ids)?;
        let gap = state.gap;
        let joins: BooleanArray =
            ts.values()
                .iter()
                .zip(&key_ids)
                .map(|(&t, key)| {
                    let end = t.saturating_add(gap);
                    Some(state.sessions.get(key).is_some_and(|sessions| {
                        sessions.iter().any(|s| s.start <= end && s.end >= t)
                    }))
                })
                .collect();
        Ok((joins.true_count() > 0).then_some(joins))
    }

    /// Adds rows that are not late: assigns them to windows and updates accumulators.
    fn add_rows(&mut self, batch: RecordBatch, ts: TimestampColumn) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        let watermark = self.watermark;
        if batch.num_rows() == 0 {
            return Ok(outcome);
        }
        let key_columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let mut key_ids = std::mem::take(&mut self.key_ids);
        let mut group_indices = std::mem::take(&mut self.group_indices);
        self.keys
            .intern(&key_columns, batch.num_rows(), &mut key_ids)?;
        group_indices.clear();
        let merged = match &mut self.windows {
            Windows::Sliced(state) => {
                assign_slices(
                    state,
                    &self.assigner,
                    &mut self.ids,
                    watermark,
                    self.lateness,
                    ts.values(),
                    &key_ids,
                    &mut group_indices,
                    &mut self.dirty,
                );
                Vec::new()
            }
            Windows::Session(state) => assign_sessions(
                state,
                &mut self.ids,
                &mut self.accumulators,
                watermark,
                ts.values(),
                &key_ids,
                &mut group_indices,
                &mut self.dirty_sessions,
            )?,
        };
        let total = self.ids.total();
        for (acc, inputs) in self.accumulators.iter_mut().zip(&self.agg_inputs) {
            let values: Vec<ArrayRef> = inputs.iter().map(|&i| batch.column(i).clone()).collect();
            if self.partial_rows.is_some() {
                acc.merge_state(&values, &group_indices, total)?;
            } else {
                acc.update_batch(&values, &group_indices, total)?;
            }
        }
        // Groups merged away by session merging are empty now.
        if !merged.is_empty() {
            self.release(&merged)?;
        }
        self.key_ids = key_ids;
        self.group_indices = group_indices;
        outcome.updates = self.emit_dirty()?;
        Ok(outcome)
    }

    /// The aggregator's state for a checkpoint: one row per live (key, slice) or
    /// (key, session) group with its accumulators' state, plus the watermark, the late
    /// count and the windows still to fire.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        // (key id, slice or session start, end, fired, group)
        let mut rows: Vec<(u32, i64, i64, bool, u32)> = match &self.windows {
            Windows::Sliced(s) => s
                .groups
                .iter()
                .map(|(&(k, slice), &g)| (k, slice, slice + s.slice, false, g))
                .collect(),
            Windows::Session(s) => s
                .sessions
                .iter()
                .flat_map(|(&k, v)| v.iter().map(move |x| (k, x.start, x.end, x.fired, x.group)))
                .collect(),
        };
        rows.sort_unstable();
        let key_ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
        let groups: Vec<u32> = rows.iter().map(|r| r.4).collect();
        let mut fields: Vec<Field> = self.keys.fields().to_vec();
        let mut columns = self.keys.columns(&key_ids)?;
        fields.push(Field::new("__start", DataType::Int64, false));
        columns.push(Arc::new(arrow::array::Int64Array::from_iter_values(
            rows.iter().map(|r| r.1),
        )));
        fields.push(Field::new("__end", DataType::Int64, false));
        columns.push(Arc::new(arrow::array::Int64Array::from_iter_values(
            rows.iter().map(|r| r.2),
        )));
        fields.push(Field::new("__fired", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.3)),
        )));
        let widths = save_states(&mut self.accumulators, &groups, &mut fields, &mut columns)?;
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let pending = match &self.windows {
            Windows::Sliced(s) => s.pending.iter().copied().collect(),
            Windows::Session(_) => Vec::new(),
        };
        let state = WindowState {
            watermark: self.watermark,
            late_records: self.late_records,
            pending,
            widths,
            rows: encode_batch(&batch)?,
        };
        Ok(postcard::to_stdvec(&state).expect("window state encoding cannot fail"))
    }

    /// Restores state saved by [`snapshot`](Self::snapshot) into an empty aggregator;
    /// several snapshots (of old subtasks) may be restored one after the other. With a
    /// `filter`, only the keys of the owned key groups are kept.
    pub fn restore(&mut self, bytes: &[u8], filter: Option<&KeyGroupFilter>) -> Result<()> {
        let state: WindowState = postcard::from_bytes(bytes)
            .map_err(|e| FungiError::State(format!("bad window state: {e}")))?;
        let nkeys = self.key_indices.len();
        let mut batch = decode_batch(&state.rows)?;
        if let Some(f) = filter {
            batch = f.retain(batch, &(0..nkeys).collect::<Vec<_>>())?;
        }
        // The watermark is the smallest over restored subtasks: no window fires early.
        self.watermark = if self.watermark == i64::MIN {
            state.watermark
        } else {
            self.watermark.min(state.watermark)
        };
        self.late_records += state.late_records;
        let n = batch.num_rows();
        let mut key_ids = Vec::with_capacity(n);
        self.keys
            .intern(&batch.columns()[..nkeys], n, &mut key_ids)?;
        let starts = batch
            .column(nkeys)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        let ends = batch
            .column(nkeys + 1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        let fired = batch
            .column(nkeys + 2)
            .as_any()
            .downcast_ref::<BooleanArray>();
        let (Some(starts), Some(ends), Some(fired)) = (starts, ends, fired) else {
            return Err(FungiError::State(
                "bad window state: unexpected columns".into(),
            ));
        };
        let mut groups = Vec::with_capacity(n);
        for (i, &k) in key_ids.iter().enumerate() {
            let (start, end) = (starts.value(i), ends.value(i));
            let g = self.ids.alloc();
            groups.push(g);
            match &mut self.windows {
                Windows::Sliced(s) => {
                    s.groups.insert((k, start), g);
                    s.slices.entry(start).or_default().push((k, g));
                }
                Windows::Session(s) => {
                    let v = s.sessions.entry(k).or_default();
                    v.push(Session {
                        start,
                        end,
                        group: g,
                        fired: fired.value(i),
                    });
                    v.sort_by_key(|x| x.start);
                    s.by_end.insert((end, k, start));
                }
            }
        }
        if let Windows::Sliced(s) = &mut self.windows {
            s.pending.extend(state.pending);
        }
        merge_saved_states(
            &mut self.accumulators,
            &state.widths,
            &batch.columns()[nkeys + 3..],
            &groups,
            self.ids.total(),
            "window",
        )
    }

    fn release(&mut self, groups: &[u32]) -> Result<()> {
        for acc in &mut self.accumulators {
            acc.reset(groups)?;
        }
        self.ids.release(groups);
        Ok(())
    }

    /// Advances event time to `watermark`: fires every window whose last timestamp is at
    /// or before it and frees the state no window needs any more.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        if watermark <= self.watermark {
            return Ok(None);
        }
        self.watermark = watermark;
        let out = match self.windows {
            Windows::Sliced(_) => self.fire_sliced(watermark)?,
            Windows::Session(_) => self.fire_sessions(watermark)?,
        };
        if self.ids.live() == 0 {
            // Every key's state is gone: forget the keys too.
            self.keys.clear();
            self.ids = GroupIds::default();
            self.compact_at = MIN_COMPACT_KEYS;
            if let Windows::Session(s) = &mut self.windows {
                s.sessions.clear();
            }
        } else if self.keys.len() >= self.compact_at {
            // Counting the live keys visits every group, so it runs only each time the
            // table has doubled since the last check: amortised O(1) per key, and the
            // table never holds more than about four times the keys of open windows.
            if self.live_keys().len() * 2 < self.keys.len() {
                // Most interned keys have no open window left: rebuild the table with
                // the live ones.
                self.compact_keys()?;
            }
            self.compact_at = (self.keys.len() * 2).max(MIN_COMPACT_KEYS);
        }
        Ok(out)
    }

    /// Number of distinct keys currently interned.
    pub fn interned_keys(&self) -> usize {
        self.keys.len()
    }

    /// Key ids that still hold state, sorted (marked in a bitmap over the key table:
    /// linear in the groups and keys, no sort).
    fn live_keys(&self) -> Vec<u32> {
        let mut marked = vec![false; self.keys.len()];
        match &self.windows {
            Windows::Sliced(s) => s
                .groups
                .keys()
                .for_each(|(k, _)| marked[*k as usize] = true),
            Windows::Session(s) => s.sessions.keys().for_each(|k| marked[*k as usize] = true),
        }
        (0u32..)
            .zip(marked)
            .filter_map(|(id, live)| live.then_some(id))
            .collect()
    }

    fn compact_keys(&mut self) -> Result<()> {
        let live = self.live_keys();
        let columns = self.keys.columns(&live)?;
        let mut fresh = KeyTable::new(self.keys.fields().to_vec())?;
        let mut new_ids = Vec::with_capacity(live.len());
        fresh.intern(&columns, live.len(), &mut new_ids)?;
        let remap: HashMap<u32, u32> = live.iter().copied().zip(new_ids).collect();
        match &mut self.windows {
            Windows::Sliced(s) => {
                s.groups = s
                    .groups
                    .drain()
                    .map(|((k, slice), g)| ((remap[&k], slice), g))
                    .collect();
                for members in s.slices.values_mut() {
                    for (k, _) in members.iter_mut() {
                        *k = remap[k];
                    }
                }
            }
            Windows::Session(s) => {
                s.sessions = s.sessions.drain().map(|(k, v)| (remap[&k], v)).collect();
                s.by_end = std::mem::take(&mut s.by_end)
                    .into_iter()
                    .map(|(end, k, start)| (end, remap[&k], start))
                    .collect();
            }
        }
        self.keys = fresh;
        Ok(())
    }

    fn emit_dirty(&mut self) -> Result<Option<RecordBatch>> {
        let mut batches = Vec::new();
        for (end, start) in std::mem::take(&mut self.dirty) {
            if let Some(b) = self.evaluate_window(TimeWindow { start, end })? {
                batches.push(b);
            }
        }
        if !self.dirty_sessions.is_empty() {
            let dirty = std::mem::take(&mut self.dirty_sessions);
            let Windows::Session(state) = &self.windows else {
                unreachable!("dirty sessions only with session windows")
            };
            let mut rows = Vec::new();
            for (key, start) in dirty {
                if let Some(s) = state
                    .sessions
                    .get(&key)
                    .and_then(|v| v.iter().find(|s| s.start == start))
                {
                    rows.push((key, *s));
                }
            }
            batches.extend(self.session_rows(&rows)?);
        }
        self.concat(batches)
    }

    fn concat(&self, batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>> {
        match batches.len() {
            0 => Ok(None),
            1 => Ok(batches.into_iter().next()),
            _ => Ok(Some(concat_batches(&self.output_schema, &batches)?)),
        }
    }

    fn fire_sliced(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        let mut batches = Vec::new();
        loop {
            let Windows::Sliced(state) = &mut self.windows else {
                unreachable!()
            };
            let Some(&(end, start)) = state.pending.first() else {
                break;
            };
            if end - 1 > watermark {
                break;
            }
            state.pending.pop_first();
            if let Some(b) = self.evaluate_window(TimeWindow { start, end })? {
                batches.push(b);
            }
        }
        // Free slices whose every window is past the allowed lateness.
        let Windows::Sliced(state) = &mut self.windows else {
            unreachable!()
        };
        let mut freed = Vec::new();
        while let Some((&slice_start, _)) = state.slices.first_key_value() {
            let expiry = self
                .assigner
                .last_window_end(slice_start)
                .saturating_sub(1)
                .saturating_add(self.lateness);
            if expiry > watermark {
                break;
            }
            let (_, members) = state.slices.pop_first().expect("exists");
            for (key, group) in members {
                state.groups.remove(&(key, slice_start));
                freed.push(group);
            }
        }
        self.release(&freed)?;
        self.concat(batches)
    }

    /// Evaluates the window `w` from its slices; `None` if it holds no data.
    fn evaluate_window(&mut self, w: TimeWindow) -> Result<Option<RecordBatch>> {
        let Windows::Sliced(state) = &self.windows else {
            unreachable!()
        };
        let mut slices = state.slices.range(w.start..w.end);
        let (Some((_, first)), None) = (slices.next(), slices.clone().next()) else {
            // Several slices: merge them per key into fresh groups.
            let mut out: HashMap<u32, u32> = HashMap::new();
            let mut pairs = Vec::new();
            let mut key_order = Vec::new();
            for (_, members) in state.slices.range(w.start..w.end) {
                for &(key, group) in members {
                    let dst = *out.entry(key).or_insert_with(|| {
                        key_order.push(key);
                        self.ids.alloc()
                    });
                    pairs.push((dst, group));
                }
            }
            if key_order.is_empty() {
                return Ok(None);
            }
            let total = self.ids.total();
            for acc in &mut self.accumulators {
                acc.merge_groups(&pairs, total)?;
            }
            let groups: Vec<u32> = key_order.iter().map(|k| out[k]).collect();
            let batch = self.window_rows(&key_order, &groups, w)?;
            self.release(&groups)?;
            return Ok(Some(batch));
        };
        // One slice (tumbling windows): evaluate its groups directly.
        let (key_order, groups): (Vec<u32>, Vec<u32>) = first.iter().copied().unzip();
        if key_order.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.window_rows(&key_order, &groups, w)?))
    }

    fn window_rows(
        &mut self,
        key_ids: &[u32],
        groups: &[u32],
        w: TimeWindow,
    ) -> Result<RecordBatch> {
        let n = key_ids.len();
        let mut columns = self.keys.columns(key_ids)?;
        columns.push(Arc::new(TimestampMillisecondArray::from_value(w.start, n)));
        columns.push(Arc::new(TimestampMillisecondArray::from_value(w.end, n)));
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(groups)?);
        }
        Ok(RecordBatch::try_new(self.output_schema.clone(), columns)?)
    }

    fn session_rows(&mut self, rows: &[(u32, Session)]) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let key_ids: Vec<u32> = rows.iter().map(|(k, _)| *k).collect();
        let groups: Vec<u32> = rows.iter().map(|(_, s)| s.group).collect();
        let mut columns = self.keys.columns(&key_ids)?;
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|(_, s)| s.start),
        )));
        columns.push(Arc::new(TimestampMillisecondArray::from_iter_values(
            rows.iter().map(|(_, s)| s.end),
        )));
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(&groups)?);
        }
        Ok(Some(RecordBatch::try_new(
            self.output_schema.clone(),
            columns,
        )?))
    }

    fn fire_sessions(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        let lateness = self.lateness;
        let Windows::Session(state) = &mut self.windows else {
            unreachable!()
        };
        let mut fire = Vec::new();
        let mut expired = Vec::new();
        for &(end, key, start) in &state.by_end {
            if end - 1 > watermark {
                break;
            }
            let sessions = state
                .sessions
                .get_mut(&key)
                .expect("indexed session exists");
            let s = sessions
                .iter_mut()
                .find(|s| s.start == start)
                .expect("indexed session exists");
            if !s.fired {
                s.fired = true;
                fire.push((key, *s));
            }
            if end.saturating_sub(1).saturating_add(lateness) <= watermark {
                expired.push((end, key, start));
            }
        }
        let out = self.session_rows(&fire)?;
        let Windows::Session(state) = &mut self.windows else {
            unreachable!()
        };
        let mut freed = Vec::new();
        for (end, key, start) in expired {
            state.by_end.remove(&(end, key, start));
            let sessions = state.sessions.get_mut(&key).expect("exists");
            if let Some(pos) = sessions.iter().position(|s| s.start == start) {
                freed.push(sessions.remove(pos).group);
            }
            if sessions.is_empty() {
                state.sessions.remove(&key);
            }
        }
        self.release(&freed)?;
        Ok(out)
    }
}

/// The event-time column of a batch, in ms.
type TimestampColumn = Arc<arrow::array::Int64Array>;

/// The values of `ts` where `mask` is true.
fn filtered(ts: &TimestampColumn, mask: &BooleanArray) -> Result<TimestampColumn> {
    Ok(Arc::new(
        arrow::compute::filter(ts.as_ref(), mask)?
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("filter keeps the type")
            .clone(),
    ))
}

/// Assigns each row to its (key, slice) group, creating groups and registering windows.
#[allow(clippy::too_many_arguments)]
fn assign_slices(
    state: &mut SlicedState,
    assigner: &WindowAssigner,
    ids: &mut GroupIds,
    watermark: i64,
    lateness: i64,
    ts: &[i64],
    key_ids: &[u32],
    group_indices: &mut Vec<u32>,
    dirty: &mut BTreeSet<(i64, i64)>,
) {
    let slice = state.slice;
    group_indices.reserve(ts.len());
    for (&t, &key) in ts.iter().zip(key_ids) {
        let s = assigner.slice_start(t, slice);
        let group = match state.groups.get(&(key, s)) {
            Some(&g) => g,
            None => {
                let g = ids.alloc();
                state.groups.insert((key, s), g);
                let members = state.slices.entry(s).or_default();
                if members.is_empty() {
                    assigner.windows_of_slice(s, |w| {
                        if w.max_timestamp() > watermark {
                            state.pending.insert((w.end, w.start));
                        }
                    });
                }
                members.push((key, g));
                g
            }
        };
        // A row for a window that already fired (within the allowed lateness) updates it.
        if s + slice - 1 <= watermark {
            assigner.windows_of_slice(s, |w| {
                let t = w.max_timestamp();
                if t <= watermark && t.saturating_add(lateness) > watermark {
                    dirty.insert((w.end, w.start));
                }
            });
        }
        group_indices.push(group);
    }
}

/// Assigns each row to its key's session, creating, extending and merging sessions.
/// Returns the groups that were merged into others (to be released after the update).
#[allow(clippy::too_many_arguments)]
fn assign_sessions(
    state: &mut SessionState,
    ids: &mut GroupIds,
    accumulators: &mut [Box<dyn GroupsAccumulator>],
    watermark: i64,
    ts: &[i64],
    key_ids: &[u32],
    group_indices: &mut Vec<u32>,
    dirty: &mut BTreeSet<(u32, i64)>,
) -> Result<Vec<u32>> {
    let gap = state.gap;
    let mut redirect: HashMap<u32, u32> = HashMap::new();
    let mut merged = Vec::new();
    for (&t, &key) in ts.iter().zip(key_ids) {
        let (start, end) = (t, t.saturating_add(gap));
        let sessions = state.sessions.entry(key).or_default();
        // Sessions that touch or overlap [start, end) merge with it.
        let first = sessions
            .iter()
            .position(|s| s.start <= end && s.end >= start);
        let group = match first {
            None => {
                let g = ids.alloc();
                let pos = sessions.partition_point(|s| s.start < start);
                sessions.insert(
                    pos,
                    Session {
                        start,
                        end,
                        group: g,
                        fired: false,
                    },
                );
                state.by_end.insert((end, key, start));
                g
            }
            Some(i) => {
                let mut last = i;
                while last + 1 < sessions.len()
                    && sessions[last + 1].start <= end
                    && sessions[last + 1].end >= start
                {
                    last += 1;
                }
                let old = sessions[i];
                let mut merged_session = Session {
                    start: old.start.min(start),
                    end: old.end.max(end),
                    group: old.group,
                    fired: old.fired,
                };
                state.by_end.remove(&(old.end, key, old.start));
                let mut pairs = Vec::new();
                for other in sessions.drain(i + 1..=last) {
                    state.by_end.remove(&(other.end, key, other.start));
                    merged_session.end = merged_session.end.max(other.end);
                    merged_session.fired |= other.fired;
                    pairs.push((old.group, other.group));
                    redirect.insert(other.group, old.group);
                    merged.push(other.group);
                }
                if !pairs.is_empty() {
                    let total = ids.total();
                    for acc in accumulators.iter_mut() {
                        acc.merge_groups(&pairs, total)?;
                    }
                }
                sessions[i] = merged_session;
                state
                    .by_end
                    .insert((merged_session.end, key, merged_session.start));
                if merged_session.fired {
                    // Updating a fired session: it is emitted again once the batch is in.
                    // A session that grew past the watermark fires again normally.
                    if merged_session.end - 1 <= watermark {
                        dirty.insert((key, merged_session.start));
                    } else {
                        sessions[i].fired = false;
                    }
                }
                old.group
            }
        };
        group_indices.push(group);
    }
    if !redirect.is_empty() {
        for g in group_indices.iter_mut() {
            while let Some(&to) = redirect.get(g) {
                *g = to;
            }
        }
        // Dirty entries keyed by a start that changed in a later merge are dropped by
        // the lookup in `emit_dirty`; re-add current starts of dirty keys.
        let keys: Vec<u32> = dirty.iter().map(|(k, _)| *k).collect();
        for key in keys {
            if let Some(sessions) = state.sessions.get(&key) {
                for s in sessions
                    .iter()
                    .filter(|s| s.fired && s.end - 1 <= watermark)
                {
                    dirty.insert((key, s.start));
                }
            }
        }
    }
    Ok(merged)
}
