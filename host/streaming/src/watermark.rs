//! Timestamps and watermarks.
//!
//! A [`WatermarkStrategy`] says how a source derives watermarks from the timestamps it
//! sees. [`SplitWatermarks`] applies it per split (Kafka partition, file, generator
//! shard) and combines them: the source's watermark is the minimum over the splits that
//! are not idle, so a fast split never pushes event time past a slow one, and a split
//! that has been quiet for longer than the idleness timeout stops holding event time
//! back. [`WatermarkCombiner`] does the same over the inputs of an operator.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::Int64Array;
use arrow::compute::max;
use fungi_common::Watermark;

/// How watermarks follow the timestamps seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkKind {
    /// Watermark = max timestamp seen - `delay` - 1 ms: records may arrive up to `delay`
    /// late without being late.
    BoundedOutOfOrderness {
        /// Tolerated lateness in ms.
        delay: i64,
    },
    /// Timestamps never decrease: watermark = max timestamp seen - 1 ms.
    Monotonous,
}

/// A watermark strategy: which column holds event time, how watermarks follow it, and
/// when a quiet split counts as idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// The event-time column (TIMESTAMP or BIGINT milliseconds).
    pub timestamp_column: String,
    /// How watermarks are derived.
    pub kind: WatermarkKind,
    /// A split without records for this long is idle.
    pub idle_timeout: Option<Duration>,
}

impl WatermarkStrategy {
    /// Watermarks that trail the largest timestamp by `delay`.
    pub fn bounded_out_of_orderness(column: impl Into<String>, delay: Duration) -> Self {
        WatermarkStrategy {
            timestamp_column: column.into(),
            kind: WatermarkKind::BoundedOutOfOrderness {
                delay: delay.as_millis() as i64,
            },
            idle_timeout: None,
        }
    }

    /// Watermarks for timestamps that never decrease.
    pub fn monotonous(column: impl Into<String>) -> Self {
        WatermarkStrategy {
            timestamp_column: column.into(),
            kind: WatermarkKind::Monotonous,
            idle_timeout: None,
        }
    }

    /// Marks a split idle after `timeout` without records.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    fn delay(&self) -> i64 {
        match self.kind {
            WatermarkKind::BoundedOutOfOrderness { delay } => delay,
            WatermarkKind::Monotonous => 0,
        }
    }
}

#[derive(Debug)]
struct SplitState {
    max_ts: i64,
    last_activity: Instant,
    idle: bool,
}

/// Per-split watermark generation with idleness, combined into one watermark.
#[derive(Debug)]
pub struct SplitWatermarks {
    strategy: WatermarkStrategy,
    splits: BTreeMap<u32, SplitState>,
    last_emitted: Option<Watermark>,
    last_time: Option<i64>,
}

