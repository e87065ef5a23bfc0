//! The librdkafka properties a confined tenant may pass (`properties.<name>`): client
//! tuning that cannot name a file, run a program, load a library, or reach a host other
//! than the brokers. Everything else is refused, among it `metadata.broker.list` (an
//! alias of `bootstrap.servers`), `plugin.library.paths`, every `*.location` and
//! keystore setting, Kerberos (`sasl.kerberos.kinit.cmd` runs a command), OAUTHBEARER
//! (its token endpoint is another host), `debug` and logging (the server's log is shared),
//! and DNS rewriting (`client.dns.lookup`).

/// Properties a tenant may set, with free values.
pub const TENANT_PROPERTIES: &[&str] = &[
    "group.id",
    "group.instance.id",
    "client.id",
    "client.rack",
    "auto.offset.reset",
    "isolation.level",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "check.crcs",
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.num.messages",
    "batch.size",
    "compression.type",
    "compression.codec",
    "compression.level",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "transaction.timeout.ms",
    "message.max.bytes",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "request.timeout.ms",
    "retries",
    "message.send.max.retries",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "topic.metadata.refresh.interval.ms",
    "metadata.max.age.ms",
    "allow.auto.create.topics",
    "broker.address.family",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.sigalgs.list",
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
];

/// Refuses a property a tenant may not set, or a value that would leave the allow-list
/// by another door (a SASL mechanism that runs a program or calls another host).
pub fn check_tenant_property(name: &str, value: &str) -> Result<(), String> {
    if !TENANT_PROPERTIES.contains(&name) {
        return Err(format!(
            "the librdkafka property '{name}' may not be set by a tenant on a server (it can \
             name files, run programs, load libraries or reach other hosts); allowed: \
             bootstrap.servers (an allowed egress host) and {}",
            TENANT_PROPERTIES.join(", ")
        ));
    }
    let v = value.trim().to_ascii_uppercase();
    let bad = |allowed: &str| {
        Err(format!(
            "the librdkafka property '{name}' = '{value}' is refused; a tenant may use {allowed}"
        ))
    };
    match name {
        "security.protocol"
            if !matches!(
                v.as_str(),
                "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL"
            ) =>
        {
            bad("plaintext, ssl, sasl_plaintext or sasl_ssl")
        }
        "sasl.mechanism" | "sasl.mechanisms"
            if !matches!(v.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") =>
        {
            bad("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_tuning_passes() {
        assert!(check_tenant_property("group.id", "g").is_ok());
        assert!(check_tenant_property("security.protocol", "sasl_ssl").is_ok());
        assert!(check_tenant_property("sasl.mechanism", "SCRAM-SHA-256").is_ok());
        for (name, value) in [
            ("plugin.library.paths", "/data/files/t/evil.so"),
            ("metadata.broker.list", "evil:9092"),
            ("ssl.ca.location", "/etc/shadow"),
            ("ssl.keystore.location", "/x"),
            ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("sasl.oauthbearer.token.endpoint.url", "http://evil/"),
            ("debug", "all"),
            ("log_level", "7"),
            (
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only",
            ),
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("security.protocol", "weird"),
            ("bootstrap.servers", "x:1"),
        ] {
            let e = check_tenant_property(name, value).unwrap_err();
            assert!(e.contains(name), "{e}");
        }
    }
}
