//! The checkpoint coordinator: triggers barriers, collects the subtasks' snapshots,
//! writes complete checkpoints and announces them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fungi_common::config::CheckpointConfig;
use fungi_common::ids::CheckpointId;
use fungi_common::time::now_millis;
use fungi_common::{FungiError, Result};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::storage::{SavepointRequest, SavepointResponse};
use crate::{CheckpointStorage, TaskKey, TaskSnapshot};

/// What a subtask tells the coordinator. (A subtask that cannot snapshot fails the job
/// instead of declining: a checkpoint that would lose state is never taken.)
#[derive(Debug)]
pub enum TaskReport {
    /// The subtask snapshotted its operators for checkpoint `checkpoint`.
    Snapshot {
        /// Checkpoint id.
        checkpoint: CheckpointId,
        /// Which subtask.
        task: TaskKey,
        /// Its chain's parallelism.
        parallelism: u32,
        /// The state.
        snapshot: TaskSnapshot,
    },
    /// The subtask consumed all its input; its end state is for the final checkpoint.
    Finished {
        /// Which subtask.
        task: TaskKey,
        /// Its chain's parallelism.
        parallelism: u32,
        /// The state after the end of input.
        snapshot: TaskSnapshot,
    },
}

/// A checkpoint that is complete: safe to publish what was pre-committed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completed {
    /// Its id (0 before the first).
    pub id: CheckpointId,
    /// The final checkpoint, written after every subtask finished.
    pub last: bool,
}

/// The ends of the coordinator's channels a subtask holds.
#[derive(Debug, Clone)]
pub struct TaskChannels {
    /// The id of the latest triggered checkpoint (source subtasks inject its barrier).
    pub trigger: watch::Receiver<CheckpointId>,
    /// The latest complete checkpoint.
    pub completed: watch::Receiver<Completed>,
    /// Where snapshots and declines go.
    pub reports: mpsc::UnboundedSender<TaskReport>,
}

/// A future a [`CompletionGuard`] returns.
pub type GuardFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<T, String>> + Send + 'a>,
>;

/// Fences a coordinator whose right to act can be taken away: in a highly available
/// cluster, only the JobManager that leads may number, complete and announce
/// checkpoints. A coordinator with a guard asks it before each of these steps and stops
/// (with an error naming the refusal) at the first refusal, announcing nothing.
pub trait CompletionGuard: Send + Sync + 'static {
    /// Records that checkpoint `id` is being taken, so that no later leader reuses its
    /// number (a deposed leader may still write the directory of a number it took).
    fn reserve(&self, id: CheckpointId) -> GuardFuture<'_, ()>;
    /// Whether this coordinator may still write a checkpoint (a local check, no
    /// round trip: called just before the write).
    fn may_write(&self) -> std::result::Result<(), String>;
    /// Records checkpoint `id` as the job's latest complete one; only after this
    /// succeeds are sinks told to publish it.
    fn commit(&self, id: CheckpointId) -> GuardFuture<'_, ()>;
}

/// Counters of a job's checkpoints, for metrics and tests.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints completed.
    pub completed: AtomicU64,
    /// Checkpoints aborted (timed out, not written, or superseded by the end of input).
    pub aborted: AtomicU64,
    /// Id of the last complete checkpoint.
    pub last_id: AtomicU64,
    /// Its duration, trigger to complete, in ms.
    pub last_duration_ms: AtomicU64,
    /// Its size in bytes.
    pub last_size_bytes: AtomicU64,
    /// Set when the job was stopped with a savepoint: where the savepoint is.
    pub stopped_with_savepoint: Mutex<Option<PathBuf>>,
}

struct InFlight {
    id: CheckpointId,
    started: Instant,
    timestamp_ms: i64,
    snapshots: BTreeMap<TaskKey, (u32, TaskSnapshot)>,
    /// The savepoint request this checkpoint answers.
    savepoint: Option<SavepointRequest>,
}

