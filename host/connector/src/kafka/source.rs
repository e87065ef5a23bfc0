//! Reading a Kafka topic.
//!
//! Partitions are the splits: subtask `i` of `p` reads partitions `i, i + p, ...`, so
//! watermarks are tracked per partition downstream. Offsets live in checkpoints (the
//! next offset to read per partition); a restored job resumes from them whatever the
//! consumer group holds. Offsets are committed to the group when a checkpoint
//! completes (not when it is taken), as Flink does, so that lag can be watched with
//! Kafka's tools and `group-offsets` continues after what a completed checkpoint
//! covers. Partitions added to the topic are found by a periodic metadata lookup and
//! read from their beginning.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use fungi_common::ids::{CheckpointId, SubtaskInfo};
use fungi_common::{FungiError, Result};
use fungi_execution::RestoredState;
use fungi_execution::dead_letter::DeadLetterQueue;
use fungi_execution::source::{Source, SourceContext, SourceEvent, SourceFactory};
use fungi_kafka_batch::BatchConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::metadata::{Collector, MetadataColumns};
use super::upsert::{UpsertKeys, UpsertRecord};
use super::{Connection, METADATA_TIMEOUT};
use crate::format::{RecordFormat, decode_lined_records};
use crate::options::Options;
use fungi_reliability::OnFailure;

/// Options understood by [`KafkaSource::factory`] (besides `properties.*`).
pub const KAFKA_SOURCE_OPTIONS: &[&str] = &[
    "topic",
    "properties.*",
    "format",
    "csv.field-delimiter",
    "debezium-json.schema-include",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.topic-partition-discovery.interval",
    "scan.bounded.mode",
    "on-error",
];

/// Options understood by [`KafkaSource::upsert_factory`] (besides `properties.*`).
pub const UPSERT_KAFKA_SOURCE_OPTIONS: &[&str] = &[
    "topic",
    "properties.*",
    "key.format",
    "value.format",
    "csv.field-delimiter",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.topic-partition-discovery.interval",
    "scan.bounded.mode",
    "on-error",
];

/// Where a source starts when no checkpoint says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The first offset of each partition.
    Earliest,
    /// The end of each partition: only records produced after the start.
    Latest,
    /// The consumer group's committed offsets (earliest where there are none).
    GroupOffsets,
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// Records polled from one partition: their payloads in one buffer, each record's
/// (start, end), and their metadata (offsets, and what metadata columns ask for).
#[derive(Default)]
struct Polled {
    /// Every record followed by a newline (and, for upsert sources, its key).
    buf: Vec<u8>,
    records: Vec<(usize, usize)>,
    /// Whether some record holds a newline of its own.
    broken_lines: bool,
    collected: Option<Collector>,
    /// Upsert sources: each record's key in `buf` (start, end), and whether the record
    /// is a tombstone (no value).
    keys: Vec<(usize, usize)>,
    tombstones: Vec<bool>,
}

/// librdkafka's callbacks for the source's consumer: the end of a partition, which a
/// bounded source asks for, is not an error worth a log line. A bounded source also
/// reads librdkafka's statistics for the offset at which each partition last signalled
/// its end: librdkafka sometimes reports an end as a global error without its partition
/// (seen with 2.12.1 against tansu right after an assignment), and the source would
/// otherwise wait for that partition's end forever. When no end is signalled at all
/// (seen after a restore at a partition's end), the high watermark of the last fetch
/// tells that nothing is left to read.
#[derive(Default)]
pub(crate) struct QuietEof {
    topic: String,
    /// Per partition, the offset at which librdkafka last signalled the end.
    eof: std::sync::Mutex<BTreeMap<i32, i64>>,
    /// Per partition, the high watermark of the last fetch response.
    high: std::sync::Mutex<BTreeMap<i32, i64>>,
}

