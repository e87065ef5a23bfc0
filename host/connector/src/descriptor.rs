//! What each connector is: its name, how it builds a source or a sink, whether it takes
//! a changelog, has metadata columns, serves lookup joins or writes from one subtask,
//! and the options a confined tenant (a tenant's job on a server) may set, with how each
//! value is checked. A new connector is its module plus one entry in [`CONNECTORS`].
//!
//! The tenant options are an allow-list: an option that is not listed is refused
//! naming the option, whatever the connector itself would accept. Values that name
//! something outside the job (a file, a host) are checked by [`TenantCheck`].

use arrow::datatypes::SchemaRef;
use fungi_common::{FungiError, Result};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::source::SourceFactory;

use crate::blackhole::BlackholeSink;
use crate::datagen::DatagenSource;
use crate::file::{FileSink, FileSource};
use crate::kafka::{self, KafkaSink, KafkaSource};
use crate::nexmark::NexmarkSource;
use crate::options::Options;
use crate::print::PrintSink;

/// Builds a source from the table's declared schema (if any) and options; returns the
/// factory and the schema of the rows it produces.
pub type SourceBuilder = fn(Option<SchemaRef>, &Options) -> Result<(SourceFactory, SchemaRef)>;
/// Builds a sink from the table's options.
pub type SinkBuilder = fn(&Options) -> Result<OperatorFactory>;

/// How a confined tenant's value of an option is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantCheck {
    /// Any value; the connector validates it.
    Free,
    /// A path relative to the tenant's files directory (no root, no `..`), rewritten
    /// to the path inside it.
    TenantPath,
    /// An http(s) URL whose `host:port` must be an allowed egress host
    /// ([`crate::egress::Egress::check_url`]).
    EgressUrl,
    /// Comma-separated Kafka brokers, each an allowed egress host.
    EgressBrokers,
    /// A librdkafka property (`properties.<name>`): only those of
    /// [`kafka::TENANT_PROPERTIES`], with their values checked.
    KafkaProperty,
    /// A name in a namespace other tenants share (a Kafka transactional id prefix):
    /// rewritten to start with the tenant's name, so that one tenant's job can never
    /// take over (fence) another tenant's transactions.
    TenantScoped,
}

/// One connector.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorDescriptor {
    /// The name in `'connector' = '...'`.
    pub name: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// How it reads, if it is a source.
    pub source: Option<SourceBuilder>,
    /// How it writes, if it is a sink.
    pub sink: Option<SinkBuilder>,
    /// Whether the sink applies a changelog (updates and deletes), not only inserts.
    pub accepts_updates: bool,
    /// Whether columns may be `METADATA FROM '...'`.
    pub metadata_columns: bool,
    /// Whether a lookup join (`FOR SYSTEM_TIME AS OF`) may read it.
    pub lookup: bool,
    /// Whether the sink writes from one subtask (one ordered output, such as stdout).
    pub single_writer: bool,
    /// Whether the source's rows are upserts and deletions by the table's primary key
    /// (a compacted topic), which the planner turns into a changelog with a keyed
    /// operator.
    pub upserts: bool,
    /// The options a confined tenant may set (a key ending in `*` is a prefix), and
    /// how each value is checked. Empty: the connector is not offered to tenants.
    pub tenant_options: &'static [(&'static str, TenantCheck)],
}

impl ConnectorDescriptor {
    /// How a tenant's value of `key` is checked, or `None` when a tenant may not set it.
    pub fn tenant_check(&self, key: &str) -> Option<TenantCheck> {
        self.tenant_options.iter().find_map(|(pattern, check)| {
            let matches = match pattern.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix) && key.len() > prefix.len(),
                None => key == *pattern,
            };
            matches.then_some(*check)
        })
    }

    /// The options a tenant may set, for messages.
    pub fn tenant_option_names(&self) -> Vec<&'static str> {
        self.tenant_options.iter().map(|(k, _)| *k).collect()
    }
}

