//! Kafka end to end, against a real Apache Kafka broker on loopback.

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fungi_testkit::KafkaBroker;

use super::fungi;
use super::recovery::{assert_same_output, reference_output, run_to_end, run_with_kills_on, seed};

/// `n` bids as JSON: auction `i % 10`, price `i`, one every 10 ms of event time.
fn bids(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"auction": {}, "price": {i}, "ts": "1970-01-01T00:{:02}:{:02}.{:03}"}}"#,
                i % 10,
                i / 6000,
                i / 100 % 60,
                i % 100 * 10
            )
            .into_bytes()
        })
        .collect()
}

fn bid_table(broker: &KafkaBroker, extra: &str) -> String {
    format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'bids',
               'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'scan.bounded.mode' = 'latest-offset'{extra});",
        broker.bootstrap
    )
}

/// Starts `sql`, a job with an unbounded source, from a file in `dir`: it runs until
/// killed.
fn start_unbounded(dir: &Path, sql: &str) -> std::process::Child {
    let file = dir.join("job.sql");
    std::fs::write(&file, sql).unwrap();
    fungi()
        .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The records of `topic` once it holds at least `n`, or what it holds after 30 s.
fn read_until(broker: &KafkaBroker, topic: &str, n: usize) -> Vec<fungi_testkit::ReadRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        got = broker.read_all(topic, Duration::from_millis(500));
    }
    got
}

const WINDOW: &str = "SELECT auction, window_start, COUNT(*) AS n, SUM(price) AS total
    FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end";

