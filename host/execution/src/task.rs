//! The loops that run one subtask of a chain: a source task or an operator task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use fungi_checkpoint::{RestoredState, TaskChannels, TaskKey, TaskReport, TaskSnapshot};
use fungi_common::ids::CheckpointId;
use fungi_common::message::CheckpointBarrier;
use fungi_common::time::{now_micros, now_millis, timestamps_millis};
use fungi_common::{FungiError, LatencyMarker, Message, Result, Watermark};
use fungi_streaming::watermark::{SplitWatermarks, WatermarkCombiner};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::gate::InputGate;
use crate::metrics::{LatencyStats, OperatorMetrics};
use crate::operator::{Operator, OperatorContext, Output, OutputItem};
use crate::partition::Router;
use crate::source::{Source, SourceContext, SourceEvent};

/// What is pushed into a chain.
enum Input {
    /// A batch from logical input `usize` (the position of its edge among the
    /// operator's inputs).
    Batch(usize, RecordBatch),
    Watermark(Watermark),
    LatencyMarker(LatencyMarker),
    /// Checkpoint barrier `u64` (aligned on every input).
    Barrier(CheckpointId),
    Tick(i64),
    /// Every channel of logical input `usize` ended (for the head operator only).
    Ended(usize),
    Finish,
}

/// The operators of one chain subtask and the routers of its outgoing edges.
pub(crate) struct ChainRunner {
    ops: Vec<Box<dyn Operator>>,
    contexts: Vec<OperatorContext>,
    outs: Vec<Output>,
    routers: Vec<Router>,
    external: Vec<OutputItem>,
    /// Metrics of whatever feeds the first operator (the source, for source chains).
    head_metrics: Option<Arc<OperatorMetrics>>,
    /// Where latency markers that reach the end of the pipeline are recorded.
    latency: Arc<LatencyStats>,
    /// State to restore into each operator when the chain opens.
    restores: Vec<Option<RestoredState>>,
    /// States collected while a barrier runs through the chain.
    snapshots: Vec<(String, Vec<u8>)>,
    warned_unconsumed: bool,
}

/// A subtask's link to the checkpoint coordinator.
pub(crate) struct TaskCheckpointing {
    pub(crate) key: TaskKey,
    pub(crate) parallelism: u32,
    pub(crate) channels: TaskChannels,
    /// The last checkpoint whose barrier this (source) task injected.
    pub(crate) injected: CheckpointId,
}

impl TaskCheckpointing {
    fn report(&self, checkpoint: CheckpointId, snapshot: TaskSnapshot) {
        let report = if checkpoint.is_final() {
            TaskReport::Finished {
                task: self.key.clone(),
                parallelism: self.parallelism,
                snapshot,
            }
        } else {
            TaskReport::Snapshot {
                checkpoint,
                task: self.key.clone(),
                parallelism: self.parallelism,
                snapshot,
            }
        };
        // The coordinator is gone only when the job is ending anyway.
        let _ = self.channels.reports.send(report);
    }

    /// After the end of input: waits until the final checkpoint is complete, then lets
    /// the chain publish.
    async fn await_final(
        &mut self,
        chain: &mut ChainRunner,
        cancel: &CancellationToken,
    ) -> Result<()> {
        loop {
            if self.channels.completed.borrow_and_update().last {
                return chain.notify_complete(CheckpointId::FINAL);
            }
            tokio::select! {
                changed = self.channels.completed.changed() => {
                    if changed.is_err() && !self.channels.completed.borrow().last {
                        // The coordinator stopped without a final checkpoint: the job was
                        // cancelled or failed elsewhere.
                        return Err(FungiError::Cancelled);
                    }
                }
                _ = cancel.cancelled() => return Err(FungiError::Cancelled),
            }
        }
    }
}

impl ChainRunner {
    pub(crate) fn new(
        ops: Vec<Box<dyn Operator>>,
        contexts: Vec<OperatorContext>,
        routers: Vec<Router>,
        head_metrics: Option<Arc<OperatorMetrics>>,
        latency: Arc<LatencyStats>,
        restores: Vec<Option<RestoredState>>,
    ) -> Self {
        let outs = ops.iter().map(|_| Output::default()).collect();
        ChainRunner {
            ops,
            contexts,
            outs,
            routers,
            external: Vec::new(),
            head_metrics,
            latency,
            restores,
            snapshots: Vec::new(),
            warned_unconsumed: false,
        }
    }

