//! The job's dead-letter output: records that could not be processed, kept with why.
//!
//! Sources and operators that meet a bad record under the dead-letter policy put it here
//! instead of failing the job. Nothing is dropped silently: every record is counted per
//! reason, logged, kept in a bounded ring that the CLI and the server API show, and
//! written to the job's durable targets ([`DeadLetterTarget`]: a JSON-lines file,
//! [`FileTarget`], or a Kafka topic from `fungi-connector`). A target that fails is
//! retried with backoff; the record stays in the ring and the log either way.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::warn;

/// One record that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// The operator or source that rejected it.
    pub operator: String,
    /// Class of failure, e.g. `"decode"`.
    pub reason: String,
    /// The full error message.
    pub message: String,
    /// Where the record came from, e.g. `data.json:17`.
    pub position: String,
    /// The original bytes, lossily as text.
    pub raw: String,
    /// When it was rejected (ms since the epoch).
    pub time: i64,
}

/// A durable place for dead letters.
pub trait DeadLetterTarget: Send + Sync + std::fmt::Debug {
    /// What it is, for logs (`file /data/dlq.jsonl`, `kafka topic dlq`).
    fn describe(&self) -> String;
    /// Writes one record durably (or as durably as the target allows).
    fn write(&self, letter: &DeadLetter) -> fungi_common::Result<()>;
}

/// Dead letters as JSON lines appended to a file (created with its directory).
#[derive(Debug)]
pub struct FileTarget {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl FileTarget {
    /// A target appending to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTarget {
            path: path.into(),
            file: Mutex::new(None),
        }
    }
}

impl DeadLetterTarget for FileTarget {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn write(&self, letter: &DeadLetter) -> fungi_common::Result<()> {
        let io = |e: std::io::Error| {
            fungi_common::FungiError::io(format!("dead-letter file {}", self.path.display()), e)
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(io)?,
            );
        }
        let mut line = serde_json::to_vec(letter).expect("a dead letter serializes");
        line.push(b'\n');
        let f = file.as_mut().expect("opened above");
        f.write_all(&line).and_then(|_| f.flush()).map_err(io)
    }
}

/// Dead letters of one job: counters per reason, the last `capacity` records, and the
/// durable targets every record is written to.
#[derive(Debug)]
pub struct DeadLetterQueue {
    capacity: usize,
    inner: Mutex<Inner>,
    targets: Vec<Arc<dyn DeadLetterTarget>>,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<DeadLetter>,
    counts: BTreeMap<String, u64>,
}

impl Default for DeadLetterQueue {
    fn default() -> Self {
        Self::new(1000)
    }
}

impl DeadLetterQueue {
    /// A queue keeping the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        DeadLetterQueue {
            capacity,
            inner: Mutex::new(Inner::default()),
            targets: Vec::new(),
        }
    }

    /// The same queue, also writing every record to `targets`.
    pub fn with_targets(mut self, targets: Vec<Arc<dyn DeadLetterTarget>>) -> Self {
        self.targets = targets;
        self
    }

    /// Adds a record.
    pub fn push(
        &self,
        operator: &str,
        reason: &str,
        message: String,
        position: String,
        raw: &[u8],
    ) {
        warn!(operator, reason, position = %position, error = %message, "record sent to the dead-letter output");
        let time = fungi_common::time::now_millis();
        let letter = DeadLetter {
            operator: operator.to_string(),
            reason: reason.to_string(),
            message,
            position,
            raw: String::from_utf8_lossy(raw).into_owned(),
            time,
        };
        for target in &self.targets {
            let written = fungi_reliability::RetryPolicy::default().run(
                |_| target.write(&letter),
                |_| true,
                |e, wait| warn!(target = %target.describe(), error = %e, "dead-letter target failed; retrying in {wait:?}"),
            );
            if let Err(e) = written {
                tracing::error!(target = %target.describe(), error = ?e, "dead-letter target failed for good; the record is in the log and the queue only");
            }
        }
        let mut inner = self.inner.lock().expect("poisoned");
        *inner.counts.entry(letter.reason.clone()).or_default() += 1;
        if inner.recent.len() == self.capacity {
            inner.recent.pop_front();
        }
        inner.recent.push_back(letter);
    }

    /// Total records, all reasons.
    pub fn total(&self) -> u64 {
        self.inner.lock().expect("poisoned").counts.values().sum()
    }

    /// Records per reason.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner.lock().expect("poisoned").counts.clone()
    }

    /// The most recent records, oldest first.
    pub fn recent(&self) -> Vec<DeadLetter> {
        self.inner
            .lock()
            .expect("poisoned")
            .recent
            .iter()
            .cloned()
            .collect()
    }
}
