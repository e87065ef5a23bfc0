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
mod sink;
mod source;

use std::collections::BTreeMap;

use fungi_common::{FungiError, Result};
use rdkafka::ClientConfig;

pub use dead_letter::KafkaTarget;
pub use sink::{DeliveryGuarantee, KAFKA_SINK_OPTIONS, KafkaSink};
pub use source::{KAFKA_SOURCE_OPTIONS, KafkaSource, StartupMode};

use crate::options::Options;

/// How long metadata and offset lookups may take before the job fails naming the broker.
const METADATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The connection settings shared by the source and the sink.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The topic.
    pub(crate) topic: String,
    /// librdkafka properties (`bootstrap.servers`, ...).
    pub(crate) properties: BTreeMap<String, String>,
}

impl Connection {
    pub(crate) fn from_options(options: &Options) -> Result<Self> {
        let topic = options.require("topic")?.to_string();
        if topic.contains(',') || topic.contains(';') {
            return Err(FungiError::Config(format!(
                "connector 'kafka', option 'topic': one topic per table, not '{topic}'"
            )));
        }
        let properties = options.with_prefix("properties.");
        if !properties.contains_key("bootstrap.servers") {
            return Err(FungiError::Config(
                "connector 'kafka', option 'properties.bootstrap.servers' is required".into(),
            ));
        }
        Ok(Connection { topic, properties })
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