use TenantCheck::{EgressBrokers, EgressUrl, Free, KafkaProperty, TenantPath, TenantScoped};

/// Every connector that ships with Fungi.
pub const CONNECTORS: &[ConnectorDescriptor] = &[
    ConnectorDescriptor {
        name: "datagen",
        aliases: &[],
        source: Some(|schema, options| {
            let s = declared("datagen", schema)?;
            Ok((DatagenSource::factory(s.clone(), options)?, s))
        }),
        sink: None,
        accepts_updates: false,
        metadata_columns: false,
        lookup: false,
        single_writer: false,
        upserts: false,
        tenant_options: &[
            ("rows-per-second", Free),
            ("number-of-rows", Free),
            ("fields.*", Free),
        ],
    },
    ConnectorDescriptor {
        name: "nexmark",
        aliases: &[],
        source: Some(|_, options| NexmarkSource::factory(options)),
        sink: None,
        accepts_updates: false,
        metadata_columns: false,
        lookup: false,
        single_writer: false,
        upserts: false,
        tenant_options: &[
            ("table", Free),
            ("events", Free),
            ("events-per-second", Free),
            ("base-time", Free),
            ("rate-limit", Free),
        ],
    },
    ConnectorDescriptor {
        name: "filesystem",
        aliases: &["file"],
        source: Some(|schema, options| {
            let s = declared("filesystem", schema)?;
            Ok((FileSource::factory(s.clone(), options)?, s))
        }),
        sink: Some(FileSink::factory),
        accepts_updates: false,
        metadata_columns: false,
        lookup: true,
        single_writer: false,
        upserts: false,
        tenant_options: &[
            ("path", TenantPath),
            ("format", Free),
            ("csv.header", Free),
            ("csv.field-delimiter", Free),
            ("on-error", Free),
        ],
    },
    ConnectorDescriptor {
        name: "kafka",
        aliases: &[],
        source: Some(|schema, options| {
            let s = declared("kafka", schema)?;
            KafkaSource::factory(s, options)
        }),
        sink: Some(KafkaSink::factory),
        accepts_updates: false,
        metadata_columns: true,
        lookup: false,
        single_writer: false,
        upserts: false,
        tenant_options: &[
            ("topic", Free),
            ("properties.bootstrap.servers", EgressBrokers),
            ("properties.*", KafkaProperty),
            ("format", Free),
            ("csv.field-delimiter", Free),
            ("debezium-json.schema-include", Free),
            ("scan.startup.mode", Free),
            ("scan.startup.timestamp-millis", Free),
            ("scan.topic-partition-discovery.interval", Free),
            ("scan.bounded.mode", Free),
            ("on-error", Free),
            ("sink.delivery-guarantee", Free),
            ("sink.transactional-id-prefix", TenantScoped),
            ("sink.partitioner", Free),
            ("key.fields", Free),
        ],
    },
    ConnectorDescriptor {
        name: "upsert-kafka",
        aliases: &[],
        source: Some(|schema, options| {
            let s = declared("upsert-kafka", schema)?;
            KafkaSource::upsert_factory(s, options)
        }),
        sink: Some(KafkaSink::upsert_factory),
        accepts_updates: true,
        metadata_columns: false,
        lookup: false,
        single_writer: false,
        upserts: true,
        tenant_options: &[
            ("topic", Free),
            ("properties.bootstrap.servers", EgressBrokers),
            ("properties.*", KafkaProperty),
            ("key.format", Free),
            ("value.format", Free),
            ("csv.field-delimiter", Free),
            ("scan.startup.mode", Free),
            ("scan.startup.timestamp-millis", Free),
            ("scan.topic-partition-discovery.interval", Free),
            ("scan.bounded.mode", Free),
            ("on-error", Free),
            ("sink.delivery-guarantee", Free),
            ("sink.transactional-id-prefix", TenantScoped),
        ],
    },
    ConnectorDescriptor {
        name: "http",
        aliases: &[],
        source: None,
        sink: Some(crate::http::HttpSink::factory),
        accepts_updates: false,
        metadata_columns: false,
        lookup: false,
        single_writer: false,
        upserts: false,
        tenant_options: &[
            ("url", EgressUrl),
            ("format", Free),
            ("sink.timeout", Free),
            ("sink.max-batch-rows", Free),
            ("sink.on-error", Free),
            ("sink.retry.*", Free),
            ("sink.breaker.*", Free),
        ],
    },
    // The stdout sink writes to the process's standard output, which on a server is
    // the operator's log, shared by every tenant: not offered to tenants.
    ConnectorDescriptor {
        name: "stdout",
        aliases: &[],
        source: None,
        sink: Some(PrintSink::factory),
        accepts_updates: true,
        metadata_columns: false,
        lookup: false,
        single_writer: true,
        upserts: false,
        tenant_options: &[],
    },
    ConnectorDescriptor {
        name: "print",
        aliases: &[],
        source: None,
        sink: Some(PrintSink::factory),
        accepts_updates: true,
        metadata_columns: false,
        lookup: false,
        single_writer: true,
        upserts: false,
        tenant_options: &[],
    },
    ConnectorDescriptor {
        name: "blackhole",
        aliases: &[],
        source: None,
        sink: Some(|options| {
            options.check_all_used(&[])?;
            Ok(BlackholeSink::factory())
        }),
        accepts_updates: true,
        metadata_columns: false,
        lookup: false,
        single_writer: false,
        upserts: false,
        tenant_options: &[],
    },
];

