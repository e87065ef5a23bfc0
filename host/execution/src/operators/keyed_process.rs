//! Keyed process functions: user code with keyed state and timers, as Flink's
//! `KeyedProcessFunction`, but called per batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use fungi_checkpoint::RestoredState;
use fungi_checkpoint::layout::{StoreLayout, write_sst_list};
use fungi_common::ids::CheckpointId;
use fungi_common::keys::{KeyGroups, hash_columns};
use fungi_common::time::now_millis;
use fungi_common::{FungiError, Result, Watermark};
use fungi_state::{
    IncrementalCheckpoint, KeyedSnapshot, KeyedStore, RocksDbStateBackend, StateNamespace,
};
use fungi_streaming::timer::{TimeDomain, Timer, TimerService};

use crate::operator::{Operator, OperatorContext, OperatorFactory, Output};

/// The keys of a batch: encoded key per row and its key group.
#[derive(Debug)]
pub struct KeyedRows {
    rows: Rows,
    key_groups: Vec<u32>,
}

impl KeyedRows {
    /// The encoded key of row `i` (use it with state and timers).
    pub fn key(&self, i: usize) -> &[u8] {
        self.rows.row(i).data()
    }

    /// The key group of row `i`.
    pub fn key_group(&self, i: usize) -> u32 {
        self.key_groups[i]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.key_groups.len()
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.key_groups.is_empty()
    }
}

/// What a keyed process function can reach while it runs.
pub struct KeyedContext<'a> {
    /// Keyed state of this subtask's key groups.
    pub state: &'a mut dyn KeyedStore,
    timers: &'a mut TimerService,
    converter: &'a RowConverter,
    /// The current watermark, if any.
    pub watermark: Option<i64>,
    /// Wall clock in ms since the epoch.
    pub processing_time: i64,
}

impl KeyedContext<'_> {
    /// Fires `on_timers` when the watermark passes `time` for this key.
    pub fn register_event_time_timer(&mut self, key_group: u32, key: &[u8], time: i64) {
        self.timers.register(
            TimeDomain::EventTime,
            Timer {
                time,
                key_group,
                key: key.to_vec(),
            },
        );
    }

    /// Fires `on_timers` when the wall clock passes `time` for this key.
    pub fn register_processing_time_timer(&mut self, key_group: u32, key: &[u8], time: i64) {
        self.timers.register(
            TimeDomain::ProcessingTime,
            Timer {
                time,
                key_group,
                key: key.to_vec(),
            },
        );
    }

    /// Deletes a registered event-time timer.
    pub fn delete_event_time_timer(&mut self, key_group: u32, key: &[u8], time: i64) {
        self.timers.delete(
            TimeDomain::EventTime,
            &Timer {
                time,
                key_group,
                key: key.to_vec(),
            },
        );
    }

    /// Decodes the keys of `timers` back into key columns (for output rows).
    pub fn key_columns(&self, timers: &[Timer]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        Ok(self
            .converter
            .convert_rows(timers.iter().map(|t| parser.parse(&t.key)))?)
    }
}

/// User logic over a keyed stream with state and timers.
///
/// Called once per batch with the keys of its rows (not once per row), and once per
/// group of timers that fire together.
pub trait KeyedProcessFunction: Send {
    /// Processes a batch whose rows' keys are in `keys`.
    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        keys: &KeyedRows,
        ctx: &mut KeyedContext<'_>,
        out: &mut Output,
    ) -> Result<()>;

    /// Timers that fired, in time order.
    fn on_timers(
        &mut self,
        timers: &[Timer],
        domain: TimeDomain,
        ctx: &mut KeyedContext<'_>,
        out: &mut Output,
    ) -> Result<()>;
}

