//! What travels on the edges of a job: data batches and in-band control messages.

use arrow::array::RecordBatch;

/// An event-time watermark, or the news that an input has gone idle.
///
/// A watermark `t` promises that no more records with a timestamp `<= t` will follow on
/// that input. An idle input makes no promise and is left out when an operator takes the
/// minimum over its inputs, so one quiet partition does not stall event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watermark {
    /// Event time in milliseconds since the epoch.
    EventTime(i64),
    /// The input has no data for now; ignore it until it sends again.
    Idle,
}

impl Watermark {
    /// The watermark that closes every window: sent when a bounded input ends.
    pub const MAX: Watermark = Watermark::EventTime(i64::MAX);

    /// The event time, or `None` for [`Watermark::Idle`].
    pub fn time(self) -> Option<i64> {
        match self {
            Watermark::EventTime(t) => Some(t),
            Watermark::Idle => None,
        }
    }
}

/// Identifies a checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointBarrier {
    /// The checkpoint this barrier starts.
    pub id: crate::ids::CheckpointId,
    /// When the coordinator triggered it (ms since the epoch).
    pub timestamp: i64,
}

/// A latency marker, as Flink's: a source sends it right behind a batch, stamped with the
/// wall clock at which that batch left the source, and it travels with the data without
/// being processed; the task at the end of the pipeline records how long it took. It
/// measures the processing and queueing delay of the rows operators pass on (not the time
/// rows wait in windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyMarker {
    /// Wall-clock time the source emitted it, in microseconds since the epoch.
    pub emitted_micros: i64,
}

/// One message on an edge. Control messages are in-band: they are ordered with the data.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of records.
    Batch(RecordBatch),
    /// Event-time progress of the sender.
    Watermark(Watermark),
    /// A checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(CheckpointBarrier),
    /// A latency marker, passed on without processing.
    LatencyMarker(LatencyMarker),
    /// The sender will send nothing more.
    EndOfStream,
}