#[test]
fn a_sql_job_windows_a_topic_into_a_topic_and_dead_letters_bad_records() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 3);
    broker.create_topic("counts", 2);
    broker.create_topic("dlq", 1);
    let mut records = bids(3000);
    records.insert(1000, b"{not json".to_vec());
    records.insert(2000, br#"{"auction": "x", "price": 1}"#.to_vec());
    let keyed: Vec<(Option<&str>, &[u8])> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (Some(["a", "b", "c"][i % 3]), r.as_slice()))
        .collect();
    broker.produce("bids", &keyed);

    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "SET 'parallelism.default' = '2';
         SET 'dead-letter.kafka.topic' = 'dlq';
         SET 'dead-letter.kafka.bootstrap-servers' = '{}';
         {}
         CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), n BIGINT, total BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'counts',
               'properties.bootstrap.servers' = '{}', 'format' = 'json',
               'key.fields' = 'auction');
         INSERT INTO counts {WINDOW};",
        broker.bootstrap,
        bid_table(
            &broker,
            ", 'scan.startup.mode' = 'earliest-offset', 'on-error' = 'dead-letter'"
        ),
        broker.bootstrap
    );
    let out = run_to_end(dir.path(), &sql);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Both bad records, with topic, partition and offset.
    assert!(stderr.contains("2 dead letters"), "{stderr}");
    assert!(stderr.contains("dead letter at bids/"), "{stderr}");
    assert!(stderr.contains("offset"), "{stderr}");
    // The dead-letter topic holds both, keyed by reason, with the original bytes.
    let letters = broker.read_all("dlq", Duration::from_secs(2));
    assert_eq!(letters.len(), 2, "{letters:?}");
    let raws: Vec<String> = letters
        .iter()
        .map(|(_, _, key, value)| {
            assert_eq!(key.as_deref(), Some(&b"decode"[..]));
            let v: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert!(v["position"].as_str().unwrap().starts_with("bids/"), "{v}");
            v["raw"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(raws.contains(&"{not json".to_string()), "{raws:?}");

    // Expected: per auction and 10 s window, count and sum of prices.
    let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..3000i64 {
        let e = expected.entry((i % 10, i * 10 / 10_000)).or_default();
        e.0 += 1;
        e.1 += i;
    }
    let got = broker.read_all("counts", Duration::from_secs(2));
    let mut rows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (_, _, key, value) in &got {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        let auction = v["auction"].as_i64().unwrap();
        assert_eq!(key.as_deref(), Some(auction.to_string().as_bytes()));
        let start = v["window_start"].as_str().unwrap();
        let seconds: i64 = start[17..19].parse().unwrap();
        let minutes: i64 = start[14..16].parse().unwrap();
        let window = (minutes * 60 + seconds) / 10;
        let old = rows.insert(
            (auction, window),
            (v["n"].as_i64().unwrap(), v["total"].as_i64().unwrap()),
        );
        assert!(old.is_none(), "({auction}, {start}) twice");
    }
    assert_eq!(rows, expected);
}

#[test]
fn the_source_resumes_from_checkpointed_offsets_not_group_offsets() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 3);
    let records = bids(10_000);
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce("bids", &values);
    let job = |dir: &Path, group: &str| {
        format!(
            "SET 'execution.checkpointing.interval' = '200ms';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'parallelism.default' = '2';
             {}
             CREATE TABLE results (auction BIGINT, window_start TIMESTAMP(3), n BIGINT,
                 total BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results {WINDOW};",
            dir.join("checkpoints").display(),
            bid_table(
                &broker,
                &format!(
                    ", 'scan.startup.mode' = 'group-offsets', 'properties.group.id' = '{group}'"
                )
            ),
            dir.join("out").display()
        )
    };
    let expected = reference_output(50, |dir| job(dir, "reference"));
    let killed = tempfile::tempdir().unwrap();
    let seed = seed();
    // Before every restart the group's offsets are moved to the end of the topic: a
    // source that resumed from them would skip what the checkpoint says is unread.
    let log = run_with_kills_on(
        killed.path(),
        &job(killed.path(), "resumed"),
        4,
        seed,
        &killed.path().join("checkpoints"),
        |attempt| {
            // Without a complete checkpoint yet (killed early), an attempt rightly starts
            // from the group's offsets, which the killed attempts may have moved (librdkafka
            // commits as it reads): those go back to the start, so that the fresh start
            // reads everything.
            let checkpointed = std::fs::read_dir(killed.path().join("checkpoints"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join("_metadata").exists());
            if attempt > 0 {
                let offset = if checkpointed { 100_000 } else { 0 };
                broker.commit_group_offsets("resumed", "bids", 3, offset);
            }
            Vec::new()
        },
    );
    assert_same_output(&expected, killed.path(), seed, &log);
}

/// Records of aborted transactions never reach a job (read_committed unless the table
/// says otherwise), and a job's consumer group holds the offsets of its completed
/// checkpoints, the final one included.
#[test]
fn aborted_transactions_are_not_read_and_offsets_commit_with_checkpoints() {
    let broker = KafkaBroker::start();
    broker.create_topic("lines", 1);
    broker.produce_transaction("lines", &[b"a", b"b"], true);
    broker.produce_transaction("lines", &[b"aborted-1", b"aborted-2"], false);
    broker.produce("lines", &[(None, b"c".as_slice())]);
    broker.produce_transaction("lines", &[b"d"], true);
    let dir = tempfile::tempdir().unwrap();
    let read = |group: &str, extra: &str| {
        let file = dir.path().join(format!("{group}.sql"));
        std::fs::write(
            &file,
            format!(
                "SET 'execution.checkpointing.interval' = '100ms';
                 SET 'execution.checkpointing.dir' = '{}';
                 CREATE TABLE lines (line VARCHAR) WITH ('connector' = 'kafka',
                     'topic' = 'lines', 'properties.bootstrap.servers' = '{}',
                     'format' = 'raw', 'scan.startup.mode' = 'earliest-offset',
                     'scan.bounded.mode' = 'latest-offset',
                     'properties.group.id' = '{group}'{extra});
                 SELECT line FROM lines;",
                dir.path().join(group).display(),
                broker.bootstrap
            ),
        )
        .unwrap();
        let out = fungi()
            .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
            .output_within(PROCESS_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).unwrap();
                row["line"].as_str().unwrap().to_string()
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(read("committed", ""), ["a", "b", "c", "d"]);
    // Offsets: 2 records and a commit marker, 2 aborted and an abort marker, 1, then 1
    // (offset 7) and its commit marker: the next record to read is at 8.
    assert_eq!(broker.committed_offsets("committed", "lines", 1), [Some(8)]);
    // Asked for, uncommitted reads show what the default hides.
    assert_eq!(
        read(
            "uncommitted",
            ", 'properties.isolation.level' = 'read_uncommitted'"
        ),
        ["a", "aborted-1", "aborted-2", "b", "c", "d"]
    );
}

/// A windowed job writing exactly-once into a topic, killed (SIGKILL) five times at
/// random points: a read_committed reader sees every window exactly once, the same as
/// an uninterrupted run; a read_uncommitted reader sees the aborted attempts too. At the
/// end no transaction of the job is left open.
#[test]
fn an_exactly_once_kafka_sink_survives_kills_without_loss_or_duplicates() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 3);
    for topic in ["reference", "counts"] {
        broker.create_topic(topic, 2);
    }
    let records = bids(10_000);
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce("bids", &values);
    let job = |dir: &Path, topic: &str| {
        format!(
            "SET 'execution.checkpointing.interval' = '300ms';
             SET 'execution.checkpointing.dir' = '{}';
             SET 'parallelism.default' = '2';
             {}
             CREATE TABLE out (auction BIGINT, window_start TIMESTAMP(3), n BIGINT,
                 total BIGINT)
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'format' = 'json',
                   'properties.bootstrap.servers' = '{}',
                   'sink.delivery-guarantee' = 'exactly-once',
                   'sink.transactional-id-prefix' = 'fungi-test-{topic}');
             INSERT INTO out {WINDOW};",
            dir.join("checkpoints").display(),
            bid_table(&broker, ", 'scan.startup.mode' = 'earliest-offset'"),
            broker.bootstrap
        )
    };
    let reference = tempfile::tempdir().unwrap();
    let out = run_to_end(reference.path(), &job(reference.path(), "reference"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values = |records: Vec<fungi_testkit::ReadRecord>| {
        let mut v: Vec<String> = records
            .into_iter()
            .map(|(_, _, _, value)| String::from_utf8(value).unwrap())
            .collect();
        v.sort();
        v
    };
    let expected = values(broker.read_all("reference", Duration::from_secs(2)));
    assert_eq!(expected.len(), 100, "windows of the reference run");

    let killed = tempfile::tempdir().unwrap();
    let seed = seed();
    let log = run_with_kills_on(
        killed.path(),
        &job(killed.path(), "counts"),
        5,
        seed,
        &killed.path().join("checkpoints"),
        |_| Vec::new(),
    );
    let got = values(broker.read_all("counts", Duration::from_secs(2)));
    assert!(
        got == expected,
        "seed {seed}: read_committed saw {} windows, {} expected\n{log}",
        got.len(),
        expected.len()
    );
    let mut python: Vec<String> = broker
        .read_committed_with_python("counts")
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    python.sort();
    assert!(
        python == expected,
        "seed {seed}: confluent-kafka read {python:?}"
    );
    let uncommitted = values(broker.read_all_uncommitted("counts", Duration::from_secs(2)));
    assert!(uncommitted.len() >= got.len(), "seed {seed}");
    // No transaction of the job is left open on the broker.
    let states: Vec<(String, String)> = broker
        .transactions()
        .into_iter()
        .filter(|(id, _)| id.starts_with("fungi-test-counts-"))
        .collect();
    assert!(
        !states.is_empty(),
        "the broker knows the job's transactional ids"
    );
    assert!(
        states.iter().all(|(_, state)| state != "Ongoing"),
        "seed {seed}: {states:?}"
    );
}

/// An exactly-once sink refuses what would lose or duplicate output: no checkpoints,
/// a transaction timeout the checkpoints outlast, no transactional id prefix, and a
/// broker that refuses the transaction timeout asked for.
#[test]
fn an_exactly_once_kafka_sink_refuses_settings_that_would_break_it() {
    let broker = KafkaBroker::start();
    broker.create_topic("in", 1);
    broker.create_topic("out", 1);
    broker.produce("in", &[(None, b"1".as_slice())]);
    let dir = tempfile::tempdir().unwrap();
    let run = |settings: &str, sink: &str| {
        let file = dir.path().join("job.sql");
        std::fs::write(
            &file,
            format!(
                "{settings}
                 CREATE TABLE i (line VARCHAR) WITH ('connector' = 'kafka', 'topic' = 'in',
                     'properties.bootstrap.servers' = '{0}', 'format' = 'raw',
                     'scan.startup.mode' = 'earliest-offset',
                     'scan.bounded.mode' = 'latest-offset');
                 CREATE TABLE o (line VARCHAR) WITH ('connector' = 'kafka', 'topic' = 'out',
                     'properties.bootstrap.servers' = '{0}', 'format' = 'raw',
                     'sink.delivery-guarantee' = 'exactly-once'{sink});
                 INSERT INTO o SELECT line FROM i;",
                broker.bootstrap
            ),
        )
        .unwrap();
        let out = fungi()
            .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
            .output_within(PROCESS_LIMIT);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let checkpoints = format!(
        "SET 'execution.checkpointing.interval' = '2s';
         SET 'execution.checkpointing.dir' = '{}';",
        dir.path().join("checkpoints").display()
    );
    let prefix = ", 'sink.transactional-id-prefix' = 'refusals'";
    let said = run("", prefix);
    assert!(
        said.contains("'execution.checkpointing.interval'"),
        "{said}"
    );
    let said = run(&checkpoints, "");
    assert!(
        said.contains("needs 'sink.transactional-id-prefix'"),
        "{said}"
    );
    let said = run(
        &checkpoints,
        &format!("{prefix}, 'properties.transaction.timeout.ms' = '1000'"),
    );
    assert!(
        said.contains("is not longer than the checkpoint interval"),
        "{said}"
    );
    // Above the broker's transaction.max.timeout.ms (15 min): it refuses the producer.
    let said = run(
        &checkpoints,
        &format!("{prefix}, 'properties.transaction.timeout.ms' = '3600000'"),
    );
    assert!(said.contains("cannot start transactions"), "{said}");
    assert!(
        broker
            .read_all("out", Duration::from_millis(500))
            .is_empty()
    );
}

/// Debezium change events become a changelog: creates, updates and deletes give the
/// right table, and an aggregation over it retracts what was updated or deleted; an
/// event that cannot be applied is a dead letter naming why.
#[test]
fn debezium_json_events_become_the_right_table() {
    let broker = KafkaBroker::start();
    broker.create_topic("products", 1);
    let events = [
        r#"{"before": null, "after": {"id": 1, "name": "a", "weight": 1.0}, "op": "c"}"#,
        r#"{"before": null, "after": {"id": 2, "name": "b", "weight": 2.0}, "op": "c"}"#,
        r#"{"before": {"id": 1, "name": "a", "weight": 1.0}, "after": {"id": 1, "name": "aa", "weight": 1.5}, "op": "u"}"#,
        "{not json",
        r#"{"before": {"id": 2, "name": "b", "weight": 2.0}, "after": null, "op": "d"}"#,
        r#"{"before": null, "after": {"id": 9, "name": "z", "weight": 9.0}, "op": "u"}"#,
        r#"{"before": null, "after": {"id": 3, "name": "c", "weight": 3.0}, "op": "r"}"#,
    ];
    let values: Vec<(Option<&str>, &[u8])> = events.iter().map(|e| (None, e.as_bytes())).collect();
    broker.produce("products", &values);
    let dir = tempfile::tempdir().unwrap();
    let run = |query: &str| {
        let file = dir.path().join("job.sql");
        std::fs::write(
            &file,
            format!(
                "CREATE TABLE products (id BIGINT, name VARCHAR, weight DOUBLE)
                 WITH ('connector' = 'kafka', 'topic' = 'products',
                       'properties.bootstrap.servers' = '{}', 'format' = 'debezium-json',
                       'scan.startup.mode' = 'earliest-offset',
                       'scan.bounded.mode' = 'latest-offset', 'on-error' = 'dead-letter');
                 {query}",
                broker.bootstrap
            ),
        )
        .unwrap();
        let out = fungi()
            .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
            .output_within(PROCESS_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (rows, stderr)
    };
    let (changes, stderr) = run("SELECT * FROM products;");
    assert!(stderr.contains("2 dead letters"), "{stderr}");
    assert!(stderr.contains("REPLICA IDENTITY FULL"), "{stderr}");
    // Applying the changelog gives the table Debezium describes.
    let mut table = BTreeMap::new();
    for row in &changes {
        let id = row["id"].as_i64().unwrap();
        match row["op"].as_str().unwrap() {
            "+I" | "+U" => assert!(
                table.insert(id, row["name"].clone()).is_none(),
                "{changes:?}"
            ),
            "-U" | "-D" => assert!(table.remove(&id).is_some(), "{changes:?}"),
            other => panic!("op {other}"),
        }
    }
    assert_eq!(
        table,
        BTreeMap::from([(1, serde_json::json!("aa")), (3, serde_json::json!("c"))]),
        "{changes:?}"
    );
    let (totals, _) = run("SELECT COUNT(*) AS n, SUM(weight) AS total FROM products;");
    let last = totals.last().unwrap();
    assert_eq!(
        (last["n"].as_i64(), last["total"].as_f64()),
        (Some(2), Some(4.5)),
        "{totals:?}"
    );
}

/// An updating result into `upsert-kafka`: the latest value per primary key, deletes as
/// tombstones. Read back as a compacted topic is read (last record per key, a tombstone
/// removes the key), it is the final table: an aggregation's counts, and a Debezium
/// table with its deletes.
#[test]
fn upsert_kafka_writes_the_latest_value_per_key_and_tombstones() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 3);
    broker.create_topic("products", 1);
    for topic in ["counts", "latest"] {
        broker.create_topic(topic, 2);
    }
    let records = bids(1000);
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce("bids", &values);
    let events = [
        r#"{"before": null, "after": {"id": 1, "name": "a"}, "op": "c"}"#,
        r#"{"before": null, "after": {"id": 2, "name": "b"}, "op": "c"}"#,
        r#"{"before": {"id": 1, "name": "a"}, "after": {"id": 1, "name": "aa"}, "op": "u"}"#,
        r#"{"before": {"id": 2, "name": "b"}, "after": null, "op": "d"}"#,
    ];
    let changes: Vec<(Option<&str>, &[u8])> = events.iter().map(|e| (None, e.as_bytes())).collect();
    broker.produce("products", &changes);
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "SET 'parallelism.default' = '2';
         {}
         CREATE TABLE products (id BIGINT, name VARCHAR)
         WITH ('connector' = 'kafka', 'topic' = 'products', 'format' = 'debezium-json',
               'properties.bootstrap.servers' = '{b}', 'scan.startup.mode' = 'earliest-offset',
               'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE counts (auction BIGINT, n BIGINT, PRIMARY KEY (auction) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'counts',
               'properties.bootstrap.servers' = '{b}',
               'key.format' = 'json', 'value.format' = 'json');
         CREATE TABLE latest (id BIGINT, name VARCHAR, PRIMARY KEY (id) NOT ENFORCED)
         WITH ('connector' = 'upsert-kafka', 'topic' = 'latest',
               'properties.bootstrap.servers' = '{b}',
               'key.format' = 'json', 'value.format' = 'json');
         INSERT INTO counts SELECT auction, COUNT(*) AS n FROM bids GROUP BY auction;
         INSERT INTO latest SELECT id, name FROM products;",
        bid_table(&broker, ", 'scan.startup.mode' = 'earliest-offset'"),
        b = broker.bootstrap
    );
    let out = run_to_end(dir.path(), &sql);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A compacted topic's view: the last record per key; a tombstone deletes.
    let table = |topic: &str| compacted(&broker, topic);
    let counts = table("counts");
    assert_eq!(counts.len(), 10, "{counts:?}");
    for auction in 0..10 {
        assert_eq!(
            counts[&format!(r#"{{"auction":{auction}}}"#)],
            format!(r#"{{"auction":{auction},"n":100}}"#),
            "{counts:?}"
        );
    }
    assert_eq!(
        table("latest"),
        BTreeMap::from([(
            r#"{"id":1}"#.to_string(),
            r#"{"id":1,"name":"aa"}"#.to_string()
        )])
    );
    // Without a primary key, or without a key format, the sink says what is missing.
    for (columns, options, message) in [
        (
            "id BIGINT, name VARCHAR",
            ", 'key.format' = 'json'",
            "declare PRIMARY KEY",
        ),
        (
            "id BIGINT, name VARCHAR, PRIMARY KEY (id) NOT ENFORCED",
            "",
            "option 'key.format': is required",
        ),
        (
            "id BIGINT, name VARCHAR, PRIMARY KEY (nope) NOT ENFORCED",
            ", 'key.format' = 'json'",
            "PRIMARY KEY column 'nope' is not a column",
        ),
    ] {
        let sql = format!(
            "CREATE TABLE products (id BIGINT, name VARCHAR)
             WITH ('connector' = 'kafka', 'topic' = 'products', 'format' = 'debezium-json',
                   'properties.bootstrap.servers' = '{b}',
                   'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE bad ({columns}) WITH ('connector' = 'upsert-kafka', 'topic' = 'x',
                 'properties.bootstrap.servers' = '{b}', 'value.format' = 'json'{options});
             INSERT INTO bad SELECT id, name FROM products;",
            b = broker.bootstrap
        );
        let out = run_to_end(dir.path(), &sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "{message}: {stderr}"
        );
    }
}

#[test]
fn bad_kafka_options_are_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let good = "'topic' = 't', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json'";
    let cases = [
        (
            "'topic' = 't', 'format' = 'json'".to_string(),
            good.to_string(),
            "properties.bootstrap.servers",
        ),
        (
            format!("{good}, 'scan.startup.mode' = 'yesterday'"),
            good.to_string(),
            "'yesterday' is not earliest-offset",
        ),
        (
            good.to_string(),
            format!("{good}, 'sink.delivery-guarantee' = 'exactly-once'"),
            "'exactly-once' needs 'sink.transactional-id-prefix'",
        ),
        (
            good.to_string(),
            format!("{good}, 'properties.transactional.id' = 'mine'"),
            "set 'sink.delivery-guarantee' = 'exactly-once'",
        ),
        (
            good.replace("json", "protobuf"),
            good.to_string(),
            "'protobuf' is not json, csv, raw, avro or debezium-json",
        ),
        (
            good.to_string(),
            good.replace("json", "debezium-json"),
            "format 'debezium-json' is read, not written",
        ),
        (
            format!(
                "{}, 'debezium-json.schema-include' = 'maybe'",
                good.replace("json", "debezium-json")
            ),
            good.to_string(),
            "'maybe' is not true or false",
        ),
    ];
    for (source, sink, message) in cases {
        let sql = format!(
            "CREATE TABLE t (a BIGINT) WITH ('connector' = 'kafka', {source});
             CREATE TABLE s (a BIGINT) WITH ('connector' = 'kafka', {sink});
             INSERT INTO s SELECT a FROM t;"
        );
        let out = run_to_end(dir.path(), &sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(message), "{message}: {stderr}");
    }
}

#[test]
fn an_idle_partition_stops_holding_back_event_time() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 2);
    broker.create_topic("counts", 1);
    // Every record in partition 0: partition 1 stays empty.
    let records = bids(3000);
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce_to("bids", 0, &values);
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "SET 'table.exec.source.idle-timeout' = '500ms';
         CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'bids',
               'properties.bootstrap.servers' = '{0}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset');
         CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), n BIGINT, total BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'counts',
               'properties.bootstrap.servers' = '{0}', 'format' = 'json');
         INSERT INTO counts {WINDOW};",
        broker.bootstrap
    );
    // The source is unbounded: the job runs until killed. Windows that end before the
    // last record's time minus the delay fire only if partition 1 counts as idle.
    let mut child = start_unbounded(dir.path(), &sql);
    let got = read_until(&broker, "counts", 1);
    let _ = child.kill();
    let out = fungi_testkit::process::wait_within(child, PROCESS_LIMIT);
    // 3000 records span 30 s of event time: the first two 10 s windows (10 auctions
    // each) have closed.
    assert!(
        got.len() >= 20,
        "{} windows fired; the job said:\n{}",
        got.len(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Partitions added to a topic while a job reads it are found and read, with their
/// partition and message timestamp.
#[test]
fn partitions_added_while_a_job_runs_are_read() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 1);
    broker.create_topic("out", 1);
    let records = bids(200);
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce_to("bids", 0, &values[..100]);
    let dir = tempfile::tempdir().unwrap();
    let sql = format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
             part INT METADATA FROM 'partition' VIRTUAL,
             written TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL)
         WITH ('connector' = 'kafka', 'topic' = 'bids',
               'properties.bootstrap.servers' = '{0}', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset',
               'scan.topic-partition-discovery.interval' = '200ms');
         CREATE TABLE out (price BIGINT, part INT, late BOOLEAN)
         WITH ('connector' = 'kafka', 'topic' = 'out',
               'properties.bootstrap.servers' = '{0}', 'format' = 'json');
         INSERT INTO out SELECT price, part, written IS NULL FROM bids;",
        broker.bootstrap
    );
    let mut child = start_unbounded(dir.path(), &sql);
    let first = read_until(&broker, "out", 100);
    broker.add_partitions("bids", 2);
    broker.produce_to("bids", 1, &values[100..]);
    let all = read_until(&broker, "out", 200);
    let _ = child.kill();
    let out = fungi_testkit::process::wait_within(child, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(first.len(), 100, "{stderr}");
    let mut rows: Vec<serde_json::Value> = all
        .iter()
        .map(|(_, _, _, value)| serde_json::from_slice(value).unwrap())
        .collect();
    rows.sort_by_key(|r| r["price"].as_i64());
    assert_eq!(rows.len(), 200, "{stderr}");
    for (i, row) in rows.iter().enumerate() {
        let part = if i < 100 { 0 } else { 1 };
        assert_eq!(
            row,
            &serde_json::json!({"price": i, "part": part, "late": false}),
            "{stderr}"
        );
    }
}

