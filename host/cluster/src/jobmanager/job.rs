//! One submitted job on the JobManager: planning, placement on slots, attempts with
//! their two-phase start, restarts by strategy from the latest checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fungi_checkpoint::{CheckpointStorage, CompletedCheckpoint, CompletionGuard, RestartTracker};
use fungi_execution::plan::PhysicalPlan;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::coordination::Coordination;
use super::{JobEntry, JobInput, Lead, Registry, Shared};
use crate::ha::{JobFence, JobRecord, Term};
use crate::proto::to_task_manager::Kind as Down;
use crate::proto::{
    Artifact, Assignment, Cancel, Deploy, JobEvent, OperatorCount, Start, SubmitRequest,
};
use crate::spec::{self, JobSpec};

/// The job's file, in its checkpoint storage, that holds its submission (spec and
/// plugins) for a JobManager that resumes it.
const SUBMISSION_FILE: &str = "submission.pb";

/// Whether a job in `status` has ended.
pub(super) fn is_final(status: &str) -> bool {
    matches!(status, "finished" | "stopped" | "failed" | "cancelled")
}

/// Resumes every job etcd has as running, on a JobManager that just became leader.
pub(super) async fn resume_all(shared: &Arc<Shared>, term: &Arc<Term>) {
    let jobs = match term.election().jobs().await {
        Ok(jobs) => jobs,
        Err(e) => {
            warn!(error = %e, "cannot read the cluster's jobs; stepping down");
            term.lost.cancel();
            return;
        }
    };
    let lead = Lead::of(term.clone());
    for (job, record) in jobs.into_iter().filter(|(_, r)| r.status == "running") {
        let submission =
            CheckpointStorage::open(std::path::Path::new(&record.location), &record.options)
                .and_then(|s| s.job_file(SUBMISSION_FILE));
        let submission = match submission {
            Ok(Some(bytes)) => SubmitRequest::decode(bytes.as_slice()).map_err(|e| e.to_string()),
            Ok(None) => Err(format!("{} holds no {SUBMISSION_FILE}", record.location)),
            Err(e) => Err(e.to_string()),
        };
        let (spec, artifacts) =
            match submission.and_then(|s| Ok((JobSpec::from_bytes(&s.spec)?, s.artifacts))) {
                Ok(found) => found,
                Err(e) => {
                    warn!(%job, error = %e, "cannot resume the job: its submission cannot be read");
                    let record = JobRecord {
                        status: "failed".into(),
                        message: format!("its submission cannot be read to resume it: {e}"),
                        ..record
                    };
                    let _ = term.put_job(&job, &record).await;
                    continue;
                }
            };
        info!(%job, attempt = record.attempt, "resuming the job");
        let runner = JobRunner::new(
            shared.clone(),
            &spec,
            Arc::new(artifacts),
            lead.clone(),
            Some((job, record)),
        );
        tokio::spawn(runner.run_to_end(spec));
    }
}

/// Follows one submitted job from planning to its end.
pub(super) struct JobRunner {
    shared: Arc<Shared>,
    pub(super) job: String,
    /// Tells this runner's registry entry from a later runner's of the same job.
    runner: u64,
    events: broadcast::Sender<JobEvent>,
    /// Cancels the job.
    pub(super) cancel: CancellationToken,
    /// The right to run it.
    lead: Lead,
    /// What etcd keeps of it (with high availability).
    record: Option<JobRecord>,
    /// Whether a new leader resumed it.
    resumed: bool,
    inputs: mpsc::UnboundedReceiver<JobInput>,
    attempt: u64,
    /// The plugins and modules its script names.
    artifacts: Arc<Vec<Artifact>>,
}

/// How an attempt ended.
enum Outcome {
    /// Every part finished: the rows per operator, and the bytes that crossed hosts.
    Finished(Vec<OperatorCount>, u64),
    /// Stopped with a savepoint (there).
    Stopped(std::path::PathBuf),
    Failed(String),
    /// The client went away: the job is cancelled.
    Abandoned,
}

