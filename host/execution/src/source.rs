//! The source trait: where batches enter a job.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_checkpoint::RestoredState;
use fungi_common::ids::CheckpointId;
use fungi_common::ids::SubtaskInfo;
use fungi_common::{FungiError, Result};

use crate::dead_letter::DeadLetterQueue;
use crate::metrics::OperatorMetrics;

/// What a source produced when polled.
#[derive(Debug)]
pub enum SourceEvent {
    /// A batch read from `split` (a partition, file or generator shard).
    Batch {
        /// The split the rows come from; watermarks are tracked per split.
        split: u32,
        /// The rows.
        batch: RecordBatch,
    },
    /// Nothing available now; poll again after about this long.
    Pending(Duration),
    /// The source is exhausted (bounded sources only).
    Finished,
}

/// What a source subtask is told when it opens.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Which subtask this is; sources split their input by it.
    pub subtask: SubtaskInfo,
    /// Rows per batch the job asks for.
    pub batch_size: usize,
    /// Counters of the source (shared by its subtasks).
    pub metrics: Arc<OperatorMetrics>,
    /// Where records that cannot be decoded go under the dead-letter policy.
    pub dead_letters: Arc<DeadLetterQueue>,
    /// The source's name (for error messages and dead letters).
    pub name: String,
}

/// A parallel source. Each subtask gets its own instance and reads its share of the
/// splits.
///
/// `next` should return within about a tick (100 ms) so the task can notice
/// cancellation: a source with nothing to read returns [`SourceEvent::Pending`].
#[async_trait::async_trait]
pub trait Source: Send {
    /// Schema of the batches.
    fn schema(&self) -> SchemaRef;

    /// Called once before the first `next`, with the splits this subtask should own.
    fn open(&mut self, ctx: &SourceContext) -> Result<Vec<u32>> {
        let _ = ctx;
        Ok(vec![0])
    }

    /// The next batch, a pause, or the end.
    async fn next(&mut self) -> Result<SourceEvent>;

    /// The position to resume from after everything emitted so far, as bytes that
    /// [`restore_position`](Self::restore_position) reads back. Called when the barrier
    /// of `checkpoint` is injected, and once more at the end with
    /// [`CheckpointId::FINAL`]. The default: this source cannot resume, and a job that
    /// checkpoints fails with a message naming it.
    fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let _ = checkpoint;
        Err(FungiError::State(
            "this source cannot resume from a checkpoint; run the job without \
             'execution.checkpointing.interval'"
                .into(),
        ))
    }

    /// Called when `checkpoint` is complete (every task's state is stored), so the
    /// source may tell its system what it has durably read (a Kafka source commits its
    /// offsets to the consumer group here, as Flink's does); the position of
    /// `checkpoint` is the one [`snapshot_position`](Self::snapshot_position) returned
    /// for it. Completions may be skipped when a later one arrives first. An error
    /// fails the job.
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let _ = checkpoint;
        Ok(())
    }

    /// Called before [`open`](Self::open) when the job resumes from a checkpoint.
    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        Err(FungiError::State(format!(
            "checkpoint {} holds a position for this source, but it cannot resume",
            state.checkpoint
        )))
    }
}

/// Builds one source instance per subtask.
pub type SourceFactory = Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn Source>> + Send + Sync>;

/// A bounded source over batches held in memory; subtask `i` of `p` emits batches
/// `i, i + p, ...`. For tests and examples.
#[derive(Debug)]
pub struct VecSource {
    schema: SchemaRef,
    batches: std::vec::IntoIter<RecordBatch>,
    /// Batches emitted so far: the position checkpoints save.
    emitted: u64,
}

impl VecSource {
    /// A factory that splits `batches` round-robin over the subtasks.
    pub fn factory(schema: SchemaRef, batches: Vec<RecordBatch>) -> SourceFactory {
        let batches = Arc::new(batches);
        Arc::new(move |s: &SubtaskInfo| {
            let mine: Vec<RecordBatch> = batches
                .iter()
                .skip(s.index as usize)
                .step_by(s.parallelism as usize)
                .cloned()
                .collect();
            Ok(Box::new(VecSource {
                schema: schema.clone(),
                batches: mine.into_iter(),
                emitted: 0,
            }) as Box<dyn Source>)
        })
    }
}

#[async_trait::async_trait]
impl Source for VecSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        Ok(match self.batches.next() {
            Some(batch) => {
                self.emitted += 1;
                SourceEvent::Batch { split: 0, batch }
            }
            None => SourceEvent::Finished,
        })
    }

    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        Ok(self.emitted.to_le_bytes().to_vec())
    }

    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        let [(_, bytes)] = state.states.as_slice() else {
            return Err(FungiError::State(
                "an in-memory source cannot change its parallelism on restore".into(),
            ));
        };
        let emitted = bytes
            .as_slice()
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| FungiError::State("bad in-memory source position".into()))?;
        for _ in 0..emitted {
            self.batches.next();
        }
        self.emitted = emitted;
        Ok(())
    }
}
