//! The loops that run one subtask of a chain: a source task or an operator task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use fungi_common::time::{now_millis, timestamps_millis};
use fungi_common::{FungiError, Message, Result, Watermark};
use fungi_streaming::watermark::{SplitWatermarks, WatermarkCombiner};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::gate::InputGate;
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output, OutputItem};
use crate::partition::Router;
use crate::source::{Source, SourceContext, SourceEvent};

/// What is pushed into a chain.
enum Input {
    /// A batch from logical input `usize` (the position of its edge among the
    /// operator's inputs).
    Batch(usize, RecordBatch),
    Watermark(Watermark),
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
    warned_unconsumed: bool,
}

impl ChainRunner {
    pub(crate) fn new(
        ops: Vec<Box<dyn Operator>>,
        contexts: Vec<OperatorContext>,
        routers: Vec<Router>,
        head_metrics: Option<Arc<OperatorMetrics>>,
    ) -> Self {
        let outs = ops.iter().map(|_| Output::default()).collect();
        ChainRunner {
            ops,
            contexts,
            outs,
            routers,
            external: Vec::new(),
            head_metrics,
            warned_unconsumed: false,
        }
    }

    fn open(&mut self) -> Result<()> {
        for (op, ctx) in self.ops.iter_mut().zip(&self.contexts) {
            op.open(ctx).map_err(|e| operator_error(&ctx.operator, e))?;
        }
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<()> {
        if self.ops.is_empty() {
            match input {
                Input::Batch(_, b) => self.external.push(OutputItem::Batch(None, b)),
                Input::Watermark(w) => self.external.push(OutputItem::Watermark(w)),
                Input::Tick(_) | Input::Ended(_) | Input::Finish => {}
            }
            return Ok(());
        }
        if let Input::Batch(_, b) = &input {
            self.contexts[0].metrics.add_in(b.num_rows());
        }
        self.push(0, input)
    }

    fn push(&mut self, i: usize, input: Input) -> Result<()> {
        let last = i + 1 == self.ops.len();
        let mut out = std::mem::take(&mut self.outs[i]);
        let finish = matches!(input, Input::Finish);
        let result = match input {
            Input::Batch(from, b) => self.ops[i].process_batch_from(from, b, &mut out),
            Input::Watermark(w) => self.ops[i].process_watermark(w, &mut out),
            Input::Tick(now) => self.ops[i].on_tick(now, &mut out),
            Input::Ended(n) => self.ops[i].input_ended(n, &mut out),
            Input::Finish => self.ops[i].finish(&mut out),
        };
        result.map_err(|e| operator_error(&self.contexts[i].operator, e))?;
        let metrics = self.contexts[i].metrics.clone();
        for item in out.items.drain(..) {
            match item {
                OutputItem::Batch(None, b) => {
                    metrics.add_out(b.num_rows());
                    if last {
                        self.external.push(OutputItem::Batch(None, b));
                    } else {
                        self.contexts[i + 1].metrics.add_in(b.num_rows());
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

    async fn end_of_stream(&mut self) -> Result<()> {
        self.input(Input::Finish)?;
        self.flush().await?;
        for r in &self.routers {
            r.broadcast(Message::EndOfStream)
                .await
                .map_err(|_| FungiError::Cancelled)?;
        }
        Ok(())
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
        loop {
            if self.cancel.is_cancelled() {
                return Err(FungiError::Cancelled);
            }
            let event = self
                .source
                .next()
                .await
                .map_err(|e| operator_error(&self.name, e))?;
            let now = Instant::now();
            match event {
                SourceEvent::Batch { split, batch } => {
                    self.context.metrics.add_out(batch.num_rows());
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
                        w.observe(split, &ts, now);
                    }
                    self.chain.input(Input::Batch(0, batch))?;
                }
                SourceEvent::Pending(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait.min(self.tick)) => {}
                        _ = self.cancel.cancelled() => return Err(FungiError::Cancelled),
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
            self.chain.flush().await?;
        }
        // A bounded source is exhausted: event time jumps to the end, closing every window.
        self.chain.input(Input::Watermark(Watermark::MAX))?;
        self.chain.end_of_stream().await
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
}

impl OperatorTask {
    pub(crate) async fn run(mut self) -> Result<()> {
        self.chain.open()?;
        let inputs = self.gate.len();
        let mut combiner = WatermarkCombiner::new(inputs);
        let mut ended = vec![false; inputs];
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(FungiError::Cancelled),
                msg = self.gate.recv() => match msg {
                    Some((i, Message::Batch(b))) => self.chain.input(Input::Batch(self.logical_inputs[i], b))?,
                    Some((i, Message::Watermark(w))) => {
                        if let Some(c) = combiner.update(i, w) {
                            self.chain.input(Input::Watermark(c))?;
                        }
                    }
                    // Aligned checkpoints arrive with the checkpoint coordinator.
                    Some((_, Message::Barrier(_))) => {}
                    Some((i, Message::EndOfStream)) => {
                        ended[i] = true;
                        if ended.iter().all(|&e| e) {
                            return self.chain.end_of_stream().await;
                        }
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
}
