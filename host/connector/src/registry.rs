//! Connectors by name: how a `WITH (connector = '...')` clause or a job file becomes a
//! source or sink.

use arrow::datatypes::SchemaRef;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::source::SourceFactory;

use crate::blackhole::BlackholeSink;
use crate::datagen::DatagenSource;
use crate::file::{FileSink, FileSource};
use crate::kafka::{KafkaSink, KafkaSource};
use crate::nexmark::NexmarkSource;
use crate::options::Options;
use crate::print::PrintSink;

/// Names of the source connectors.
pub const SOURCES: &[&str] = &["datagen", "nexmark", "filesystem", "kafka"];
/// Names of the sink connectors.
pub const SINKS: &[&str] = &[
    "filesystem",
    "kafka",
    "http",
    "stdout",
    "print",
    "blackhole",
];

/// Whether the sink connector can apply a changelog (updates and deletes), not only
/// inserts.
pub fn accepts_updates(connector: &str) -> bool {
    crate::descriptor::descriptor(connector).is_some_and(|c| c.accepts_updates)
}

/// Builds a source. `schema` is the declared schema; the Nexmark connector brings its own
/// and ignores it. Returns the factory and the schema of the produced rows.
pub fn source(
    connector: &str,
    schema: Option<SchemaRef>,
    options: &Options,
) -> Result<(SourceFactory, SchemaRef)> {
    let declared = || {
        schema.clone().ok_or_else(|| {
            FungiError::Config(format!(
                "connector '{connector}' needs the table's columns to be declared"
            ))
        })
    };
    if connector != "kafka" {
        options.refuse_metadata()?;
    }
    match connector {
        "nexmark" => NexmarkSource::factory(options),
        "datagen" => Ok((DatagenSource::factory(declared()?, options)?, declared()?)),
        "filesystem" | "file" => Ok((FileSource::factory(declared()?, options)?, declared()?)),
        "kafka" => Ok((KafkaSource::factory(declared()?, options)?, declared()?)),
        other => Err(unknown(other, SOURCES, "source")),
    }
}

/// Builds a sink.
pub fn sink(connector: &str, options: &Options) -> Result<OperatorFactory> {
    if connector != "kafka" {
        options.refuse_metadata()?;
    }
    match connector {
        "blackhole" => {
            options.check_all_used(&[])?;
            Ok(BlackholeSink::factory())
        }
        "stdout" | "print" => PrintSink::factory(options),
        "filesystem" | "file" => FileSink::factory(options),
        "kafka" => KafkaSink::factory(options),
        "http" => crate::http::HttpSink::factory(options),
        other => Err(unknown(other, SINKS, "sink")),
    }
}

/// The durable dead-letter targets of a job: a JSON-lines file at `path`, and a Kafka
/// topic when both `kafka_servers` and `kafka_topic` are given (one of them alone is an
/// error). A confined tenant's Kafka target reaches only the brokers of `egress`.
pub fn dead_letter_targets(
    path: Option<&std::path::Path>,
    kafka_servers: Option<&str>,
    kafka_topic: Option<&str>,
    egress: Option<&crate::egress::Egress>,
) -> Result<Vec<std::sync::Arc<dyn fungi_execution::dead_letter::DeadLetterTarget>>> {
    let mut targets: Vec<std::sync::Arc<dyn fungi_execution::dead_letter::DeadLetterTarget>> =
        Vec::new();
    if let Some(path) = path {
        targets.push(std::sync::Arc::new(
            fungi_execution::dead_letter::FileTarget::new(path),
        ));
    }
    match (kafka_servers, kafka_topic) {
        (Some(servers), Some(topic)) => targets.push(std::sync::Arc::new(
            crate::kafka::KafkaTarget::new(servers, topic, egress.cloned())?,
        )),
        (None, None) => {}
        _ => {
            return Err(FungiError::Config(
                "dead letters to Kafka need both bootstrap servers and a topic".into(),
            ));
        }
    }
    Ok(targets)
}

fn unknown(name: &str, known: &[&str], what: &str) -> FungiError {
    FungiError::Config(format!(
        "unknown {what} connector '{name}'; available: {}",
        known.join(", "),
    ))
}