impl JobRunner {
    /// A runner of a newly submitted job, or of one etcd has (`resumed`).
    pub(super) fn new(
        shared: Arc<Shared>,
        spec: &JobSpec,
        artifacts: Arc<Vec<Artifact>>,
        lead: Lead,
        resumed: Option<(String, JobRecord)>,
    ) -> Self {
        let (job, record) = match resumed {
            Some((job, record)) => (job, Some(record)),
            None if spec.name.is_some() => (spec.name.clone().unwrap_or_default(), None),
            None => {
                let stem = std::path::Path::new(&spec.file_name)
                    .file_stem()
                    .map_or("job".into(), |s| s.to_string_lossy().into_owned());
                let n = shared.next_job.fetch_add(1, Ordering::Relaxed);
                // Job names stay unique across leaders: each leader has its own epoch.
                let job = match lead.term {
                    Some(_) => format!("{stem}-{}.{n}", lead.epoch()),
                    None => format!("{stem}-{n}"),
                };
                (job, None)
            }
        };
        let attempt = record.as_ref().map_or(0, |r| r.attempt);
        let resumed = record.is_some();
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(64);
        let cancel = lead.lost.child_token();
        static NEXT_RUNNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let runner = NEXT_RUNNER.fetch_add(1, Ordering::Relaxed);
        shared.registry().jobs.insert(
            job.clone(),
            JobEntry {
                runner,
                cancel: cancel.clone(),
                events: events.clone(),
                last_event: None,
                status: "planning".into(),
                attempt: 0,
                assignments: Vec::new(),
                parts: BTreeMap::new(),
                inputs: inputs_tx,
            },
        );
        JobRunner {
            shared,
            runner,
            job,
            events,
            cancel,
            lead,
            record,
            resumed,
            inputs,
            attempt,
            artifacts,
        }
    }

    /// Follows the job's events from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Runs the job, then forgets it.
    pub(super) async fn run_to_end(self, spec: JobSpec) {
        let (shared, job, runner) = (self.shared.clone(), self.job.clone(), self.runner);
        self.run(spec).await;
        let mut registry = shared.registry();
        if registry.jobs.get(&job).is_some_and(|e| e.runner == runner)
            && let Some(entry) = registry.jobs.remove(&job)
            && let Some(last) = entry.last_event.filter(|e| is_final(&e.status))
        {
            registry.remember_ended(last);
        }
        drop(registry);
        shared.changed.notify_waiters();
    }

    /// Whether the job must stop: cancelled, or this JobManager stopped leading.
    fn stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Records the job's status in etcd (with high availability); false when this
    /// JobManager no longer leads.
    async fn record(&mut self, status: &str, message: &str) -> bool {
        let (Some(term), Some(record)) = (&self.lead.term, &mut self.record) else {
            return true;
        };
        record.status = status.to_string();
        record.message = message.to_string();
        record.attempt = self.attempt;
        match term.put_job(&self.job, record).await {
            Ok(()) => true,
            Err(e) => {
                warn!(job = %self.job, error = %e, "the job's status cannot be recorded");
                false
            }
        }
    }

    async fn event(&self, status: &str, message: String, operators: Vec<OperatorCount>) {
        self.event_with((status, message), operators, 0).await;
    }

    async fn event_with(
        &self,
        (status, message): (&str, String),
        operators: Vec<OperatorCount>,
        bytes_exchanged: u64,
    ) {
        let event = JobEvent {
            job: self.job.clone(),
            status: status.to_string(),
            message,
            attempt: self.attempt,
            operators,
            bytes_exchanged,
        };
        if let Some(e) = self.shared.registry().jobs.get_mut(&self.job) {
            e.status = status.to_string();
            e.last_event = Some(event.clone());
        }
        info!(job = %self.job, %status, message = %event.message, "job");
        let _ = self.events.send(event);
    }

    /// Ends the job with its final status, recorded first (with high availability).
    /// A JobManager that stopped leading records and announces nothing: the job goes
    /// on with the next leader.
    async fn end(
        &mut self,
        status: &str,
        message: String,
        operators: Vec<OperatorCount>,
        bytes: u64,
    ) {
        if self.lead.lost.is_cancelled() || !self.record(status, &message).await {
            return;
        }
        self.event_with((status, message), operators, bytes).await;
    }

