//! Source and sink plugins as Fungi connectors.
//!
//! A source plugin lists its splits (partitions, files...); each subtask opens the
//! splits `i` with `i % parallelism == subtask` and polls them round-robin, one call
//! per batch. A reader's position (`snapshot`) is bytes the host keeps in each checkpoint;
//! a reader reopened from them resumes there.
//!
//! A sink plugin writes batches into a transaction and takes part in two-phase commit:
//! `pre-commit` on a checkpoint barrier makes the transaction durable but invisible and
//! returns its handle, `commit` makes it visible once the checkpoint is complete,
//! `abort` discards it. The handles of pre-committed transactions are kept in the
//! checkpoint, so a restored sink commits them when it opens. Without checkpoints the
//! sink pre-commits and commits once, when its input ends; a failed job aborts what it
//! wrote.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result as FungiResult};
use fungi_execution::operator::{Operator, OperatorFactory, Output};
use fungi_execution::source::{Source, SourceContext, SourceEvent, SourceFactory};
use wasmtime::component::ResourceAny;

use crate::bindings::sink::exports::fungi::plugin::sink as sink_api;
use crate::bindings::source::exports::fungi::plugin::source as source_api;
use crate::error::{PluginError, Result};
use crate::ipc;
use crate::limits::PluginTenant;
use crate::plugin::{Plugin, PluginKind};
use crate::pool::guest_message;
use crate::sandbox::{Exports, Sandbox};

type Config = Vec<(String, String)>;

/// What a poll of a split returned.
#[derive(Debug)]
pub enum Poll {
    /// Rows.
    Batch(RecordBatch),
    /// Nothing now.
    Pending,
    /// Nothing for a while: the split should not hold back watermarks.
    Idle,
    /// The split is exhausted.
    Finished,
}

fn guest_error(
    plugin: &str,
    function: &str,
    e: &crate::bindings::scalar::fungi::plugin::types::PluginError,
) -> PluginError {
    PluginError::Guest {
        plugin: plugin.to_string(),
        function: function.to_string(),
        message: guest_message(e),
    }
}

/// A source plugin with its configuration, for one tenant.
#[derive(Debug, Clone)]
pub struct PluginSource {
    plugin: Arc<Plugin>,
    tenant: Arc<PluginTenant>,
    config: Config,
}

impl PluginSource {
    /// `plugin` (a source connector) configured with `config`.
    pub fn new(plugin: Arc<Plugin>, tenant: Arc<PluginTenant>, config: Config) -> Result<Self> {
        plugin.expect_kind(PluginKind::Source)?;
        Ok(PluginSource {
            plugin,
            tenant,
            config,
        })
    }

    /// The source's splits for its configuration.
    pub fn splits(&self) -> Result<Vec<String>> {
        let mut sandbox = Sandbox::new(&self.plugin, &self.tenant, &self.config)?;
        let config = self.config.clone();
        let r = sandbox.call("list-splits", |store, exports| match exports {
            Exports::Source(b) => b.fungi_plugin_source().call_list_splits(store, &config),
            _ => unreachable!("checked kind"),
        })?;
        r.map_err(|e| guest_error(self.plugin.name(), "list-splits", &e))
    }

    /// Opens `split`, from the start or from `offset`.
    pub fn open(&self, split: &str, offset: Option<Vec<u8>>) -> Result<SplitReader> {
        let mut sandbox = Sandbox::new(&self.plugin, &self.tenant, &self.config)?;
        let config = self.config.clone();
        let r = sandbox.call("open", |store, exports| match exports {
            Exports::Source(b) => b.fungi_plugin_source().split_reader().call_open(
                store,
                &config,
                split,
                offset.as_deref(),
            ),
            _ => unreachable!("checked kind"),
        })?;
        let resource = r.map_err(|e| guest_error(self.plugin.name(), "open", &e))?;
        Ok(SplitReader {
            sandbox,
            resource,
            plugin: self.plugin.name().to_string(),
            max_output: self.tenant.limits().max_output_bytes,
        })
    }

