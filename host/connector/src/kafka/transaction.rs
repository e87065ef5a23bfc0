//! Exactly-once delivery into Kafka: Kafka transactions tied to checkpoints.
//!
//! Each sink subtask owns one transactional id, `<sink.transactional-id-prefix>-<subtask
//! index>`, stable across restarts. The records of a checkpoint's epoch are written in a
//! transaction; on the checkpoint's barrier the sink flushes them (pre-commit) and puts
//! the epoch's input batches in the checkpoint; when the checkpoint completes, the
//! transaction commits. A read_committed consumer sees the epoch then, or never.
//!
//! librdkafka cannot commit a transaction that another process (the one that crashed)
//! pre-committed, so recovery writes the epoch again instead:
//!
//! 1. Opening a producer with the same transactional id fences the old one (its
//!    epoch is bumped) and aborts its open transaction: a process that was only
//!    paused can no longer commit anything.
//! 2. Every transaction also commits a marker: the offset `checkpoint id` for
//!    partition 0 of the sink's topic in the consumer group named like the
//!    transactional id. The marker becomes visible exactly when the transaction's
//!    records do (Kafka commits offsets sent to a transaction atomically with it).
//! 3. On restore from checkpoint `c`, whose state holds the batches of the
//!    transaction that checkpoint `c` pre-committed: after fencing, if the marker is
//!    at least `c` the transaction committed before the crash and nothing is written;
//!    otherwise it was aborted by the fence, and the batches are written and committed
//!    again in a fresh transaction, with the marker, before any new record.
//!
//! Records that arrive after a pre-commit and before the commit are held and sent once
//! the commit is done, so a transaction never holds records of an epoch whose
//! checkpoint has not been taken. When a checkpoint fails and the next barrier comes
//! first, the held records join the pre-committed transaction, which then covers both
//! epochs and commits with the later checkpoint. A restore at another parallelism hands
//! each new subtask the pending transactions of the old subtasks that map to it, and it
//! fences and finishes them under their own ids.
//!
//! The cost next to at-least-once: the input batches of the open transaction stay in
//! memory and in each checkpoint (one epoch's output, as Arrow IPC), and output becomes
//! visible to read_committed consumers at checkpoint completion. A transaction open
//! longer than `transaction.timeout.ms` is aborted by the broker; the commit then fails,
//! the job restarts from its latest checkpoint and writes the epoch again.

use std::time::Duration;

use arrow::array::RecordBatch;
use fungi_common::ids::CheckpointId;
use fungi_common::{FungiError, Result};
use fungi_streaming::state_codec::{decode_batch, encode_batch};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::Connection;

/// How long a transactional call (init, commit, marker) may take.
pub(super) const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// librdkafka's default `transaction.timeout.ms`.
const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;

/// Where the transaction of a sink subtask stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No transaction begun since the last commit.
    Idle,
    /// A transaction is open and takes records.
    Open,
    /// The transaction was flushed at this checkpoint's barrier and commits when a
    /// checkpoint at least as new completes; new records are held meanwhile.
    PreCommitted(CheckpointId),
}

/// A transaction pre-committed at a checkpoint, as the checkpoint keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PendingTransaction {
    /// The transactional id that wrote it.
    pub(super) transactional_id: String,
    /// The checkpoint whose barrier pre-committed it (its marker).
    pub(super) checkpoint: u64,
    /// The sink's input batches written in it, as Arrow IPC streams.
    pub(super) batches: Vec<Vec<u8>>,
}

impl PendingTransaction {
    /// The state bytes of a transaction pre-committed at `checkpoint` with `batches`.
    pub(super) fn encode(
        transactional_id: &str,
        checkpoint: CheckpointId,
        batches: &[RecordBatch],
    ) -> Result<Vec<u8>> {
        let pending = PendingTransaction {
            transactional_id: transactional_id.to_string(),
            checkpoint: checkpoint.get(),
            batches: batches.iter().map(encode_batch).collect::<Result<_>>()?,
        };
        postcard::to_stdvec(&pending)
            .map_err(|e| FungiError::State(format!("kafka sink transaction: {e}")))
    }

