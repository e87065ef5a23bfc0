//! `fungi bench kafka`: a Kafka → filter → Kafka SQL job on a running broker, next to
//! plain librdkafka loops measured in the same run, so that the engine's cost over the
//! client shows.
//!
//! Steps, each timed alone, on fresh topics: a producer loop writes the input (JSON bids);
//! a consumer loop reads it back; a client-only pipeline (consume, parse the price with
//! serde_json, keep even prices, produce) copies it into a topic of its own; then the
//! SQL job does the same (`INSERT INTO out SELECT * FROM bids WHERE price % 2 = 0`) and
//! its output is counted. Events/s and MB/s count the input records and their bytes.
//! The topics are left on the broker (their names are unique per run): deleting them
//! while clients are alive crashed librdkafka 2.12 against tansu (a metadata update with
//! neither a topic name nor an id).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

/// Options of `fungi bench kafka`.
#[derive(Debug, Args)]
pub(crate) struct KafkaBenchArgs {
    /// The broker (`bootstrap.servers`); `scripts/bench-kafka.sh` starts one on loopback.
    #[arg(long)]
    bootstrap: String,
    /// Input records.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 2)]
    partitions: i32,
    /// Parallelism of the SQL job.
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Worker threads of the SQL job's runtime (default: the parallelism, a core per
    /// subtask; `fungi run` starts one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// A librdkafka property (`key=value`, repeatable) for every client: the loops'
    /// and the SQL job's (as `properties.key`).
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Also run the SQL job with `'sink.delivery-guarantee' = 'exactly-once'` (Kafka
    /// transactions committed on checkpoints every `--checkpoint-interval-ms`).
    #[arg(long)]
    exactly_once: bool,
    /// Checkpoint interval of the exactly-once job.
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Also run the same job on Apache Flink (PyFlink's local mini-cluster, in the
    /// same run, on the same input topic) with this Python, an environment with
    /// `apache-flink` (`scripts/bench-kafka.sh --flink` sets it up).
    #[arg(long, requires = "flink_jar")]
    flink_python: Option<std::path::PathBuf>,
    /// Flink's SQL Kafka connector jar (`flink-sql-connector-kafka`).
    #[arg(long, requires = "flink_python")]
    flink_jar: Option<std::path::PathBuf>,
    /// The script that runs one Flink SQL job and prints its time.
    #[arg(long, default_value = "bench/flink/flink_job.py")]
    flink_job: std::path::PathBuf,
    /// Print results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_property(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

/// One step's figures.
#[derive(Debug, Serialize)]
struct Step {
    step: &'static str,
    records: usize,
    bytes: usize,
    seconds: f64,
    events_per_second: f64,
    mb_per_second: f64,
}

impl Step {
    fn new(step: &'static str, records: usize, bytes: usize, seconds: f64) -> Step {
        Step {
            step,
            records,
            bytes,
            seconds,
            events_per_second: records as f64 / seconds,
            mb_per_second: bytes as f64 / seconds / 1e6,
        }
    }
}

/// Runs the benchmark and prints its table (or JSON).
pub(crate) fn run(args: KafkaBenchArgs) -> Result<()> {
    if args.records == 0 || args.partitions < 1 {
        bail!("--records and --partitions must be at least 1");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let run = format!("{}-{now}", std::process::id());
    let input = format!("fungi-bench-in-{run}");
    let client_out = format!("fungi-bench-client-out-{run}");
    let job_out = format!("fungi-bench-job-out-{run}");
    let exactly_once_out = format!("fungi-bench-job-eo-out-{run}");
    let flink_out = format!("fungi-bench-flink-out-{run}");
    let clients = Clients {
        bootstrap: &args.bootstrap,
        properties: &args.properties,
    };
    clients.create_topics(&[
        (&input, args.partitions),
        (&client_out, 1),
        (&job_out, 1),
        (&exactly_once_out, 1),
        (&flink_out, 1),
    ])?;
    let payloads = bids(args.records);
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let expected = payloads.len().div_ceil(2);
    let mut steps = Vec::new();

    let start = Instant::now();
    let producer = clients.producer()?;
    for p in &payloads {
        send(&producer, BaseRecord::<'_, (), [u8]>::to(&input).payload(p))?;
    }
    producer
        .flush(Duration::from_secs(300))
        .context("the producer loop's records were not acknowledged")?;
    steps.push(Step::new(
        "librdkafka producer loop",
        args.records,
        bytes,
        start.elapsed().as_secs_f64(),
    ));

    let start = Instant::now();
    let consumer = clients.consumer(&input, args.partitions)?;
    let mut read = 0usize;
    let mut read_bytes = 0usize;
    while read < args.records {
        match consumer.poll(Duration::from_secs(30)) {
            Some(Ok(m)) => {
                read += 1;
                read_bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => bail!("the consumer loop failed: {e}"),
            None => bail!("the consumer loop read {read} of {} records", args.records),
        }
    }
    steps.push(Step::new(
        "librdkafka consumer loop",
        read,
        read_bytes,
        start.elapsed().as_secs_f64(),
    ));
    drop(consumer);

    let start = Instant::now();
    let consumer = clients.consumer(&input, args.partitions)?;
    let (mut read, mut kept) = (0usize, 0usize);
    while read < args.records {
        let m = match consumer.poll(Duration::from_secs(30)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => bail!("the client pipeline failed: {e}"),
            None => bail!(
                "the client pipeline read {read} of {} records",
                args.records
            ),
        };
        read += 1;
        let payload = m.payload().unwrap_or_default();
        let bid: BidPrice = serde_json::from_slice(payload).context("a bid")?;
        if bid.price % 2 == 0 {
            send(
                &producer,
                BaseRecord::<'_, (), [u8]>::to(&client_out).payload(payload),
            )?;
            kept += 1;
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("the client pipeline's records were not acknowledged")?;
    steps.push(Step::new(
        "librdkafka consume → filter → produce",
        read,
        bytes,
        start.elapsed().as_secs_f64(),
    ));
    if kept != expected {
        bail!("the client pipeline kept {kept} records, expected {expected}");
    }

    let properties: String = args
        .properties
        .iter()
        .map(|(k, v)| format!(", 'properties.{k}' = '{v}'"))
        .collect();
    let job = |output: &str, settings: &str, sink: &str| {
        format!(
            "SET 'parallelism.default' = '{p}';
             {settings}
             CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,
                 `dateTime` TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{input}',
                   'properties.bootstrap.servers' = '{b}', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'
                   {properties});
             CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING,
                 `dateTime` TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = '{output}',
                   'properties.bootstrap.servers' = '{b}', 'format' = 'json'{sink}{properties});
             INSERT INTO out SELECT * FROM bids WHERE price % 2 = 0;",
            p = args.parallelism,
            b = args.bootstrap,
        )
    };
    // Runs the job into `output`, times it and checks that it wrote every kept bid.
    let mut measure = |step: &'static str, output: &str, settings: &str, sink: &str| {
        let seconds = run_job(
            &job(output, settings, sink),
            args.parallelism,
            args.worker_threads,
        )?;
        steps.push(Step::new(step, args.records, bytes, seconds));
        let written = clients.count(output)?;
        if written != expected {
            bail!("'{step}' wrote {written} records, expected {expected}");
        }
        Ok(())
    };
    measure("fungi SQL job: Kafka → filter → Kafka", &job_out, "", "")?;
    if args.exactly_once {
        let checkpoints = tempfile::tempdir().context("a checkpoint directory")?;
        let settings = format!(
            "SET 'execution.checkpointing.interval' = '{}ms';
             SET 'execution.checkpointing.dir' = '{}';",
            args.checkpoint_interval_ms,
            checkpoints.path().display()
        );
        let sink = format!(
            ", 'sink.delivery-guarantee' = 'exactly-once', \
             'sink.transactional-id-prefix' = '{exactly_once_out}'"
        );
        measure(
            "fungi SQL job, exactly-once",
            &exactly_once_out,
            &settings,
            &sink,
        )?;
    }
    if let (Some(python), Some(jar)) = (&args.flink_python, &args.flink_jar) {
        let sql = flink_job(&args, &input, &flink_out, &run);
        let seconds = run_flink_job(python, &args.flink_job, jar, &sql, args.parallelism)?;
        let step = "Apache Flink SQL job: Kafka → filter → Kafka";
        steps.push(Step::new(step, args.records, bytes, seconds));
        let written = clients.count(&flink_out)?;
        if written != expected {
            bail!("'{step}' wrote {written} records, expected {expected}");
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
    } else {
        println!(
            "{} records ({:.1} MB of JSON), {} input partitions, job parallelism {}",
            args.records,
            bytes as f64 / 1e6,
            args.partitions,
            args.parallelism
        );
        println!(
            "| step | seconds | events/s | MB/s |\n|---|---:|---:|---:|{}",
            steps
                .iter()
                .map(|s| format!(
                    "\n| {} | {:.2} | {:.0} | {:.1} |",
                    s.step, s.seconds, s.events_per_second, s.mb_per_second
                ))
                .collect::<String>()
        );
    }
    Ok(())
}

/// The job of the benchmark in Flink's SQL: the same tables and query (the output table
/// renamed: `OUT` is a keyword of Flink's parser), Flink's JSON format reading the
/// bids' ISO-8601 times, its own consumer group, and the sink's default delivery
/// guarantee (at-least-once, as Fungi's).
fn flink_job(args: &KafkaBenchArgs, input: &str, output: &str, run: &str) -> String {
    let properties: String = args
        .properties
        .iter()
        .map(|(k, v)| format!(", 'properties.{k}' = '{v}'"))
        .collect();
    let columns = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, \
                   `dateTime` TIMESTAMP(3)";
    let kafka = |topic: &str| {
        format!(
            "'connector' = 'kafka', 'topic' = '{topic}', \
             'properties.bootstrap.servers' = '{b}', 'format' = 'json', \
             'json.timestamp-format.standard' = 'ISO-8601'{properties}",
            b = args.bootstrap
        )
    };
    format!(
        "CREATE TABLE bids ({columns}) WITH ({}, 'properties.group.id' = 'flink-{run}',
             'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE kept ({columns}) WITH ({});
         INSERT INTO kept SELECT * FROM bids WHERE price % 2 = 0;",
        kafka(input),
        kafka(output)
    )
}

/// Runs `sql` on Flink's local mini-cluster through `job` (which prints
/// `{"seconds": ...}`, the INSERT's wall time from submission to its end).
fn run_flink_job(
    python: &std::path::Path,
    job: &std::path::Path,
    jar: &std::path::Path,
    sql: &str,
    parallelism: u32,
) -> Result<f64> {
    let dir = tempfile::tempdir().context("a directory for Flink's script")?;
    let script = dir.path().join("kafka.sql");
    std::fs::write(&script, sql)?;
    let jar = std::path::absolute(jar)?;
    let out = std::process::Command::new(python)
        .arg(job)
        .arg(&script)
        .arg(parallelism.to_string())
        .arg(&jar)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the Flink job failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    #[derive(serde::Deserialize)]
    struct Timed {
        seconds: f64,
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("the Flink job printed no time: {stdout}"))?;
    Ok(serde_json::from_str::<Timed>(line)?.seconds)
}

/// Plans and runs one SQL job in this process on `worker_threads` threads (default: one
/// per subtask); returns its wall time in seconds.
fn run_job(sql: &str, parallelism: u32, worker_threads: Option<usize>) -> Result<f64> {
    let config = fungi_common::config::JobConfig {
        parallelism,
        ..Default::default()
    };
    let planner = tokio::runtime::Builder::new_current_thread().build()?;
    let graph = planner
        .block_on(fungi_sql::SqlSession::new(config).execute_script(sql))?
        .into_iter()
        .find_map(|o| match o {
            fungi_sql::Outcome::Insert(g) => Some(g),
            _ => None,
        })
        .context("the benchmark job has no INSERT")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.unwrap_or(parallelism as usize).max(1))
        .enable_all()
        .build()?;
    let start = Instant::now();
    let executor = fungi_execution::executor::LocalExecutor::for_config(&graph.config)?;
    runtime.block_on(async { executor.execute(graph)?.wait().await })?;
    Ok(start.elapsed().as_secs_f64())
}

#[derive(serde::Deserialize)]
struct BidPrice {
    price: i64,
}

/// `n` JSON bids of about 110 bytes, prices 0..n.
fn bids(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"auction": {}, "bidder": {}, "price": {i}, "channel": "channel-{}", "dateTime": "2026-11-26T12:{:02}:{:02}.{:03}"}}"#,
                1000 + i % 1000,
                2000 + i % 5000,
                i % 10,
                i / 60_000 % 60,
                i / 1000 % 60,
                i % 1000
            )
            .into_bytes()
        })
        .collect()
}