/// Runs a job's checkpoints; see the crate documentation.
pub struct Coordinator {
    config: CheckpointConfig,
    storage: CheckpointStorage,
    job: String,
    expected: usize,
    next_id: CheckpointId,
    trigger: watch::Sender<CheckpointId>,
    completed: watch::Sender<Completed>,
    reports: mpsc::UnboundedReceiver<TaskReport>,
    finished: BTreeMap<TaskKey, (u32, TaskSnapshot)>,
    stats: Arc<CheckpointStats>,
    guard: Option<Arc<dyn CompletionGuard>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("job", &self.job)
            .field("expected", &self.expected)
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator for `expected` subtasks whose next checkpoint id is `next_id` (one
    /// past the checkpoint the job was restored from). Returns the channels every subtask
    /// gets a clone of.
    pub fn new(
        config: CheckpointConfig,
        storage: CheckpointStorage,
        job: impl Into<String>,
        expected: usize,
        next_id: u64,
    ) -> (Self, TaskChannels) {
        let (trigger_tx, trigger_rx) = watch::channel(CheckpointId::default());
        let (completed_tx, completed_rx) = watch::channel(Completed {
            id: CheckpointId(next_id.saturating_sub(1)),
            last: false,
        });
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        (
            Coordinator {
                config,
                storage,
                job: job.into(),
                expected,
                next_id: CheckpointId(next_id.max(1)),
                trigger: trigger_tx,
                completed: completed_tx,
                reports: reports_rx,
                finished: BTreeMap::new(),
                stats: Arc::default(),
                guard: None,
            },
            TaskChannels {
                trigger: trigger_rx,
                completed: completed_rx,
                reports: reports_tx,
            },
        )
    }

    /// Fences this coordinator with `guard`; its first checkpoint id is at least
    /// `first_id` (past every number an earlier leader reserved).
    pub fn with_guard(mut self, guard: Arc<dyn CompletionGuard>, first_id: u64) -> Self {
        self.guard = Some(guard);
        self.next_id = self.next_id.max(CheckpointId(first_id));
        self
    }

    /// Refuses with the guard's reason, as the error that stops the coordinator.
    fn fenced(id: CheckpointId, reason: String) -> FungiError {
        FungiError::State(format!("checkpoint {id} was not completed: {reason}"))
    }

    /// The directory of the job's checkpoints (local, or the local cache of object
    /// storage), where operators write their own checkpoint files.
    pub fn storage_dir(&self) -> &std::path::Path {
        self.storage.dir()
    }

    /// The job's checkpoint counters.
    pub fn stats(&self) -> Arc<CheckpointStats> {
        self.stats.clone()
    }

    /// Triggers checkpoints until every subtask finished, then writes the final one.
    /// Returns when the final checkpoint is complete, or when `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let interval = self.config.interval.unwrap_or(Duration::from_secs(3600));
        let mut next_trigger = Instant::now() + interval;
        let mut in_flight: Option<InFlight> = None;
        let mut savepoint: Option<SavepointRequest> = None;
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        loop {
            let deadline = match &in_flight {
                Some(f) => f.started + self.config.timeout,
                None => next_trigger,
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = poll.tick(), if savepoint.is_none() => {
                    if let Some(request) = self.storage.take_savepoint_request() {
                        info!(job = %self.job, stop = request.stop, "savepoint requested");
                        savepoint = Some(request);
                        if in_flight.is_none() {
                            next_trigger = Instant::now();
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Some(f) = in_flight.take() {
                        warn!(job = %self.job, checkpoint = %f.id, "checkpoint timed out after {:?}; aborted", self.config.timeout);
                        self.abort(f, "timed out");
                        next_trigger = Instant::now() + self.config.min_pause;
                    } else if self.finished.is_empty() {
                        let id = self.next_id;
                        self.next_id = id.next();
                        if let Some(guard) = &self.guard {
                            guard.reserve(id).await.map_err(|e| Self::fenced(id, e))?;
                        }
                        debug!(job = %self.job, checkpoint = %id, "triggering checkpoint");
                        in_flight = Some(InFlight {
                            id,
                            started: Instant::now(),
                            timestamp_ms: now_millis(),
                            snapshots: BTreeMap::new(),
                            savepoint: savepoint.take(),
                        });
                        let _ = self.trigger.send(id);
                    } else {
                        // Some subtasks finished: only the final checkpoint is left to take.
                        next_trigger = Instant::now() + interval;
                    }
                }
                report = self.reports.recv() => {
                    let Some(report) = report else {
                        // Every subtask is gone without finishing: the job failed or was
                        // cancelled; its error is reported by the tasks.
                        return Ok(());
                    };
                    match report {
                        TaskReport::Snapshot { checkpoint, task, parallelism, snapshot } => {
                            debug!(job = %self.job, checkpoint = %checkpoint, task = %task, "snapshot received");
                            let Some(f) = in_flight.as_mut().filter(|f| f.id == checkpoint) else {
                                continue;
                            };
                            f.snapshots.insert(task, (parallelism, snapshot));
                            if f.snapshots.len() == self.expected {
                                let f = in_flight.take().expect("checked above");
                                let written = self.complete(f.id, f.started, f.timestamp_ms, false, f.snapshots).await?;
                                next_trigger = (Instant::now() + self.config.min_pause)
                                    .max(f.started + interval);
                                if let Some(request) = f.savepoint {
                                    let result = if written {
                                        self.storage.publish_savepoint(f.id.get()).map_err(|e| e.to_string())
                                    } else {
                                        Err("the checkpoint could not be written".to_string())
                                    };
                                    let _ = self.storage.respond_savepoint(&SavepointResponse {
                                        result: result.clone(),
                                        id: f.id.get(),
                                    });
                                    if let (true, Ok(path)) = (request.stop, result) {
                                        info!(job = %self.job, savepoint = %path.display(), "stopping with savepoint");
                                        *self.stats.stopped_with_savepoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
                                        // Give the sinks a moment to publish before stopping.
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                        cancel.cancel();
                                        return Ok(());
                                    }
                                }
                            }
                        }
                        TaskReport::Finished { task, parallelism, snapshot } => {
                            self.finished.insert(task, (parallelism, snapshot));
                            if self.finished.len() == self.expected {
                                if let Some(f) = in_flight.take() {
                                    self.abort(f, "the job reached the end of its input");
                                }
                                if savepoint.take().is_some() {
                                    let _ = self.storage.respond_savepoint(&SavepointResponse {
                                        result: Err("the job reached the end of its input".into()),
                                        id: 0,
                                    });
                                }
                                let id = self.next_id;
                                if let Some(guard) = &self.guard {
                                    guard.reserve(id).await.map_err(|e| Self::fenced(id, e))?;
                                }
                                let finished = std::mem::take(&mut self.finished);
                                self.complete(id, Instant::now(), now_millis(), true, finished).await?;
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Gives up an in-flight checkpoint (and answers its savepoint request).
    fn abort(&self, f: InFlight, reason: &str) {
        self.stats.aborted.fetch_add(1, Ordering::Relaxed);
        if f.savepoint.is_some() {
            let _ = self.storage.respond_savepoint(&SavepointResponse {
                result: Err(format!("checkpoint {} was aborted: {reason}", f.id)),
                id: f.id.get(),
            });
        }
    }

    /// Writes a checkpoint whose every snapshot arrived, then announces it. Returns
    /// whether it was written.
    async fn complete(
        &mut self,
        id: CheckpointId,
        started: Instant,
        timestamp_ms: i64,
        last: bool,
        snapshots: BTreeMap<TaskKey, (u32, TaskSnapshot)>,
    ) -> Result<bool> {
        if let Some(guard) = &self.guard {
            guard.may_write().map_err(|e| Self::fenced(id, e))?;
        }
        let storage = self.storage.clone();
        let job = self.job.clone();
        let tasks: Vec<(TaskKey, u32, TaskSnapshot)> =
            snapshots.into_iter().map(|(k, (p, s))| (k, p, s)).collect();
        let duration_ms = started.elapsed().as_millis() as u64;
        let written = tokio::task::spawn_blocking(move || {
            storage.write(&job, id.get(), timestamp_ms, last, &tasks, duration_ms)
        })
        .await
        .map_err(|e| FungiError::Internal(format!("checkpoint writer panicked: {e}")))?;
        let metadata = match written {
            Ok(m) => m,
            Err(e) if !last => {
                // A failed write loses nothing: the previous checkpoint still stands.
                warn!(job = %self.job, checkpoint = %id, error = %e, "checkpoint could not be written; aborted");
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        // Only a committed checkpoint is announced, and only then are older ones let go.
        if let Some(guard) = &self.guard {
            guard.commit(id).await.map_err(|e| Self::fenced(id, e))?;
        }
        let (storage, retained) = (self.storage.clone(), self.config.retained);
        let retention = tokio::task::spawn_blocking(move || storage.retain(retained))
            .await
            .map_err(|e| FungiError::Internal(format!("checkpoint retention panicked: {e}")))?;
        if let Err(e) = retention {
            warn!(job = %self.job, error = %e, "older checkpoints could not be removed");
        }
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_id.store(id.get(), Ordering::Relaxed);
        self.stats
            .last_duration_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.stats
            .last_size_bytes
            .store(metadata.size_bytes, Ordering::Relaxed);
        info!(job = %self.job, checkpoint = %id, last, bytes = metadata.size_bytes, "checkpoint complete");
        self.next_id = self.next_id.max(id.next());
        let _ = self.completed.send(Completed { id, last });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard that records what it was asked and refuses to commit when told to.
    #[derive(Default)]
    struct Recording {
        reserved: Mutex<Vec<u64>>,
        committed: Mutex<Vec<u64>>,
        refuse_commit: bool,
    }

    impl CompletionGuard for Recording {
        fn reserve(&self, id: CheckpointId) -> GuardFuture<'_, ()> {
            self.reserved.lock().unwrap().push(id.get());
            Box::pin(async { Ok(()) })
        }
        fn may_write(&self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn commit(&self, id: CheckpointId) -> GuardFuture<'_, ()> {
            let refuse = self.refuse_commit;
            if !refuse {
                self.committed.lock().unwrap().push(id.get());
            }
            Box::pin(async move {
                if refuse {
                    Err("another leader".to_string())
                } else {
                    Ok(())
                }
            })
        }
    }

    /// Runs a one-subtask coordinator fenced by `guard` (first id 7) through one
    /// checkpoint: what it returned and the latest checkpoint it announced.
    async fn one_checkpoint(guard: Arc<Recording>, dir: &std::path::Path) -> (Result<()>, u64) {
        let config = CheckpointConfig {
            interval: Some(Duration::from_millis(10)),
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        };
        let (coordinator, mut channels) =
            Coordinator::new(config, CheckpointStorage::new(dir), "job", 1, 1);
        let coordinator = coordinator.with_guard(guard, 7);
        let cancel = CancellationToken::new();
        let running = tokio::spawn(coordinator.run(cancel.clone()));
        channels.trigger.changed().await.unwrap();
        let id = *channels.trigger.borrow();
        let task = TaskKey {
            chain: "source".into(),
            subtask: 0,
        };
        let snapshot = TaskSnapshot {
            source: Some(vec![1]),
            operators: Vec::new(),
        };
        channels
            .reports
            .send(TaskReport::Snapshot {
                checkpoint: id,
                task,
                parallelism: 1,
                snapshot,
            })
            .unwrap();
        let announced = tokio::time::timeout(Duration::from_secs(5), channels.completed.changed())
            .await
            .is_ok_and(|r| r.is_ok());
        cancel.cancel();
        let result = running.await.unwrap();
        let latest = if announced {
            channels.completed.borrow().id.get()
        } else {
            0
        };
        (result, latest)
    }

    #[tokio::test]
    async fn a_fenced_coordinator_numbers_past_its_predecessor_and_commits_before_announcing() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Arc::new(Recording::default());
        let (result, latest) = one_checkpoint(guard.clone(), dir.path()).await;
        result.unwrap();
        assert_eq!(latest, 7);
        assert_eq!(guard.reserved.lock().unwrap()[0], 7);
        assert_eq!(*guard.committed.lock().unwrap(), vec![7]);
    }

    #[tokio::test]
    async fn a_refused_commit_announces_nothing_and_stops_the_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Arc::new(Recording {
            refuse_commit: true,
            ..Default::default()
        });
        let (result, latest) = one_checkpoint(guard, dir.path()).await;
        let error = result.unwrap_err().to_string();
        assert!(
            error.contains("checkpoint 7 was not completed: another leader"),
            "{error}"
        );
        assert_eq!(latest, 0, "nothing may be announced");
    }
}
