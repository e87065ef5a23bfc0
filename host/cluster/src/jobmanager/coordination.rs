//! A job attempt's checkpoint coordinator on the JobManager, bridged to the
//! TaskManagers: triggers and completions go out on their sessions, snapshots come in.

use std::sync::Arc;
use std::time::Duration;

use fungi_checkpoint::{CompletedCheckpoint, CompletionGuard, TaskKey, TaskReport, TaskSnapshot};
use fungi_common::ids::CheckpointId;
use fungi_execution::plan::PhysicalPlan;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::proto::to_task_manager::Kind as Down;
use crate::proto::{CheckpointComplete, Snapshot, TriggerCheckpoint};

/// An attempt's checkpoint coordinator, running here, bridged to its TaskManagers.
pub(super) struct Coordination {
    reports: mpsc::UnboundedSender<TaskReport>,
    stats: Arc<fungi_checkpoint::CheckpointStats>,
    pub(super) cancel: CancellationToken,
    coordinator: tokio::task::JoinHandle<fungi_common::Result<()>>,
}

impl Coordination {
    pub(super) fn start(
        shared: &Arc<Shared>,
        plan: &PhysicalPlan,
        checkpoint: Option<&CompletedCheckpoint>,
        (job, attempt, tms): (&str, u64, &[String]),
        fence: Option<(Arc<dyn CompletionGuard>, u64)>,
    ) -> Result<Option<Coordination>, String> {
        let Some((mut coordinator, channels, stats)) =
            fungi_execution::executor::coordinator(plan, checkpoint).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if let Some((guard, first_id)) = fence {
            coordinator = coordinator.with_guard(guard, first_id);
        }
        let cancel = CancellationToken::new();
        let coordinator = tokio::spawn(coordinator.run(cancel.clone()));
        let (mut trigger, mut completed) = (channels.trigger, channels.completed);
        let (shared, job, tms, stop) = (
            shared.clone(),
            job.to_string(),
            tms.to_vec(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            // The coordinator drops both senders when it ends, after publishing the final
            // checkpoint: a closed trigger must not stop that last completion going out.
            let mut triggers_open = true;
            loop {
                let order = tokio::select! {
                    changed = trigger.changed(), if triggers_open => {
                        if changed.is_err() {
                            triggers_open = false;
                            continue;
                        }
                        Down::Trigger(TriggerCheckpoint {
                            job: job.clone(),
                            attempt,
                            checkpoint: trigger.borrow_and_update().get(),
                        })
                    }
                    changed = completed.changed() => {
                        if changed.is_err() { return; }
                        let c = *completed.borrow_and_update();
                        Down::Complete(CheckpointComplete {
                            job: job.clone(),
                            attempt,
                            checkpoint: c.id.get(),
                            last: c.last,
                        })
                    }
                    _ = stop.cancelled() => return,
                };
                for tm in &tms {
                    shared.order(tm, order.clone());
                }
            }
        });
        Ok(Some(Coordination {
            reports: channels.reports,
            stats,
            cancel,
            coordinator,
        }))
    }

    /// Where the savepoint the job stopped with is, if it did.
    pub(super) fn stopped_with_savepoint(&self) -> Option<std::path::PathBuf> {
        self.stats
            .stopped_with_savepoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn report(&self, s: Snapshot) {
        let task = TaskKey {
            chain: s.chain,
            subtask: s.subtask,
        };
        let snapshot = TaskSnapshot {
            source: s.source,
            operators: s
                .operators
                .into_iter()
                .map(|o| (o.operator, o.state))
                .collect(),
        };
        let report = if s.finished {
            TaskReport::Finished {
                task,
                parallelism: s.parallelism,
                snapshot,
            }
        } else {
            TaskReport::Snapshot {
                checkpoint: CheckpointId(s.checkpoint),
                task,
                parallelism: s.parallelism,
                snapshot,
            }
        };
        let _ = self.reports.send(report);
    }

    /// Waits for the coordinator to write the final checkpoint (every part finished).
    pub(super) async fn finish(&self) -> Result<(), String> {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            while !self.coordinator.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if waited.is_err() {
            return Err("the final checkpoint was not written within 60 s".into());
        }
        Ok(())
    }
}