    /// Reads back what [`encode`](Self::encode) wrote.
    pub(super) fn decode(bytes: &[u8]) -> Result<(PendingTransaction, Vec<RecordBatch>)> {
        let pending: PendingTransaction = postcard::from_bytes(bytes).map_err(|e| {
            FungiError::State(format!("bad kafka sink transaction in checkpoint: {e}"))
        })?;
        let batches = pending
            .batches
            .iter()
            .map(|b| decode_batch(b))
            .collect::<Result<_>>()?;
        Ok((pending, batches))
    }
}

/// The marker offset that says the transaction pre-committed at `checkpoint` committed.
pub(super) fn marker(checkpoint: CheckpointId) -> i64 {
    i64::try_from(checkpoint.get()).unwrap_or(i64::MAX)
}

/// The checks an exactly-once sink makes when it opens: checkpoints are on, and a
/// transaction outlives the time between two of them.
pub(super) fn check_settings(
    connection: &Connection,
    checkpoint_interval: Option<Duration>,
) -> Result<()> {
    let Some(interval) = checkpoint_interval else {
        return Err(FungiError::Config(format!(
            "kafka topic '{}': 'sink.delivery-guarantee' = 'exactly-once' commits a \
             transaction when a checkpoint completes, and this job takes none: set \
             'execution.checkpointing.interval' (and a checkpoint directory)",
            connection.topic
        )));
    };
    let timeout_ms = match connection.properties.get("transaction.timeout.ms") {
        Some(v) => v.parse::<u64>().map_err(|_| {
            FungiError::Config(format!(
                "connector 'kafka', option 'properties.transaction.timeout.ms': '{v}' is \
                 not a number of milliseconds"
            ))
        })?,
        None => DEFAULT_TRANSACTION_TIMEOUT_MS,
    };
    if u128::from(timeout_ms) <= interval.as_millis() {
        return Err(FungiError::Config(format!(
            "connector 'kafka', option 'properties.transaction.timeout.ms': {timeout_ms} ms \
             is not longer than the checkpoint interval ({} ms), so the broker would abort \
             every transaction before its checkpoint completes; raise it (up to the \
             broker's transaction.max.timeout.ms, 15 min by default)",
            interval.as_millis()
        )));
    }
    Ok(())
}

/// The consumer group of the transactional id `id`, which holds its commit marker.
pub(super) fn marker_group(
    connection: &Connection,
    id: &str,
) -> Result<(BaseConsumer, ConsumerGroupMetadata)> {
    let consumer: BaseConsumer = connection
        .client_config(&[("group.id", id), ("enable.auto.commit", "false")])
        .create()
        .map_err(|e| connection.error("cannot create the transaction marker's client", e))?;
    let metadata = consumer
        .group_metadata()
        .ok_or_else(|| connection.error("transaction marker", "no consumer group metadata"))?;
    Ok((consumer, metadata))
}

/// The marker committed for the consumer group `consumer` reads, if any.
pub(super) fn committed_marker(connection: &Connection, consumer: &BaseConsumer) -> Result<i64> {
    let mut list = TopicPartitionList::new();
    list.add_partition(&connection.topic, 0);
    let committed = tokio::task::block_in_place(|| {
        super::committed_offsets(consumer, &list, TRANSACTION_TIMEOUT)
    })
    .map_err(|e| connection.error("cannot read the transaction marker", e))?;
    Ok(
        match committed
            .find_partition(&connection.topic, 0)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        },
    )
}

/// Adds the marker of `checkpoint` to the open transaction of `producer`.
pub(super) fn send_marker<C: rdkafka::producer::ProducerContext>(
    connection: &Connection,
    producer: &BaseProducer<C>,
    group: &ConsumerGroupMetadata,
    checkpoint: CheckpointId,
) -> Result<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&connection.topic, 0, Offset::Offset(marker(checkpoint)))
        .map_err(|e| connection.error("transaction marker", e))?;
    tokio::task::block_in_place(|| {
        producer.send_offsets_to_transaction(&list, group, TRANSACTION_TIMEOUT)
    })
    .map_err(|e| connection.error("cannot add the commit marker to the transaction", e))
}
