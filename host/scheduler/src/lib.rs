//! Job supervision: runs a job until it finishes, resumes it from its latest complete
//! checkpoint when one exists (after a crash or a kill of an earlier process), and
//! restarts it after a failure as its restart strategy allows. Used by embedded mode
//! (`fungi run --local`) and by the server for every job it runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use fungi_checkpoint::{CheckpointStats, CheckpointStorage, RestartTracker};
use fungi_common::{FungiError, Result};
use fungi_execution::dead_letter::DeadLetterQueue;
use fungi_execution::executor::{JobSummary, LocalExecutor};
use fungi_execution::metrics::JobMetrics;
use fungi_execution::plan::PhysicalPlan;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The live counters of a supervised job's current attempt.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Per-operator counters.
    pub metrics: JobMetrics,
    /// Checkpoint counters, when the job checkpoints.
    pub checkpoints: Option<Arc<CheckpointStats>>,
    /// Failures of earlier attempts that the restart strategy recovered from, oldest
    /// first.
    pub exceptions: Vec<Exception>,
    /// Which attempt this is (0 for the first run).
    pub restarts: u32,
    /// The attempt's dead-letter output.
    pub dead_letters: Arc<DeadLetterQueue>,
}

/// One failure of a supervised job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exception {
    /// When it happened, ms since the epoch.
    pub time_ms: i64,
    /// The error.
    pub message: String,
}

/// How a supervised job ended, with the counters of its last attempt.
pub struct Supervised {
    /// The last attempt's result.
    pub result: Result<JobSummary>,
    /// The last attempt's counters.
    pub metrics: JobMetrics,
    /// The last attempt's dead letters.
    pub dead_letters: Arc<DeadLetterQueue>,
    /// Checkpoint counters of the last attempt, when the job checkpoints.
    pub checkpoints: Option<Arc<CheckpointStats>>,
}

impl Supervised {
    /// "N checkpoints (last: id, ms, bytes)", when the job checkpoints.
    pub fn checkpoint_line(&self) -> Option<String> {
        let s = self.checkpoints.as_ref()?;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Some(format!(
            "{} checkpoints ({} aborted); the last, {}, took {} ms and holds {:.1} KiB",
            load(&s.completed),
            load(&s.aborted),
            load(&s.last_id),
            load(&s.last_duration_ms),
            load(&s.last_size_bytes) as f64 / 1024.0
        ))
    }
}

/// Runs `plan` (see the module doc). `current` always holds the live counters of the
/// running attempt; `cancel` stops the job.
pub async fn supervise(
    plan: PhysicalPlan,
    savepoint: Option<PathBuf>,
    cancel: CancellationToken,
    current: watch::Sender<Live>,
) -> Supervised {
    let config = plan.graph.config.clone();
    let name = plan.graph.name.clone();
    let storage = match (&config.checkpointing.interval, &config.checkpointing.dir) {
        (Some(_), Some(dir)) => {
            match CheckpointStorage::open(dir, &config.checkpointing.storage_options) {
                Ok(s) => Some(s),
                Err(e) => return failed(e.into()),
            }
        }
        _ => None,
    };
    let mut tracker = RestartTracker::new(config.restart_strategy.clone());
    let mut exceptions: Vec<Exception> = Vec::new();
    loop {
        let checkpoint = match storage.as_ref().map(|s| s.latest_with_skipped()) {
            None => None,
            Some(Ok((checkpoint, skipped))) => {
                for reason in skipped {
                    eprintln!("warning: {reason}; falling back to the checkpoint before it");
                }
                checkpoint
            }
            Some(Err(e)) => return failed(e.into()),
        };
        // A savepoint is where the job starts; once it checkpoints on its own, it
        // resumes from its own checkpoints.
        let (checkpoint, from) = match (checkpoint, &savepoint) {
            (None, Some(path)) => {
                match CheckpointStorage::load_dir(path, &config.checkpointing.storage_options) {
                    Ok(c) => (Some(c), path.display().to_string()),
                    Err(e) => return failed(e.into()),
                }
            }
            (c, _) => (
                c,
                storage.as_ref().map(|s| s.location()).unwrap_or_default(),
            ),
        };
        if let Some(c) = &checkpoint {
            eprintln!(
                "job '{name}': resuming from checkpoint {} in {from}{}",
                c.id(),
                if c.metadata.finished {
                    " (taken after the end of input: only pending output is published)"
                } else {
                    ""
                }
            );
        }
        let handle = match LocalExecutor::for_config(&config).and_then(|e| {
            e.cancelled_by(cancel.clone())
                .start_from(plan.clone(), checkpoint.as_ref())
        }) {
            Ok(h) => h,
            Err(e) => return failed(e),
        };
        let metrics = handle.metrics().clone();
        let dead_letters = handle.dead_letters().clone();
        let checkpoints = handle.checkpoint_stats().cloned();
        let _ = current.send(Live {
            metrics: metrics.clone(),
            checkpoints: checkpoints.clone(),
            exceptions: exceptions.clone(),
            restarts: tracker.attempts(),
            dead_letters: dead_letters.clone(),
        });
        let result = handle.wait().await;
        match result {
            Err(e) if !matches!(e, FungiError::Cancelled) || !cancel.is_cancelled() => {
                exceptions.push(Exception {
                    time_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or_default(),
                    message: e.to_string(),
                });
                let Some(wait) = tracker.on_failure(Instant::now(), fastrand::f64()) else {
                    return Supervised {
                        result: Err(e),
                        metrics,
                        dead_letters,
                        checkpoints,
                    };
                };
                eprintln!(
                    "job '{name}' failed: {e}\n  restarting in {:.1}s (restart {}){}",
                    wait.as_secs_f64(),
                    tracker.attempts(),
                    if storage.is_some() {
                        " from its latest checkpoint"
                    } else {
                        " from the beginning (no checkpoints)"
                    }
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return Supervised {
                        result: Err(FungiError::Cancelled),
                        metrics,
                        dead_letters,
                        checkpoints,
                    },
                }
            }
            result => {
                return Supervised {
                    result,
                    metrics,
                    dead_letters,
                    checkpoints,
                };
            }
        }
    }
}

fn failed(e: FungiError) -> Supervised {
    Supervised {
        result: Err(e),
        metrics: JobMetrics::default(),
        dead_letters: Arc::default(),
        checkpoints: None,
    }
}