impl rdkafka::ClientContext for QuietEof {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let mut eof = self.eof.lock().unwrap_or_else(|p| p.into_inner());
            let mut high = self.high.lock().unwrap_or_else(|p| p.into_inner());
            for (p, partition) in &topic.partitions {
                if *p >= 0 && partition.eof_offset >= 0 {
                    eof.insert(*p, partition.eof_offset);
                }
                if *p >= 0 && partition.hi_offset >= 0 {
                    high.insert(*p, partition.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {}
            e => tracing::warn!(error = %e, reason, "kafka client error"),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// How many taken checkpoints' positions a source keeps while waiting for their
/// completion; older ones were superseded.
const MAX_UNCOMMITTED: usize = 8;

/// A subtask of a Kafka source.
pub struct KafkaSource {
    schema: SchemaRef,
    metadata: MetadataColumns,
    format: RecordFormat,
    on_error: OnFailure,
    connection: Connection,
    startup: StartupMode,
    discovery: Option<Duration>,
    /// `scan.bounded.mode = 'latest-offset'`: stop once every partition was read to
    /// its end.
    bounded: bool,
    /// Partitions read to their end (bounded sources only).
    ended: std::collections::BTreeSet<i32>,
    subtask: SubtaskInfo,
    /// The consumer, whose partitions' messages are read many at a time.
    consumer: Option<BatchConsumer<QuietEof>>,
    /// Partitions this subtask reads.
    owned: Vec<i32>,
    /// Next offset to read per partition, for every partition that has emitted rows (or
    /// was restored): what checkpoints save.
    positions: BTreeMap<i32, i64>,
    /// The positions of checkpoints taken and not known complete yet: committed to the
    /// consumer group when their checkpoint completes.
    uncommitted: BTreeMap<CheckpointId, BTreeMap<i32, i64>>,
    /// Decoded batches not handed out yet, with the offset after their last record.
    ready: VecDeque<(i32, RecordBatch, i64)>,
    last_discovery: Instant,
    batch_size: usize,
    dead_letters: Option<(Arc<DeadLetterQueue>, String)>,
    /// Reading an upsert topic (`upsert-kafka`): how keys are read.
    upsert: Option<Arc<UpsertKeys>>,
}

/// What a Kafka source is built from, besides the scan options.
struct Setup {
    /// The rows it produces.
    produced: SchemaRef,
    metadata: MetadataColumns,
    /// The value format.
    format: RecordFormat,
    upsert: Option<Arc<UpsertKeys>>,
    /// `scan.startup.mode` when not given.
    default_startup: &'static str,
    /// The options it understands, and those of the sink of the same connector.
    known: &'static [&'static str],
    also: &'static [&'static str],
}

impl KafkaSource {
    /// A factory reading `schema` rows from the topic configured by `options`, and the
    /// schema of what it produces: `schema`, with the change column last when the
    /// format is a changelog (`debezium-json`).
    pub fn factory(schema: SchemaRef, options: &Options) -> Result<(SourceFactory, SchemaRef)> {
        let format = RecordFormat::from_options("kafka", options)?;
        let metadata = MetadataColumns::new(&schema, options)?;
        format.check_schema("kafka", metadata.value_schema())?;
        let produced = match format {
            RecordFormat::DebeziumJson { .. } => {
                if metadata.value_schema().fields().len() != schema.fields().len() {
                    return Err(FungiError::Config(
                        "connector 'kafka': format 'debezium-json' takes no metadata \
                         columns (an update is two rows)"
                            .into(),
                    ));
                }
                crate::format::debezium::changelog_schema(&schema)
            }
            _ => schema.clone(),
        };
        let setup = Setup {
            produced,
            metadata,
            format,
            upsert: None,
            default_startup: "group-offsets",
            known: KAFKA_SOURCE_OPTIONS,
            also: super::KAFKA_SINK_OPTIONS,
        };
        Self::build(setup, options)
    }

    /// A factory reading `schema` rows from an upsert topic (`upsert-kafka`): each
    /// record the new row of its key (the table's PRIMARY KEY), a tombstone its
    /// deletion; produces `schema` (every column but the key's nullable) with the change
    /// column last (`+U` and `-D`), for the planner to normalise by the key. Reads from
    /// the earliest offset unless told otherwise: a compacted topic is the whole table.
    pub fn upsert_factory(
        schema: SchemaRef,
        options: &Options,
    ) -> Result<(SourceFactory, SchemaRef)> {
        let keys = UpsertKeys::from_options(&schema, options)?;
        let format = RecordFormat::from_option("upsert-kafka", options, "value.format")?;
        if matches!(format, RecordFormat::DebeziumJson { .. })
            || matches!(keys.format, RecordFormat::DebeziumJson { .. })
        {
            return Err(FungiError::Config(
                "connector 'upsert-kafka': its records are rows; read change events with \
                 connector 'kafka' and format 'debezium-json'"
                    .into(),
            ));
        }
        format.check_schema("upsert-kafka", &schema)?;
        let setup = Setup {
            produced: super::upsert::upsert_schema(&schema, &keys),
            metadata: MetadataColumns::new(&schema, options)?,
            format,
            upsert: Some(Arc::new(keys)),
            default_startup: "earliest-offset",
            known: UPSERT_KAFKA_SOURCE_OPTIONS,
            also: super::UPSERT_KAFKA_OPTIONS,
        };
        Self::build(setup, options)
    }

    /// The factory of sources `setup` and the scan options describe.
    fn build(setup: Setup, options: &Options) -> Result<(SourceFactory, SchemaRef)> {
        let Setup {
            produced,
            metadata,
            format,
            upsert,
            default_startup,
            known,
            also,
        } = setup;
        let connection = Connection::from_options(options)?;
        let startup = match options.get("scan.startup.mode").unwrap_or(default_startup) {
            "earliest-offset" => StartupMode::Earliest,
            "latest-offset" => StartupMode::Latest,
            "group-offsets" => StartupMode::GroupOffsets,
            "timestamp" => StartupMode::Timestamp(
                options
                    .get_i64("scan.startup.timestamp-millis")?
                    .ok_or_else(|| {
                        FungiError::Config(
                            "connector 'kafka': scan.startup.mode 'timestamp' needs \
                         'scan.startup.timestamp-millis'"
                                .into(),
                        )
                    })?,
            ),
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'kafka', option 'scan.startup.mode': '{other}' is not \
                     earliest-offset, latest-offset, group-offsets or timestamp"
                )));
            }
        };
        let discovery = options
            .get_duration("scan.topic-partition-discovery.interval")?
            .or(Some(Duration::from_secs(10)))
            .filter(|d| !d.is_zero());
        let bounded = match options.get("scan.bounded.mode").unwrap_or("unbounded") {
            "unbounded" => false,
            "latest-offset" => true,
            other => {
                return Err(FungiError::Config(format!(
                    "connector 'kafka', option 'scan.bounded.mode': '{other}' is not \
                     unbounded or latest-offset"
                )));
            }
        };
        let on_error = options.on_error("on-error")?;
        options.accept(also);
        options.check_all_used(known)?;
        let schema = produced.clone();
        let factory: SourceFactory = Arc::new(move |s: &SubtaskInfo| {
            Ok(Box::new(KafkaSource {
                schema: schema.clone(),
                metadata: metadata.clone(),
                format,
                on_error,
                connection: connection.clone(),
                startup,
                discovery: discovery.filter(|_| !bounded),
                bounded,
                ended: Default::default(),
                subtask: *s,
                consumer: None,
                owned: Vec::new(),
                positions: BTreeMap::new(),
                uncommitted: BTreeMap::new(),
                ready: VecDeque::new(),
                last_discovery: Instant::now(),
                batch_size: 8192,
                dead_letters: None,
                upsert: upsert.clone(),
            }) as Box<dyn Source>)
        });
        Ok((factory, produced))
    }

    /// The rows of one partition's polled records, and `(record index, reason)` of each
    /// bad one.
    fn decode(&self, polled: &Polled) -> Result<crate::format::Decoded> {
        let slice = |&(s, e): &(usize, usize)| &polled.buf[s..e];
        match &self.upsert {
            None => Ok(decode_lined_records(
                self.metadata.value_schema(),
                self.format,
                &polled.buf,
                &polled.records,
                !polled.broken_lines,
            )),
            Some(keys) => {
                let records: Vec<UpsertRecord<'_>> = polled
                    .records
                    .iter()
                    .zip(&polled.keys)
                    .zip(&polled.tombstones)
                    .map(|((value, key), &tombstone)| UpsertRecord {
                        key: slice(key),
                        value: (!tombstone).then(|| slice(value)),
                    })
                    .collect();
                super::upsert::decode(&self.schema, self.format, keys, &records)
            }
        }
    }

    fn consumer(&self) -> &BaseConsumer<QuietEof> {
        self.batches().consumer()
    }

    fn batches(&self) -> &BatchConsumer<QuietEof> {
        self.consumer.as_ref().expect("opened")
    }

    /// Sends the messages of `partitions` to the source's batch queue; before they are
    /// assigned, so that none reaches the consumer's own queue.
    fn route(&self, partitions: &[i32]) -> Result<()> {
        for &p in partitions {
            self.batches()
                .route(&self.connection.topic, p)
                .map_err(|e| FungiError::Connector(format!("kafka source: {e}")))?;
        }
        Ok(())
    }

    /// Serves the consumer's own queue: statistics, errors and commit results. No
    /// message of a routed partition arrives there.
    fn serve_events(&self) -> Result<()> {
        // One call serves at most one event and says nothing of whether more are
        // queued; a few calls per batch keep up with them.
        for _ in 0..8 {
            match self.consumer().poll(Duration::ZERO) {
                None => {}
                Some(Ok(message)) => {
                    return Err(FungiError::Internal(format!(
                        "kafka source: a message of partition {} of topic {} came outside \
                         the source's queue",
                        message.partition(),
                        self.connection.topic
                    )));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    return Err(FungiError::Internal(format!(
                        "kafka source: the end of partition {p} of topic {} came outside \
                         the source's queue",
                        self.connection.topic
                    )));
                }
                Some(Err(e)) => return Err(self.connection.error("cannot read", e)),
            }
        }
        Ok(())
    }

    /// The partitions of the topic this subtask owns.
    fn mine(&self, partitions: &[i32]) -> Vec<i32> {
        partitions
            .iter()
            .copied()
            .filter(|p| *p as u32 % self.subtask.parallelism == self.subtask.index)
            .collect()
    }

    /// Where each of `partitions` starts: its checkpointed position, else the startup
    /// mode (`new` partitions found while running start from their beginning).
    fn start_offsets(&self, partitions: &[i32], new: bool) -> Result<TopicPartitionList> {
        let topic = &self.connection.topic;
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            let offset = match (self.positions.get(&p), new, self.startup) {
                (Some(&next), _, _) => Offset::Offset(next),
                (None, true, _) | (None, false, StartupMode::Earliest) => Offset::Beginning,
                (None, false, StartupMode::Latest) => Offset::End,
                (None, false, StartupMode::GroupOffsets) => Offset::Stored,
                (None, false, StartupMode::Timestamp(ms)) => Offset::Offset(ms),
            };
            list.add_partition_offset(topic, p, offset)
                .map_err(|e| self.connection.error("bad partition", e))?;
        }
        if let StartupMode::Timestamp(_) = self.startup
            && !new
        {
            // Offsets of the timestamp for partitions without a checkpointed position.
            let mut by_time = TopicPartitionList::new();
            for &p in partitions
                .iter()
                .filter(|p| !self.positions.contains_key(p))
            {
                let Some(Offset::Offset(ms)) = list.find_partition(topic, p).map(|e| e.offset())
                else {
                    continue;
                };
                by_time
                    .add_partition_offset(topic, p, Offset::Offset(ms))
                    .map_err(|e| self.connection.error("bad partition", e))?;
            }
            if by_time.count() > 0 {
                let found = self
                    .consumer()
                    .offsets_for_times(by_time, METADATA_TIMEOUT)
                    .map_err(|e| self.connection.error("cannot look up offsets by time", e))?;
                for e in found.elements() {
                    // No record at or after the time: the end of the partition.
                    let offset = match e.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    list.set_partition_offset(topic, e.partition(), offset)
                        .map_err(|e| self.connection.error("bad partition", e))?;
                }
            }
        }
        Ok(list)
    }

    /// Turns symbolic start offsets (beginning, end, the group's) into numbers and
    /// records them as the partitions' positions, as Flink's split state does: a
    /// checkpoint then holds a position for every owned partition, including those that
    /// have not delivered a record yet, and a restore never falls back to the group's
    /// offsets or the startup mode.
    fn resolve(&mut self, list: TopicPartitionList) -> Result<TopicPartitionList> {
        let topic = self.connection.topic.clone();
        let committed = if list.elements().iter().any(|e| e.offset() == Offset::Stored) {
            Some(
                tokio::task::block_in_place(|| {
                    super::committed_offsets(self.consumer(), &list, METADATA_TIMEOUT)
                })
                .map_err(|e| self.connection.error("cannot read the group's offsets", e))?,
            )
        } else {
            None
        };
        let mut resolved = TopicPartitionList::new();
        for e in list.elements() {
            let p = e.partition();
            let mut offset = e.offset();
            if offset == Offset::Stored {
                // No committed offset: auto.offset.reset (earliest unless the user set it).
                offset = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(&topic, p))
                    .map(|c| c.offset())
                    .filter(|o| matches!(o, Offset::Offset(_)))
                    .unwrap_or(match self.connection.properties.get("auto.offset.reset") {
                        Some(r) if r == "latest" || r == "largest" => Offset::End,
                        _ => Offset::Beginning,
                    });
            }
            let number = match offset {
                Offset::Offset(o) => o,
                Offset::Beginning | Offset::End => {
                    let (low, high) = self
                        .consumer()
                        .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                        .map_err(|e| {
                            self.connection
                                .error("cannot read the partition's offsets", e)
                        })?;
                    if offset == Offset::Beginning {
                        low
                    } else {
                        high
                    }
                }
                other => {
                    return Err(self.connection.error(
                        "start offset",
                        format!("partition {p}: unexpected {other:?}"),
                    ));
                }
            };
            self.positions.entry(p).or_insert(number);
            resolved
                .add_partition_offset(&topic, p, Offset::Offset(self.positions[&p]))
                .map_err(|e| self.connection.error("bad partition", e))?;
        }
        Ok(resolved)
    }

    /// Adds partitions created since the last look.
    fn discover(&mut self) -> Result<()> {
        self.last_discovery = Instant::now();
        let partitions = self.connection.partitions(self.consumer().client())?;
        let new: Vec<i32> = self
            .mine(&partitions)
            .into_iter()
            .filter(|p| !self.owned.contains(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        tracing::info!(topic = %self.connection.topic, ?new, "new partitions");
        let list = self.start_offsets(&new, true)?;
        self.route(&new)?;
        self.consumer()
            .incremental_assign(&list)
            .map_err(|e| self.connection.error("cannot assign new partitions", e))?;
        self.owned.extend(new);
        Ok(())
    }

    /// Whether a bounded source has read every owned partition to its end.
    fn at_end(&self) -> bool {
        self.bounded && self.ready.is_empty() && self.owned.iter().all(|p| self.ended.contains(p))
    }

    /// Polls up to a batch of records (for at most ~100 ms) and decodes them, one batch
    /// per partition.
    fn fill(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(100);
        // Payloads are copied into one buffer per partition; records are slices of it.
        let mut buffers: BTreeMap<i32, Polled> = BTreeMap::new();
        let mut count = 0;
        self.serve_events()?;
        while count < self.batch_size {
            // The first message is waited for, alone; the rest are taken as queued.
            let (wait, max) = if count == 0 {
                (deadline.saturating_duration_since(Instant::now()), 1)
            } else {
                (Duration::ZERO, self.batch_size - count)
            };
            // Borrows only the consumer field: the loop below updates the others.
            let messages = self.consumer.as_ref().expect("opened").consume(wait, max);
            if messages.is_empty() {
                if count > 0 || Instant::now() >= deadline {
                    break;
                }
                continue;
            }
            for message in messages.iter() {
                match message.error() {
                    None => {}
                    Some(KafkaError::PartitionEOF(p)) => {
                        self.ended.insert(p);
                        continue;
                    }
                    Some(e) => return Err(self.connection.error("cannot read", e)),
                }
                if self.ended.contains(&message.partition()) {
                    // Produced after a bounded source read the partition to its end.
                    continue;
                }
                let polled = buffers.entry(message.partition()).or_default();
                let payload = message.payload().unwrap_or_default();
                let start = polled.buf.len();
                polled.buf.extend_from_slice(payload);
                polled.records.push((start, polled.buf.len()));
                // Records are lined up one per line, for line-based formats to decode in
                // place.
                polled.buf.push(b'\n');
                polled.broken_lines |= memchr::memchr(b'\n', payload).is_some();
                if self.upsert.is_some() {
                    let start = polled.buf.len();
                    polled
                        .buf
                        .extend_from_slice(message.key().unwrap_or_default());
                    polled.keys.push((start, polled.buf.len()));
                    polled.tombstones.push(message.payload().is_none());
                }
                polled
                    .collected
                    .get_or_insert_with(|| self.metadata.collector())
                    .push(&message)?;
                count += 1;
            }
        }
        if self.bounded && count == 0 {
            // Nothing came: partitions whose end librdkafka signalled at the position
            // this source has reached are done, even if the signal itself went astray.
            let context = self.consumer().context();
            let eof = context
                .eof
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let high = context
                .high
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for p in &self.owned {
                let Some(position) = self.positions.get(p) else {
                    continue;
                };
                let at_end = |ends: &BTreeMap<i32, i64>| ends.get(p).is_some_and(|e| position >= e);
                if at_end(&eof) || at_end(&high) {
                    self.ended.insert(*p);
                }
            }
        }
        for (partition, mut polled) in buffers {
            let collected = polled
                .collected
                .take()
                .unwrap_or_else(|| self.metadata.collector());
            let offsets = collected.offsets();
            let (batch, bad) = self.decode(&polled)?;
            // The bytes a dead letter keeps: the value, or a tombstone's key.
            let original = |i: usize| {
                let (s, e) = match polled.tombstones.get(i) {
                    Some(true) => polled.keys[i],
                    _ => polled.records[i],
                };
                &polled.buf[s..e]
            };
            let keep: Option<arrow::array::BooleanArray> = (!bad.is_empty()).then(|| {
                let mut keep = vec![true; polled.records.len()];
                for (i, _) in &bad {
                    keep[*i] = false;
                }
                keep.into_iter().map(Some).collect()
            });
            for (i, reason) in bad {
                let offset = offsets[i];
                let position = format!("{}/{partition}@{offset}", self.connection.topic);
                match (self.on_error, &self.dead_letters) {
                    (OnFailure::DeadLetter, Some((dlq, name))) => {
                        dlq.push(
                            name,
                            "decode",
                            format!(
                                "topic {}, partition {partition}, offset {offset}: {reason}",
                                self.connection.topic
                            ),
                            position,
                            original(i),
                        );
                    }
                    _ => {
                        return Err(FungiError::Decode {
                            source_name: format!(
                                "kafka topic {} partition {partition}",
                                self.connection.topic
                            ),
                            line: offset as u64,
                            reason: format!(
                                "offset {offset}: {reason} (set 'on-error' = 'dead-letter' to go on)"
                            ),
                        });
                    }
                }
            }
            let next = offsets.last().map_or(0, |o| o + 1);
            match batch {
                Some(batch) => {
                    let batch = self.metadata.assemble(
                        batch,
                        &self.connection.topic,
                        partition,
                        collected,
                        keep.as_ref(),
                    )?;
                    self.ready.push_back((partition, batch, next));
                }
                // Every record was bad: the position still moves past them.
                None => {
                    self.positions.insert(partition, next);
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<Vec<u32>> {
        self.batch_size = ctx.batch_size;
        self.dead_letters = Some((ctx.dead_letters.clone(), ctx.name.clone()));
        let group = format!("fungi-{}", ctx.name);
        let consumer: BaseConsumer<QuietEof> = self
            .connection
            .client_config(&[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // librdkafka stops fetching a partition for this long once its local
                // queue is over `queued.min.messages` (100 000); with the default of
                // 1 s a source that drains the queue in a fraction of that sits idle
                // for the rest (a 1 M-record topic took 6 s to read instead of 1.4 s).
                ("fetch.queue.backoff.ms", "20"),
                // A bounded source ends when every partition reported its end, taken
                // from fetch responses (no ListOffsets request per partition at start).
                (
                    "enable.partition.eof",
                    if self.bounded { "true" } else { "false" },
                ),
                (
                    "statistics.interval.ms",
                    if self.bounded { "500" } else { "0" },
                ),
            ])
            .create_with_context(QuietEof {
                topic: self.connection.topic.clone(),
                ..Default::default()
            })
            .map_err(|e| self.connection.error("cannot create a consumer", e))?;
        self.consumer = Some(
            BatchConsumer::new(consumer)
                .map_err(|e| FungiError::Connector(format!("kafka source: {e}")))?,
        );
        let partitions = self.connection.partitions(self.consumer().client())?;
        self.owned = self.mine(&partitions);
        self.positions.retain(|p, _| self.owned.contains(p));
        let list = self.resolve(self.start_offsets(&self.owned, false)?)?;
        self.route(&self.owned)?;
        self.consumer()
            .assign(&list)
            .map_err(|e| self.connection.error("cannot assign partitions", e))?;
        self.last_discovery = Instant::now();
        Ok(self.owned.iter().map(|&p| p as u32).collect())
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        if self.at_end() {
            return Ok(SourceEvent::Finished);
        }
        if self.ready.is_empty() {
            if self
                .discovery
                .is_some_and(|d| self.last_discovery.elapsed() >= d)
            {
                self.discover()?;
            }
            // librdkafka's poll blocks (≤ 100 ms): off the async workers.
            tokio::task::block_in_place(|| self.fill())?;
        }
        match self.ready.pop_front() {
            Some((partition, batch, next)) => {
                self.positions.insert(partition, next);
                Ok(SourceEvent::Batch {
                    split: partition as u32,
                    batch,
                })
            }
            None => Ok(SourceEvent::Pending(Duration::from_millis(10))),
        }
    }

    fn snapshot_position(&mut self, checkpoint: CheckpointId) -> Result<Vec<u8>> {
        let owned: BTreeMap<i32, i64> = self
            .positions
            .iter()
            .filter(|(p, _)| self.owned.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect();
        let bytes = postcard::to_stdvec(&owned).expect("position encoding cannot fail");
        // A checkpoint that never completes is superseded by the next: keep a few.
        while self.uncommitted.len() >= MAX_UNCOMMITTED {
            self.uncommitted.pop_first();
        }
        self.uncommitted.insert(checkpoint, owned);
        Ok(bytes)
    }

    /// Commits the offsets of the newest checkpoint up to `checkpoint` to the consumer
    /// group, so that lag shows in Kafka's tools and a job started without a checkpoint
    /// from `group-offsets` continues after what the completed checkpoint covers.
    /// Recovery itself reads the checkpoint, not the group.
    fn notify_checkpoint_complete(&mut self, checkpoint: CheckpointId) -> Result<()> {
        let newer = if checkpoint.is_final() {
            BTreeMap::new()
        } else {
            self.uncommitted.split_off(&checkpoint.next())
        };
        let mut done = std::mem::replace(&mut self.uncommitted, newer);
        let Some((_, owned)) = done.pop_last() else {
            return Ok(());
        };
        if let Some(consumer) = self.consumer.as_ref().map(BatchConsumer::consumer)
            && !owned.is_empty()
        {
            let mut list = TopicPartitionList::new();
            for (&p, &o) in &owned {
                let _ = list.add_partition_offset(&self.connection.topic, p, Offset::Offset(o));
            }
            // The last commit waits for the broker: the consumer closes after it.
            let mode = if checkpoint.is_final() {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            // Not worth failing the job for: the next completed checkpoint commits again.
            if let Err(e) = consumer.commit(&list, mode) {
                tracing::warn!(error = %e, topic = %self.connection.topic, "offset commit failed");
            }
        }
        Ok(())
    }

    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        // After a change of parallelism every old subtask's positions are here; `open`
        // keeps those of the partitions this subtask owns.
        for (_, bytes) in &state.states {
            let positions: BTreeMap<i32, i64> = postcard::from_bytes(bytes)
                .map_err(|e| FungiError::State(format!("bad kafka source position: {e}")))?;
            self.positions.extend(positions);
        }
        Ok(())
    }
}