    pub(super) async fn run(mut self, spec: JobSpec) {
        let local =
            crate::artifacts::localize(&spec, &self.artifacts, &self.shared.config.artifact_dir);
        let planned = match local {
            Ok(local) => spec::plan(self.shared.planner.clone(), local).await,
            Err(e) => Err(e),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                let message = format!("the job does not plan: {e}");
                return self.end("failed", message, Vec::new(), 0).await;
            }
        };
        let config = plan.graph.config.clone();
        let storage = match (&config.checkpointing.interval, &config.checkpointing.dir) {
            (Some(_), Some(dir)) => {
                match CheckpointStorage::open(dir, &config.checkpointing.storage_options) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let message = format!("its checkpoint storage: {e}");
                        return self.end("failed", message, Vec::new(), 0).await;
                    }
                }
            }
            _ => None,
        };
        if self.lead.term.is_some()
            && self.record.is_none()
            && let Err(message) = self
                .keep_for_standbys(&spec, storage.as_ref(), &config)
                .await
        {
            return self.end("failed", message, Vec::new(), 0).await;
        }
        let mut tracker = RestartTracker::new(config.restart_strategy.clone());
        loop {
            if self.stopping() {
                return self.cancelled().await;
            }
            let checkpoint = match self.restore_point(storage.as_ref()).await {
                Ok(c) => c,
                Err(message) => return self.end("failed", message, Vec::new(), 0).await,
            };
            // A savepoint is where the job starts; once it checkpoints on its own, it
            // resumes from its own checkpoints.
            let (checkpoint, savepoint) = match (checkpoint, &spec.savepoint) {
                (None, Some(path)) => {
                    let options = &config.checkpointing.storage_options;
                    match CheckpointStorage::load_dir(std::path::Path::new(path), options) {
                        Ok(c) => (Some(c), Some(path.clone())),
                        Err(e) => {
                            let message = format!("savepoint {path}: {e}");
                            return self.end("failed", message, Vec::new(), 0).await;
                        }
                    }
                }
                (c, _) => (c, None),
            };
            // A job resumed by a new leader waits for TaskManagers to re-register,
            // however early its predecessor was lost.
            let first = self.attempt == 0 && !self.resumed;
            let Some(assignments) = self.place(&plan, first).await else {
                return self.cancelled().await;
            };
            self.attempt += 1;
            if !self.record("running", "").await {
                self.release(&assignments);
                return;
            }
            let fence = match self.fence().await {
                Ok(fence) => fence,
                Err(message) => {
                    self.release(&assignments);
                    warn!(job = %self.job, %message, "cannot fence the job's checkpoints");
                    return;
                }
            };
            let restore = Restore {
                checkpoint: checkpoint.as_ref(),
                savepoint,
            };
            let outcome = self
                .attempt_job(&plan, &spec, &assignments, restore, fence)
                .await;
            self.release(&assignments);
            let reason = match outcome {
                Outcome::Finished(operators, bytes) => {
                    let message = format!("{:.1} MB between TaskManagers", bytes as f64 / 1e6);
                    return self.end("finished", message, operators, bytes).await;
                }
                Outcome::Stopped(path) => {
                    let message = format!("stopped with savepoint {}", path.display());
                    return self.end("stopped", message, Vec::new(), 0).await;
                }
                Outcome::Abandoned => return self.cancelled().await,
                Outcome::Failed(reason) => reason,
            };
            let Some(wait) = tracker.on_failure(Instant::now(), fastrand::f64()) else {
                return self.end("failed", reason, Vec::new(), 0).await;
            };
            let from = if storage.is_some() {
                "its latest checkpoint"
            } else {
                "the beginning (no checkpoints)"
            };
            let message = format!(
                "{reason}; restart {} in {:.1} s from {from}",
                tracker.attempts(),
                wait.as_secs_f64()
            );
            self.event("restarting", message, Vec::new()).await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => return self.cancelled().await,
            }
        }
    }

    /// Ends a job that was cancelled (by a client, or its submitter went away); a job
    /// whose JobManager stopped leading just stops here.
    async fn cancelled(&mut self) {
        self.end("cancelled", "cancelled".into(), Vec::new(), 0)
            .await;
    }

    /// Keeps what a standby needs to resume a newly submitted job: its submission in
    /// its checkpoint storage, its record and checkpoint pointer in etcd.
    async fn keep_for_standbys(
        &mut self,
        spec: &JobSpec,
        storage: Option<&CheckpointStorage>,
        config: &fungi_common::config::JobConfig,
    ) -> Result<(), String> {
        let Some(storage) = storage else {
            return Err("in a highly available cluster every job needs checkpoints \
                 ('execution.checkpointing.interval' and 'execution.checkpointing.dir', on \
                 storage every JobManager and TaskManager reaches): a standby resumes the job \
                 from there"
                .into());
        };
        let term = self.lead.term.clone().expect("checked by the caller");
        let submission = SubmitRequest {
            spec: spec.to_bytes(),
            artifacts: self.artifacts.to_vec(),
        };
        storage
            .put_job_file(SUBMISSION_FILE, &submission.encode_to_vec())
            .map_err(|e| format!("cannot keep the job's submission for a standby: {e}"))?;
        // A job that ran before resumes from its latest checkpoint, as in embedded mode.
        let (latest, _) = storage
            .latest_with_skipped()
            .map_err(|e| format!("its checkpoints cannot be read: {e}"))?;
        if let Some(latest) = latest {
            term.point_to_checkpoint(&self.job, latest.id())
                .await
                .map_err(|e| e.to_string())?;
        }
        self.record = Some(JobRecord {
            location: storage.location(),
            options: config.checkpointing.storage_options.clone(),
            status: "running".into(),
            message: String::new(),
            attempt: 0,
        });
        Ok(())
    }

    /// The checkpoint the next attempt restores: the one etcd points to with high
    /// availability (never a newer directory a deposed leader may have written), the
    /// latest complete one otherwise.
    async fn restore_point(
        &self,
        storage: Option<&CheckpointStorage>,
    ) -> Result<Option<CompletedCheckpoint>, String> {
        let Some(storage) = storage else {
            return Ok(None);
        };
        if let Some(term) = &self.lead.term {
            let pointer = term
                .election()
                .number("checkpoints", &self.job)
                .await
                .map_err(|e| format!("its checkpoint pointer cannot be read: {e}"))?;
            return match pointer {
                Some(id) => storage
                    .load(id)
                    .map(Some)
                    .map_err(|e| format!("its latest complete checkpoint {id}: {e}")),
                None => Ok(None),
            };
        }
        match storage.latest_with_skipped() {
            Ok((checkpoint, skipped)) => {
                for reason in skipped {
                    warn!(job = %self.job, %reason, "falling back to the checkpoint before it");
                }
                Ok(checkpoint)
            }
            Err(e) => Err(format!("its checkpoints cannot be read: {e}")),
        }
    }

    /// The guard of the attempt's checkpoints and its first checkpoint number, with
    /// high availability.
    async fn fence(&self) -> Result<Option<(Arc<dyn CompletionGuard>, u64)>, String> {
        let Some(term) = &self.lead.term else {
            return Ok(None);
        };
        let taken = term
            .election()
            .number("counters", &self.job)
            .await
            .map_err(|e| e.to_string())?;
        let guard = JobFence {
            term: term.clone(),
            job: self.job.clone(),
        };
        Ok(Some((Arc::new(guard), taken.map_or(1, |n| n + 1))))
    }

    /// Reserves a slot for subtask `i` of every chain (slot `i`), spreading slots over
    /// the TaskManagers; waits while the cluster has too few free slots. `None` when the
    /// job cannot be placed (reported) or its client went away.
    /// On the `first` attempt, a cluster without TaskManagers refuses the job; a restart
    /// waits for TaskManagers to come back.
    async fn place(&mut self, plan: &PhysicalPlan, first: bool) -> Option<Vec<Assignment>> {
        let needed = plan.chains.iter().map(|c| c.parallelism).max().unwrap_or(1);
        let mut reported_wait = None;
        loop {
            let shared = self.shared.clone();
            let changed = shared.changed.notified();
            let placed = {
                let mut registry = self.shared.registry();
                if registry.task_managers.is_empty() && first && reported_wait.is_none() {
                    None
                } else {
                    let free: u32 = registry
                        .task_managers
                        .values()
                        .map(|e| e.slots - e.used)
                        .sum();
                    if free >= needed {
                        Some(Ok(reserve(&mut registry, plan, needed)))
                    } else {
                        Some(Err((free, registry.task_managers.len())))
                    }
                }
            };
            match placed {
                None => {
                    let message = "no TaskManager has registered with this JobManager: start \
                                   one with `fungi taskmanager --jobmanager ADDR`";
                    // Failed for good: cancelling it is all that is left.
                    self.end("failed", message.into(), Vec::new(), 0).await;
                    self.cancel.cancel();
                    return None;
                }
                Some(Ok(assignments)) => {
                    if let Some(e) = self.shared.registry().jobs.get_mut(&self.job) {
                        e.assignments = assignments.clone();
                    }
                    return Some(assignments);
                }
                Some(Err(wait)) => {
                    if reported_wait != Some(wait) {
                        reported_wait = Some(wait);
                        self.event(
                            "waiting",
                            format!(
                                "the job needs {needed} slots; {} free on {} TaskManagers",
                                wait.0, wait.1
                            ),
                            Vec::new(),
                        )
                        .await;
                    }
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.cancel.cancelled() => return None,
            }
        }
    }

    fn release(&self, assignments: &[Assignment]) {
        let mut registry = self.shared.registry();
        let mut slots: BTreeMap<&str, u32> = BTreeMap::new();
        for a in assignments.iter().filter(|a| a.chain == 0) {
            *slots.entry(a.task_manager.as_str()).or_default() += 1;
        }
        for (tm, n) in slots {
            if let Some(e) = registry.task_managers.get_mut(tm) {
                e.used = e.used.saturating_sub(n);
            }
        }
        if let Some(e) = registry.jobs.get_mut(&self.job) {
            e.assignments.clear();
        }
        drop(registry);
        self.shared.changed.notify_waiters();
    }

    /// The TaskManagers an attempt runs on.
    fn task_managers(assignments: &[Assignment]) -> Vec<String> {
        let mut tms: Vec<String> = assignments.iter().map(|a| a.task_manager.clone()).collect();
        tms.sort();
        tms.dedup();
        tms
    }

    /// Runs one attempt: deploys it, bridges its checkpoints and waits for every part.
    /// A failed attempt returns once every part of it has ended (or its TaskManager is
    /// lost), so the next attempt never overlaps it.
    async fn attempt_job(
        &mut self,
        plan: &PhysicalPlan,
        spec: &JobSpec,
        assignments: &[Assignment],
        restore: Restore<'_>,
        fence: Option<(Arc<dyn CompletionGuard>, u64)>,
    ) -> Outcome {
        let checkpoint = restore.checkpoint;
        let attempt = self.attempt;
        if let Some(e) = self.shared.registry().jobs.get_mut(&self.job) {
            e.attempt = attempt;
            e.parts.clear();
        }
        let tms = Self::task_managers(assignments);
        let deploy = Deploy {
            job: self.job.clone(),
            attempt,
            spec: spec.to_bytes(),
            fingerprint: crate::fingerprint(plan),
            assignments: assignments.to_vec(),
            restore_checkpoint: match restore.savepoint {
                Some(_) => 0,
                None => checkpoint.map_or(0, |c| c.id()),
            },
            restore_savepoint: restore.savepoint.unwrap_or_default(),
            artifacts: self.artifacts.to_vec(),
        };
        let mut attempt_state = AttemptState::default();
        for tm in &tms {
            if !self.shared.order(tm, Down::Deploy(deploy.clone())) {
                attempt_state.fail(format!("TaskManager {tm} left before the deployment"));
                attempt_state.ended.insert(tm.clone(), Vec::new());
            }
        }
        // Every TaskManager builds its part.
        let deadline = tokio::time::Instant::now() + self.shared.config.deploy_timeout;
        while attempt_state.deployed.len() + attempt_state.ended.len() < tms.len()
            && attempt_state.failure.is_none()
        {
            let input = tokio::select! {
                input = self.inputs.recv() => input,
                _ = tokio::time::sleep_until(deadline) => {
                    attempt_state.fail("TaskManagers took too long to deploy the job".into());
                    break;
                }
            };
            attempt_state.hear(input, attempt, None);
        }
        let coordination = match &attempt_state.failure {
            Some(_) => None,
            None => {
                // Every part is ready: start them all.
                for tm in &tms {
                    let start = Start {
                        job: self.job.clone(),
                        attempt,
                    };
                    if !self.shared.order(tm, Down::Start(start)) {
                        attempt_state.fail(format!("TaskManager {tm} left before the start"));
                    }
                }
                let placement = assignments
                    .iter()
                    .map(|a| format!("{}[{}]@{}", a.chain, a.subtask, a.task_manager))
                    .collect::<Vec<_>>()
                    .join(" ");
                let resumed = checkpoint.map_or(String::new(), |c| {
                    format!(" (resumed from checkpoint {})", c.id())
                });
                self.event(
                    "running",
                    format!("attempt {attempt}{resumed}: {placement}"),
                    Vec::new(),
                )
                .await;
                let target = (self.job.as_str(), attempt, tms.as_slice());
                match Coordination::start(&self.shared, plan, checkpoint, target, fence) {
                    Ok(c) => c,
                    Err(e) => {
                        attempt_state.fail(e);
                        None
                    }
                }
            }
        };
        // Until every part ended; after a failure the others are cancelled.
        let mut cancelled = false;
        let mut abandoned = false;
        let mut stopped_with = None;
        let cancel_deadline = Duration::from_secs(30);
        let mut give_up = None;
        while attempt_state.ended.len() < tms.len() {
            if attempt_state.failure.is_some() && !cancelled {
                cancelled = true;
                give_up = Some(tokio::time::Instant::now() + cancel_deadline);
                self.cancel_attempt(&tms, attempt);
                if let Some(c) = &coordination {
                    c.cancel.cancel();
                }
                // A JobManager that stopped leading hears nothing more: its sessions
                // ended, and with them every part (TaskManagers cancel the parts of a
                // session that ends).
                if self.lead.lost.is_cancelled() {
                    break;
                }
            }
            let stopped = coordination.as_ref().map(|c| c.cancel.clone());
            let input = tokio::select! {
                input = self.inputs.recv() => input,
                // The coordinator ends on its own when the job stops with a savepoint.
                _ = async { stopped.as_ref().expect("guarded").cancelled().await },
                    if stopped.is_some() && stopped_with.is_none() && attempt_state.failure.is_none() =>
                {
                    stopped_with = coordination.as_ref().and_then(|c| c.stopped_with_savepoint());
                    if stopped_with.is_some() {
                        self.cancel_attempt(&tms, attempt);
                    }
                    continue;
                }
                _ = self.cancel.cancelled(), if !abandoned => {
                    abandoned = true;
                    attempt_state.fail("cancelled".into());
                    continue;
                }
                _ = tokio::time::sleep_until(give_up.unwrap_or_else(far_future)), if give_up.is_some() => {
                    warn!(job = %self.job, attempt, "parts did not end within 30 s of their cancellation");
                    break;
                }
            };
            if input.is_none() {
                break;
            }
            attempt_state.hear(input, attempt, coordination.as_ref());
        }
        if abandoned {
            return Outcome::Abandoned;
        }
        if let Some(path) = stopped_with {
            return Outcome::Stopped(path);
        }
        if let Some(c) = coordination {
            if attempt_state.failure.is_none()
                && let Err(e) = c.finish().await
            {
                attempt_state.fail(format!("checkpoint coordinator: {e}"));
            }
            c.cancel.cancel();
        }
        match attempt_state.failure {
            Some(reason) => Outcome::Failed(reason),
            None => Outcome::Finished(
                sum_counts(attempt_state.ended.into_values().flatten()),
                attempt_state.bytes_exchanged,
            ),
        }
    }

    /// Tells every TaskManager of an attempt to cancel its part.
    fn cancel_attempt(&self, tms: &[String], attempt: u64) {
        for tm in tms {
            self.shared.order(
                tm,
                Down::Cancel(Cancel {
                    job: self.job.clone(),
                    attempt,
                }),
            );
        }
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// What an attempt starts from.
struct Restore<'a> {
    /// The checkpoint (or savepoint) restored.
    checkpoint: Option<&'a CompletedCheckpoint>,
    /// The savepoint's directory, when it is one.
    savepoint: Option<String>,
}

/// What the JobManager knows of an attempt's parts.
#[derive(Default)]
struct AttemptState {
    deployed: std::collections::BTreeSet<String>,
    /// Parts that ended (or whose TaskManager was lost), with their counts.
    ended: BTreeMap<String, Vec<OperatorCount>>,
    /// The first failure.
    failure: Option<String>,
    /// Arrow bytes the ended parts sent to other TaskManagers.
    bytes_exchanged: u64,
}

impl AttemptState {
    fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }

    /// Takes in what a TaskManager said (reports of other attempts are stale: ignored).
    fn hear(&mut self, input: Option<JobInput>, attempt: u64, coordination: Option<&Coordination>) {
        match input {
            Some(JobInput::Deployed {
                tm,
                attempt: a,
                error,
            }) if a == attempt => {
                if error.is_empty() {
                    self.deployed.insert(tm);
                } else {
                    self.fail(format!("TaskManager {tm} cannot run the job: {error}"));
                    self.ended.insert(tm, Vec::new());
                }
            }
            Some(JobInput::PartEnded {
                tm,
                attempt: a,
                error,
                operators,
                bytes_sent,
            }) if a == attempt => {
                self.bytes_exchanged += bytes_sent;
                if !error.is_empty() {
                    self.fail(format!("on TaskManager {tm}: {error}"));
                }
                self.ended.insert(tm, operators);
            }
            Some(JobInput::Snapshot(s)) if s.attempt == attempt => {
                if let Some(c) = coordination {
                    c.report(s);
                }
            }
            Some(JobInput::Lost { tm, reason }) => {
                self.fail(format!("TaskManager {tm} was lost: {reason}"));
                self.ended.insert(tm, Vec::new());
            }
            Some(other) => debug!(attempt, stale = other.attempt(), "a stale report"),
            None => self.fail("the job's inputs closed".into()),
        }
    }
}