    /// A Fungi source factory producing rows of `schema` (the declared table).
    pub fn factory(&self, schema: SchemaRef) -> Result<SourceFactory> {
        let splits = self.splits()?;
        let me = self.clone();
        Ok(Arc::new(move |subtask: &SubtaskInfo| {
            let mine: Vec<(u32, String)> = splits
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u32 % subtask.parallelism == subtask.index)
                .map(|(i, s)| (i as u32, s.clone()))
                .collect();
            Ok(Box::new(PluginSourceTask {
                source: me.clone(),
                schema: schema.clone(),
                pending: mine,
                readers: Vec::new(),
                positions: BTreeMap::new(),
                next: 0,
                batch_size: 1024,
            }) as Box<dyn Source>)
        }))
    }
}

/// A reader of one split, in its own instance.
pub struct SplitReader {
    sandbox: Sandbox,
    resource: ResourceAny,
    plugin: String,
    max_output: usize,
}

impl SplitReader {
    /// The next rows (at most `max_rows`).
    pub fn poll(&mut self, max_rows: u32) -> Result<Poll> {
        let resource = self.resource;
        let r = self.sandbox.call("poll", |store, exports| match exports {
            Exports::Source(b) => b
                .fungi_plugin_source()
                .split_reader()
                .call_poll(store, resource, max_rows),
            _ => unreachable!("checked kind"),
        })?;
        Ok(
            match r.map_err(|e| guest_error(&self.plugin, "poll", &e))? {
                source_api::PollResult::Batch(bytes) => {
                    if bytes.len() > self.max_output {
                        return Err(PluginError::output_limit(
                            self.plugin.clone(),
                            "poll",
                            "a polled batch",
                            self.max_output,
                            bytes.len(),
                        ));
                    }
                    let (_, batch) =
                        ipc::decode_from_guest(bytes, self.max_output, &self.plugin, "poll")?;
                    match batch {
                        Some(b) => Poll::Batch(b),
                        None => Poll::Pending,
                    }
                }
                source_api::PollResult::Pending => Poll::Pending,
                source_api::PollResult::Idle => Poll::Idle,
                source_api::PollResult::Finished => Poll::Finished,
            },
        )
    }

    /// The position after the last polled row.
    pub fn snapshot(&mut self) -> Result<Vec<u8>> {
        let resource = self.resource;
        let position = self
            .sandbox
            .call("snapshot", |store, exports| match exports {
                Exports::Source(b) => b
                    .fungi_plugin_source()
                    .split_reader()
                    .call_snapshot(store, resource),
                _ => unreachable!("checked kind"),
            })?;
        self.sandbox
            .check_output("snapshot", "a split position", position.len())?;
        Ok(position)
    }
}

/// Where a split of a plugin source stands in a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum SplitPosition {
    /// The plugin's offset bytes.
    At(Vec<u8>),
    /// Read to the end.
    Finished,
}

/// One subtask of a plugin source: its splits, polled round-robin.
struct PluginSourceTask {
    source: PluginSource,
    schema: SchemaRef,
    pending: Vec<(u32, String)>,
    readers: Vec<(u32, SplitReader)>,
    /// Positions restored from a checkpoint, then those of finished splits.
    positions: BTreeMap<u32, SplitPosition>,
    next: usize,
    batch_size: u32,
}

impl PluginSourceTask {
    fn conform(&self, batch: RecordBatch) -> FungiResult<RecordBatch> {
        if batch.schema().fields().len() != self.schema.fields().len() {
            return Err(FungiError::Plan(format!(
                "source plugin '{}' returned {} columns, the table declares {}",
                self.source.plugin.name(),
                batch.num_columns(),
                self.schema.fields().len()
            )));
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    arrow::compute::cast(c, f.data_type()).map_err(FungiError::from)
                }
            })
            .collect::<FungiResult<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait::async_trait]
impl Source for PluginSourceTask {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> FungiResult<Vec<u32>> {
        self.batch_size = ctx.batch_size.max(1) as u32;
        for (id, split) in std::mem::take(&mut self.pending) {
            let offset = match self.positions.get(&id) {
                Some(SplitPosition::Finished) => continue,
                Some(SplitPosition::At(offset)) => Some(offset.clone()),
                None => None,
            };
            let reader = self.source.open(&split, offset)?;
            self.readers.push((id, reader));
        }
        Ok(self.readers.iter().map(|(id, _)| *id).collect())
    }

    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> FungiResult<Vec<u8>> {
        let mut positions = self.positions.clone();
        for (id, reader) in &mut self.readers {
            positions.insert(*id, SplitPosition::At(reader.snapshot()?));
        }
        Ok(postcard::to_stdvec(&positions).expect("position encoding cannot fail"))
    }

