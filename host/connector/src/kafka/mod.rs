//! Apache Kafka source and sink, on librdkafka (`rdkafka`).
//!
//! Options follow Flink's Kafka SQL connector where it has a name for them: `topic`,
//! `properties.bootstrap.servers`, `properties.group.id`, any other `properties.*` passed
//! to librdkafka as it is, `format` (`json`, `csv`, `raw`, `avro`), `scan.startup.mode`
//! (`earliest-offset`, `latest-offset`, `group-offsets`, `timestamp`),
//! `scan.startup.timestamp-millis`, `scan.topic-partition-discovery.interval`,
//! `sink.delivery-guarantee`, `sink.partitioner`, `key.fields`. Metadata columns
//! (`METADATA FROM 'offset'`, `'headers'`, ...) are described in [`metadata`].

mod dead_letter;
mod metadata;
mod properties;
mod sink;
mod source;
mod transaction;
mod upsert;

use std::collections::BTreeMap;

use fungi_common::{FungiError, Result};
use rdkafka::ClientConfig;

pub use dead_letter::KafkaTarget;
pub use properties::{TENANT_PROPERTIES, check_tenant_property};
pub use sink::{DeliveryGuarantee, KAFKA_SINK_OPTIONS, KafkaSink, UPSERT_KAFKA_OPTIONS};
pub use source::{KAFKA_SOURCE_OPTIONS, KafkaSource, StartupMode, UPSERT_KAFKA_SOURCE_OPTIONS};

use crate::options::Options;

/// How long metadata and offset lookups may take before the job fails naming the broker.
const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The connection settings shared by the source and the sink.
/// Whether `e` says the consumer group's coordinator is moving, loading or not elected
/// yet (right after a broker starts, or while it fails over): worth asking again.
pub(crate) fn coordinator_not_ready(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{
        CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator,
    };
    matches!(
        e.rdkafka_error_code(),
        Some(NotCoordinator | CoordinatorNotAvailable | CoordinatorLoadInProgress)
    )
}

/// The offsets `consumer`'s group committed for `list`, asked again while the group's
/// coordinator is not ready, for up to `timeout` in all.
pub(crate) fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    list: &rdkafka::TopicPartitionList,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<rdkafka::TopicPartitionList> {
    use rdkafka::consumer::Consumer;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(list.clone(), left) {
            Err(e) if coordinator_not_ready(&e) && !left.is_zero() => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The topic.
    pub(crate) topic: String,
    /// librdkafka properties (`bootstrap.servers`, ...).
    pub(crate) properties: BTreeMap<String, String>,
    /// For a confined tenant: the only brokers the client may talk to, checked in the
    /// bootstrap list and in every metadata answer before records flow.
    pub(crate) egress: Option<crate::egress::Egress>,
}

impl Connection {
    pub(crate) fn from_options(options: &Options) -> Result<Self> {
        let topic = options.require("topic")?.to_string();
        if topic.contains(',') || topic.contains(';') {
            return Err(FungiError::Config(format!(
                "connector 'kafka', option 'topic': one topic per table, not '{topic}'"
            )));
        }
        let mut properties = options.with_prefix("properties.");
        let Some(servers) = properties.get("bootstrap.servers") else {
            return Err(FungiError::Config(
                "connector 'kafka', option 'properties.bootstrap.servers' is required".into(),
            ));
        };
        let egress = options.egress().cloned();
        if let Some(egress) = &egress {
            egress.check_brokers("connector 'kafka': broker", servers)?;
            for (name, value) in &properties {
                if name != "bootstrap.servers" {
                    check_tenant_property(name, value).map_err(|e| {
                        FungiError::Config(format!(
                            "connector 'kafka', option 'properties.{name}': {e}"
                        ))
                    })?;
                }
            }
            // Connect only to the brokers a request needs (librdkafka's default, made
            // explicit): brokers the metadata names are checked before any is needed.
            properties.insert("enable.sparse.connections".into(), "true".into());
        }
        Ok(Connection {
            topic,
            properties,
            egress,
        })
    }

    /// A connection to `servers` (the dead-letter producer), confined to `egress`.
    pub(crate) fn to_brokers(
        servers: &str,
        topic: &str,
        egress: Option<crate::egress::Egress>,
    ) -> Result<Self> {
        if let Some(egress) = &egress {
            egress.check_brokers("dead letters to Kafka: broker", servers)?;
        }
        Ok(Connection {
            topic: topic.to_string(),
            properties: [("bootstrap.servers".to_string(), servers.to_string())]
                .into_iter()
                .collect(),
            egress,
        })
    }

    /// Refuses a cluster that advertises a broker outside the tenant's egress hosts
    /// (a broker on an allowed host could otherwise point the client anywhere).
    pub(crate) fn check_advertised(&self, metadata: &rdkafka::metadata::Metadata) -> Result<()> {
        let Some(egress) = &self.egress else {
            return Ok(());
        };
        for broker in metadata.brokers() {
            let host = broker.host();
            let address = if host.contains(':') {
                format!("[{host}]:{}", broker.port())
            } else {
                format!("{host}:{}", broker.port())
            };
            egress.check_address("connector 'kafka': the cluster advertises broker", &address)?;
        }
        Ok(())
    }

    /// Fetches the cluster's metadata and checks its brokers (for a confined tenant)
    /// before the client sends or reads any record.
    pub(crate) fn check_cluster<C: rdkafka::client::ClientContext>(
        &self,
        client: &rdkafka::client::Client<C>,
    ) -> Result<()> {
        if self.egress.is_none() {
            return Ok(());
        }
        let metadata = client
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
            .map_err(|e| self.error("cannot read the topic's metadata", e))?;
        self.check_advertised(&metadata)
    }

    /// A client configuration with the user's properties over `defaults`.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// Names the broker and topic in a client error.
    pub(crate) fn error(&self, what: &str, e: impl std::fmt::Display) -> FungiError {
        FungiError::Connector(format!(
            "kafka topic '{}' at {}: {what}: {e}",
            self.topic,
            self.properties
                .get("bootstrap.servers")
                .map(String::as_str)
                .unwrap_or("?")
        ))
    }

    /// The partitions of the topic.
    pub(crate) fn partitions<C: rdkafka::client::ClientContext>(
        &self,
        client: &rdkafka::client::Client<C>,
    ) -> Result<Vec<i32>> {
        let metadata = client
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
            .map_err(|e| self.error("cannot read the topic's metadata", e))?;
        self.check_advertised(&metadata)?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| self.error("metadata", "the broker did not describe the topic"))?;
        if let Some(e) = topic.error() {
            return Err(self.error("the topic is not available", format!("{e:?}")));
        }
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(self.error("the topic is not available", "it has no partitions"));
        }
        Ok(partitions)
    }
}
