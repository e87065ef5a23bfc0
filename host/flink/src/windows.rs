//! Window assigners under Flink's names.

use std::time::Duration;

use fungi_streaming::window::WindowAssigner;

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Fixed-size, non-overlapping event-time windows.
#[derive(Debug, Clone, Copy)]
pub struct TumblingEventTimeWindows;

impl TumblingEventTimeWindows {
    /// Windows of `size`.
    pub fn of(size: Duration) -> fungi_common::Result<WindowAssigner> {
        WindowAssigner::tumbling(ms(size))
    }
}

/// Fixed-size event-time windows that start every `slide`.
#[derive(Debug, Clone, Copy)]
pub struct SlidingEventTimeWindows;

impl SlidingEventTimeWindows {
    /// Windows of `size` every `slide`.
    pub fn of(size: Duration, slide: Duration) -> fungi_common::Result<WindowAssigner> {
        WindowAssigner::sliding(ms(size), ms(slide))
    }
}

/// Per-key windows closed by a gap of inactivity.
#[derive(Debug, Clone, Copy)]
pub struct EventTimeSessionWindows;

impl EventTimeSessionWindows {
    /// Sessions that end after `gap` without records.
    pub fn with_gap(gap: Duration) -> fungi_common::Result<WindowAssigner> {
        WindowAssigner::session(ms(gap))
    }
}

/// Windows that grow by `step` from a common start up to `max_size`.
#[derive(Debug, Clone, Copy)]
pub struct CumulativeEventTimeWindows;

impl CumulativeEventTimeWindows {
    /// Cumulating windows.
    pub fn of(step: Duration, max_size: Duration) -> fungi_common::Result<WindowAssigner> {
        WindowAssigner::cumulate(ms(step), ms(max_size))
    }
}
