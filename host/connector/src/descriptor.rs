//! What each connector is: its name, whether it reads or writes, whether it takes a
//! changelog, whether it has metadata columns, and the options a confined tenant (a
//! tenant's job on a server) may set, with how each value is checked.
//!
//! The tenant options are an allow-list: an option that is not listed is refused
//! naming the option, whatever the connector itself would accept. Values that name
//! something outside the job (a file, a host) are checked by [`TenantCheck`].

use crate::kafka;

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
}

/// One connector.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorDescriptor {
    /// The name in `'connector' = '...'`.
    pub name: &'static str,
    /// Whether it reads (a source).
    pub source: bool,
    /// Whether it writes (a sink).
    pub sink: bool,
    /// Whether the sink applies a changelog (updates and deletes), not only inserts.
    pub accepts_updates: bool,
    /// Whether columns may be `METADATA FROM '...'`.
    pub metadata_columns: bool,
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

use TenantCheck::{EgressBrokers, EgressUrl, Free, KafkaProperty, TenantPath};

/// Every connector that ships with Fungi.
pub const CONNECTORS: &[ConnectorDescriptor] = &[
    ConnectorDescriptor {
        name: "datagen",
        source: true,
        sink: false,
        accepts_updates: false,
        metadata_columns: false,
        tenant_options: &[
            ("rows-per-second", Free),
            ("number-of-rows", Free),
            ("fields.*", Free),
        ],
    },
    ConnectorDescriptor {
        name: "nexmark",
        source: true,
        sink: false,
        accepts_updates: false,
        metadata_columns: false,
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
        source: true,
        sink: true,
        accepts_updates: false,
        metadata_columns: false,
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
        source: true,
        sink: true,
        accepts_updates: false,
        metadata_columns: true,
        tenant_options: &[
            ("topic", Free),
            ("properties.bootstrap.servers", EgressBrokers),
            ("properties.*", KafkaProperty),
            ("format", Free),
            ("csv.field-delimiter", Free),
            ("scan.startup.mode", Free),
            ("scan.startup.timestamp-millis", Free),
            ("scan.topic-partition-discovery.interval", Free),
            ("scan.bounded.mode", Free),
            ("on-error", Free),
            ("sink.delivery-guarantee", Free),
            ("sink.partitioner", Free),
            ("key.fields", Free),
        ],
    },
    ConnectorDescriptor {
        name: "http",
        source: false,
        sink: true,
        accepts_updates: false,
        metadata_columns: false,
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
        source: false,
        sink: true,
        accepts_updates: true,
        metadata_columns: false,
        tenant_options: &[],
    },
    ConnectorDescriptor {
        name: "print",
        source: false,
        sink: true,
        accepts_updates: true,
        metadata_columns: false,
        tenant_options: &[],
    },
    ConnectorDescriptor {
        name: "blackhole",
        source: false,
        sink: true,
        accepts_updates: true,
        metadata_columns: false,
        tenant_options: &[],
    },
];

/// The connector called `name`.
pub fn descriptor(name: &str) -> Option<&'static ConnectorDescriptor> {
    CONNECTORS.iter().find(|c| c.name == name)
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
    fn descriptors_agree_with_the_registry() {
        for c in CONNECTORS {
            assert_eq!(registry::SOURCES.contains(&c.name), c.source, "{}", c.name);
            assert_eq!(registry::SINKS.contains(&c.name), c.sink, "{}", c.name);
            assert_eq!(registry::accepts_updates(c.name), c.accepts_updates);
        }
        for name in registry::SOURCES.iter().chain(registry::SINKS) {
            assert!(descriptor(name).is_some(), "{name} has no descriptor");
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
