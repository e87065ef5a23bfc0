//! Routing rows between subtasks: forward, hash by key group, broadcast, rebalance.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use fungi_common::keys::{KeyGroups, hash_columns};
use fungi_common::{FungiError, LatencyMarker, Message, Result};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

use crate::graph::Partitioning;

/// Reusable buffers for [`partition_by_key`].
#[derive(Debug, Default)]
pub struct PartitionScratch {
    hashes: Vec<u64>,
    targets: Vec<Vec<u32>>,
    key_indices: Option<(SchemaRef, Vec<usize>)>,
}

/// Splits `batch` by the subtask (of `parallelism`) that owns each row's key group.
///
/// Vectorized: one hash pass over the key columns, one pass to bucket row indices into
/// reused vectors, one `take` per non-empty target. Returns `(subtask, rows)` pairs.
pub fn partition_by_key(
    batch: &RecordBatch,
    keys: &[String],
    key_groups: KeyGroups,
    parallelism: u32,
    scratch: &mut PartitionScratch,
) -> Result<Vec<(u32, RecordBatch)>> {
    let schema = batch.schema();
    let indices = match &scratch.key_indices {
        Some((s, idx)) if Arc::ptr_eq(s, &schema) || **s == *schema => idx.clone(),
        _ => {
            let idx = keys
                .iter()
                .map(|k| {
                    schema.index_of(k).map_err(|_| {
                        FungiError::Plan(format!(
                            "key column '{k}' is not in the stream's schema {schema}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            scratch.key_indices = Some((schema.clone(), idx.clone()));
            idx
        }
    };
    if parallelism == 1 {
        return Ok(vec![(0, batch.clone())]);
    }
    let columns: Vec<_> = indices.iter().map(|&i| batch.column(i).clone()).collect();
    hash_columns(&columns, &mut scratch.hashes)?;
    scratch.targets.resize_with(parallelism as usize, Vec::new);
    for t in &mut scratch.targets {
        t.clear();
    }
    for (row, &h) in scratch.hashes.iter().enumerate() {
        let target = key_groups.subtask_for_key_group(key_groups.key_group(h), parallelism);
        scratch.targets[target as usize].push(row as u32);
    }
    let mut out = Vec::new();
    for (target, rows) in scratch.targets.iter().enumerate() {
        if rows.is_empty() {
            continue;
        }
        if rows.len() == batch.num_rows() {
            out.push((target as u32, batch.clone()));
        } else {
            let idx = UInt32Array::from(rows.clone());
            out.push((target as u32, take_record_batch(batch, &idx)?));
        }
    }
    Ok(out)
}

/// Sends one producer subtask's output on one edge.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) tag: Option<Arc<str>>,
    partitioning: Partitioning,
    key_groups: KeyGroups,
    senders: Vec<Sender<Message>>,
    /// Whether each sender's consumer runs in another process.
    remote: Vec<bool>,
    my_index: usize,
    next: usize,
    scratch: PartitionScratch,
    /// The producing operator's counters (time waited on full channels).
    metrics: Arc<crate::metrics::OperatorMetrics>,
}

/// The downstream task is gone (it failed or the job was cancelled).
#[derive(Debug)]
pub(crate) struct Disconnected;

impl Router {
    pub(crate) fn new(
        tag: Option<Arc<str>>,
        partitioning: Partitioning,
        key_groups: KeyGroups,
        senders: Vec<(Sender<Message>, bool)>,
        my_index: usize,
        metrics: Arc<crate::metrics::OperatorMetrics>,
    ) -> Self {
        let (senders, remote) = senders.into_iter().unzip();
        Router {
            tag,
            partitioning,
            key_groups,
            senders,
            remote,
            my_index,
            next: my_index,
            scratch: PartitionScratch::default(),
            metrics,
        }
    }

    /// Sends to one consumer; the time spent waiting on its full channel counts as
    /// backpressure.
    async fn send_to(&self, target: usize, msg: Message) -> Result<(), Disconnected> {
        let sender = &self.senders[target];
        match sender.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Disconnected),
            Err(TrySendError::Full(msg)) => {
                let start = std::time::Instant::now();
                let sent = sender.send(msg).await.map_err(|_| Disconnected);
                self.metrics.add_backpressure(start.elapsed());
                sent
            }
        }
    }

    /// Routes a batch. Awaits when the receiving channel is full (backpressure).
    pub(crate) async fn send_batch(
        &mut self,
        batch: RecordBatch,
    ) -> Result<Result<(), Disconnected>> {
        let n = self.senders.len();
        let sent = match &self.partitioning {
            Partitioning::Forward => self.send_to(self.my_index % n, Message::Batch(batch)).await,
            Partitioning::Rebalance => {
                self.next = (self.next + 1) % n;
                self.send_to(self.next, Message::Batch(batch)).await
            }
            Partitioning::Broadcast => self.broadcast(Message::Batch(batch)).await,
            Partitioning::Hash(keys) => {
                let parts =
                    partition_by_key(&batch, keys, self.key_groups, n as u32, &mut self.scratch)?;
                // A share sent to another process is serialised and dropped; if the
                // shares kept here still referenced the batch's view buffers, those
                // buffers would live on (in a join's or window's state) holding the
                // departed rows' bytes too, and every new batch would need fresh pages.
                // Compacting the local shares lets the whole batch go.
                let crosses = parts.iter().any(|(t, _)| self.remote[*t as usize]);
                let mut result = Ok(());
                for (target, part) in parts {
                    let part = if crosses && !self.remote[target as usize] {
                        fungi_common::compact::compact_views(part)?
                    } else {
                        part
                    };
                    result = self.send_to(target as usize, Message::Batch(part)).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
        };
        Ok(sent)
    }

    /// Sends a latency marker to one downstream subtask, a different one each time.
    pub(crate) async fn send_marker(&mut self, marker: LatencyMarker) -> Result<(), Disconnected> {
        self.next = (self.next + 1) % self.senders.len();
        self.send_to(self.next, Message::LatencyMarker(marker))
            .await
    }

    /// Sends a control message to every downstream subtask.
    pub(crate) async fn broadcast(&self, msg: Message) -> Result<(), Disconnected> {
        for s in &self.senders {
            s.send(msg.clone()).await.map_err(|_| Disconnected)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, Int64Array, StringViewArray};
    use tokio::sync::mpsc;

    use crate::metrics::OperatorMetrics;

    /// A batch of `n` keyed rows with a string column long enough to live in buffers.
    fn batch(n: i64) -> RecordBatch {
        let keys = Int64Array::from_iter_values(0..n);
        let strings: StringViewArray = (0..n)
            .map(|i| Some(format!("a string longer than twelve bytes, number {i}")))
            .collect();
        RecordBatch::try_from_iter([
            ("k", Arc::new(keys) as ArrayRef),
            ("s", Arc::new(strings) as ArrayRef),
        ])
        .unwrap()
    }

    /// Bytes held by the data buffers of `batch`'s string column, and the bytes its views
    /// use.
    fn held_and_used(batch: &RecordBatch) -> (usize, usize) {
        let s = batch.column(1).as_string_view();
        let held = s.data_buffers().iter().map(|b| b.len()).sum();
        (held, s.total_buffer_bytes_used())
    }

    async fn route(remote: [bool; 2]) -> Vec<RecordBatch> {
        let (a, mut ra) = mpsc::channel(4);
        let (b, mut rb) = mpsc::channel(4);
        let mut router = Router::new(
            None,
            Partitioning::Hash(vec!["k".into()]),
            KeyGroups::new(128),
            vec![(a, remote[0]), (b, remote[1])],
            0,
            Arc::new(OperatorMetrics::new("test")),
        );
        router.send_batch(batch(1000)).await.unwrap().unwrap();
        drop(router);
        let mut out = Vec::new();
        for rx in [&mut ra, &mut rb] {
            while let Some(Message::Batch(b)) = rx.recv().await {
                out.push(b);
            }
        }
        out
    }

    #[tokio::test]
    async fn local_shares_are_compacted_only_when_another_share_leaves_the_process() {
        // All consumers here: the shares keep sharing the batch's buffers (no copy).
        let shares = route([false, false]).await;
        assert_eq!(shares.len(), 2);
        for share in &shares {
            let (held, used) = held_and_used(share);
            assert!(held > used + used / 2, "held {held}, used {used}");
        }
        // One consumer elsewhere: the share kept here holds only its own bytes, so the
        // whole batch can go once the other share is serialised.
        let shares = route([false, true]).await;
        let (held, used) = held_and_used(&shares[0]);
        assert_eq!(held, used);
        let rows: usize = shares.iter().map(|s| s.num_rows()).sum();
        assert_eq!(rows, 1000);
    }
}