/// Avro payloads, and metadata columns both ways: a job writes Avro with headers and
/// message timestamps taken from columns; a second job reads them back with the
/// partition and offset of each message.
#[test]
fn avro_records_with_headers_and_metadata_columns_round_trip() {
    let broker = KafkaBroker::start();
    broker.create_topic("bids", 2);
    broker.create_topic("mid", 3);
    broker.create_topic("out", 1);
    let mut records = bids(300);
    records.push(b"{not json".to_vec());
    let values: Vec<(Option<&str>, &[u8])> = records.iter().map(|r| (None, r.as_slice())).collect();
    broker.produce("bids", &values);
    let kafka = |topic: &str, format: &str, extra: &str| {
        format!(
            "'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}', \
             'format' = '{format}', 'scan.startup.mode' = 'earliest-offset', \
             'scan.bounded.mode' = 'latest-offset'{extra}",
            broker.bootstrap
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let write = format!(
        "{}
         CREATE TABLE mid (auction BIGINT, price BIGINT,
             ts TIMESTAMP(3) METADATA FROM 'timestamp',
             h MAP<STRING, STRING> METADATA FROM 'headers')
         WITH ({});
         INSERT INTO mid SELECT auction, price, ts + INTERVAL '1' DAY,
             MAP(['auction', 'kind'], [CAST(auction AS VARCHAR), 'bid']) FROM bids;",
        bid_table(
            &broker,
            ", 'scan.startup.mode' = 'earliest-offset', 'on-error' = 'dead-letter'"
        ),
        kafka("mid", "avro", "")
    );
    let out = run_to_end(dir.path(), &write);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 dead letter"), "{stderr}");
    let mid = broker.read_all("mid", Duration::from_secs(2));
    assert_eq!(mid.len(), 300);

    let read = format!(
        "CREATE TABLE mid (auction BIGINT, price BIGINT,
             ts TIMESTAMP(3) METADATA FROM 'timestamp',
             h MAP<STRING, BYTES> METADATA FROM 'headers',
             p INT METADATA FROM 'partition' VIRTUAL,
             `offset` BIGINT METADATA VIRTUAL,
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ({});
         CREATE TABLE out (auction BIGINT, price BIGINT, ts TIMESTAMP(3), kind STRING,
             header_auction STRING, p INT, o BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'out',
               'properties.bootstrap.servers' = '{}', 'format' = 'json');
         INSERT INTO out SELECT auction, price, ts, CAST(h['kind'] AS VARCHAR),
             CAST(h['auction'] AS VARCHAR), p, `offset` FROM mid;",
        kafka("mid", "avro", ""),
        broker.bootstrap
    );
    let out = run_to_end(dir.path(), &read);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = broker.read_all("out", Duration::from_secs(2));
    assert_eq!(got.len(), 300);
    let mut positions = Vec::new();
    let mut prices = Vec::new();
    for (_, _, _, value) in &got {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        let (auction, price) = (v["auction"].as_i64().unwrap(), v["price"].as_i64().unwrap());
        assert_eq!(auction, price % 10, "{v}");
        assert_eq!(v["kind"], "bid", "{v}");
        assert_eq!(v["header_auction"], auction.to_string(), "{v}");
        // The message timestamp is the bid's event time (one bid every 10 ms) a day
        // later (librdkafka reads a timestamp of 0 as "now").
        let ts = v["ts"].as_str().unwrap();
        let seconds: f64 = ts
            .strip_prefix("1970-01-02T00:00:")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("ts {ts} in {v}"));
        assert!(
            (seconds - price as f64 / 100.0).abs() < 1e-9,
            "{ts} for price {price}"
        );
        positions.push((v["p"].as_i64().unwrap() as i32, v["o"].as_i64().unwrap()));
        prices.push(price);
    }
    prices.sort_unstable();
    assert_eq!(prices, (0..300).collect::<Vec<_>>());
    positions.sort_unstable();
    let mut written: Vec<(i32, i64)> = mid.iter().map(|(p, o, _, _)| (*p, *o)).collect();
    written.sort_unstable();
    assert_eq!(positions, written);
}

#[test]
fn metadata_columns_are_checked_when_the_table_is_declared() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "CREATE TABLE t (a BIGINT, o BIGINT METADATA FROM 'offsets') WITH ('connector' = 'kafka',
                 'topic' = 't', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json');
             SELECT * FROM t;",
            "known keys: topic, partition, offset",
        ),
        (
            "CREATE TABLE t (a BIGINT, o STRING METADATA FROM 'offset') WITH ('connector' = 'kafka',
                 'topic' = 't', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json');
             SELECT * FROM t;",
            "it must be BIGINT",
        ),
        (
            "CREATE TABLE t (a BIGINT, o BIGINT METADATA FROM 'offset') WITH ('connector' = 'datagen');
             SELECT * FROM t;",
            "has no metadata columns",
        ),
        (
            "CREATE TABLE s (a BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '1');
             CREATE TABLE t (a BIGINT, o BIGINT METADATA FROM 'offset') WITH ('connector' = 'kafka',
                 'topic' = 't', 'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json');
             INSERT INTO t SELECT a, a + 1 AS o FROM s;",
            "cannot be written",
        ),
    ];
    for (sql, expected) in cases {
        let out = run_to_end(dir.path(), sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sql}");
        assert!(stderr.contains(expected), "{sql}: {stderr}");
    }
}