    fn open(&mut self) -> Result<()> {
        let mut restores = std::mem::take(&mut self.restores).into_iter();
        for (op, ctx) in self.ops.iter_mut().zip(&self.contexts) {
            op.open(ctx).map_err(|e| operator_error(&ctx.operator, e))?;
            if let Some(state) = restores.next().flatten() {
                op.restore_state(&state)
                    .map_err(|e| operator_error(&ctx.operator, e))?;
            }
        }
        Ok(())
    }

    /// Runs barrier `id` through the chain: each operator emits what goes ahead of it
    /// and snapshots, in order; the barrier is queued for the routers behind everything
    /// the operators emitted. Returns the operators' states.
    fn checkpoint(&mut self, id: CheckpointId) -> Result<Vec<(String, Vec<u8>)>> {
        self.snapshots.clear();
        if !self.ops.is_empty() {
            self.push(0, Input::Barrier(id))?;
        }
        if !id.is_final() {
            self.external.push(OutputItem::Barrier(id));
        }
        Ok(std::mem::take(&mut self.snapshots))
    }

    /// Tells every operator that checkpoint `id` is complete.
    fn notify_complete(&mut self, id: CheckpointId) -> Result<()> {
        for (op, ctx) in self.ops.iter_mut().zip(&self.contexts) {
            op.notify_checkpoint_complete(id)
                .map_err(|e| operator_error(&ctx.operator, e))?;
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<()> {
        // Markers skip the operators: the chain runs synchronously, so whatever the
        // batches before the marker produced is already queued ahead of it.
        if let Input::LatencyMarker(m) = input {
            self.external.push(OutputItem::LatencyMarker(m));
            return Ok(());
        }
        if self.ops.is_empty() {
            match input {
                Input::Batch(_, b) => self.external.push(OutputItem::Batch(None, b)),
                Input::Watermark(w) => self.external.push(OutputItem::Watermark(w)),
                Input::Tick(_)
                | Input::Ended(_)
                | Input::Finish
                | Input::LatencyMarker(_)
                | Input::Barrier(_) => {}
            }
            return Ok(());
        }
        if let Input::Batch(_, b) = &input {
            self.contexts[0].metrics.add_in(b);
        }
        self.push(0, input)
    }

    fn push(&mut self, i: usize, input: Input) -> Result<()> {
        let last = i + 1 == self.ops.len();
        let mut out = std::mem::take(&mut self.outs[i]);
        let finish = matches!(input, Input::Finish);
        let barrier = match input {
            Input::Barrier(id) => Some(id),
            _ => None,
        };
        let result = match input {
            Input::Batch(from, b) => self.ops[i].process_batch_from(from, b, &mut out),
            Input::Watermark(w) => self.ops[i].process_watermark(w, &mut out),
            Input::LatencyMarker(_) => Ok(()),
            Input::Barrier(id) => match self.ops[i].snapshot_state(id, &mut out) {
                Ok(Some(state)) => {
                    self.snapshots
                        .push((self.contexts[i].operator.clone(), state));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Input::Tick(now) => self.ops[i].on_tick(now, &mut out),
            Input::Ended(n) => self.ops[i].input_ended(n, &mut out),
            Input::Finish => self.ops[i].finish(&mut out),
        };
        result.map_err(|e| operator_error(&self.contexts[i].operator, e))?;
        let metrics = self.contexts[i].metrics.clone();
        for item in out.items.drain(..) {
            match item {
                OutputItem::Batch(None, b) => {
                    metrics.add_out(&b);
                    if last {
                        self.external.push(OutputItem::Batch(None, b));
                    } else {
                        self.contexts[i + 1].metrics.add_in(&b);
                        self.push(i + 1, Input::Batch(0, b))?;
                    }
                }
                OutputItem::Batch(Some(tag), b) => {
                    metrics
                        .records_side
                        .fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                    if last {
                        self.external.push(OutputItem::Batch(Some(tag), b));
                    } else {
                        self.unconsumed(&tag);
                    }
                }
                OutputItem::LatencyMarker(m) => self.external.push(OutputItem::LatencyMarker(m)),
                OutputItem::Barrier(id) => self.external.push(OutputItem::Barrier(id)),
                OutputItem::Watermark(w) => {
                    if let Watermark::EventTime(t) = w {
                        metrics.watermark.store(t, Ordering::Relaxed);
                    }
                    if last {
                        self.external.push(OutputItem::Watermark(w));
                    } else {
                        self.push(i + 1, Input::Watermark(w))?;
                    }
                }
            }
        }
        self.outs[i] = out;
        if finish && !last {
            self.push(i + 1, Input::Finish)?;
        }
        if let Some(id) = barrier
            && !last
        {
            self.push(i + 1, Input::Barrier(id))?;
        }
        Ok(())
    }

    fn unconsumed(&mut self, tag: &str) {
        if !self.warned_unconsumed {
            self.warned_unconsumed = true;
            warn!(
                side_output = tag,
                "rows emitted to a side output nobody consumes; they are counted in records_side"
            );
        }
    }

    /// Sends what the chain produced. `Err(Cancelled)` if a downstream task is gone.
    async fn flush(&mut self) -> Result<()> {
        let mut items = std::mem::take(&mut self.external);
        for item in items.drain(..) {
            match item {
                OutputItem::Batch(tag, batch) => {
                    let mut consumed = false;
                    for r in self.routers.iter_mut().filter(|r| r.tag == tag) {
                        consumed = true;
                        r.send_batch(batch.clone())
                            .await?
                            .map_err(|_| FungiError::Cancelled)?;
                    }
                    if !consumed && let Some(tag) = tag {
                        self.unconsumed(&tag);
                    }
                }
                OutputItem::Barrier(id) => {
                    let barrier = CheckpointBarrier {
                        id,
                        timestamp: now_millis(),
                    };
                    for r in &self.routers {
                        r.broadcast(Message::Barrier(barrier))
                            .await
                            .map_err(|_| FungiError::Cancelled)?;
                    }
                }
                OutputItem::LatencyMarker(m) => match self.routers.first_mut() {
                    Some(r) => r.send_marker(m).await.map_err(|_| FungiError::Cancelled)?,
                    None => {
                        let micros = now_micros().saturating_sub(m.emitted_micros);
                        self.latency.record(micros.max(0) as u64);
                    }
                },
                OutputItem::Watermark(w) => {
                    if let (Watermark::EventTime(t), Some(m)) = (w, &self.head_metrics)
                        && self.ops.is_empty()
                    {
                        m.watermark.store(t, Ordering::Relaxed);
                    }
                    for r in &self.routers {
                        r.broadcast(Message::Watermark(w))
                            .await
                            .map_err(|_| FungiError::Cancelled)?;
                    }
                }
            }
        }
        self.external = items;
        Ok(())
    }

    /// Every input ended: finishes the operators, hands their end state to the final
    /// checkpoint (with the source's end position, for a source chain), tells the
    /// downstream tasks, and with checkpoints on waits for the final checkpoint so that
    /// sinks publish only once it is written.
    async fn end_of_stream(
        &mut self,
        checkpointing: Option<&mut TaskCheckpointing>,
        source_position: Option<Vec<u8>>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.input(Input::Finish)?;
        if let Some(c) = &checkpointing {
            let operators = self.checkpoint(CheckpointId::FINAL)?;
            c.report(
                CheckpointId::FINAL,
                TaskSnapshot {
                    source: source_position,
                    operators,
                },
            );
        }
        self.flush().await?;
        for r in &self.routers {
            r.broadcast(Message::EndOfStream)
                .await
                .map_err(|_| FungiError::Cancelled)?;
        }
        match checkpointing {
            Some(c) => c.await_final(self, cancel).await,
            None => Ok(()),
        }
    }
}

fn operator_error(operator: &str, e: FungiError) -> FungiError {
    match e {
        FungiError::Operator { .. } | FungiError::Cancelled | FungiError::Decode { .. } => e,
        other => FungiError::Operator {
            operator: operator.to_string(),
            message: other.to_string(),
        },
    }
}

/// Runs a source subtask and the operators chained to it.
pub(crate) struct SourceTask {
    pub(crate) name: String,
    pub(crate) source: Box<dyn Source>,
    pub(crate) context: SourceContext,
    pub(crate) watermarks: Option<SplitWatermarks>,
    pub(crate) chain: ChainRunner,
    pub(crate) cancel: CancellationToken,
    pub(crate) tick: Duration,
    /// How often to emit a latency marker, if at all.
    pub(crate) latency_interval: Option<Duration>,
    /// The link to the checkpoint coordinator, when the job checkpoints.
    pub(crate) checkpointing: Option<TaskCheckpointing>,
}

impl SourceTask {
    pub(crate) async fn run(mut self) -> Result<()> {
        let splits = self
            .source
            .open(&self.context)
            .map_err(|e| operator_error(&self.name, e))?;
        let start = Instant::now();
        if let Some(w) = &mut self.watermarks {
            for s in splits {
                w.add_split(s, start);
            }
        }
        self.chain.open()?;
        let ts_column = self
            .watermarks
            .as_ref()
            .map(|w| w.strategy().timestamp_column.clone());
        let mut last_tick = start;
        let mut last_marker = start;
        loop {
            if self.cancel.is_cancelled() {
                return Err(FungiError::Cancelled);
            }
            self.inject_barrier()?;
            let event = self
                .source
                .next()
                .await
                .map_err(|e| operator_error(&self.name, e))?;
            let now = Instant::now();
            // A marker carries the time the batch before it left the source, so that it
            // measures what that batch's rows go through, in this task and after.
            let emitted_micros = self.latency_interval.map(|_| now_micros());
            match event {
                SourceEvent::Batch { split, batch } => {
                    self.context.metrics.add_out(&batch);
                    if let (Some(w), Some(col)) = (&mut self.watermarks, &ts_column) {
                        let index = batch.schema().index_of(col).map_err(|_| {
                            FungiError::Plan(format!(
                                "source '{}' has no timestamp column '{col}'; its columns are: {}",
                                self.name,
                                batch
                                    .schema()
                                    .fields()
                                    .iter()
                                    .map(|f| f.name().as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?;
                        let ts = timestamps_millis(batch.column(index), col)?;
                        // Rows behind the watermark of the rows before them get that
                        // watermark first (per-record watermarks, whatever the batching).
                        let mut from = 0;
                        for to in w.cuts(split, &ts) {
                            w.observe(split, &ts.slice(from, to - from), now);
                            self.chain
                                .input(Input::Batch(0, batch.slice(from, to - from)))?;
                            if let Some(wm) = w.poll(now) {
                                self.chain.input(Input::Watermark(wm))?;
                            }
                            from = to;
                        }
                        let rest = batch.num_rows() - from;
                        w.observe(split, &ts.slice(from, rest), now);
                        self.chain.input(Input::Batch(0, batch.slice(from, rest)))?;
                    } else {
                        self.chain.input(Input::Batch(0, batch))?;
                    }
                }
                SourceEvent::Pending(wait) => {
                    let trigger = self.checkpointing.as_mut().map(|c| &mut c.channels.trigger);
                    tokio::select! {
                        _ = tokio::time::sleep(wait.min(self.tick)) => {}
                        _ = self.cancel.cancelled() => return Err(FungiError::Cancelled),
                        // A checkpoint need not wait for the next batch.
                        _ = async { match trigger {
                            Some(t) => if t.changed().await.is_err() {
                                std::future::pending::<()>().await
                            },
                            None => std::future::pending().await,
                        } } => {}
                    }
                }
                SourceEvent::Finished => break,
            }
            if let Some(w) = &mut self.watermarks
                && let Some(wm) = w.poll(Instant::now())
            {
                self.chain.input(Input::Watermark(wm))?;
            }
            if now.duration_since(last_tick) >= self.tick {
                last_tick = now;
                self.chain.input(Input::Tick(now_millis()))?;
            }
            if let (Some(every), Some(emitted_micros)) = (self.latency_interval, emitted_micros)
                && now.duration_since(last_marker) >= every
            {
                last_marker = now;
                self.chain
                    .input(Input::LatencyMarker(LatencyMarker { emitted_micros }))?;
            }
            self.chain.flush().await?;
            // A source that always has a batch ready never waits: give the worker back
            // after each batch, so that the runtime's other tasks (cancellation,
            // signals, timers, the other subtasks) run even when every worker is busy.
            tokio::task::yield_now().await;
        }
        // A bounded source is exhausted: event time jumps to the end, closing every window.
        self.chain.input(Input::Watermark(Watermark::MAX))?;
        let position = match &self.checkpointing {
            Some(_) => Some(
                self.source
                    .snapshot_position(CheckpointId::FINAL)
                    .map_err(|e| operator_error(&self.name, e))?,
            ),
            None => None,
        };
        self.chain
            .end_of_stream(self.checkpointing.as_mut(), position, &self.cancel)
            .await?;
        if self.checkpointing.is_some() {
            self.source
                .notify_checkpoint_complete(CheckpointId::FINAL)
                .map_err(|e| operator_error(&self.name, e))?;
        }
        Ok(())
    }

    /// Injects a barrier if the coordinator triggered a checkpoint, and publishes
    /// completed ones.
    fn inject_barrier(&mut self) -> Result<()> {
        let Some(c) = &mut self.checkpointing else {
            return Ok(());
        };
        if c.channels.completed.has_changed().unwrap_or(false) {
            let done = *c.channels.completed.borrow_and_update();
            self.chain.notify_complete(done.id)?;
            self.source
                .notify_checkpoint_complete(done.id)
                .map_err(|e| operator_error(&self.name, e))?;
        }
        // Compared with the last injected id rather than through `has_changed`: waiting
        // for a trigger while the source is idle marks it seen.
        let id = *c.channels.trigger.borrow();
        if id <= c.injected {
            return Ok(());
        }
        c.injected = id;
        let position = self
            .source
            .snapshot_position(id)
            .map_err(|e| operator_error(&self.name, e))?;
        let operators = self.chain.checkpoint(id)?;
        c.report(
            id,
            TaskSnapshot {
                source: Some(position),
                operators,
            },
        );
        Ok(())
    }
}

/// Runs an operator chain subtask fed by channels.
pub(crate) struct OperatorTask {
    pub(crate) gate: InputGate,
    /// For each channel of the gate, which of the head operator's inputs it feeds.
    pub(crate) logical_inputs: Vec<usize>,
    pub(crate) chain: ChainRunner,
    pub(crate) cancel: CancellationToken,
    pub(crate) tick: Duration,
    /// The link to the checkpoint coordinator, when the job checkpoints.
    pub(crate) checkpointing: Option<TaskCheckpointing>,
}

impl OperatorTask {
    pub(crate) async fn run(mut self) -> Result<()> {
        self.chain.open()?;
        let inputs = self.gate.len();
        let mut combiner = WatermarkCombiner::new(inputs);
        let mut ended = vec![false; inputs];
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The checkpoint whose barrier is being aligned.
        let mut aligning: Option<CheckpointBarrier> = None;
        let mut completions = self
            .checkpointing
            .as_ref()
            .map(|c| c.channels.completed.clone());
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(FungiError::Cancelled),
                changed = async { match completions.as_mut() {
                    Some(c) => c.changed().await.map(|_| *c.borrow_and_update()),
                    None => std::future::pending().await,
                } } => match changed {
                    Ok(done) if !done.last => self.chain.notify_complete(done.id)?,
                    Ok(_) => {}
                    // The coordinator is gone; the final checkpoint is awaited at the end.
                    Err(_) => completions = None,
                },
                msg = self.gate.recv() => match msg {
                    Some((i, Message::Batch(b))) => self.chain.input(Input::Batch(self.logical_inputs[i], b))?,
                    Some((i, Message::Watermark(w))) => {
                        if let Some(c) = combiner.update(i, w) {
                            self.chain.input(Input::Watermark(c))?;
                        }
                    }
                    Some((_, Message::LatencyMarker(m))) => self.chain.input(Input::LatencyMarker(m))?,
                    Some((i, Message::Barrier(b))) => {
                        match aligning {
                            // A newer barrier supersedes one that never completed.
                            Some(a) if b.id > a.id => {
                                self.gate.unblock_all();
                                aligning = Some(b);
                            }
                            Some(a) if b.id < a.id => continue,
                            Some(_) => {}
                            None => aligning = Some(b),
                        }
                        self.gate.block(i);
                        self.try_complete_alignment(&mut aligning, &ended)?;
                    }
                    Some((i, Message::EndOfStream)) => {
                        ended[i] = true;
                        if ended.iter().all(|&e| e) {
                            return self
                                .chain
                                .end_of_stream(self.checkpointing.as_mut(), None, &self.cancel)
                                .await;
                        }
                        // An ended input has nothing left to align.
                        self.try_complete_alignment(&mut aligning, &ended)?;
                        let logical = self.logical_inputs[i];
                        let all_ended = (0..inputs)
                            .filter(|&c| self.logical_inputs[c] == logical)
                            .all(|c| ended[c]);
                        if all_ended {
                            self.chain.input(Input::Ended(logical))?;
                        }
                    }
                    // Every channel closed without an end-of-stream: an upstream task
                    // failed or was cancelled; the job reports that task's error.
                    None => return Err(FungiError::Cancelled),
                },
                _ = ticker.tick() => self.chain.input(Input::Tick(now_millis()))?,
            }
            self.chain.flush().await?;
        }
    }

    /// Snapshots the chain once the barrier being aligned arrived on every input that
    /// has not ended.
    fn try_complete_alignment(
        &mut self,
        aligning: &mut Option<CheckpointBarrier>,
        ended: &[bool],
    ) -> Result<()> {
        let Some(b) = *aligning else {
            return Ok(());
        };
        if !(0..ended.len()).all(|c| ended[c] || self.gate.is_blocked(c)) {
            return Ok(());
        }
        *aligning = None;
        self.gate.unblock_all();
        let operators = self.chain.checkpoint(b.id)?;
        if let Some(c) = &self.checkpointing {
            c.report(
                b.id,
                TaskSnapshot {
                    source: None,
                    operators,
                },
            );
        }
        Ok(())
    }
}