    fn restore_position(&mut self, state: &fungi_execution::RestoredState) -> FungiResult<()> {
        for (_, bytes) in &state.states {
            let positions: BTreeMap<u32, SplitPosition> = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad plugin source position: {e}")))?;
            self.positions.extend(positions);
        }
        let mine: Vec<u32> = self.pending.iter().map(|(id, _)| *id).collect();
        self.positions.retain(|id, _| mine.contains(id));
        Ok(())
    }

    async fn next(&mut self) -> FungiResult<SourceEvent> {
        let mut idle = 0;
        while !self.readers.is_empty() {
            let i = self.next % self.readers.len();
            let polled = self.readers[i].1.poll(self.batch_size)?;
            match polled {
                Poll::Batch(b) => {
                    self.next = i + 1;
                    let split = self.readers[i].0;
                    return Ok(SourceEvent::Batch {
                        split,
                        batch: self.conform(b)?,
                    });
                }
                Poll::Finished => {
                    let (id, _) = self.readers.remove(i);
                    self.positions.insert(id, SplitPosition::Finished);
                }
                Poll::Pending | Poll::Idle => {
                    self.next = i + 1;
                    idle += 1;
                    if idle >= self.readers.len() {
                        return Ok(SourceEvent::Pending(Duration::from_millis(10)));
                    }
                }
            }
        }
        Ok(SourceEvent::Finished)
    }
}

/// A sink plugin with its configuration, for one tenant.
#[derive(Debug, Clone)]
pub struct PluginSink {
    plugin: Arc<Plugin>,
    tenant: Arc<PluginTenant>,
    config: Config,
}

impl PluginSink {
    /// `plugin` (a sink connector) configured with `config`.
    pub fn new(plugin: Arc<Plugin>, tenant: Arc<PluginTenant>, config: Config) -> Result<Self> {
        plugin.expect_kind(PluginKind::Sink)?;
        Ok(PluginSink {
            plugin,
            tenant,
            config,
        })
    }

    /// Opens the writer of `subtask`; `pending` are handles pre-committed before a
    /// restart (the plugin commits or aborts them).
    pub fn open(&self, subtask: u32, pending: Vec<Vec<u8>>) -> Result<SinkWriter> {
        let mut sandbox = Sandbox::new(&self.plugin, &self.tenant, &self.config)?;
        let config = self.config.clone();
        let r = sandbox.call("open", |store, exports| match exports {
            Exports::Sink(b) => b
                .fungi_plugin_sink()
                .writer()
                .call_open(store, &config, subtask, &pending),
            _ => unreachable!("checked kind"),
        })?;
        let resource = r.map_err(|e| guest_error(self.plugin.name(), "open", &e))?;
        Ok(SinkWriter {
            sandbox,
            resource,
            plugin: self.plugin.name().to_string(),
        })
    }

    /// A Fungi sink operator. Without checkpoints it pre-commits and commits once, when
    /// the input ends. With checkpoints it pre-commits on every barrier and commits when
    /// the checkpoint completes; on restore the writer is reopened with the transactions
    /// the checkpoint holds, which the plugin commits.
    pub fn factory(&self) -> OperatorFactory {
        let me = self.clone();
        Arc::new(move |subtask: &SubtaskInfo| {
            let writer = me.open(subtask.index, Vec::new())?;
            Ok(Box::new(PluginSinkOperator {
                sink: me.clone(),
                subtask: *subtask,
                writer: Some(writer),
                checkpointing: false,
                pending: Vec::new(),
            }) as Box<dyn Operator>)
        })
    }
}

/// One sink subtask's writer, in its own instance.
pub struct SinkWriter {
    sandbox: Sandbox,
    resource: ResourceAny,
    plugin: String,
}

