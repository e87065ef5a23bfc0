//! Real services for Fungi's tests, started on loopback and stopped when dropped.
//!
//! The binaries are installed by `scripts/install-test-services.sh` (which both
//! `scripts/test.sh` and `.ci/run` call) into `$FUNGI_TOOLS/bin`, by default
//! `~/.cache/fungi/tools/bin`; a test that cannot find one fails and says how to get it.
//!
//! - [`S3Server`]: `s3s-fs`, an S3-compatible server over a temporary directory.
//! - [`KafkaBroker`]: Apache Kafka's broker (from Maven Central, run by Java), with
//!   helpers to create topics, produce and read them.
//! - [`process`]: child processes waited on with a time limit.

pub mod process;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test services are installed.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("FUNGI_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fungi/tools")))
        .unwrap_or_else(|| PathBuf::from(".cache/fungi/tools"))
}

/// The repository's root, found at run time from the directory of the package whose
/// test runs (cargo sets `CARGO_MANIFEST_DIR` for every test process): a build of this
/// crate may come from a clone at another path that shares the target directory, so
/// the path it was compiled at is only the fallback.
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    package
        .ancestors()
        .find(|dir| dir.join("scripts/kafka-broker.sh").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// The installed binary `name`, or a panic that says how to install it.
pub fn tool(name: &str) -> PathBuf {
    let installed = tools_dir().join("bin").join(name);
    if installed.is_file() {
        return installed;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "the test service '{name}' is not installed (looked in {} and PATH): run \
             scripts/install-test-services.sh",
            installed.display()
        )
    })
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on `addr`.
fn wait_for(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `command` printed on stdout; a failure, or a run past
/// [`process::PROCESS_LIMIT`], fails the test naming `what`.
fn stdout_of(what: &str, command: &mut Command) -> String {
    use process::CommandExt;
    let out = command.output_within(process::PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An etcd server (Debian's `etcd-server`) on loopback, its data in a temporary
/// directory; it can be stopped and started again on the same ports and data.
pub struct EtcdServer {
    child: Option<Child>,
    /// `[ca, cert, key]` when it serves TLS and checks client certificates.
    tls: Option<[String; 3]>,
    data: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl EtcdServer {
    /// Starts a single-member etcd.
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    /// Starts a single-member etcd serving TLS with the PEM files `[ca, cert, key]`
    /// (`cert` naming 127.0.0.1) and accepting only clients with a certificate `ca`
    /// signed.
    pub fn start_tls(files: [String; 3]) -> EtcdServer {
        Self::start_with(Some(files))
    }

    fn start_with(tls: Option<[String; 3]>) -> EtcdServer {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut server = EtcdServer {
            child: None,
            tls,
            data: tempfile::tempdir().expect("a temporary directory"),
            client_port: free_port(),
            peer_port: free_port(),
            endpoint: String::new(),
        };
        server.endpoint = format!("{scheme}://127.0.0.1:{}", server.client_port);
        server.resume();
        server
    }

    /// Starts it again (after [`stop`](Self::stop)), with the data it had.
    pub fn resume(&mut self) {
        let client = self.endpoint.clone();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(tool("etcd"));
        if let Some([ca, cert, key]) = &self.tls {
            command
                .args([
                    "--cert-file",
                    cert,
                    "--key-file",
                    key,
                    "--trusted-ca-file",
                    ca,
                ])
                .arg("--client-cert-auth");
        }
        let mut child = command
            .args(["--name", "fungi-test", "--data-dir"])
            .arg(self.data.path())
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("fungi-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        wait_for(
            SocketAddr::from(([127, 0, 0, 1], self.client_port)),
            &mut child,
            "etcd",
        );
        self.child = Some(child);
    }

    /// Kills it (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An S3-compatible server (`s3s-fs`) on loopback, storing objects under a temporary
/// directory: one bucket directory per bucket.
pub struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// Access key of every [`S3Server`].
pub const S3_ACCESS_KEY: &str = "fungi-test";
/// Secret key of every [`S3Server`].
pub const S3_SECRET_KEY: &str = "fungi-test-secret";

impl S3Server {
    /// Starts a server with the buckets `buckets`.
    pub fn start(buckets: &[&str]) -> S3Server {
        let root = tempfile::tempdir().expect("a temporary directory");
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).expect("bucket directory");
        }
        let port = free_port();
        let mut child = Command::new(tool("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(addr, &mut child, "s3s-fs");
        S3Server {
            child,
            root,
            endpoint: format!("http://{addr}"),
        }
    }

    /// The directory the objects are stored in (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The environment a client needs to reach this server (`AWS_*` variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The same as `s3.*` options ([`env`](Self::env) without the process environment).
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("s3.endpoint", self.endpoint.clone()),
            ("s3.access-key", S3_ACCESS_KEY.to_string()),
            ("s3.secret-key", S3_SECRET_KEY.to_string()),
            ("s3.region", "us-east-1".to_string()),
            ("s3.path.style.access", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record read back: partition, offset, key, value.
pub type ReadRecord = (i32, i64, Option<Vec<u8>>, Vec<u8>);

/// An Apache Kafka broker (KRaft, broker and controller in one JVM) on loopback, its
/// data in a temporary directory; started by `scripts/kafka-broker.sh`.
pub struct KafkaBroker {
    child: Child,
    _data: tempfile::TempDir,
    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub bootstrap: String,
}

impl KafkaBroker {
    /// Starts a broker and waits until it serves metadata.
    pub fn start() -> KafkaBroker {
        let (port, controller) = (free_port(), free_port());
        let data = tempfile::tempdir().expect("a directory for the broker");
        let script = repo_root().join("scripts/kafka-broker.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .args([port.to_string(), controller.to_string()])
            .arg(data.path())
            .env("FUNGI_TOOLS", tools_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash starts the Kafka broker");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(addr, &mut child, "the Kafka broker");
        let broker = KafkaBroker {
            child,
            _data: data,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        broker.wait_until_serving();
        broker
    }

    /// Waits until the broker answers a metadata request naming itself.
    fn wait_until_serving(&self) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = self.config().create().expect("a client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match client.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(m) if !m.brokers().is_empty() => return,
                other => assert!(
                    Instant::now() < deadline,
                    "the Kafka broker on {} does not serve metadata: {:?}",
                    self.bootstrap,
                    other.err()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.config().create().expect("an admin client");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
                .expect("create_topics answered");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    /// Grows `topic` to `partitions` partitions.
    pub fn add_partitions(&self, topic: &str, partitions: usize) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.config().create().expect("an admin client");
        let new = NewPartitions::new(topic, partitions);
        let results =
            futures::executor::block_on(admin.create_partitions([&new], &AdminOptions::new()))
                .expect("create_partitions answered");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
        }
    }

    /// Writes `records` (key, value) to `topic` and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &[u8])]) {
        let records: Vec<_> = records.iter().map(|&(k, v)| (k, Some(v))).collect();
        self.produce_into(topic, None, &records)
    }

    /// [`produce`](Self::produce) into one partition.
    pub fn produce_to(&self, topic: &str, partition: i32, records: &[(Option<&str>, &[u8])]) {
        let records: Vec<_> = records.iter().map(|&(k, v)| (k, Some(v))).collect();
        self.produce_into(topic, Some(partition), &records)
    }

    /// Writes keyed records to `topic`, a `None` value as a tombstone (a record without
    /// a value), as an upsert topic holds them.
    pub fn produce_upserts(&self, topic: &str, records: &[(&str, Option<&[u8]>)]) {
        let records: Vec<_> = records.iter().map(|&(k, v)| (Some(k), v)).collect();
        self.produce_into(topic, None, &records)
    }

    fn produce_into(
        &self,
        topic: &str,
        partition: Option<i32>,
        records: &[(Option<&str>, Option<&[u8]>)],
    ) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = self
            .config()
            .set("linger.ms", "0")
            .create()
            .expect("a producer");
        for (key, value) in records {
            let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic);
            if let Some(v) = value {
                record = record.payload(*v);
            }
            if let Some(k) = key {
                record = record.key(*k);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("records acknowledged");
    }

    /// Writes `values` to partition 0 of `topic` in one transaction, then commits it or
    /// aborts it.
    pub fn produce_transaction(&self, topic: &str, values: &[&[u8]], commit: bool) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = self
            .config()
            .set("transactional.id", format!("fungi-test-{}", free_port()))
            .create()
            .expect("a transactional producer");
        let timeout = Duration::from_secs(30);
        producer
            .init_transactions(timeout)
            .expect("transactions initialised");
        producer.begin_transaction().expect("a transaction");
        for value in values {
            producer
                .send(
                    BaseRecord::<'_, (), [u8]>::to(topic)
                        .partition(0)
                        .payload(*value),
                )
                .map_err(|(e, _)| e)
                .expect("a record queued");
        }
        producer.flush(timeout).expect("records acknowledged");
        if commit {
            producer.commit_transaction(timeout).expect("committed");
        } else {
            producer.abort_transaction(timeout).expect("aborted");
        }
    }

    /// Every transactional id the broker knows, with its state (`Ongoing`,
    /// `CompleteCommit`, `CompleteAbort`, ...), as Kafka's own `kafka-transactions`
    /// tool lists them.
    pub fn transactions(&self) -> Vec<(String, String)> {
        let libs = tools_dir().join("kafka/libs/*");
        let listed = stdout_of(
            "kafka-transactions",
            Command::new("java")
                .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp"])
                .arg(libs)
                .args([
                    "org.apache.kafka.tools.TransactionsCommand",
                    "--bootstrap-server",
                ])
                .args([&self.bootstrap, "list"]),
        );
        listed
            .lines()
            .skip(1)
            .filter_map(|line| {
                let columns: Vec<&str> = line.split_whitespace().collect();
                Some((columns.first()?.to_string(), columns.get(3)?.to_string()))
            })
            .collect()
    }

    /// The values a read_committed consumer of Confluent's Python client
    /// (`confluent-kafka`, with its own build of librdkafka) reads from `topic`: a
    /// second reader that Fungi's code has no part in. The client is installed in the
    /// tests' Python environment (`FUNGI_PYTHON_VENV`, default `~/.cache/fungi/pyvenv`).
    pub fn read_committed_with_python(&self, topic: &str) -> Vec<Vec<u8>> {
        let venv = std::env::var_os("FUNGI_PYTHON_VENV")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fungi/pyvenv"))
            })
            .expect("a Python environment for the tests");
        let script = repo_root().join("host/testkit/python/read_committed.py");
        let read = stdout_of(
            "the confluent-kafka reader",
            Command::new(venv.join("bin/python"))
                .arg(script)
                .args([&self.bootstrap, topic]),
        );
        read.lines()
            .map(|line| {
                (0..line.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex"))
                    .collect()
            })
            .collect()
    }

    /// The offsets consumer group `group` committed for partitions `0..partitions` of
    /// `topic` (`None` where it committed none).
    pub fn committed_offsets(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .create()
            .expect("a consumer");
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(30))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(rdkafka::Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }

    /// [`read_all`](Self::read_all) with `isolation.level = read_uncommitted`: records
    /// of open and aborted transactions too.
    pub fn read_all_uncommitted(&self, topic: &str, quiet: Duration) -> Vec<ReadRecord> {
        self.read_with(topic, quiet, "read_uncommitted")
    }

    /// Every record of `topic` (partition, offset, key, value) that a read_committed
    /// consumer sees, read from the beginning until nothing arrived for `quiet`.
    pub fn read_all(&self, topic: &str, quiet: Duration) -> Vec<ReadRecord> {
        self.read_with(topic, quiet, "read_committed")
    }

    fn read_with(&self, topic: &str, quiet: Duration, isolation: &str) -> Vec<ReadRecord> {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .config()
            .set("isolation.level", isolation)
            .set("group.id", format!("fungi-test-reader-{}", free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        consumer.subscribe(&[topic]).expect("subscribed");
        let mut out = Vec::new();
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                ));
                last = Instant::now();
            }
        }
        out
    }

    /// Commits `offset` for every partition of `topic` in consumer group `group`.
    pub fn commit_group_offsets(&self, group: &str, topic: &str, partitions: i32, offset: i64) {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, rdkafka::Offset::Offset(offset))
                .expect("a partition");
        }
        consumer
            .commit(&list, CommitMode::Sync)
            .expect("offsets committed");
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
