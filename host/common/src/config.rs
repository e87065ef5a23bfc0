//! Job-level configuration with documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{FungiError, Result};

/// Default number of key groups (the upper bound for any operator's parallelism).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// Settings that apply to a whole job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobConfig {
    /// Parallelism of operators that do not set their own. Default 1.
    pub parallelism: u32,
    /// Number of key groups; keyed state is rescaled in these units. Default 128.
    pub max_parallelism: u32,
    /// Capacity, in batches, of each channel between two subtasks. A full channel blocks
    /// its producer (backpressure). Default 8.
    pub channel_capacity: usize,
    /// Target number of rows per batch produced by sources. Default 8192.
    pub batch_size: usize,
    /// How often processing-time timers and idleness are checked. Default 100 ms.
    #[serde(with = "duration_ms")]
    pub tick_interval: Duration,
    /// How often sources emit latency markers (Flink's `metrics.latency.interval`); the
    /// job's summary then holds the end-to-end latency percentiles. Default: off.
    #[serde(with = "optional_duration_ms")]
    pub latency_interval: Option<Duration>,
    /// A source split (file, partition) without records for this long stops holding
    /// back event time (Flink's `table.exec.source.idle-timeout`). Default: never.
    #[serde(default, with = "optional_duration_ms")]
    pub source_idle_timeout: Option<Duration>,
    /// Periodic checkpoints (off unless an interval is set).
    pub checkpointing: CheckpointConfig,
    /// Where keyed state lives. Default memory.
    pub state_backend: StateBackendKind,
    /// What happens when the job fails. Default: no restart.
    pub restart_strategy: RestartStrategy,
}

/// How a failed job is restarted (from its latest complete checkpoint), as Flink's
/// `restart-strategy.*` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RestartStrategy {
    /// Fail for good on the first failure.
    #[default]
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each.
        #[serde(with = "duration_ms")]
        delay: Duration,
    },
    /// Waits grow by `multiplier` from `initial` to `max`, each shortened or lengthened by
    /// up to `jitter` (a fraction); after `reset_after` without failure the wait is back
    /// to `initial`. `attempts` bounds the restarts in a row.
    ExponentialDelay {
        /// First wait.
        #[serde(with = "duration_ms")]
        initial: Duration,
        /// Longest wait.
        #[serde(with = "duration_ms")]
        max: Duration,
        /// Growth per failure.
        multiplier: f64,
        /// Random fraction added or taken (0 to 1).
        jitter: f64,
        /// Quiet time after which the wait resets.
        #[serde(with = "duration_ms")]
        reset_after: Duration,
        /// Restarts in a row allowed.
        attempts: u32,
    },
    /// At most `max_failures` within any `interval`, `delay` before each restart.
    FailureRate {
        /// Failures allowed per interval.
        max_failures: u32,
        /// The measuring interval.
        #[serde(with = "duration_ms")]
        interval: Duration,
        /// Wait before each restart.
        #[serde(with = "duration_ms")]
        delay: Duration,
    },
}

/// Which state backend a job's keyed state uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    /// On the heap; snapshots copy the state.
    #[default]
    Memory,
    /// In an embedded RocksDB; checkpoints hard-link its files.
    Rocksdb,
}

/// Checkpoint settings, with Flink's names in SQL (`execution.checkpointing.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Time between two checkpoint triggers; `None` turns checkpoints off.
    #[serde(with = "optional_duration_ms")]
    pub interval: Option<Duration>,
    /// Where the job's checkpoints are (`chk-N/` subdirectories): a local directory or an
    /// `s3://bucket/prefix` URL.
    pub dir: Option<PathBuf>,
    /// Options of the object storage behind an `s3://` location (`s3.endpoint`,
    /// `s3.access-key`, `s3.secret-key`, `s3.region`, `s3.path.style.access`); unset ones
    /// come from the `AWS_*` environment variables.
    #[serde(default)]
    pub storage_options: std::collections::BTreeMap<String, String>,
    /// A checkpoint not complete after this long is aborted. Default 10 min.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next. Default 0.
    #[serde(with = "duration_ms")]
    pub min_pause: Duration,
    /// Complete checkpoints kept on disk (older ones are deleted). Default 3.
    pub retained: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            dir: None,
            storage_options: Default::default(),
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            retained: 3,
        }
    }
}

impl CheckpointConfig {
    /// Whether checkpoints are taken.
    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }

    /// Checks that an enabled configuration is complete.
    pub fn validate(&self) -> Result<()> {
        if let Some(interval) = self.interval {
            if self.dir.is_none() {
                return Err(FungiError::Config(
                    "checkpoints are on (execution.checkpointing.interval) but no directory is set: \
                     set 'execution.checkpointing.dir'"
                        .into(),
                ));
            }
            if interval.is_zero() {
                return Err(FungiError::Config(
                    "execution.checkpointing.interval must be positive".into(),
                ));
            }
            if self.retained == 0 {
                return Err(FungiError::Config(
                    "execution.checkpointing.num-retained must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            channel_capacity: 8,
            batch_size: 8192,
            tick_interval: Duration::from_millis(100),
            latency_interval: None,
            source_idle_timeout: None,
            checkpointing: CheckpointConfig::default(),
            state_backend: StateBackendKind::Memory,
            restart_strategy: RestartStrategy::None,
        }
    }
}

impl JobConfig {
    /// Checks that the configuration is complete and usable, as a job needs it.
    pub fn validate(&self) -> Result<()> {
        self.validate_values()?;
        self.checkpointing.validate()
    }

    /// Checks each value on its own (settings may still be incomplete, as between two
    /// SQL `SET` statements).
    pub fn validate_values(&self) -> Result<()> {
        if self.parallelism == 0 {
            return Err(FungiError::Config("parallelism must be at least 1".into()));
        }
        if self.max_parallelism == 0 || self.max_parallelism > u16::MAX as u32 + 1 {
            return Err(FungiError::Config(format!(
                "max_parallelism must be between 1 and 65536, got {}",
                self.max_parallelism
            )));
        }
        if self.parallelism > self.max_parallelism {
            return Err(FungiError::Config(format!(
                "parallelism {} exceeds max_parallelism {}",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.channel_capacity == 0 || self.batch_size == 0 {
            return Err(FungiError::Config(
                "channel_capacity and batch_size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Serde helper: durations as integer milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes a duration as milliseconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    /// Deserializes milliseconds into a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde helper: optional durations as integer milliseconds (absent or null for `None`).
pub mod optional_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes an optional duration as milliseconds.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes optional milliseconds into a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