impl JobInput {
    fn attempt(&self) -> u64 {
        match self {
            JobInput::Deployed { attempt, .. } | JobInput::PartEnded { attempt, .. } => *attempt,
            JobInput::Snapshot(s) => s.attempt,
            JobInput::Lost { .. } => 0,
        }
    }
}

/// Reserves slots for a job needing `needed` of them: slot `i` goes to the TaskManager
/// with the most free slots left (the first by id on a tie), so slots spread evenly.
fn reserve(registry: &mut Registry, plan: &PhysicalPlan, needed: u32) -> Vec<Assignment> {
    let mut slot_owner = Vec::with_capacity(needed as usize);
    for _ in 0..needed {
        let (id, entry) = registry
            .task_managers
            .iter_mut()
            .filter(|(_, e)| e.used < e.slots)
            .max_by(|a, b| {
                (a.1.slots - a.1.used)
                    .cmp(&(b.1.slots - b.1.used))
                    .then(b.0.cmp(a.0))
            })
            .expect("enough free slots were counted");
        entry.used += 1;
        slot_owner.push((id.clone(), entry.data_address.clone()));
    }
    let mut assignments = Vec::new();
    for (c, chain) in plan.chains.iter().enumerate() {
        for s in 0..chain.parallelism {
            let (tm, address) = &slot_owner[s as usize];
            assignments.push(Assignment {
                chain: c as u32,
                subtask: s,
                task_manager: tm.clone(),
                data_address: address.clone(),
            });
        }
    }
    assignments
}

/// The counts of every part, summed per operator.
fn sum_counts(counts: impl Iterator<Item = OperatorCount>) -> Vec<OperatorCount> {
    let mut by_operator: BTreeMap<String, OperatorCount> = BTreeMap::new();
    for c in counts {
        let e = by_operator
            .entry(c.operator.clone())
            .or_insert_with(|| OperatorCount {
                records_in: 0,
                records_out: 0,
                ..c.clone()
            });
        e.records_in += c.records_in;
        e.records_out += c.records_out;
    }
    by_operator.into_values().collect()
}
