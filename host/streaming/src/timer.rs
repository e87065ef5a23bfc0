//! Per-key timers, as in Flink's `TimerService`.
//!
//! Event-time timers fire when the watermark passes their time; processing-time timers
//! when the wall clock does. A key has at most one timer per (domain, time): registering
//! again is a no-op. Keys are the encoded key bytes with their key group, so timers can
//! be snapshotted and redistributed by key group like any other keyed state.

use std::collections::BTreeSet;

/// A timer: when, for which key (and its key group).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timer {
    /// Firing time in ms (event time or wall clock, by queue).
    pub time: i64,
    /// Key group of the key.
    pub key_group: u32,
    /// The encoded key.
    pub key: Vec<u8>,
}

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// The watermark.
    EventTime,
    /// The wall clock.
    ProcessingTime,
}

/// Event-time and processing-time timer queues for one operator subtask.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct TimerService {
    event: BTreeSet<Timer>,
    processing: BTreeSet<Timer>,
}

impl TimerService {
    /// An empty timer service.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut BTreeSet<Timer> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Registers a timer (idempotent).
    pub fn register(&mut self, domain: TimeDomain, timer: Timer) {
        self.queue(domain).insert(timer);
    }

    /// Deletes a timer if it is registered.
    pub fn delete(&mut self, domain: TimeDomain, timer: &Timer) {
        self.queue(domain).remove(timer);
    }

    /// Removes and returns, in time order, the timers of `domain` due at `time`
    /// (inclusive).
    pub fn advance(&mut self, domain: TimeDomain, time: i64) -> Vec<Timer> {
        let queue = self.queue(domain);
        let mut fired = Vec::new();
        while let Some(first) = queue.first() {
            if first.time > time {
                break;
            }
            fired.push(queue.pop_first().expect("first exists"));
        }
        fired
    }

    /// Time of the next processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.processing.first().map(|t| t.time)
    }

    /// Number of registered timers in both domains.
    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    /// Keeps only the timers whose key group `keep` accepts (after a restore at another
    /// parallelism).
    pub fn retain_key_groups(&mut self, keep: impl Fn(u32) -> bool) {
        self.event.retain(|t| keep(t.key_group));
        self.processing.retain(|t| keep(t.key_group));
    }

    /// Adds every timer of `other`.
    pub fn extend(&mut self, other: TimerService) {
        self.event.extend(other.event);
        self.processing.extend(other.processing);
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(time: i64, key: &[u8]) -> Timer {
        Timer {
            time,
            key_group: 0,
            key: key.to_vec(),
        }
    }

    #[test]
    fn fires_in_order_and_dedups() {
        let mut s = TimerService::new();
        s.register(TimeDomain::EventTime, t(20, b"a"));
        s.register(TimeDomain::EventTime, t(10, b"b"));
        s.register(TimeDomain::EventTime, t(10, b"b"));
        s.register(TimeDomain::ProcessingTime, t(5, b"a"));
        assert_eq!(s.len(), 3);
        let fired = s.advance(TimeDomain::EventTime, 15);
        assert_eq!(fired, vec![t(10, b"b")]);
        s.delete(TimeDomain::EventTime, &t(20, b"a"));
        assert!(s.advance(TimeDomain::EventTime, 100).is_empty());
        assert_eq!(s.next_processing_time(), Some(5));
    }
}
