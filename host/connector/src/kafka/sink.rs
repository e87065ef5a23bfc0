//! Writing to a Kafka topic, one message per row.
//!
//! Rows are encoded a batch at a time (one buffer per batch) and handed to librdkafka,
//! which batches them into produce requests. `at-least-once` (the default) waits on each
//! checkpoint barrier until every message sent so far is acknowledged, so a checkpoint
//! never completes ahead of its output; after a failure the replay may write some
//! messages again. `none` does not wait. `exactly-once` writes each checkpoint's
//! records in a Kafka transaction committed when the checkpoint completes (see
//! [`super::transaction`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Int8Type};
use fungi_common::changelog::{OP_COLUMN, RowKind};
use fungi_common::ids::CheckpointId;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, OperatorContext, Output, RestoredState};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::Connection;
use super::metadata::SinkMetadata;
use super::transaction::{self, PendingTransaction, Phase, TRANSACTION_TIMEOUT};
use crate::format::{EncodedRows, RecordFormat, encode_rows};
use crate::options::Options;

/// Options understood by [`KafkaSink::factory`] (besides `properties.*`).
pub const KAFKA_SINK_OPTIONS: &[&str] = &[
    "topic",
    "properties.*",
    "format",
    "csv.field-delimiter",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
    "sink.partitioner",
    "key.fields",
];

/// What a producer that cannot start transactions is told.
const START_FAILED: &str = "cannot start transactions (is the broker's transaction \
     coordinator available, and properties.transaction.timeout.ms within its \
     transaction.max.timeout.ms?)";

/// Options understood by [`KafkaSink::upsert_factory`] (besides `properties.*`).
pub const UPSERT_KAFKA_OPTIONS: &[&str] = &[
    "topic",
    "properties.*",
    "key.format",
    "value.format",
    "csv.field-delimiter",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
];

/// How long a barrier or the end of input waits for outstanding messages.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What the sink promises about duplicates and losses after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Nothing waited for: messages in flight at a failure may be lost.
    None,
    /// Every message acknowledged before its checkpoint completes; replays may
    /// duplicate.
    AtLeastOnce,
    /// Each checkpoint's records in a Kafka transaction, committed when the
    /// checkpoint completes; after a failure a pre-committed transaction that did not
    /// commit is written again from the checkpoint (see [`super::transaction`]).
    ExactlyOnce,
}

/// Where a row goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partitioner {
    /// librdkafka's: by key hash, or sticky batches without a key.
    Default,
    /// Subtask `i` writes to partition `i % partitions` (Flink's `fixed`).
    Fixed,
    /// One partition after the other, row by row.
    RoundRobin,
}

/// Collects the first delivery failure reported by librdkafka.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().expect("delivery lock");
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A subtask of a Kafka sink.
pub struct KafkaSink {
    connection: Connection,
    format: RecordFormat,
    guarantee: DeliveryGuarantee,
    partitioner: Partitioner,
    key_field: Option<String>,
    metadata: SinkMetadata,
    subtask: u32,
    producer: Option<BaseProducer<Deliveries>>,
    partitions: Vec<i32>,
    /// The partition the next row goes to under `round-robin` (only the subtask's task
    /// touches it; atomic so that sends take `&self`).
    next_partition: AtomicUsize,
    /// The transactional side of an exactly-once sink.
    transactions: Option<Transactions>,
    /// `sink.transactional-id-prefix` (exactly-once only).
    transactional_prefix: Option<String>,
    /// `upsert-kafka`: the input is a changelog written as the latest value per key.
    upsert: Option<Upsert>,
}

/// How an `upsert-kafka` sink keys its records.
#[derive(Debug, Clone)]
struct Upsert {
    /// The `PRIMARY KEY` columns, encoded as the record key.
    key_columns: Vec<String>,
    /// `key.format`.
    key_format: RecordFormat,
}

/// The record keys of a batch's rows.
enum Keys {
    /// `key.fields`: one column's text.
    Text(StringArray),
    /// `upsert-kafka`: the key columns encoded in `key.format`.
    Encoded(EncodedRows),
}

impl Keys {
    /// Row `row`'s key, if it has one.
    fn get(&self, row: usize) -> Option<&[u8]> {
        match self {
            Keys::Text(strings) => strings.is_valid(row).then(|| strings.value(row).as_bytes()),
            Keys::Encoded(rows) => Some(rows.row(row)),
        }
    }
}

