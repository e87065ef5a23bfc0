//! Rolling upgrade of a job: a new version of its SQL takes over its state through a
//! savepoint, or is refused while the old version keeps running.

use super::*;
use crate::service::jobs::{check_script_size, requested_parallelism};

impl Service {
    /// Replaces running job `id` with a new version of its SQL: plans the new version,
    /// checks that it can read the state of the old one's latest checkpoint (a changed
    /// state schema is refused, naming the operator, and the old version keeps running),
    /// stops the old version with a savepoint and starts the new one from it. Returns
    /// the new job. Should the new version fail to start after all, the old one is put
    /// back from the same savepoint.
    pub async fn upgrade_job(
        self: &Arc<Self>,
        p: &Principal,
        id: &str,
        req: UpgradeJob,
    ) -> ServiceResult<JobRecord> {
        let old = self.visible_job(p, Action::JobUpgrade, id)?;
        self.authorize(p, Action::JobSubmit, &old.tenant, id)?;
        let result = self.upgrade_inner(p, &old, req).await;
        self.done(p, Action::JobUpgrade, id, result)
    }

    async fn upgrade_inner(
        self: &Arc<Self>,
        p: &Principal,
        old: &JobRecord,
        req: UpgradeJob,
    ) -> ServiceResult<JobRecord> {
        let id = &old.id;
        if old.status != JobStatus::Running {
            return Err(ServiceError::Conflict(format!(
                "job '{id}' is {}, not RUNNING: only a running job is upgraded",
                old.status.name()
            )));
        }
        check_script_size(&req.sql)?;
        let parallelism = req
            .parallelism
            .unwrap_or_else(|| requested_parallelism(old));
        let candidate = JobRecord {
            sql: req.sql.clone(),
            settings: serde_json::json!({ "requested_parallelism": parallelism }),
            ..old.clone()
        };
        let plan = self.plan(&candidate).await?;
        let storage = fungi_checkpoint::CheckpointStorage::open(
            &self.checkpoint_dir(id),
            &Default::default(),
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let latest = storage
            .latest()
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let Some(latest) = latest else {
            return Err(ServiceError::Conflict(format!(
                "job '{id}' has no complete checkpoint yet, so its state cannot be checked \
                 against the new version; it keeps running (try again after its first \
                 checkpoint, or set 'execution.checkpointing.interval' in its script)"
            )));
        };
        let checked = tokio::task::spawn_blocking(move || {
            fungi_execution::executor::check_state_compatible(&plan, &latest)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the state check panicked: {e}")))?;
        if let Err(e) = checked {
            return Err(ServiceError::Conflict(format!(
                "the new version cannot take over the state of job '{id}': {}; job '{id}' \
                 keeps running",
                self.tenant_paths(&old.tenant).scrub(&e)
            )));
        }
        let take = TakeSavepoint {
            stop: true,
            timeout_secs: req.timeout_secs,
        };
        let savepoint = self.savepoint_inner(old, take).await?;
        self.wait_until_ended(id).await;
        let submit = |sql: String, parallelism: u32| SubmitJob {
            sql,
            parallelism: Some(parallelism),
            from_savepoint: Some(savepoint.id.clone()),
        };
        match self
            .submit_job_inner(p, submit(req.sql.clone(), parallelism))
            .await
        {
            Ok(job) => Ok(job),
            Err(e) => {
                let back = self
                    .submit_job_inner(p, submit(old.sql.clone(), requested_parallelism(old)))
                    .await;
                let old_version = match back {
                    Ok(job) => format!("the old version runs again as job '{}'", job.id),
                    Err(e) => format!("the old version could not be put back either: {e}"),
                };
                Err(ServiceError::Conflict(format!(
                    "the new version of job '{id}' did not start: {e}; {old_version}, from \
                     savepoint {}",
                    savepoint.id
                )))
            }
        }
    }

    /// Waits (up to a minute) until job `id` no longer runs here, so that its slots
    /// count as free again.
    async fn wait_until_ended(&self, id: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.running.lock().expect("running lock").contains_key(id)
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
