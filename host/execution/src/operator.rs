//! The operator trait: how a stateful or stateless step of a job sees its input.

use std::sync::Arc;

use arrow::array::RecordBatch;
use fungi_checkpoint::RestoredState;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{LatencyMarker, Result, Watermark};
use fungi_state::StateBackend;

use crate::dead_letter::DeadLetterQueue;
use crate::metrics::OperatorMetrics;

/// What an operator sends on: main output, side outputs and watermarks, in order.
#[derive(Debug, Default)]
pub struct Output {
    pub(crate) items: Vec<OutputItem>,
}

/// One emitted item.
#[derive(Debug)]
pub(crate) enum OutputItem {
    /// A batch on the main output (`None`) or on the named side output.
    Batch(Option<Arc<str>>, RecordBatch),
    /// Event-time progress.
    Watermark(Watermark),
    /// A latency marker on its way through the chain (never emitted by operators).
    LatencyMarker(LatencyMarker),
    /// A checkpoint barrier leaving the chain (never emitted by operators).
    Barrier(CheckpointId),
}

impl Output {
    /// Emits `batch` on the main output. Empty batches are dropped.
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.items.push(OutputItem::Batch(None, batch));
        }
    }

    /// Emits `batch` on the side output `tag` (e.g. `"late"`).
    pub fn emit_side(&mut self, tag: &Arc<str>, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.items.push(OutputItem::Batch(Some(tag.clone()), batch));
        }
    }

    /// The batches emitted on the main output so far (for testing operators).
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.items.iter().filter_map(|i| match i {
            OutputItem::Batch(None, b) => Some(b),
            _ => None,
        })
    }

    /// Forwards a watermark downstream (after everything emitted before it).
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        self.items.push(OutputItem::Watermark(watermark));
    }
}

/// What an operator is told when it opens.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    /// Job name.
    pub job: String,
    /// Operator name (unique within the job).
    pub operator: String,
    /// Which subtask this instance is.
    pub subtask: SubtaskInfo,
    /// The job's state backend.
    pub state_backend: Arc<dyn StateBackend>,
    /// Counters of this operator (shared by its subtasks).
    pub metrics: Arc<OperatorMetrics>,
    /// The job's dead-letter output.
    pub dead_letters: Arc<DeadLetterQueue>,
    /// Whether the job takes checkpoints: sinks then publish output only when a
    /// checkpoint completes (two-phase commit) instead of when their input ends.
    pub checkpointing: bool,
    /// The time between two checkpoints, when the job takes them (a transactional sink
    /// checks that its transactions outlive it).
    pub checkpoint_interval: Option<std::time::Duration>,
    /// The job's checkpoint directory, where operators may keep files of their own
    /// under `state/` (see `fungi_checkpoint::STATE_DIR`).
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

/// A step of a job that consumes batches and emits batches.
///
/// Lifecycle: the task creates one instance per subtask through the node's factory,
/// calls [`open`](Self::open) once, then, in input order, [`process_batch`] for data,
/// [`process_watermark`] when the minimum watermark over its inputs advances, and
/// [`on_tick`] periodically (processing time). When every input has ended it calls
/// [`finish`](Self::finish) once; nothing is called after that. Operators never see rows
/// one by one: a batch is the unit of work.
///
/// An operator that returns an error fails the job; one that wants to survive bad
/// records sends them to a side output (dead letters) instead.
///
/// [`process_batch`]: Self::process_batch
/// [`process_watermark`]: Self::process_watermark
/// [`on_tick`]: Self::on_tick
pub trait Operator: Send {
    /// Called once before any data.
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one batch.
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// Processes one batch that arrived on input `input` (the position of its edge among
    /// the operator's incoming edges, in the order they were added to the graph).
    /// Operators with one input need not implement it; joins do.
    fn process_batch_from(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<()> {
        let _ = input;
        self.process_batch(batch, out)
    }

    /// Event time advanced to `watermark` (or the inputs went idle). The default
    /// forwards it.
    fn process_watermark(&mut self, watermark: Watermark, out: &mut Output) -> Result<()> {
        out.emit_watermark(watermark);
        Ok(())
    }

    /// Every upstream subtask of input `input` has ended (the other inputs may go on).
    /// Lookup joins use it to learn that their table is loaded.
    fn input_ended(&mut self, input: usize, out: &mut Output) -> Result<()> {
        let _ = (input, out);
        Ok(())
    }

    /// Periodic processing-time callback with the wall clock in ms since the epoch.
    fn on_tick(&mut self, now_ms: i64, out: &mut Output) -> Result<()> {
        let _ = (now_ms, out);
        Ok(())
    }

    /// All inputs ended: flush what is buffered.
    fn finish(&mut self, out: &mut Output) -> Result<()> {
        let _ = out;
        Ok(())
    }

    /// The barrier of checkpoint `checkpoint` reached this operator on every input (or
    /// every input ended and `checkpoint` is [`CheckpointId::FINAL`]): emit whatever must
    /// travel ahead of the barrier, pre-commit pending output, and return the state, or
    /// `None` for an operator without state (the default). An operator that holds state
    /// it cannot save returns an error naming itself, which fails the job rather than
    /// taking a checkpoint that would lose data.
    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        let _ = (checkpoint, out);
        Ok(None)
    }

    /// Called after [`open`](Self::open), before any data, when the job resumes from a
    /// checkpoint that holds state for this operator.
    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        Err(fungi_common::FungiError::State(format!(
            "checkpoint {} holds state for this operator, but it cannot restore state",
            state.checkpoint
        )))
    }

    /// Checkpoint `checkpoint` is complete: publish what was pre-committed for it (and
    /// for earlier ones).
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let _ = checkpoint;
        Ok(())
    }
}

/// The error of an operator that keeps state but cannot take part in checkpoints yet.
pub fn not_checkpointable(what: &str) -> fungi_common::FungiError {
    fungi_common::FungiError::State(format!(
        "{what} keeps state that cannot be checkpointed; run this job without \
         'execution.checkpointing.interval'"
    ))
}

/// Builds one operator instance per subtask.
pub type OperatorFactory = Arc<dyn Fn(&SubtaskInfo) -> Result<Box<dyn Operator>> + Send + Sync>;
