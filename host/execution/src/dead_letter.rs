//! The job's dead-letter output: records that could not be processed, kept with why.
//!
//! Sources and operators that meet a bad record under the dead-letter policy put it here
//! instead of failing the job. Nothing is dropped silently: every record is counted per
//! reason, logged, and the most recent ones are kept in a bounded ring for the CLI (and
//! later the server API) to show. Durable targets (file, Kafka) come with the reliability
//! crate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

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

/// Dead letters of one job: counters per reason and the last `capacity` records.
#[derive(Debug)]
pub struct DeadLetterQueue {
    capacity: usize,
    inner: Mutex<Inner>,
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
        }
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
