//! Live progress of a running job on stderr: rows in/out per second and the watermark.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fungi_common::time::format_millis;
use fungi_execution::metrics::JobMetrics;
use indicatif::{ProgressBar, ProgressStyle};

/// Redraws a status line from the job's counters until dropped.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    last: Instant,
    last_in: u64,
    last_out: u64,
}

impl Progress {
    /// A progress line, or nothing when stderr is not a terminal or `enabled` is false.
    pub(crate) fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            last: Instant::now(),
            last_in: 0,
            last_out: 0,
        }
    }

    /// Recomputes rates from `metrics` (source output = records in; last operator's
    /// input = records out).
    pub(crate) fn update(&mut self, metrics: &JobMetrics) {
        let Some(bar) = &self.bar else { return };
        let ops = metrics.snapshot();
        let Some(last) = ops.last() else {
            return;
        };
        let read = fungi_execution::metrics::records_read(&ops);
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-3);
        let rate_in = read.saturating_sub(self.last_in) as f64 / dt;
        let rate_out = (last.records_in - self.last_out) as f64 / dt;
        self.last = now;
        self.last_in = read;
        self.last_out = last.records_in;
        let watermark = ops
            .iter()
            .filter_map(|o| o.watermark)
            .min()
            .map_or_else(|| "-".to_string(), format_millis);
        let late: u64 = ops.iter().map(|o| o.late_records).sum();
        bar.set_message(format!(
            "in {} rec/s ({} total) | out {} rec/s ({} total) | watermark {watermark} | late {late}",
            human(rate_in),
            human(read as f64),
            human(rate_out),
            human(last.records_in as f64),
        ));
    }

    /// Removes the line.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// 1234567 -> "1.23M".
pub(crate) fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}K", v / 1e3),
        v => format!("{v:.0}"),
    }
}
