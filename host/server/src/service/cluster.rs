//! Jobs on a cluster: a server started with `--cluster` plans and admits a job as
//! always, then submits it to the cluster's leading JobManager, detached, under its own
//! id, with its tenant's confinement and its checkpoint directory (in the server's data
//! directory, which every process of the cluster reaches at the same path). Every
//! server follows every running job of the metadata store, whoever submitted it, and
//! records how it ends, so that any server answers for any job and a server's loss
//! loses nothing: the job runs on, and the others keep following it. A job the cluster
//! no longer knows (a JobManager without high availability restarted) is submitted
//! again under the same id and resumes from its latest checkpoint; the cluster refuses
//! a second job of one id, so two servers never run a job twice.

use std::time::Duration;

use fungi_cluster::client::ClientError;
use fungi_cluster::{ClusterClient, JobEvent, JobSpec};

use super::*;

/// The cluster a server runs its jobs on.
#[derive(Debug, Clone)]
pub struct ClusterBackend {
    /// The JobManagers' addresses, comma-separated: the leader is asked.
    pub addresses: String,
    /// Mutual TLS to the cluster.
    pub tls: Option<fungi_cluster::Tls>,
}

/// How often a server looks for running jobs it does not follow yet.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How long a follower waits before asking the cluster again after losing it.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// What the server knows of a job on the cluster: its latest event.
pub(super) type ClusterView = Arc<Mutex<Option<JobEvent>>>;

/// Whether a job in `status` (as the cluster says) has ended.
fn is_final(status: &str) -> bool {
    matches!(status, "finished" | "stopped" | "failed" | "cancelled")
}

impl Service {
    /// The cluster this server runs its jobs on, if any.
    pub(super) fn cluster(&self) -> Option<&ClusterBackend> {
        self.cluster.as_ref()
    }

    /// The leading JobManager, or why none answers.
    pub(super) async fn leader(&self) -> ServiceResult<ClusterClient> {
        let cluster = self
            .cluster()
            .ok_or_else(|| ServiceError::Internal("this server runs no cluster".into()))?;
        ClusterClient::leader(&cluster.addresses, cluster.tls.as_ref())
            .await
            .map_err(|e| ServiceError::Unavailable(format!("the cluster: {e}")))
    }

    /// What the cluster runs for `job`: its script after the tenant's catalog functions,
    /// planned confined to the tenant, checkpointing into the server's directory.
    pub(super) fn job_spec(&self, job: &JobRecord) -> ServiceResult<JobSpec> {
        let tenant = self.tenant(&job.tenant)?;
        let mut text = String::new();
        for f in self.store.functions(&job.tenant)? {
            text.push_str(&f.statement);
            text.push_str(";\n");
        }
        text.push_str(&job.sql);
        Ok(JobSpec {
            file_name: format!("{}.sql", job.id),
            text,
            parallelism: Some(jobs::requested_parallelism(job)),
            statement: 0,
            savepoint: job
                .from_savepoint
                .as_deref()
                .map(|sp| self.savepoint_path(sp).display().to_string()),
            name: Some(job.id.clone()),
            detached: true,
            checkpoint_dir: Some(self.checkpoint_dir(&job.id).display().to_string()),
            tenant: Some(self.tenant_scope(&tenant)?),
        })
    }