/// The columns a connector without a schema of its own needs declared.
fn declared(connector: &str, schema: Option<SchemaRef>) -> Result<SchemaRef> {
    schema.ok_or_else(|| {
        FungiError::Config(format!(
            "connector '{connector}' needs the table's columns to be declared"
        ))
    })
}

/// The connector called `name` (or one of its aliases).
pub fn descriptor(name: &str) -> Option<&'static ConnectorDescriptor> {
    CONNECTORS
        .iter()
        .find(|c| c.name == name || c.aliases.contains(&name))
}

/// Whether a tenant may use `name` at all.
pub fn offered_to_tenants(name: &str) -> bool {
    descriptor(name).is_some_and(|c| !c.tenant_options.is_empty() || c.name == "blackhole")
}

/// Checks a Kafka property a tenant set (`properties.<name>` without the prefix).
pub fn check_kafka_property(name: &str, value: &str) -> Result<(), String> {
    kafka::check_tenant_property(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn connectors_are_found_by_name_and_alias() {
        assert_eq!(descriptor("file").unwrap().name, "filesystem");
        assert!(descriptor("filesystem").unwrap().lookup);
        assert!(descriptor("stdout").unwrap().single_writer);
        assert!(registry::sink("blackhole", &Options::default()).is_ok());
        let err = registry::source("nope", None, &Options::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("datagen") && err.contains("kafka"), "{err}");
        for c in CONNECTORS {
            assert_eq!(registry::accepts_updates(c.name), c.accepts_updates);
        }
    }

    #[test]
    fn tenant_options_are_an_allow_list() {
        let kafka = descriptor("kafka").unwrap();
        assert_eq!(
            kafka.tenant_check("properties.bootstrap.servers"),
            Some(EgressBrokers)
        );
        assert_eq!(
            kafka.tenant_check("properties.group.id"),
            Some(KafkaProperty)
        );
        assert_eq!(kafka.tenant_check("properties."), None);
        assert_eq!(kafka.tenant_check("secret.option"), None);
        assert_eq!(
            descriptor("filesystem").unwrap().tenant_check("path"),
            Some(TenantPath)
        );
        assert!(!offered_to_tenants("stdout"));
        assert!(offered_to_tenants("blackhole"));
    }
}