impl SplitWatermarks {
    /// Tracks splits under `strategy`.
    pub fn new(strategy: WatermarkStrategy) -> Self {
        SplitWatermarks {
            strategy,
            splits: BTreeMap::new(),
            last_emitted: None,
            last_time: None,
        }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> &WatermarkStrategy {
        &self.strategy
    }

    /// Records the timestamps of a batch read from `split` (vectorized max).
    pub fn observe(&mut self, split: u32, timestamps: &Int64Array, now: Instant) {
        let batch_max = max(timestamps).unwrap_or(i64::MIN);
        let state = self.splits.entry(split).or_insert(SplitState {
            max_ts: i64::MIN,
            last_activity: now,
            idle: false,
        });
        state.max_ts = state.max_ts.max(batch_max);
        state.last_activity = now;
        state.idle = false;
    }

    /// Where a batch read from `split` must be cut so that watermarks follow every
    /// record, as in Flink: the indices of rows at or behind the watermark the rows
    /// before them would give (`max - delay`). The rows before such a row are observed
    /// and the watermark emitted before it is passed on, so whether a row is late never
    /// depends on how rows were grouped into batches. Rows within the bound (the usual
    /// case) cut nothing; the scan is one pass over the timestamps, without allocation
    /// unless there are cuts.
    pub fn cuts(&self, split: u32, timestamps: &Int64Array) -> Vec<usize> {
        let delay = self.strategy.delay();
        let mut max_ts = self.splits.get(&split).map_or(i64::MIN, |s| s.max_ts);
        let mut cuts = Vec::new();
        for (i, &t) in timestamps.values().iter().enumerate() {
            if i > 0 && max_ts > i64::MIN && t <= max_ts.saturating_sub(delay).saturating_sub(1) {
                cuts.push(i);
            }
            max_ts = max_ts.max(t);
        }
        cuts
    }

    /// Registers a split before its first record, so it holds event time back until it
    /// sends data or turns idle.
    pub fn add_split(&mut self, split: u32, now: Instant) {
        self.splits.entry(split).or_insert(SplitState {
            max_ts: i64::MIN,
            last_activity: now,
            idle: false,
        });
    }

    /// Forgets a finished split.
    pub fn remove_split(&mut self, split: u32) {
        self.splits.remove(&split);
    }

    /// The combined watermark, if it changed since the last call (advanced, or went idle
    /// or active). Call after each batch and on periodic ticks.
    pub fn poll(&mut self, now: Instant) -> Option<Watermark> {
        if let Some(timeout) = self.strategy.idle_timeout {
            for s in self.splits.values_mut() {
                if now.duration_since(s.last_activity) >= timeout {
                    s.idle = true;
                }
            }
        }
        let active = self.splits.values().filter(|s| !s.idle);
        let current = match active.map(|s| s.max_ts).min() {
            None if self.splits.is_empty() => return None,
            None => {
                // Every split went quiet, perhaps within one tick (a burst read at once
                // next to an empty split). Had each split's timeout been seen on its
                // own, the splits that went quiet last would have set event time just
                // before: that time is reached first, then the source is idle.
                if self.last_emitted != Some(Watermark::Idle)
                    && let Some(t) = self.time_before_idle()
                    && let Some(w) = self.emit(Watermark::EventTime(self.behind(t)))
                {
                    return Some(w);
                }
                Watermark::Idle
            }
            Some(i64::MIN) => return None,
            Some(max_ts) => Watermark::EventTime(self.behind(max_ts)),
        };
        self.emit(current)
    }

    /// The watermark that follows the timestamp `max_ts`.
    fn behind(&self, max_ts: i64) -> i64 {
        max_ts
            .saturating_sub(self.strategy.delay())
            .saturating_sub(1)
    }

    /// Of the splits that have sent records, the smallest timestamp among those that
    /// were active last.
    fn time_before_idle(&self) -> Option<i64> {
        let with_data = || self.splits.values().filter(|s| s.max_ts > i64::MIN);
        let last = with_data().map(|s| s.last_activity).max()?;
        with_data()
            .filter(|s| s.last_activity == last)
            .map(|s| s.max_ts)
            .min()
    }

    fn emit(&mut self, current: Watermark) -> Option<Watermark> {
        match (self.last_emitted, current) {
            (Some(Watermark::EventTime(prev)), Watermark::EventTime(t)) if t <= prev => None,
            (Some(Watermark::Idle), Watermark::Idle) => None,
            // Coming back from idle to an older time: event time never goes backwards.
            (_, Watermark::EventTime(t)) => {
                let t = self.last_time.map_or(t, |prev| prev.max(t));
                if self.last_emitted == Some(Watermark::EventTime(t)) {
                    return None;
                }
                self.last_emitted = Some(Watermark::EventTime(t));
                self.last_time = Some(t);
                Some(Watermark::EventTime(t))
            }
            (_, Watermark::Idle) => {
                self.last_emitted = Some(Watermark::Idle);
                Some(Watermark::Idle)
            }
        }
    }
}

/// The watermark of an operator with several inputs: the minimum over the inputs that
/// are not idle; idle when all are. Never goes backwards.
#[derive(Debug, Clone)]
pub struct WatermarkCombiner {
    inputs: Vec<Option<Watermark>>,
    current: Option<Watermark>,
    last_time: Option<i64>,
}

impl WatermarkCombiner {
    /// A combiner over `inputs` inputs, none of which has sent a watermark yet.
    pub fn new(inputs: usize) -> Self {
        WatermarkCombiner {
            inputs: vec![None; inputs],
            current: None,
            last_time: None,
        }
    }

    /// Records `wm` from `input`; returns the combined watermark if it changed.
    pub fn update(&mut self, input: usize, wm: Watermark) -> Option<Watermark> {
        self.inputs[input] = Some(wm);
        let mut min: Option<i64> = None;
        let mut all_idle = true;
        for w in &self.inputs {
            match w {
                // An input that has said nothing yet holds event time back.
                None => return None,
                Some(Watermark::Idle) => {}
                Some(Watermark::EventTime(t)) => {
                    all_idle = false;
                    min = Some(min.map_or(*t, |m| m.min(*t)));
                }
            }
        }
        let next = if all_idle {
            Watermark::Idle
        } else {
            let t = min.expect("some input is active");
            Watermark::EventTime(self.last_time.map_or(t, |p| p.max(t)))
        };
        if Some(next) == self.current {
            return None;
        }
        self.current = Some(next);
        if let Watermark::EventTime(t) = next {
            self.last_time = Some(t);
        }
        Some(next)
    }