/// The client settings of every step.
struct Clients<'a> {
    bootstrap: &'a str,
    properties: &'a [(String, String)],
}

impl Clients<'_> {
    fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in self.properties {
            c.set(k, v);
        }
        c
    }

    /// A producer with the same settings as Fungi's Kafka sink (acks=all, linger 5 ms).
    fn producer(&self) -> Result<BaseProducer> {
        Ok(self
            .config(&[("acks", "all"), ("linger.ms", "5")])
            .create()?)
    }

    /// A consumer of every partition of `topic` from its beginning.
    fn consumer(&self, topic: &str, partitions: i32) -> Result<BaseConsumer> {
        let group = format!("fungi-bench-{}", std::process::id());
        let consumer: BaseConsumer = self
            // The fetch back-off of Fungi's Kafka source (librdkafka's 1 s default idles
            // a consumer that drains its queue quickly).
            .config(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("fetch.queue.backoff.ms", "20"),
            ])
            .create()?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        Ok(consumer)
    }

    /// The records in a one-partition topic, read until nothing came for 2 s.
    fn count(&self, topic: &str) -> Result<usize> {
        let consumer = self.consumer(topic, 1)?;
        let mut n = 0;
        while let Some(m) = consumer.poll(Duration::from_secs(2)) {
            m?;
            n += 1;
        }
        Ok(n)
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        Ok(self.config(&[]).create()?)
    }

    fn create_topics(&self, topics: &[(&str, i32)]) -> Result<()> {
        let admin = self.admin()?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let results = runtime
            .block_on(admin.create_topics(&new, &AdminOptions::new()))
            .with_context(|| format!("cannot reach the broker at {}", self.bootstrap))?;
        for r in results {
            r.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
        }
        // Clients start once the broker describes every topic with all its partitions.
        let deadline = Instant::now() + Duration::from_secs(30);
        for (topic, partitions) in topics {
            loop {
                let metadata = admin
                    .inner()
                    .fetch_metadata(Some(topic), Duration::from_secs(5))?;
                let ready = metadata.topics().iter().any(|t| {
                    t.name() == *topic
                        && t.error().is_none()
                        && t.partitions().len() == *partitions as usize
                });
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the broker does not describe the new topic {topic}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

fn send(producer: &BaseProducer, mut record: BaseRecord<'_, (), [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("cannot send: {e}"),
        }
    }
}
