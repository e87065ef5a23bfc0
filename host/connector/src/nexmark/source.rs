//! The Nexmark generator as a parallel source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use fungi_common::ids::CheckpointId;
use fungi_common::ids::SubtaskInfo;
use fungi_common::{FungiError, Result};
use fungi_execution::RestoredState;
use fungi_execution::source::{Source, SourceContext, SourceEvent, SourceFactory};

use super::{GeneratorPosition, NexmarkConfig, NexmarkGenerator, NexmarkTable};
use crate::options::Options;

/// A source of one Nexmark table. Options: `table` (`bid`, `auction`, `person`; default
/// `bid`), `events` (total events of all kinds; unbounded if absent),
/// `events-per-second` (spacing of event time, default 10000), `base-time` (ms of event
/// 0), `rate-limit` (events per wall-clock second across subtasks; unthrottled if absent).
#[derive(Debug)]
pub struct NexmarkSource {
    generator: NexmarkGenerator,
    batch_size: usize,
    split: u32,
    rate_limit: Option<f64>,
    started: Option<Instant>,
    produced: u64,
    parallelism: u32,
}

/// Options understood by [`NexmarkSource::factory`].
pub const NEXMARK_OPTIONS: &[&str] = &[
    "table",
    "events",
    "events-per-second",
    "base-time",
    "rate-limit",
];

impl NexmarkSource {
    /// Parses options into (table, config, per-subtask rate limit).
    pub fn parse(options: &Options) -> Result<(NexmarkTable, NexmarkConfig, Option<u64>)> {
        let table = NexmarkTable::parse(options.get("table").unwrap_or("bid"))?;
        let mut config = NexmarkConfig {
            max_events: options.get_u64("events")?,
            ..Default::default()
        };
        if let Some(eps) = options.get_u64("events-per-second")? {
            config.events_per_second = eps;
        }
        if let Some(base) = options.get_i64("base-time")? {
            config.base_time = base;
        }
        let rate = options.get_u64("rate-limit")?;
        options.check_all_used(NEXMARK_OPTIONS)?;
        Ok((table, config, rate))
    }

    /// A factory from connector options; also returns the schema.
    pub fn factory(options: &Options) -> Result<(SourceFactory, SchemaRef)> {
        let (table, config, rate) = Self::parse(options)?;
        Ok((Self::factory_for(table, config, rate), table.schema()))
    }

    /// A factory for `table` under `config`, throttled to `rate_limit` events per second.
    pub fn factory_for(
        table: NexmarkTable,
        config: NexmarkConfig,
        rate_limit: Option<u64>,
    ) -> SourceFactory {
        Arc::new(move |s: &SubtaskInfo| {
            let generator = NexmarkGenerator::new(table, config.clone(), s.index, s.parallelism)?;
            // Rows of this table are a fixed share of all events.
            let share = match table {
                NexmarkTable::Bid => 46.0 / 50.0,
                NexmarkTable::Auction => 3.0 / 50.0,
                NexmarkTable::Person => 1.0 / 50.0,
            };
            Ok(Box::new(NexmarkSource {
                generator,
                batch_size: 8192,
                split: s.index,
                rate_limit: rate_limit.map(|r| r as f64 * share / s.parallelism as f64),
                started: None,
                produced: 0,
                parallelism: s.parallelism,
            }) as Box<dyn Source>)
        })
    }
}

#[async_trait::async_trait]
impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        self.generator.schema().clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<Vec<u32>> {
        self.batch_size = ctx.batch_size;
        Ok(vec![self.split])
    }

    async fn next(&mut self) -> Result<SourceEvent> {
        let mut rows = self.batch_size;
        if let Some(rate) = self.rate_limit {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            if due <= self.produced {
                return Ok(SourceEvent::Pending(Duration::from_millis(10)));
            }
            rows = rows.min((due - self.produced) as usize).max(1);
        }
        Ok(match self.generator.next_batch(rows)? {
            Some(batch) => {
                self.produced += batch.num_rows() as u64;
                SourceEvent::Batch {
                    split: self.split,
                    batch,
                }
            }
            None => SourceEvent::Finished,
        })
    }

    fn snapshot_position(&mut self, _checkpoint: CheckpointId) -> Result<Vec<u8>> {
        Ok(postcard::to_stdvec(&self.generator.position()).expect("position encoding cannot fail"))
    }

    fn restore_position(&mut self, state: &RestoredState) -> Result<()> {
        let positions = state
            .states
            .iter()
            .map(|(_, b)| {
                postcard::from_bytes::<GeneratorPosition>(b)
                    .map_err(|e| FungiError::State(format!("bad Nexmark generator position: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let same = state.old_parallelism == self.parallelism;
        self.generator.restore(&positions, same);
        Ok(())
    }
}