    /// The current combined watermark.
    pub fn current(&self) -> Option<Watermark> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(v: &[i64]) -> Int64Array {
        Int64Array::from(v.to_vec())
    }

    #[test]
    fn bounded_out_of_orderness_trails_max() {
        let s = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_millis(100));
        let mut w = SplitWatermarks::new(s);
        let now = Instant::now();
        w.observe(0, &ts(&[1000, 1500, 1200]), now);
        assert_eq!(w.poll(now), Some(Watermark::EventTime(1399)));
        w.observe(0, &ts(&[1100]), now);
        assert_eq!(
            w.poll(now),
            None,
            "an older record does not move the watermark"
        );
    }

    #[test]
    fn batches_are_cut_before_rows_behind_the_watermark() {
        let mut w = SplitWatermarks::new(WatermarkStrategy::bounded_out_of_orderness(
            "ts",
            Duration::from_millis(10),
        ));
        let now = Instant::now();
        // Within the bound: no cut. 100 then 85 (behind 100 - 10): cut before 85.
        assert!(w.cuts(0, &ts(&[5, 1, 9])).is_empty());
        assert_eq!(w.cuts(0, &ts(&[100, 95, 85, 120, 109])), vec![2, 4]);
        w.observe(0, &ts(&[100]), now);
        // The first row of a batch meets the watermark sent after the batch before it.
        assert!(w.cuts(0, &ts(&[80, 101])).is_empty());
        assert_eq!(w.cuts(0, &ts(&[101, 80])), vec![1]);
    }

    #[test]
    fn idle_split_stops_holding_back() {
        let s = WatermarkStrategy::monotonous("ts").with_idleness(Duration::from_secs(5));
        let mut w = SplitWatermarks::new(s);
        let t0 = Instant::now();
        w.observe(0, &ts(&[1000]), t0);
        w.observe(1, &ts(&[50_000]), t0);
        assert_eq!(w.poll(t0), Some(Watermark::EventTime(999)));
        // Split 0 goes quiet; split 1 keeps sending.
        let t1 = t0 + Duration::from_secs(6);
        w.observe(1, &ts(&[60_000]), t1);
        assert_eq!(w.poll(t1), Some(Watermark::EventTime(59_999)));
        // Both quiet: the source is idle.
        let t2 = t1 + Duration::from_secs(6);
        assert_eq!(w.poll(t2), Some(Watermark::Idle));
        // Split 0 wakes up with old data: event time does not go back.
        w.observe(0, &ts(&[2000]), t2);
        assert_eq!(w.poll(t2), Some(Watermark::EventTime(59_999)));
    }

    #[test]
    fn a_burst_next_to_an_empty_split_reaches_event_time_before_going_idle() {
        let s = WatermarkStrategy::bounded_out_of_orderness("ts", Duration::from_secs(1))
            .with_idleness(Duration::from_millis(500));
        let mut w = SplitWatermarks::new(s);
        let t0 = Instant::now();
        w.add_split(1, t0);
        w.observe(0, &ts(&[10_000, 29_990]), t0);
        // The empty split holds event time back.
        assert_eq!(w.poll(t0), None);
        // Both go quiet within one tick: the burst's time first, then idle, once each.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(w.poll(t1), Some(Watermark::EventTime(28_989)));
        assert_eq!(w.poll(t1), Some(Watermark::Idle));
        assert_eq!(w.poll(t1 + Duration::from_secs(1)), None);
        // Records again: event time goes on from where it was.
        w.observe(0, &ts(&[40_000]), t1 + Duration::from_secs(2));
        assert_eq!(
            w.poll(t1 + Duration::from_secs(2)),
            Some(Watermark::EventTime(38_999))
        );
    }

    #[test]
    fn combiner_takes_min_over_active_inputs() {
        let mut c = WatermarkCombiner::new(2);
        assert_eq!(
            c.update(0, Watermark::EventTime(10)),
            None,
            "input 1 silent"
        );
        assert_eq!(
            c.update(1, Watermark::EventTime(5)),
            Some(Watermark::EventTime(5))
        );
        assert_eq!(c.update(1, Watermark::Idle), Some(Watermark::EventTime(10)));
        assert_eq!(c.update(0, Watermark::Idle), Some(Watermark::Idle));
        assert_eq!(
            c.update(1, Watermark::EventTime(7)),
            Some(Watermark::EventTime(10))
        );
    }
}
