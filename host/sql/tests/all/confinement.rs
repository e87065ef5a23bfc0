//! The confinement of a tenant's session, by generated statements: thousands of
//! statements of every kind (allowed or not, with comments, odd case and spacing) and
//! tables with options drawn from the allow-lists, from outside them and at random, are
//! fed to a confined session; whatever it accepts must be in the allow-lists, with
//! paths inside the tenant's files and hosts among its egress hosts. Generation is
//! seeded, so a failure names the seed that reproduces it.

use std::sync::Arc;

use fungi_connector::descriptor::{self, TenantCheck};
use fungi_connector::egress::Egress;
use fungi_sql::statement::{StatementKind, classify};
use fungi_sql::{Confinement, Outcome, SqlSession};

const EGRESS: &[&str] = &["127.0.0.1:9092", "hooks.example:8080"];

fn confined(files: &std::path::Path, host: &Arc<fungi_plugin::PluginHost>) -> SqlSession {
    let mut session = SqlSession::default();
    session.confine(Confinement {
        files_dir: files.to_path_buf(),
        egress: Egress::new(EGRESS.iter().copied()),
        allow_native_python: false,
        plugin_dir: files.join("plugins"),
        host: host.clone(),
        tenant: Arc::new(fungi_plugin::PluginTenant::new(
            "t",
            fungi_plugin::TenantLimits::default(),
        )),
    });
    session
}

/// Leading words of statements, allowed and not.
const LEADS: &[&str] = &[
    "SELECT id FROM src",
    "SELECT id, line FROM src WHERE id > 2",
    "INSERT INTO snk SELECT id FROM src",
    "EXPLAIN SELECT id FROM src",
    "EXPLAIN INSERT INTO snk SELECT id FROM src",
    "CREATE VIEW w AS SELECT id FROM src",
    "SET 'restart-strategy.type' = 'fixed-delay'",
    "SELECT 1 AS x",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "VALUES (1)",
    "EXPLAIN SELECT 1 AS x",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN VERBOSE SELECT 1",
    "CREATE VIEW v AS SELECT 1 AS x",
    "CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 1 AS x",
    "CREATE MATERIALIZED VIEW m AS SELECT 1",
    "CREATE EXTERNAL TABLE e (l VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
    "CREATE UNBOUNDED EXTERNAL TABLE e (l VARCHAR) STORED AS CSV LOCATION '/etc'",
    "CREATE TABLE c AS SELECT 1 AS x",
    "CREATE OR REPLACE TABLE c AS SELECT 1 AS x",
    "CREATE TABLE c (x INT) AS SELECT 1",
    "CREATE TABLE c LIKE v",
    "COPY (SELECT 1) TO '/tmp/fungi-fuzz-copy.csv'",
    "COPY v TO '/tmp/fungi-fuzz-copy.csv'",
    "SHOW TABLES",
    "SHOW ALL",
    "DESCRIBE v",
    "DROP TABLE v",
    "DROP VIEW v",
    "DROP SCHEMA public",
    "CREATE SCHEMA s",
    "CREATE DATABASE d",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE p",
    "SET 'parallelism.default' = '2'",
    "SET 'execution.checkpointing.dir' = '/tmp/x'",
    "SET 's3.endpoint' = 'http://10.0.0.1'",
    "SET datafusion.execution.target_partitions = 1",
    "SET TIME ZONE 'UTC'",
    "RESET datafusion.execution.batch_size",
    "SELECT 'a' AS l INTO y",
    "INSERT OVERWRITE t SELECT 1",
    "UPDATE t SET x = 1",
    "DELETE FROM t",
    "TRUNCATE TABLE t",
    "BEGIN",
    "COMMIT",
    "ANALYZE TABLE t",
    "USE s",
    "CREATE FUNCTION f LANGUAGE WASM USING 'missing'",
    "LOAD PLUGIN 'missing'",
    "CREATE INDEX i ON t (x)",
    "ALTER TABLE t ADD COLUMN y INT",
    "CREATE TEMPORARY SYSTEM FUNCTION f AS 'm.f' LANGUAGE PYTHON",
];

