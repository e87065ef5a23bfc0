//! Window assigners and slicing.
//!
//! Tumbling, sliding (hop) and cumulate windows are *sliced*: time is cut into slices of
//! `slice_size` (the window size, the greatest common divisor of size and slide, or the
//! cumulate step), each record is added to exactly one slice, and a window's result is the
//! merge of the slices it spans. A record is therefore aggregated once however many
//! windows overlap it. Session windows depend on the data and are merged per key instead.

use fungi_common::{FungiError, Result};

/// A window: `[start, end)` in event-time milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
}

impl TimeWindow {
    /// The largest timestamp that belongs to the window; it fires when the watermark
    /// reaches this value.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// How records are assigned to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length in ms.
        size: i64,
        /// Shift of window boundaries from the epoch, in ms.
        offset: i64,
    },
    /// Fixed-size windows that start every `slide` ms (HOP in SQL).
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
        /// Shift of window boundaries from the epoch, in ms.
        offset: i64,
    },
    /// Windows that close after `gap` ms without records for their key.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
    /// Windows that grow by `step` from a common start until they reach `max_size`
    /// (CUMULATE in SQL): `[s, s+step)`, `[s, s+2*step)`, ... `[s, s+max_size)`.
    Cumulate {
        /// Growth step in ms.
        step: i64,
        /// Final window length in ms (a multiple of `step`).
        max_size: i64,
    },
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn positive(what: &str, v: i64) -> Result<()> {
    if v <= 0 {
        Err(FungiError::Plan(format!(
            "window {what} must be positive, got {v} ms"
        )))
    } else {
        Ok(())
    }
}

impl WindowAssigner {
    /// Tumbling windows of `size` ms.
    pub fn tumbling(size: i64) -> Result<Self> {
        positive("size", size)?;
        Ok(WindowAssigner::Tumbling { size, offset: 0 })
    }

    /// Sliding windows of `size` ms every `slide` ms.
    pub fn sliding(size: i64, slide: i64) -> Result<Self> {
        positive("size", size)?;
        positive("slide", slide)?;
        if slide > size {
            return Err(FungiError::Plan(format!(
                "sliding window slide ({slide} ms) is larger than its size ({size} ms): records between windows would be lost"
            )));
        }
        Ok(WindowAssigner::Sliding {
            size,
            slide,
            offset: 0,
        })
    }

    /// Session windows with inactivity `gap` ms.
    pub fn session(gap: i64) -> Result<Self> {
        positive("gap", gap)?;
        Ok(WindowAssigner::Session { gap })
    }

    /// Cumulate windows growing by `step` ms up to `max_size` ms.
    pub fn cumulate(step: i64, max_size: i64) -> Result<Self> {
        positive("step", step)?;
        positive("max size", max_size)?;
        if max_size % step != 0 {
            return Err(FungiError::Plan(format!(
                "cumulate window max size ({max_size} ms) must be a multiple of its step ({step} ms)"
            )));
        }
        Ok(WindowAssigner::Cumulate { step, max_size })
    }

    /// The slice length, or `None` for session windows (which are not sliced).
    pub fn slice_size(&self) -> Option<i64> {
        match *self {
            WindowAssigner::Tumbling { size, .. } => Some(size),
            WindowAssigner::Sliding { size, slide, .. } => Some(gcd(size, slide)),
            WindowAssigner::Cumulate { step, .. } => Some(step),
            WindowAssigner::Session { .. } => None,
        }
    }

    fn offset(&self) -> i64 {
        match *self {
            WindowAssigner::Tumbling { offset, .. } | WindowAssigner::Sliding { offset, .. } => {
                offset
            }
            _ => 0,
        }
    }

    /// Start of the slice holding timestamp `ts` (sliced assigners only).
    #[inline]
    pub fn slice_start(&self, ts: i64, slice: i64) -> i64 {
        ts - (ts - self.offset()).rem_euclid(slice)
    }

    /// Calls `f` with every window that contains the slice starting at `slice_start`
    /// (sliced assigners only), in order of their end.
    pub fn windows_of_slice(&self, slice_start: i64, mut f: impl FnMut(TimeWindow)) {
        match *self {
            WindowAssigner::Tumbling { size, .. } => f(TimeWindow {
                start: slice_start,
                end: slice_start + size,
            }),
            WindowAssigner::Sliding { size, slide, .. } => {
                let slice = gcd(size, slide);
                // Window starts are aligned to the slide; the last one that contains the
                // slice starts at or before the slice, the first ends after it.
                let last_start = slice_start - (slice_start - self.offset()).rem_euclid(slide);
                // Windows further back end before the slice does.
                let back = (last_start + size - slice_start - slice) / slide;
                for k in (0..=back).rev() {
                    let s = last_start - k * slide;
                    f(TimeWindow {
                        start: s,
                        end: s + size,
                    });
                }
            }
            WindowAssigner::Cumulate { step, max_size } => {
                let start = slice_start - slice_start.rem_euclid(max_size);
                let mut end = slice_start + step;
                while end <= start + max_size {
                    f(TimeWindow { start, end });
                    end += step;
                }
            }
            WindowAssigner::Session { .. } => {}
        }
    }

    /// End of the last window that contains the slice starting at `slice_start`.
    pub fn last_window_end(&self, slice_start: i64) -> i64 {
        match *self {
            WindowAssigner::Tumbling { size, .. } => slice_start + size,
            WindowAssigner::Sliding { size, slide, .. } => {
                slice_start - (slice_start - self.offset()).rem_euclid(slide) + size
            }
            WindowAssigner::Cumulate { max_size, .. } => {
                slice_start - slice_start.rem_euclid(max_size) + max_size
            }
            WindowAssigner::Session { gap } => slice_start + gap,
        }
    }

    /// Start of the first window that contains the slice starting at `slice_start`: no
    /// window that includes this slice reaches further back.
    pub fn first_window_start(&self, slice_start: i64) -> i64 {
        let mut first = slice_start;
        self.windows_of_slice(slice_start, |w| first = first.min(w.start));
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(a: WindowAssigner, slice: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        a.windows_of_slice(slice, |w| v.push((w.start, w.end)));
        v
    }

    #[test]
    fn sliding_slices_belong_to_every_overlapping_window() {
        let a = WindowAssigner::sliding(10, 5).unwrap();
        assert_eq!(a.slice_size(), Some(5));
        assert_eq!(a.slice_start(12, 5), 10);
        assert_eq!(windows(a, 10), vec![(5, 15), (10, 20)]);
        assert_eq!(a.last_window_end(10), 20);
        let b = WindowAssigner::sliding(10, 4).unwrap();
        assert_eq!(b.slice_size(), Some(2));
        // Slice [6,8) lies in windows starting at 0 and 4.
        assert_eq!(windows(b, 6), vec![(0, 10), (4, 14)]);
        assert_eq!(windows(b, 8), vec![(0, 10), (4, 14), (8, 18)]);
    }

    #[test]
    fn cumulate_windows_grow() {
        let a = WindowAssigner::cumulate(2, 6).unwrap();
        assert_eq!(windows(a, 2), vec![(0, 4), (0, 6)]);
        assert_eq!(windows(a, 6), vec![(6, 8), (6, 10), (6, 12)]);
        assert!(WindowAssigner::cumulate(4, 6).is_err());
    }

    #[test]
    fn negative_times_align() {
        let a = WindowAssigner::tumbling(10).unwrap();
        assert_eq!(a.slice_start(-1, 10), -10);
    }
}
