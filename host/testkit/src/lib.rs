//! Real services for Fungi's tests, started on loopback and stopped when dropped.
//!
//! The binaries are installed by `scripts/install-test-services.sh` (which both
//! `scripts/test.sh` and `.ci/run` call) into `$FUNGI_TOOLS/bin`, by default
//! `~/.cache/fungi/tools/bin`; a test that cannot find one fails and says how to get it.
//!
//! - [`S3Server`]: `s3s-fs`, an S3-compatible server over a temporary directory.
//! - [`KafkaBroker`]: `tansu`, a Kafka-compatible broker keeping its data in memory,
//!   with helpers to create topics, produce and read them.

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

/// A Kafka-compatible broker (`tansu`, storage in memory) on loopback.
pub struct KafkaBroker {
    child: Child,
    /// `127.0.0.1:<port>`, for `bootstrap.servers`.
    pub bootstrap: String,
}

impl KafkaBroker {
    /// Starts a broker.
    pub fn start() -> KafkaBroker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tool("tansu"))
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for(addr, &mut child, "tansu");
        KafkaBroker {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
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

    /// Writes `records` (key, value) to `topic` and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &[u8])]) {
        self.produce_into(topic, None, records)
    }

    /// [`produce`](Self::produce) into one partition.
    pub fn produce_to(&self, topic: &str, partition: i32, records: &[(Option<&str>, &[u8])]) {
        self.produce_into(topic, Some(partition), records)
    }

    fn produce_into(&self, topic: &str, partition: Option<i32>, records: &[(Option<&str>, &[u8])]) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        // One record per batch: tansu 0.6 serves a fetch that starts inside a record
        // batch with nothing at all (Kafka returns the batch and the client skips the
        // records before the offset), so a consumer resuming mid-batch would wait
        // forever. With one record per batch every offset starts a batch.
        let producer: BaseProducer = self
            .config()
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .create()
            .expect("a producer");
        for (key, value) in records {
            let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(*value);
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

    /// Every record of `topic` (partition, offset, key, value), read from the beginning
    /// until nothing arrived for `quiet`.
    pub fn read_all(&self, topic: &str, quiet: Duration) -> Vec<ReadRecord> {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self
            .config()
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