/// `fungi bench kafka` runs its four steps and checks the job's output (a smoke run; the
/// figures are measured in release builds, see docs/benchmarks.md).
#[test]
fn the_kafka_benchmark_runs_against_a_broker() {
    let broker = KafkaBroker::start();
    let out = fungi()
        .args(["bench", "kafka", "--bootstrap", &broker.bootstrap])
        .args(["--records", "2000", "--exactly-once", "--json"])
        .args(["--checkpoint-interval-ms", "200"])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = steps.as_array().unwrap();
    assert_eq!(steps.len(), 5, "{steps:?}");
    for s in steps {
        assert_eq!(s["records"], 2000, "{s}");
        assert!(s["events_per_second"].as_f64().unwrap() > 0.0, "{s}");
    }
}

#[test]
fn an_upsert_topic_reads_back_as_a_changelog() {
    let broker = KafkaBroker::start();
    broker.create_topic("users", 2);
    for topic in ["by_city", "copy"] {
        broker.create_topic(topic, 1);
    }
    let v = |s: &'static str| Some(s.as_bytes());
    broker.produce_upserts(
        "users",
        &[
            (r#"{"id":1}"#, v(r#"{"id":1,"name":"ann","city":"paris"}"#)),
            (r#"{"id":2}"#, v(r#"{"id":2,"name":"bob","city":"rome"}"#)),
            (r#"{"id":3}"#, v(r#"{"id":3,"name":"cid","city":"paris"}"#)),
            // Ann moves; Bob is deleted; a key that never had a value is deleted; Cid's
            // value comes again unchanged.
            (r#"{"id":1}"#, v(r#"{"id":1,"name":"ann","city":"rome"}"#)),
            (r#"{"id":2}"#, None),
            (r#"{"id":9}"#, None),
            (r#"{"id":3}"#, v(r#"{"id":3,"name":"cid","city":"paris"}"#)),
        ],
    );
    let upsert = |table: &str, columns: &str, extra: &str| {
        format!(
            "CREATE TABLE {table} ({columns}) WITH ('connector' = 'upsert-kafka',
                 'topic' = '{table}', 'properties.bootstrap.servers' = '{}',
                 'key.format' = 'json', 'value.format' = 'json'{extra});",
            broker.bootstrap
        )
    };
    let sql = format!(
        "SET 'parallelism.default' = '2';
         {}
         {}
         {}
         INSERT INTO by_city SELECT city, COUNT(*) AS n FROM users GROUP BY city;
         INSERT INTO copy SELECT id, name, city FROM users;",
        upsert(
            "users",
            "id BIGINT, name VARCHAR, city VARCHAR, PRIMARY KEY (id) NOT ENFORCED",
            ", 'scan.bounded.mode' = 'latest-offset'"
        ),
        upsert(
            "by_city",
            "city VARCHAR, n BIGINT, PRIMARY KEY (city) NOT ENFORCED",
            ""
        ),
        upsert(
            "copy",
            "id BIGINT, name VARCHAR, city VARCHAR, PRIMARY KEY (id) NOT ENFORCED",
            ""
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_end(dir.path(), &sql);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = |topic: &str| compacted(&broker, topic);
    // The aggregation saw Ann leave Paris and Bob leave Rome (retractions), not two
    // Annes and a Bob.
    assert_eq!(
        table("by_city"),
        BTreeMap::from([
            (
                r#"{"city":"paris"}"#.to_string(),
                r#"{"city":"paris","n":1}"#.to_string()
            ),
            (
                r#"{"city":"rome"}"#.to_string(),
                r#"{"city":"rome","n":1}"#.to_string()
            ),
        ])
    );
    assert_eq!(
        table("copy"),
        BTreeMap::from([
            (
                r#"{"id":1}"#.to_string(),
                r#"{"id":1,"name":"ann","city":"rome"}"#.to_string()
            ),
            (
                r#"{"id":3}"#.to_string(),
                r#"{"id":3,"name":"cid","city":"paris"}"#.to_string()
            ),
        ])
    );
    // Without a primary key an upsert topic cannot be read: the error says what to add.
    let sql = format!(
        "{}
         CREATE TABLE sink (id BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT id FROM users;",
        upsert(
            "users",
            "id BIGINT, name VARCHAR, city VARCHAR",
            ", 'scan.bounded.mode' = 'latest-offset'"
        ),
    );
    let out = run_to_end(dir.path(), &sql);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("declare PRIMARY KEY"),
        "{stderr}"
    );
}

/// A compacted topic's view: the last value per key; a tombstone deletes its key.
fn compacted(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, String> {
    let mut table = BTreeMap::new();
    for (_, _, key, value) in broker.read_all(topic, Duration::from_secs(2)) {
        let key = String::from_utf8(key.expect("every record has a key")).unwrap();
        if value.is_empty() {
            table.remove(&key);
        } else {
            table.insert(key, String::from_utf8(value).unwrap());
        }
    }
    table
}