/// An exactly-once sink subtask's transaction and what it holds.
struct Transactions {
    /// `<prefix>-<subtask index>`.
    id: String,
    /// The consumer group holding this id's commit marker.
    group: rdkafka::consumer::ConsumerGroupMetadata,
    phase: Phase,
    /// Input batches written in the open transaction: what a checkpoint keeps.
    written: Vec<RecordBatch>,
    /// Input batches that arrived after the pre-commit: sent once it commits.
    held: Vec<RecordBatch>,
}

impl KafkaSink {
    /// A factory writing to the topic configured by `options`.
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        Ok(Self::prototype(options, false)?.factory_of())
    }

    /// A factory for Flink's `upsert-kafka` sink: an updating result written as the
    /// latest value per `PRIMARY KEY` (`+I`/`+U` as key and value, `-D` as a tombstone
    /// with the key, `-U` dropped since the `+U` after it replaces it), keys in
    /// `key.format` and values in `value.format`.
    pub fn upsert_factory(options: &Options) -> Result<OperatorFactory> {
        Ok(Self::prototype(options, true)?.factory_of())
    }

    /// A factory of subtasks configured like `self`.
    fn factory_of(self) -> OperatorFactory {
        Arc::new(move |s| Ok(Box::new(self.subtask(s.index)) as Box<dyn Operator>))
    }

    /// Subtask `index` of a sink configured like `self`.
    fn subtask(&self, index: u32) -> KafkaSink {
        KafkaSink {
            connection: self.connection.clone(),
            format: self.format,
            guarantee: self.guarantee,
            partitioner: self.partitioner,
            key_field: self.key_field.clone(),
            metadata: self.metadata.clone(),
            subtask: index,
            producer: None,
            partitions: Vec::new(),
            next_partition: Default::default(),
            transactions: None,
            transactional_prefix: self.transactional_prefix.clone(),
            upsert: self.upsert.clone(),
        }
    }

    /// The sink `options` configure (`upsert-kafka` when `upsert`), not opened.
    fn prototype(options: &Options, upsert: bool) -> Result<KafkaSink> {
        let connection = Connection::from_options(options)?;
        let (format, upsert) = if upsert {
            let key_columns = options.primary_key().to_vec();
            if key_columns.is_empty() {
                return Err(FungiError::Config(
                    "connector 'upsert-kafka' keys its records by the table's primary key: \
                     declare PRIMARY KEY (column, ...) NOT ENFORCED"
                        .into(),
                ));
            }
            let key_format = RecordFormat::from_option("upsert-kafka", options, "key.format")?;
            let format = RecordFormat::from_option("upsert-kafka", options, "value.format")?;
            (
                format,
                Some(Upsert {
                    key_columns,
                    key_format,
                }),
            )
        } else {
            (RecordFormat::from_options("kafka", options)?, None)
        };
        let formats = [Some(format), upsert.as_ref().map(|u| u.key_format)];
        if formats
            .iter()
            .any(|f| matches!(f, Some(RecordFormat::DebeziumJson { .. })))
        {
            return Err(FungiError::Config(
                "connector 'kafka': format 'debezium-json' is read, not written; write \
                 'json' (an updating result goes to 'upsert-kafka')"
                    .into(),
            ));
        }
        let guarantee = match options
            .get("sink.delivery-guarantee")
            .unwrap_or("at-least-once")
        {
            "none" => DeliveryGuarantee::None,
            "at-least-once" => DeliveryGuarantee::AtLeastOnce,
            "exactly-once" => DeliveryGuarantee::ExactlyOnce,
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'kafka', option 'sink.delivery-guarantee': '{other}' is not \
                     none, at-least-once or exactly-once"
                )));
            }
        };
        let partitioner = match options.get("sink.partitioner").unwrap_or("default") {
            "default" => Partitioner::Default,
            "fixed" => Partitioner::Fixed,
            "round-robin" => Partitioner::RoundRobin,
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'kafka', option 'sink.partitioner': '{other}' is not default, \
                     fixed or round-robin"
                )));
            }
        };
        let transactional_prefix = options
            .get("sink.transactional-id-prefix")
            .map(str::to_string);
        if guarantee == DeliveryGuarantee::ExactlyOnce && transactional_prefix.is_none() {
            return Err(FungiError::Config(
                "connector 'kafka': 'sink.delivery-guarantee' = 'exactly-once' needs \
                 'sink.transactional-id-prefix', a prefix no other job writing to the same \
                 Kafka cluster uses (each sink subtask's transactional id is \
                 '<prefix>-<subtask>')"
                    .into(),
            ));
        }
        if connection.properties.contains_key("transactional.id") {
            return Err(FungiError::Config(
                "connector 'kafka', option 'properties.transactional.id': set \
                 'sink.delivery-guarantee' = 'exactly-once' and \
                 'sink.transactional-id-prefix' instead; the sink names each subtask's \
                 transactions"
                    .into(),
            ));
        }
        let key_field = options.get("key.fields").map(str::to_string);
        if key_field
            .as_deref()
            .is_some_and(|k| k.contains(';') || k.contains(','))
        {
            return Err(FungiError::Config(
                "connector 'kafka', option 'key.fields': one column is supported".into(),
            ));
        }
        let metadata = SinkMetadata::new(options)?;
        if upsert.is_some() {
            options.refuse_metadata()?;
            options.check_all_used(UPSERT_KAFKA_OPTIONS)?;
        } else {
            options.accept(super::KAFKA_SOURCE_OPTIONS);
            options.check_all_used(KAFKA_SINK_OPTIONS)?;
        }
        Ok(KafkaSink {
            connection,
            format,
            guarantee,
            partitioner,
            key_field,
            metadata,
            subtask: 0,
            producer: None,
            partitions: Vec::new(),
            next_partition: Default::default(),
            transactions: None,
            transactional_prefix,
            upsert,
        })
    }

    fn producer(&self) -> &BaseProducer<Deliveries> {
        self.producer.as_ref().expect("opened")
    }

    /// A producer with the sink's settings; transactional under `transactional_id`.
    fn create_producer(&self, transactional_id: Option<&str>) -> Result<BaseProducer<Deliveries>> {
        let acks = match self.guarantee {
            DeliveryGuarantee::None => "1",
            _ => "all",
        };
        let mut config = self
            .connection
            .client_config(&[("acks", acks), ("linger.ms", "5")]);
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        config
            .create_with_context(Deliveries::default())
            .map_err(|e| self.connection.error("cannot create a producer", e))
    }

    /// Fails with the first delivery error librdkafka reported to `producer`.
    fn check_deliveries(&self, producer: &BaseProducer<Deliveries>) -> Result<()> {
        let failed = producer.context().failed.lock().expect("delivery lock");
        match &*failed {
            Some(e) => Err(self.connection.error("a message was not delivered", e)),
            None => Ok(()),
        }
    }

    /// Waits until every message `producer` sent so far is acknowledged.
    fn flush(&self, producer: &BaseProducer<Deliveries>) -> Result<()> {
        tokio::task::block_in_place(|| producer.flush(FLUSH_TIMEOUT)).map_err(|e| {
            self.connection
                .error("messages not acknowledged in time", e)
        })?;
        self.check_deliveries(producer)
    }

    /// The keys of `batch`'s rows: `key.fields`' text, or the encoded primary key.
    fn keys(&self, batch: &RecordBatch) -> Result<Option<Keys>> {
        if let Some(upsert) = &self.upsert {
            let indices = upsert
                .key_columns
                .iter()
                .map(|c| {
                    batch.schema().index_of(c).map_err(|_| {
                        FungiError::Config(format!(
                            "connector 'upsert-kafka': no primary key column '{c}' in the rows"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let rows = encode_rows(&batch.project(&indices)?, upsert.key_format)?;
            return Ok(Some(Keys::Encoded(rows)));
        }
        let Some(name) = &self.key_field else {
            return Ok(None);
        };
        let column = batch.column_by_name(name).ok_or_else(|| {
            FungiError::Config(format!(
                "connector 'kafka', option 'key.fields': no column '{name}'"
            ))
        })?;
        let strings = arrow::compute::cast(column, &DataType::Utf8)?;
        Ok(Some(Keys::Text(
            strings
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to strings")
                .clone(),
        )))
    }

    /// Encodes `batch` (a message per row; for `upsert-kafka` a changelog, whose `-U`
    /// rows are dropped and `-D` rows become tombstones) and hands it to `producer`.
    fn send_batch(&self, producer: &BaseProducer<Deliveries>, batch: &RecordBatch) -> Result<()> {
        // A changelog's change column is not written; it says what each row does.
        let (batch, kinds) = match self.upsert {
            Some(_) => {
                let last = batch.num_columns().saturating_sub(1);
                let is_changelog = batch
                    .schema()
                    .fields()
                    .last()
                    .is_some_and(|f| f.name() == OP_COLUMN);
                if is_changelog {
                    let kinds = batch.column(last).as_primitive::<Int8Type>().clone();
                    (batch.project(&(0..last).collect::<Vec<_>>())?, Some(kinds))
                } else {
                    (batch.clone(), None)
                }
            }
            None => (batch.clone(), None),
        };
        let batch = &batch;
        let encoded = encode_rows(&self.metadata.payload(batch)?, self.format)?;
        let row_metadata = self.metadata.rows(batch)?;
        let keys = self.keys(batch)?;
        let topic = self.connection.topic.clone();
        for (row, payload) in encoded.iter().enumerate() {
            let kind = kinds
                .as_ref()
                .and_then(|k| RowKind::from_code(k.value(row)))
                .unwrap_or(RowKind::Insert);
            let mut record: BaseRecord<'_, [u8], [u8]> = match kind {
                RowKind::UpdateBefore => continue,
                RowKind::Delete => BaseRecord::to(&topic),
                RowKind::Insert | RowKind::UpdateAfter => BaseRecord::to(&topic).payload(payload),
            };
            if let Some(key) = keys.as_ref().and_then(|k| k.get(row)) {
                record = record.key(key);
            }
            if let Some(t) = row_metadata.timestamp(row) {
                record = record.timestamp(t);
            }
            if let Some(headers) = row_metadata.headers(row) {
                record = record.headers(headers);
            }
            match self.partitioner {
                Partitioner::Default => {}
                Partitioner::Fixed => {
                    record = record
                        .partition(self.partitions[self.subtask as usize % self.partitions.len()]);
                }
                Partitioner::RoundRobin => {
                    let next = self.next_partition.load(Ordering::Relaxed);
                    record = record.partition(self.partitions[next]);
                    self.next_partition
                        .store((next + 1) % self.partitions.len(), Ordering::Relaxed);
                }
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's queue is full: serve acknowledgements, then retry.
                        record = r;
                        tokio::task::block_in_place(|| producer.poll(Duration::from_millis(50)));
                        self.check_deliveries(producer)?;
                    }
                    Err((e, _)) => return Err(self.connection.error("cannot send", e)),
                }
            }
        }
        producer.poll(Duration::ZERO);
        self.check_deliveries(producer)
    }

    /// Runs a transactional call of `producer`, naming what failed.
    fn transact(
        &self,
        what: &str,
        call: impl FnOnce() -> rdkafka::error::KafkaResult<()>,
    ) -> Result<()> {
        tokio::task::block_in_place(call).map_err(|e| self.connection.error(what, e))
    }

    /// Sends `batches` in the open transaction of the sink's own producer.
    fn send_in_transaction(&self, batches: &[RecordBatch]) -> Result<()> {
        batches
            .iter()
            .try_for_each(|b| self.send_batch(self.producer(), b))
    }

    /// Writes a pending transaction of checkpoint `checkpoint` again, under
    /// `transactional_id`, unless its marker says it committed.
    fn finish_pending(
        &self,
        transactional_id: &str,
        checkpoint: CheckpointId,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let own = self
            .transactions
            .as_ref()
            .is_some_and(|t| t.id == transactional_id);
        let other = if own {
            None
        } else {
            // An old subtask's id after a change of parallelism: fenced here too.
            let producer = self.create_producer(Some(transactional_id))?;
            self.transact(START_FAILED, || {
                producer.init_transactions(TRANSACTION_TIMEOUT)
            })?;
            Some(producer)
        };
        let producer = other.as_ref().unwrap_or_else(|| self.producer());
        let (consumer, group) = transaction::marker_group(&self.connection, transactional_id)?;
        if transaction::committed_marker(&self.connection, &consumer)?
            >= transaction::marker(checkpoint)
        {
            tracing::info!(transactional_id, %checkpoint, "the pending transaction had committed");
            return Ok(());
        }
        tracing::info!(
            transactional_id,
            %checkpoint,
            batches = batches.len(),
            "writing again the transaction pre-committed at the restored checkpoint"
        );
        self.transact("cannot begin a transaction", || {
            producer.begin_transaction()
        })?;
        for batch in batches {
            self.send_batch(producer, batch)?;
        }
        transaction::send_marker(&self.connection, producer, &group, checkpoint)?;
        self.transact("cannot commit the restored transaction", || {
            producer.commit_transaction(TRANSACTION_TIMEOUT)
        })
    }

    /// Pre-commits the open transaction at `checkpoint`; returns the state to keep.
    fn pre_commit(&mut self, checkpoint: CheckpointId) -> Result<Option<Vec<u8>>> {
        let mut t = self.transactions.take().expect("exactly-once sink opened");
        let result = (|| {
            match t.phase {
                Phase::Idle => return Ok(None),
                Phase::Open => {}
                // The last checkpoint did not complete before this barrier: what came
                // since joins its transaction, which now commits with this one.
                Phase::PreCommitted(_) => {
                    let held = std::mem::take(&mut t.held);
                    self.send_in_transaction(&held)?;
                    t.written.extend(held);
                }
            }
            self.flush(self.producer())?;
            transaction::send_marker(&self.connection, self.producer(), &t.group, checkpoint)?;
            t.phase = Phase::PreCommitted(checkpoint);
            PendingTransaction::encode(&t.id, checkpoint, &t.written).map(Some)
        })();
        self.transactions = Some(t);
        result
    }

    /// Commits the pre-committed transaction if `checkpoint` covers it, then sends what
    /// was held in a new one.
    fn commit(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let mut t = self.transactions.take().expect("exactly-once sink opened");
        let result = (|| {
            let Phase::PreCommitted(at) = t.phase else {
                return Ok(());
            };
            if checkpoint < at {
                return Ok(());
            }
            self.transact("cannot commit the transaction", || {
                self.producer().commit_transaction(TRANSACTION_TIMEOUT)
            })?;
            t.written.clear();
            t.phase = Phase::Idle;
            if !t.held.is_empty() {
                self.transact("cannot begin a transaction", || {
                    self.producer().begin_transaction()
                })?;
                t.phase = Phase::Open;
                let held = std::mem::take(&mut t.held);
                self.send_in_transaction(&held)?;
                t.written = held;
            }
            Ok(())
        })();
        self.transactions = Some(t);
        result
    }
}

impl Drop for KafkaSink {
    /// A job that stops or fails leaves no transaction open: read_committed consumers
    /// would wait for it until the broker's timeout. Whatever it held is in the
    /// checkpoint and written again on restore.
    fn drop(&mut self) {
        if let (Some(t), Some(producer)) = (&self.transactions, &self.producer)
            && t.phase != Phase::Idle
        {
            let _ = producer.abort_transaction(Duration::from_secs(5));
        }
    }
}

impl Operator for KafkaSink {
    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        let transactional_id = match (&self.transactional_prefix, self.guarantee) {
            (Some(prefix), DeliveryGuarantee::ExactlyOnce) => {
                transaction::check_settings(&self.connection, ctx.checkpoint_interval)?;
                Some(format!("{prefix}-{}", self.subtask))
            }
            _ => None,
        };
        let producer = self.create_producer(transactional_id.as_deref())?;
        self.connection.check_cluster(producer.client())?;
        if let Some(id) = transactional_id {
            // Fences every earlier producer of this id and aborts its open transaction.
            self.transact(START_FAILED, || {
                producer.init_transactions(TRANSACTION_TIMEOUT)
            })?;
            let (_, group) = transaction::marker_group(&self.connection, &id)?;
            self.transactions = Some(Transactions {
                id,
                group,
                phase: Phase::Idle,
                written: Vec::new(),
                held: Vec::new(),
            });
        }
        self.producer = Some(producer);
        if self.partitioner != Partitioner::Default {
            self.partitions = self.connection.partitions(self.producer().client())?;
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(mut t) = self.transactions.take() else {
            return self.send_batch(self.producer(), &batch);
        };
        let result = (|| {
            match t.phase {
                Phase::PreCommitted(_) => {
                    t.held.push(batch);
                    return Ok(());
                }
                Phase::Idle => {
                    self.transact("cannot begin a transaction", || {
                        self.producer().begin_transaction()
                    })?;
                    t.phase = Phase::Open;
                }
                Phase::Open => {}
            }
            self.send_in_transaction(std::slice::from_ref(&batch))?;
            t.written.push(batch);
            Ok(())
        })();
        self.transactions = Some(t);
        result
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        match self.guarantee {
            // The final checkpoint pre-commits and commits.
            DeliveryGuarantee::ExactlyOnce => Ok(()),
            _ => self.flush(self.producer()),
        }
    }

    fn snapshot_state(
        &mut self,
        checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        match self.guarantee {
            DeliveryGuarantee::AtLeastOnce => self.flush(self.producer()).map(|_| None),
            DeliveryGuarantee::ExactlyOnce => self.pre_commit(checkpoint),
            DeliveryGuarantee::None => Ok(None),
        }
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        match self.guarantee {
            DeliveryGuarantee::ExactlyOnce => self.commit(checkpoint),
            _ => Ok(()),
        }
    }

    fn restore_state(&mut self, state: &RestoredState) -> Result<()> {
        if self.guarantee != DeliveryGuarantee::ExactlyOnce {
            return Ok(());
        }
        for (_, bytes) in &state.states {
            let (pending, batches) = PendingTransaction::decode(bytes)?;
            self.finish_pending(
                &pending.transactional_id,
                CheckpointId(pending.checkpoint),
                &batches,
            )?;
        }
        Ok(())
    }
}