/// Option keys, allowed for some connector or not.
const KEYS: &[&str] = &[
    "path",
    "format",
    "url",
    "topic",
    "rows-per-second",
    "number-of-rows",
    "fields.id.kind",
    "table",
    "events",
    "on-error",
    "sink.on-error",
    "sink.retry.max-retries",
    "properties.bootstrap.servers",
    "properties.group.id",
    "properties.isolation.level",
    "properties.security.protocol",
    "properties.sasl.mechanism",
    "properties.plugin.library.paths",
    "properties.metadata.broker.list",
    "properties.ssl.ca.location",
    "properties.sasl.kerberos.kinit.cmd",
    "properties.debug",
    "properties.",
    "secret",
    "location",
    "connector.path",
    "print-identifier",
];

/// Option values: paths, URLs, brokers, junk.
const VALUES: &[&str] = &[
    "data.csv",
    "in/data.json",
    "/etc/passwd",
    "../other/x",
    "a/../../b",
    "",
    "json",
    "csv",
    "raw",
    "http://hooks.example:8080/in",
    "http://hooks.example:8080@evil:8080/",
    "http://evil.example:8080/",
    "http://user:pw@hooks.example:8080/",
    "http://hooks.example/",
    "127.0.0.1:9092",
    "127.0.0.1:9092,evil:9092",
    "localhost:9092",
    "SASL_SSL",
    "GSSAPI",
    "PLAIN",
    "read_committed",
    "g",
    "10",
    "sequence",
    "bid",
    "fail",
    "dead-letter",
    "/tmp/evil.so",
];

const CONNECTORS: &[&str] = &[
    "datagen",
    "nexmark",
    "filesystem",
    "kafka",
    "http",
    "stdout",
    "print",
    "blackhole",
    "jdbc",
];

