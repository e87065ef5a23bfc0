//! Job-level configuration with documented defaults.

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
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: 1,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            channel_capacity: 8,
            batch_size: 8192,
            tick_interval: Duration::from_millis(100),
        }
    }
}

impl JobConfig {
    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<()> {
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
