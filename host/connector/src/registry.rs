//! Connectors by name: how a `WITH (connector = '...')` clause or a job file becomes a
//! source or sink.

use arrow::datatypes::SchemaRef;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::source::SourceFactory;

use crate::descriptor::{CONNECTORS, ConnectorDescriptor, descriptor};
use crate::options::Options;

/// Names of the source connectors.
pub fn sources() -> impl Iterator<Item = &'static str> {
    CONNECTORS
        .iter()
        .filter(|c| c.source.is_some())
        .map(|c| c.name)
}

/// Names of the sink connectors.
pub fn sinks() -> impl Iterator<Item = &'static str> {
    CONNECTORS
        .iter()
        .filter(|c| c.sink.is_some())
        .map(|c| c.name)
}

/// Whether the sink connector can apply a changelog (updates and deletes), not only
/// inserts.
pub fn accepts_updates(connector: &str) -> bool {
    descriptor(connector).is_some_and(|c| c.accepts_updates)
}

/// Whether the source connector's rows are upserts and deletions by the table's primary
/// key, to be normalised into a changelog.
pub fn reads_upserts(connector: &str) -> bool {
    descriptor(connector).is_some_and(|c| c.upserts)
}

/// The connector's descriptor, refusing metadata options where it has no metadata
/// columns.
fn checked(connector: &str, options: &Options) -> Result<Option<&'static ConnectorDescriptor>> {
    let found = descriptor(connector);
    if !found.is_some_and(|c| c.metadata_columns) {
        options.refuse_metadata()?;
    }
    Ok(found)
}

/// Builds a source. `schema` is the declared schema; a connector with a schema of its
/// own (Nexmark) ignores it. Returns the factory and the schema of the produced rows.
pub fn source(
    connector: &str,
    schema: Option<SchemaRef>,
    options: &Options,
) -> Result<(SourceFactory, SchemaRef)> {
    match checked(connector, options)?.and_then(|c| c.source) {
        Some(build) => build(schema, options),
        None => Err(unknown(connector, &sources().collect::<Vec<_>>(), "source")),
    }
}

/// Builds a sink.
pub fn sink(connector: &str, options: &Options) -> Result<OperatorFactory> {
    match checked(connector, options)?.and_then(|c| c.sink) {
        Some(build) => build(options),
        None => Err(unknown(connector, &sinks().collect::<Vec<_>>(), "sink")),
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
