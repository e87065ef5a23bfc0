//! Dead letters into a Kafka topic.

use std::time::Duration;

use fungi_common::Result;
use fungi_execution::dead_letter::{DeadLetter, DeadLetterTarget};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::Connection;

/// Writes each dead letter as a JSON record (key: the reason) to a topic, waiting for the
/// broker's acknowledgement (`acks=all`): letters are rare, and each must not be lost.
pub struct KafkaTarget {
    connection: Connection,
    producer: BaseProducer,
    /// For a confined tenant: whether the cluster's advertised brokers are allowed,
    /// checked before the first letter is sent (not while the job is planned).
    cluster_checked: std::sync::OnceLock<std::result::Result<(), String>>,
}

impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KafkaTarget {
    /// A target writing to `topic` on `bootstrap_servers`; a confined tenant's target
    /// reaches only brokers of `egress`.
    pub fn new(
        bootstrap_servers: &str,
        topic: &str,
        egress: Option<crate::egress::Egress>,
    ) -> Result<Self> {
        let connection = Connection::to_brokers(bootstrap_servers, topic, egress)?;
        let producer = connection
            .client_config(&[("acks", "all")])
            .create()
            .map_err(|e| connection.error("cannot create the dead-letter producer", e))?;
        Ok(KafkaTarget {
            connection,
            producer,
            cluster_checked: std::sync::OnceLock::new(),
        })
    }
}

impl DeadLetterTarget for KafkaTarget {
    fn describe(&self) -> String {
        format!(
            "kafka topic '{}' at {}",
            self.connection.topic,
            self.connection
                .properties
                .get("bootstrap.servers")
                .map(String::as_str)
                .unwrap_or("?")
        )
    }

    fn write(&self, letter: &DeadLetter) -> Result<()> {
        self.cluster_checked
            .get_or_init(|| {
                self.connection
                    .check_cluster(self.producer.client())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(fungi_common::FungiError::Connector)?;
        let payload = serde_json::to_vec(letter).expect("a dead letter serializes");
        let record = BaseRecord::to(&self.connection.topic)
            .key(letter.reason.as_str())
            .payload(&payload);
        self.producer
            .send(record)
            .map_err(|(e, _)| self.connection.error("cannot send a dead letter", e))?;
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| self.connection.error("dead letter not acknowledged", e))
    }
}