/// `text` with its letters' case flipped at random and comments or spaces added at
/// random between words.
fn disguise(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut out = String::new();
    if rng.u8(..4) == 0 {
        out.push_str("/* c */ ");
    }
    if rng.u8(..8) == 0 {
        out.push_str("-- line\n");
    }
    let mut quoted = false;
    for c in text.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && c == ' ' && rng.u8(..6) == 0 {
            out.push_str(if rng.bool() { "\n\t " } else { " /**/ " });
            continue;
        }
        if !quoted && rng.u8(..3) == 0 {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A CREATE TABLE with random options; returns the statement, the connector and the
/// options as written.
fn random_table(rng: &mut fastrand::Rng, n: usize) -> (String, String, Vec<(String, String)>) {
    let connector = CONNECTORS[rng.usize(..CONNECTORS.len())].to_string();
    let mut options = Vec::new();
    for _ in 0..rng.usize(0..4) {
        let key = KEYS[rng.usize(..KEYS.len())].to_string();
        if options.iter().any(|(k, _)| *k == key) {
            continue;
        }
        options.push((key, VALUES[rng.usize(..VALUES.len())].to_string()));
    }
    let mut with = vec![format!("'connector' = '{connector}'")];
    with.extend(options.iter().map(|(k, v)| format!("'{k}' = '{v}'")));
    let sql = format!(
        "CREATE TABLE t{n} (id BIGINT, line VARCHAR) WITH ({})",
        with.join(", ")
    );
    (sql, connector, options)
}

/// Checks that an accepted table stays inside the allow-lists.
fn check_accepted_table(connector: &str, options: &[(String, String)], sql: &str) {
    let desc = descriptor::descriptor(connector)
        .unwrap_or_else(|| panic!("unknown connector accepted: {sql}"));
    assert!(
        descriptor::offered_to_tenants(connector),
        "a connector not offered to tenants was accepted: {sql}"
    );
    let egress = Egress::new(EGRESS.iter().copied());
    for (key, value) in options {
        let check = desc
            .tenant_check(key)
            .unwrap_or_else(|| panic!("option '{key}' outside the allow-list was accepted: {sql}"));
        match check {
            TenantCheck::Free | TenantCheck::TenantScoped => {}
            TenantCheck::TenantPath => {
                let p = std::path::Path::new(value);
                assert!(
                    !value.is_empty()
                        && p.is_relative()
                        && p.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "a path outside the tenant's files was accepted: {sql}"
                );
            }
            TenantCheck::EgressUrl => {
                assert!(
                    egress.check_url("url", value).is_ok(),
                    "a URL outside the egress hosts was accepted: {sql}"
                );
            }
            TenantCheck::EgressBrokers => {
                assert!(
                    egress.check_brokers("brokers", value).is_ok(),
                    "brokers outside the egress hosts were accepted: {sql}"
                );
            }
            TenantCheck::KafkaProperty => {
                let name = key.strip_prefix("properties.").unwrap();
                assert!(
                    fungi_connector::kafka::TENANT_PROPERTIES.contains(&name),
                    "a librdkafka property outside the allow-list was accepted: {sql}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confined_session_accepts_nothing_outside_its_allow_lists() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("data.csv"), "1,a\n").unwrap();
    std::fs::create_dir_all(files.path().join("in")).unwrap();
    std::fs::write(files.path().join("in/data.json"), "{\"id\":1}\n").unwrap();
    let host = Arc::new(fungi_plugin::PluginHost::new(Default::default()).unwrap());
    let seed = std::env::var("FUNGI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut statements, mut accepted_statements, mut tables, mut accepted_tables) = (0, 0, 0, 0);
    for n in 0..3000 {
        let mut session = confined(files.path(), &host);
        session
            .execute_script(
                "CREATE TABLE src (id BIGINT, line BIGINT) WITH ('connector' = 'datagen', \
                 'number-of-rows' = '10'); \
                 CREATE TABLE snk (id BIGINT) WITH ('connector' = 'blackhole')",
            )
            .await
            .unwrap();
        if rng.bool() {
            let lead = LEADS[rng.usize(..LEADS.len())];
            let sql = disguise(&mut rng, lead);
            statements += 1;
            let result = session.execute(&sql).await;
            if std::env::var("FUNGI_FUZZ_DEBUG").is_ok()
                && let Err(e) = &result
                && classify(&sql).is_ok()
            {
                eprintln!("refused {sql:?}: {e}");
            }
            if let Ok(outcome) = result {
                accepted_statements += 1;
                let kind = classify(&sql).expect("an accepted statement classifies");
                assert!(
                    matches!(
                        kind,
                        StatementKind::Query
                            | StatementKind::Explain
                            | StatementKind::CreateView
                            | StatementKind::Set
                            | StatementKind::Insert
                    ),
                    "seed {seed}, statement {n}: a {kind:?} was accepted: {sql}"
                );
                if let Outcome::Done(message) = &outcome {
                    assert!(!message.contains("/etc"), "{message}");
                }
            }
        } else {
            let (sql, connector, options) = random_table(&mut rng, n);
            let sql = disguise(&mut rng, &sql);
            tables += 1;
            if session.execute(&sql).await.is_ok() {
                accepted_tables += 1;
                check_accepted_table(&connector, &options, &sql);
            }
        }
    }
    eprintln!(
        "seed {seed}: {accepted_statements} of {statements} statements and {accepted_tables} \
         of {tables} tables accepted"
    );
    // The generator reaches both sides of the allow-lists.
    assert!(accepted_statements > 50 && accepted_statements < statements);
    assert!(accepted_tables > 50 && accepted_tables < tables);
    assert!(!std::path::Path::new("/tmp/fungi-fuzz-copy.csv").exists());
}

/// A tenant's transactional id prefix is put under the tenant's name, so that no
/// tenant's job can fence another tenant's Kafka transactions; the tenant may not set a
/// transactional id of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_transactional_ids_are_its_own() {
    let files = tempfile::tempdir().unwrap();
    let host = Arc::new(fungi_plugin::PluginHost::new(Default::default()).unwrap());
    let mut session = confined(files.path(), &host);
    session
        .execute_script(
            "CREATE TABLE o (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'o',
                 'properties.bootstrap.servers' = '127.0.0.1:9092', 'format' = 'json',
                 'sink.delivery-guarantee' = 'exactly-once',
                 'sink.transactional-id-prefix' = 'other-tenant-job');",
        )
        .await
        .unwrap();
    let table = session.tables().find(|t| t.name == "o").unwrap();
    let prefix = table
        .options
        .iter()
        .find(|(k, _)| k == "sink.transactional-id-prefix")
        .map(|(_, v)| v.as_str());
    assert_eq!(prefix, Some("t-other-tenant-job"));
    let refused = confined(files.path(), &host)
        .execute_script(
            "CREATE TABLE o (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'o',
                 'properties.bootstrap.servers' = '127.0.0.1:9092', 'format' = 'json',
                 'properties.transactional.id' = 'other-tenant-job-0');",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("transactional.id"), "{refused}");
}