    /// Follows `job` on the cluster (submitting it first when `submit`), and records how
    /// it ends.
    pub(super) fn start_on_cluster(
        self: &Arc<Self>,
        job: &JobRecord,
        graph: serde_json::Value,
        submit: bool,
    ) -> ServiceResult<()> {
        let spec = self.job_spec(job)?;
        let cancel = self.shutdown.child_token();
        let ended_by = Arc::new(Mutex::new(None));
        let view: ClusterView = Arc::new(Mutex::new(None));
        let (_, live) = watch::channel(Live::default());
        self.running.lock().expect("running lock").insert(
            job.id.clone(),
            Running {
                tenant: job.tenant.clone(),
                cancel: cancel.clone(),
                ended_by: ended_by.clone(),
                live,
                graph,
                cluster: Some(view.clone()),
            },
        );
        let max_state = self
            .store
            .tenant(&job.tenant)?
            .and_then(|t| t.quotas.max_state_bytes);
        if let Some(max) = max_state {
            tokio::spawn(
                self.clone()
                    .watch_state_size(job.clone(), max, cancel.clone()),
            );
        }
        let service = self.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            let last = service
                .follow_to_end(&id, &spec, submit, &cancel, &view)
                .await;
            if let Some(event) = last {
                service.record_end(&id, &event, *ended_by.lock().expect("ended lock"));
            }
            service.running.lock().expect("running lock").remove(&id);
        });
        Ok(())
    }

    /// Follows `job` until it ends (its final event) or the server stops (`None`),
    /// across leaders and lost connections.
    async fn follow_to_end(
        &self,
        job: &str,
        spec: &JobSpec,
        mut submit: bool,
        cancel: &CancellationToken,
        view: &ClusterView,
    ) -> Option<JobEvent> {
        loop {
            let once = tokio::select! {
                _ = cancel.cancelled() => return None,
                once = self.follow_once(job, spec, &mut submit, view) => once,
            };
            match once {
                Ok(Some(last)) => return Some(last),
                Ok(None) => {}
                Err(e) => tracing::debug!(%job, error = %e, "following the job on the cluster"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    /// One connection to the leader: submits the job (when `submit`) or follows it,
    /// and reads its events. `Some` with its final event when it ended; `None` when
    /// the stream ended without one (the leader changed).
    async fn follow_once(
        &self,
        job: &str,
        spec: &JobSpec,
        submit: &mut bool,
        view: &ClusterView,
    ) -> ServiceResult<Option<JobEvent>> {
        let mut client = self.leader().await?;
        let unavailable = |e: ClientError| ServiceError::Unavailable(e.to_string());
        let followed = if *submit {
            match client.submit(spec, Vec::new()).await {
                Ok(events) => Ok(events),
                // Submitted already (by another server, or before a lost answer).
                Err(ClientError::Exists(_)) => client.follow(job).await,
                Err(e) => Err(e),
            }
        } else {
            client.follow(job).await
        };
        let mut events = match followed {
            Ok(events) => {
                *submit = false;
                events
            }
            Err(ClientError::NotFound(_)) => {
                // The cluster lost the job; it runs again from its latest checkpoint,
                // unless it ended meanwhile.
                *submit = self
                    .store
                    .job(job)?
                    .is_some_and(|j| j.status == JobStatus::Running);
                return Ok(None);
            }
            Err(e) => return Err(unavailable(e)),
        };
        loop {
            match events.message().await {
                Ok(Some(event)) => {
                    let ended = is_final(&event.status);
                    *view.lock().expect("cluster view lock") = Some(event.clone());
                    if ended {
                        return Ok(Some(event));
                    }
                }
                Ok(None) => return Ok(None),
                Err(status) => {
                    return Err(ServiceError::Unavailable(status.message().to_string()));
                }
            }
        }
    }

    /// Fails a job on the cluster whose latest checkpoint holds more state than its
    /// tenant's `max_state_bytes`: the status is recorded first, so that no server
    /// records the cancellation that follows as a caller's.
    async fn watch_state_size(self: Arc<Self>, job: JobRecord, max: u64, stop: CancellationToken) {
        let dir = self.checkpoint_dir(&job.id);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let latest = fungi_checkpoint::CheckpointStorage::open(&dir, &Default::default())
                .and_then(|s| s.latest_metadata());
            let Ok(Some(metadata)) = latest else { continue };
            if metadata.size_bytes <= max {
                continue;
            }
            let quota = fungi_tenancy::QuotaExceeded {
                tenant: job.tenant.clone(),
                quota: "max_state_bytes",
                detail: format!(
                    "checkpoint {} holds {} bytes of state, the limit is {max}",
                    metadata.id, metadata.size_bytes
                ),
            };
            let recorded = self.store.set_job_status(
                &job.id,
                JobStatus::Failed,
                Some(&quota.to_string()),
                now_ms(),
            );
            if let Err(e) = recorded {
                tracing::error!(job = %job.id, error = %e, "cannot record the job's failure");
            }
            while let Err(e) = self.cancel_on_cluster(&job.id).await {
                tracing::warn!(job = %job.id, error = %e, "cannot cancel the job over its quota");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
            return;
        }
    }

    /// Records how a job on the cluster ended, unless its status was decided already (a
    /// caller cancelled it, it failed a quota).
    fn record_end(&self, job: &str, last: &JobEvent, by_user: Option<JobStatus>) {
        match self.store.job(job) {
            Ok(Some(j)) if j.status == JobStatus::Running => {}
            Ok(_) => return,
            Err(e) => tracing::warn!(%job, error = %e, "cannot read the job's status"),
        }
        let (status, error) = match last.status.as_str() {
            "finished" => (JobStatus::Finished, None),
            "stopped" => (JobStatus::Stopped, None),
            "cancelled" => (by_user.unwrap_or(JobStatus::Cancelled), None),
            _ => {
                let tenant = self.store.job(job).ok().flatten().map(|j| j.tenant);
                let message = match tenant {
                    Some(t) => self.tenant_paths(&t).scrub(&last.message),
                    None => last.message.clone(),
                };
                (JobStatus::Failed, Some(message))
            }
        };
        if let Err(e) = self
            .store
            .set_job_status(job, status, error.as_deref(), now_ms())
        {
            tracing::error!(%job, error = %e, "cannot record the job's end");
        }
    }

    /// Follows every running job of the store that this server does not follow yet
    /// (submitted by another server, or before this one started); returns how many.
    pub(super) async fn follow_cluster_jobs(self: &Arc<Self>) -> ServiceResult<usize> {
        let mut n = 0;
        for job in self.store.jobs(None)? {
            let followed = self
                .running
                .lock()
                .expect("running lock")
                .contains_key(&job.id);
            if job.status != JobStatus::Running || followed {
                continue;
            }
            // The graph is for the job's details: a job that no longer plans here (a
            // function was dropped since) still runs on the cluster and is followed.
            let graph = match self.plan(&job).await {
                Ok(plan) => graph_json(&plan.graph),
                Err(_) => serde_json::Value::Null,
            };
            self.start_on_cluster(&job, graph, false)?;
            n += 1;
        }
        Ok(n)
    }

    /// Follows new running jobs every [`RECONCILE_EVERY`] until the server stops.
    pub(crate) fn keep_following_cluster_jobs(self: &Arc<Self>) {
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = service.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RECONCILE_EVERY) => {}
                }
                if let Err(e) = service.follow_cluster_jobs().await {
                    tracing::warn!(error = %e, "cannot look for running jobs");
                }
            }
        });
    }

    /// Refuses a job the cluster would refuse to run: without checkpoints on a highly
    /// available cluster (a standby resumes jobs from their checkpoints).
    pub(super) async fn check_cluster_runs(
        &self,
        plan: &fungi_execution::plan::PhysicalPlan,
    ) -> ServiceResult<()> {
        if self.cluster().is_none() || plan.graph.config.checkpointing.interval.is_some() {
            return Ok(());
        }
        let status = self
            .leader()
            .await?
            .status()
            .await
            .map_err(|e| ServiceError::Unavailable(format!("the cluster: {e}")))?;
        if status.leadership.is_some_and(|l| l.mode == "etcd") {
            return Err(ServiceError::BadRequest(
                "this server runs jobs on a highly available cluster, where a standby \
                 JobManager resumes every job from its checkpoints: the job needs \
                 SET 'execution.checkpointing.interval' (the server chooses where \
                 checkpoints go)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Ends a running job a caller cancelled (or whose tenant is deleted): on the
    /// cluster, or in this process.
    pub(super) async fn end_job(&self, job: &JobRecord) -> ServiceResult<()> {
        let on_cluster = self.cluster().is_some() && job.status == JobStatus::Running;
        if let Some(r) = self.running.lock().expect("running lock").get(&job.id) {
            *r.ended_by.lock().expect("ended lock") = Some(JobStatus::Cancelled);
            // A follower of a job on the cluster records its end when it comes.
            if !on_cluster {
                r.cancel.cancel();
            }
        }
        if on_cluster {
            self.cancel_on_cluster(&job.id).await?;
        }
        Ok(())
    }

    /// Cancels `job` on the cluster (a job that already ended there is no error).
    pub(super) async fn cancel_on_cluster(&self, job: &str) -> ServiceResult<()> {
        match self.leader().await?.cancel(job).await {
            Ok(_) | Err(ClientError::NotFound(_)) => Ok(()),
            Err(e) => Err(ServiceError::Unavailable(format!("the cluster: {e}"))),
        }
    }

    /// Where `job` runs on the cluster: its status, attempt, and every subtask's
    /// TaskManager with its part's rows and bytes between hosts.
    pub(super) async fn cluster_details(&self, job: &str) -> Option<serde_json::Value> {
        let view = self
            .running
            .lock()
            .expect("running lock")
            .get(job)
            .and_then(|r| r.cluster.clone())?;
        let last = view.lock().expect("cluster view lock").clone();
        let status = match self.leader().await {
            Ok(mut client) => client.status().await.ok(),
            Err(_) => None,
        };
        let found = status.and_then(|s| s.jobs.into_iter().find(|j| j.job == job));
        let operators = |ops: &[fungi_cluster::OperatorCount]| {
            ops.iter()
                .map(|o| {
                    serde_json::json!({
                        "operator": o.operator, "records_in": o.records_in,
                        "records_out": o.records_out, "source": o.source,
                    })
                })
                .collect::<Vec<_>>()
        };
        Some(serde_json::json!({
            "status": last.as_ref().map(|e| e.status.clone()),
            "message": last.as_ref().map(|e| e.message.clone()),
            "attempt": last.as_ref().map(|e| e.attempt),
            "subtasks": found.as_ref().map(|j| j.assignments.iter().map(|a| serde_json::json!({
                "chain": a.chain, "subtask": a.subtask, "task_manager": a.task_manager,
            })).collect::<Vec<_>>()),
            "parts": found.as_ref().map(|j| j.parts.iter().map(|p| serde_json::json!({
                "task_manager": p.task_manager, "bytes_sent": p.bytes_sent,
                "bytes_received": p.bytes_received, "backpressured_ms": p.backpressured_ms,
                "operators": operators(&p.operators),
            })).collect::<Vec<_>>()),
        }))
    }
}