/// Runs a [`KeyedProcessFunction`].
pub struct KeyedProcessOperator {
    key_indices: Vec<usize>,
    function: Box<dyn KeyedProcessFunction>,
    converter: RowConverter,
    key_groups: KeyGroups,
    store: Option<Box<dyn KeyedStore>>,
    timers: TimerService,
    watermark: Option<i64>,
    hashes: Vec<u64>,
    checkpoint_dir: Option<PathBuf>,
    /// Directory name of this subtask's store files under the checkpoint directory.
    store_name: String,
    parallelism: u32,
}

impl KeyedProcessOperator {
    /// A factory keyed by `keys` of `input`, making a function per subtask with `make`.
    pub fn factory(
        keys: Vec<String>,
        input: &SchemaRef,
        make: impl Fn() -> Box<dyn KeyedProcessFunction> + Send + Sync + 'static,
    ) -> Result<OperatorFactory> {
        let key_indices = keys
            .iter()
            .map(|k| {
                input
                    .index_of(k)
                    .map_err(|_| fungi_streaming::unknown_column(k, input))
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<SortField> = key_indices
            .iter()
            .map(|&i| SortField::new(input.field(i).data_type().clone()))
            .collect();
        Ok(Arc::new(move |subtask| {
            Ok(Box::new(KeyedProcessOperator {
                key_indices: key_indices.clone(),
                function: make(),
                converter: RowConverter::new(fields.clone())?,
                key_groups: KeyGroups::new(subtask.max_parallelism),
                store: None,
                timers: TimerService::new(),
                watermark: None,
                hashes: Vec::new(),
                checkpoint_dir: None,
                store_name: String::new(),
                parallelism: subtask.parallelism,
            }) as Box<dyn Operator>)
        }))
    }
}

impl Operator for KeyedProcessOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.checkpoint_dir = ctx.checkpoint_dir.clone();
        self.parallelism = ctx.subtask.parallelism;
        self.store_name = format!(
            "{}#{}",
            ctx.operator
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                })
                .collect::<String>(),
            ctx.subtask.index
        );
        let range = self
            .key_groups
            .range_for_subtask(ctx.subtask.index, ctx.subtask.parallelism);
        let ns = StateNamespace::new("default", &ctx.job, &ctx.operator);
        self.store = Some(ctx.state_backend.open_keyed(&ns, range)?);
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let columns: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let rows = self.converter.convert_columns(&columns)?;
        hash_columns(&columns, &mut self.hashes)?;
        let key_groups = self
            .hashes
            .iter()
            .map(|&h| self.key_groups.key_group(h))
            .collect();
        let keyed = KeyedRows { rows, key_groups };
        self.call(|function, ctx| function.process_batch(&batch, &keyed, ctx, out))
    }

    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        if let Watermark::EventTime(t) = watermark {
            self.watermark = Some(t);
            let fired = self.timers.advance(TimeDomain::EventTime, t);
            if !fired.is_empty() {
                self.fire(&fired, TimeDomain::EventTime, out)?;
            }
        }
        out.emit_watermark(watermark);
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Output) -> Result<()> {
        let fired = self.timers.advance(TimeDomain::ProcessingTime, now_ms);
        if !fired.is_empty() {
            self.fire(&fired, TimeDomain::ProcessingTime, out)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        let store = self.store.as_deref_mut().ok_or_else(|| {
            FungiError::Internal("keyed process operator snapshotted before open".into())
        })?;
        // A store with files checkpoints them incrementally next to the checkpoints.
        let files = match &self.checkpoint_dir {
            Some(root) => {
                let layout = StoreLayout::new(root, &self.store_name);
                let private = layout.private(checkpoint);
                match store.checkpoint_files(&layout.shared(), &private)? {
                    Some(files) => {
                        // The list the checkpoint storage reads to know which shared
                        // files this checkpoint keeps alive.
                        write_sst_list(&private, files.sst_files.iter().map(|(s, _)| s.as_str()))
                            .map_err(|e| FungiError::State(format!("{}: {e}", private.display())))?;
                        Some(StoreState::Files {
                            store: layout.relative().to_string(),
                            checkpoint: checkpoint.get(),
                            files,
                        })
                    }
                    None => None,
                }
            }
            None => None,
        };
        let store = match files {
            Some(files) => files,
            None => StoreState::Portable(store.snapshot()?.encode()),
        };
        let state = KeyedProcessState {
            store,
            timers: self.timers.clone(),
            watermark: self.watermark,
        };
        Ok(Some(
            postcard::to_stdvec(&state).expect("keyed state encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, restored: &RestoredState) -> Result<()> {
        let store = self.store.as_deref_mut().ok_or_else(|| {
            FungiError::Internal("keyed process operator restored before open".into())
        })?;
        let mut states = Vec::new();
        for (_, bytes) in &restored.states {
            let state: KeyedProcessState = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad keyed process state: {e}")))?;
            self.timers.extend(state.timers);
            self.watermark = match (self.watermark, state.watermark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            states.push(state.store);
        }
        match states.as_slice() {
            // The same key groups: the files are the store, as they were.
            [
                StoreState::Files {
                    store: rel,
                    checkpoint,
                    files,
                },
            ] if !restored.rescaled(self.parallelism) => {
                let layout = StoreLayout::from_relative(&restored.root, rel);
                store.restore_files(
                    files,
                    &layout.shared(),
                    &layout.private(CheckpointId(*checkpoint)),
                )?;
            }
            // Otherwise every entry is read and the store keeps its own key groups.
            _ => {
                let entries = states
                    .iter()
                    .map(|s| s.entries(&restored.root))
                    .collect::<Result<Vec<_>>>()?;
                store.restore(&KeyedSnapshot::merge(entries))?;
            }
        }
        let owned = store.key_groups();
        self.timers.retain_key_groups(|g| owned.contains(&g));
        Ok(())
    }
}

/// What a keyed process subtask saves in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyedProcessState {
    store: StoreState,
    timers: TimerService,
    watermark: Option<i64>,
}

/// How the keyed store was saved.
#[derive(serde::Serialize, serde::Deserialize)]
enum StoreState {
    /// Every entry, in the state file ([`KeyedSnapshot::encode`]): the memory backend.
    Portable(Vec<u8>),
    /// An incremental checkpoint of the store's files (RocksDB), under `store` (relative
    /// to the checkpoint directory): shared files in `sst/`, this checkpoint's in
    /// `chk-<id>/`.
    Files {
        store: String,
        checkpoint: u64,
        files: IncrementalCheckpoint,
    },
}

impl StoreState {
    /// The entries, wherever they are (for restores at another parallelism).
    fn entries(&self, root: &Path) -> Result<KeyedSnapshot> {
        match self {
            StoreState::Portable(bytes) => Ok(KeyedSnapshot::decode(bytes)?),
            StoreState::Files {
                store,
                checkpoint,
                files,
            } => {
                let layout = StoreLayout::from_relative(root, store);
                Ok(RocksDbStateBackend::read_incremental(
                    files,
                    &layout.shared(),
                    &layout.private(CheckpointId(*checkpoint)),
                )?)
            }
        }
    }
}

impl KeyedProcessOperator {
    /// Calls the user function with a context over this subtask's state and timers.
    fn call(
        &mut self,
        f: impl FnOnce(&mut dyn KeyedProcessFunction, &mut KeyedContext<'_>) -> Result<()>,
    ) -> Result<()> {
        let state = self.store.as_deref_mut().ok_or_else(|| {
            FungiError::Internal("keyed process operator used before open".into())
        })?;
        let mut ctx = KeyedContext {
            state,
            timers: &mut self.timers,
            converter: &self.converter,
            watermark: self.watermark,
            processing_time: now_millis(),
        };
        f(self.function.as_mut(), &mut ctx)
    }

    fn fire(&mut self, fired: &[Timer], domain: TimeDomain, out: &mut Output) -> Result<()> {
        self.call(|function, ctx| function.on_timers(fired, domain, ctx, out))
    }
}