impl SinkWriter {
    fn unit(
        &mut self,
        function: &str,
        f: impl FnOnce(
            &mut wasmtime::Store<crate::host::HostState>,
            &sink_api::GuestWriter<'_>,
            ResourceAny,
        ) -> wasmtime::Result<
            std::result::Result<(), crate::bindings::scalar::fungi::plugin::types::PluginError>,
        > + Send,
    ) -> Result<()> {
        let resource = self.resource;
        let r = self
            .sandbox
            .call(function, |store, exports| match exports {
                Exports::Sink(b) => f(store, &b.fungi_plugin_sink().writer(), resource),
                _ => unreachable!("checked kind"),
            })?;
        r.map_err(|e| guest_error(&self.plugin, function, &e))
    }

    /// Writes rows into the current transaction.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let bytes = ipc::encode(batch).map_err(|e| PluginError::Host(e.to_string()))?;
        self.unit("write", |store, w, r| w.call_write(store, r, &bytes))
    }

    /// Pre-commits the transaction of `checkpoint`; returns its handle.
    pub fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>> {
        let resource = self.resource;
        let r = self
            .sandbox
            .call("pre-commit", |store, exports| match exports {
                Exports::Sink(b) => b
                    .fungi_plugin_sink()
                    .writer()
                    .call_pre_commit(store, resource, checkpoint),
                _ => unreachable!("checked kind"),
            })?;
        let handle = r.map_err(|e| guest_error(&self.plugin, "pre-commit", &e))?;
        self.sandbox
            .check_output("pre-commit", "a transaction handle", handle.len())?;
        Ok(handle)
    }

    /// Makes a pre-committed transaction visible.
    pub fn commit(&mut self, handle: &[u8]) -> Result<()> {
        self.unit("commit", |store, w, r| w.call_commit(store, r, handle))
    }

    /// Discards a pre-committed transaction.
    pub fn abort(&mut self, handle: &[u8]) -> Result<()> {
        self.unit("abort", |store, w, r| w.call_abort(store, r, handle))
    }
}

/// The sink operator over a [`SinkWriter`].
struct PluginSinkOperator {
    sink: PluginSink,
    subtask: SubtaskInfo,
    writer: Option<SinkWriter>,
    checkpointing: bool,
    /// Pre-committed transactions by checkpoint.
    pending: Vec<(CheckpointId, Vec<u8>)>,
}

impl PluginSinkOperator {
    fn writer(&mut self) -> FungiResult<&mut SinkWriter> {
        self.writer
            .as_mut()
            .ok_or_else(|| FungiError::Internal("sink plugin used after its end".into()))
    }
}

impl Operator for PluginSinkOperator {
    fn open(&mut self, ctx: &fungi_execution::OperatorContext) -> FungiResult<()> {
        self.checkpointing = ctx.checkpointing;
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> FungiResult<()> {
        self.writer()?.write(&batch)?;
        Ok(())
    }

    fn finish(&mut self, _out: &mut Output) -> FungiResult<()> {
        if self.checkpointing {
            // The final checkpoint pre-commits; its completion commits.
            return Ok(());
        }
        if let Some(mut w) = self.writer.take() {
            let handle = w.pre_commit(0)?;
            w.commit(&handle)?;
        }
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> FungiResult<Option<Vec<u8>>> {
        let handle = self.writer()?.pre_commit(checkpoint.get())?;
        self.pending.push((checkpoint, handle));
        let handles: Vec<&Vec<u8>> = self.pending.iter().map(|(_, h)| h).collect();
        Ok(Some(
            postcard::to_stdvec(&handles).expect("handle encoding cannot fail"),
        ))
    }

    fn restore_state(&mut self, state: &fungi_execution::RestoredState) -> FungiResult<()> {
        let mut handles = Vec::new();
        for (old, bytes) in &state.states {
            if *old % self.subtask.parallelism != self.subtask.index {
                continue;
            }
            let mine: Vec<Vec<u8>> = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad sink plugin state: {e}")))?;
            handles.extend(mine);
        }
        // The checkpoint is complete: the plugin commits its transactions when it opens.
        self.writer = Some(self.sink.open(self.subtask.index, handles)?);
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> FungiResult<()> {
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(id, _)| *id <= checkpoint);
        self.pending = keep;
        let w = self.writer()?;
        for (_, handle) in done {
            w.commit(&handle)?;
        }
        Ok(())
    }
}
