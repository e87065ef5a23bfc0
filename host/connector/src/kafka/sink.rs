//! Writing to a Kafka topic, one message per row.
//!
//! Rows are encoded a batch at a time (one buffer per batch) and handed to librdkafka,
//! which batches them into produce requests. `at-least-once` (the default) waits on each
//! checkpoint barrier until every message sent so far is acknowledged, so a checkpoint
//! never completes ahead of its output; after a failure the replay may write some
//! messages again. `none` does not wait. `exactly-once` needs Kafka transactions: see
//! [`DeliveryGuarantee::ExactlyOnce`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use fungi_common::ids::CheckpointId;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::{Operator, OperatorContext, Output};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::Connection;
use super::metadata::SinkMetadata;
use crate::format::{RecordFormat, encode_rows};
use crate::options::Options;

/// Options understood by [`KafkaSink::factory`] (besides `properties.*`).
pub const KAFKA_SINK_OPTIONS: &[&str] = &[
    "topic",
    "properties.*",
    "format",
    "csv.field-delimiter",
    "sink.delivery-guarantee",
    "sink.partitioner",
    "key.fields",
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
    /// Transactions committed when the checkpoint completes. Not offered yet: it needs
    /// a transactional producer that can commit, after a restart, a transaction an
    /// earlier process pre-committed (Flink resumes it through the Java client's
    /// internals; librdkafka has no such call), and the tests need a broker that
    /// serves transactions.
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
    next_partition: usize,
}

impl KafkaSink {
    /// A factory writing to the topic configured by `options`.
    pub fn factory(options: &Options) -> Result<OperatorFactory> {
        let connection = Connection::from_options(options)?;
        let format = RecordFormat::from_options("kafka", options)?;
        let guarantee = match options
            .get("sink.delivery-guarantee")
            .unwrap_or("at-least-once")
        {
            "none" => DeliveryGuarantee::None,
            "at-least-once" => DeliveryGuarantee::AtLeastOnce,
            "exactly-once" => {
                return Err(FungiError::Config(
                    "connector 'kafka', option 'sink.delivery-guarantee': 'exactly-once' \
                     (Kafka transactions) is not available yet; use 'at-least-once', or a \
                     filesystem sink for exactly-once output"
                        .into(),
                ));
            }
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
        options.accept(super::KAFKA_SOURCE_OPTIONS);
        options.check_all_used(KAFKA_SINK_OPTIONS)?;
        Ok(Arc::new(move |s| {
            Ok(Box::new(KafkaSink {
                connection: connection.clone(),
                format,
                guarantee,
                partitioner,
                key_field: key_field.clone(),
                metadata: metadata.clone(),
                subtask: s.index,
                producer: None,
                partitions: Vec::new(),
                next_partition: 0,
            }) as Box<dyn Operator>)
        }))
    }

    fn producer(&self) -> &BaseProducer<Deliveries> {
        self.producer.as_ref().expect("opened")
    }

    /// Fails with the first delivery error librdkafka reported.
    fn check_deliveries(&self) -> Result<()> {
        let failed = self
            .producer()
            .context()
            .failed
            .lock()
            .expect("delivery lock");
        match &*failed {
            Some(e) => Err(self.connection.error("a message was not delivered", e)),
            None => Ok(()),
        }
    }

    /// Waits until every message sent so far is acknowledged.
    fn flush(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.producer().flush(FLUSH_TIMEOUT)).map_err(|e| {
            self.connection
                .error("messages not acknowledged in time", e)
        })?;
        self.check_deliveries()
    }
}

impl Operator for KafkaSink {
    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        let acks = match self.guarantee {
            DeliveryGuarantee::None => "1",
            _ => "all",
        };
        let producer: BaseProducer<Deliveries> = self
            .connection
            .client_config(&[("acks", acks), ("linger.ms", "5")])
            .create_with_context(Deliveries::default())
            .map_err(|e| self.connection.error("cannot create a producer", e))?;
        self.connection.check_cluster(producer.client())?;
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
        let (buf, ends) = encode_rows(&self.metadata.payload(&batch)?, self.format)?;
        let row_metadata = self.metadata.rows(&batch)?;
        let keys: Option<StringArray> = match &self.key_field {
            Some(name) => {
                let column = batch.column_by_name(name).ok_or_else(|| {
                    FungiError::Config(format!(
                        "connector 'kafka', option 'key.fields': no column '{name}'"
                    ))
                })?;
                let strings = arrow::compute::cast(column, &DataType::Utf8)?;
                Some(
                    strings
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to strings")
                        .clone(),
                )
            }
            None => None,
        };
        let topic = self.connection.topic.clone();
        let mut start = 0;
        for (row, &end) in ends.iter().enumerate() {
            let mut record: BaseRecord<'_, str, [u8]> =
                BaseRecord::to(&topic).payload(&buf[start..end]);
            start = end;
            if let Some(keys) = &keys
                && keys.is_valid(row)
            {
                record = record.key(keys.value(row));
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
                    record = record.partition(self.partitions[self.next_partition]);
                    self.next_partition = (self.next_partition + 1) % self.partitions.len();
                }
            }
            loop {
                match self.producer().send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's queue is full: serve acknowledgements, then retry.
                        record = r;
                        tokio::task::block_in_place(|| {
                            self.producer().poll(Duration::from_millis(50))
                        });
                        self.check_deliveries()?;
                    }
                    Err((e, _)) => return Err(self.connection.error("cannot send", e)),
                }
            }
        }
        self.producer().poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        self.flush()
    }

    fn snapshot_state(
        &mut self,
        _checkpoint: CheckpointId,
        _out: &mut Output,
    ) -> Result<Option<Vec<u8>>> {
        if self.guarantee == DeliveryGuarantee::AtLeastOnce {
            self.flush()?;
        }
        Ok(None)
    }
}
