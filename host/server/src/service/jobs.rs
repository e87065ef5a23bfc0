//! Jobs: submission (planned apart, admitted on what the plan runs), supervision on the
//! tenant's job runtime, the crash-loop guard, savepoints, cancel and details.

use fungi_cluster::spec::TenantScope;

use super::*;

impl Service {
    /// Plans and starts a job for the caller's tenant.
    pub async fn submit_job(
        self: &Arc<Self>,
        p: &Principal,
        req: SubmitJob,
    ) -> ServiceResult<JobRecord> {
        self.authorize(p, Action::JobSubmit, &p.tenant, "")?;
        let result = self.submit_job_inner(p, req).await;
        let target = result.as_ref().map(|j| j.id.clone()).unwrap_or_default();
        self.done(p, Action::JobSubmit, &target, result)
    }

    pub(super) async fn submit_job_inner(
        self: &Arc<Self>,
        p: &Principal,
        req: SubmitJob,
    ) -> ServiceResult<JobRecord> {
        let parallelism = check_request(&req.sql, req.parallelism)?;
        let tenant = self.tenant(&p.tenant)?;
        let id = format!(
            "job-{}",
            &ApiKey::generate()
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .id[..12]
        );
        if let Some(sp) = &req.from_savepoint {
            self.savepoint_dir(p, sp)?;
        }
        let mut job = JobRecord {
            id: id.clone(),
            tenant: p.tenant.clone(),
            sql: req.sql,
            parallelism,
            status: JobStatus::Running,
            error: None,
            from_savepoint: req.from_savepoint,
            created_ms: now_ms(),
            updated_ms: now_ms(),
            settings: serde_json::json!({ "requested_parallelism": parallelism }),
        };
        // Planned before it is admitted or stored: the quotas apply to what the plan runs
        // (after every SET of the script), and a script that does not plan is a bad
        // request.
        let plan = self.plan(&job).await?;
        let shape = job_shape(&plan);
        tenant.quotas.admit_plan(&tenant.id, &shape)?;
        self.check_cluster_runs(&plan).await?;
        job.parallelism = shape.parallelism;
        job.settings = effective_settings(&plan, parallelism);
        {
            // Admission and the insert under one lock, so that two submissions cannot
            // both take the tenant's last slots.
            let _admitting = self.admitting.lock().await;
            let usage = self.usage(&tenant.id)?;
            tenant
                .quotas
                .admit_job(&tenant.id, usage, shape.parallelism)?;
            self.store.insert_job(&job)?;
        }
        self.start(job.clone(), plan)?;
        Ok(job)
    }

    /// What `tenant`'s running jobs hold now.
    pub(crate) fn usage(&self, tenant: &str) -> ServiceResult<Usage> {
        Ok(self
            .store
            .jobs(Some(tenant))?
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .fold(Usage::default(), |u, j| Usage {
                jobs: u.jobs + 1,
                parallelism: u.parallelism + j.parallelism,
            }))
    }

    /// Plans a job's SQL on a planning thread of its own ([`crate::runtime::plan_apart`]);
    /// its checkpoints go to the server's directory for the job (a script may not name
    /// another), so that tenants cannot reach each other's state. Errors name the
    /// tenant's files and plugins as the tenant does, never by the server's paths.
    pub(super) async fn plan(
        &self,
        job: &JobRecord,
    ) -> ServiceResult<fungi_execution::plan::PhysicalPlan> {
        let parallelism = requested_parallelism(job);
        let config = fungi_common::config::JobConfig {
            parallelism,
            ..Default::default()
        };
        let session = self.confined_session(&job.tenant, config)?;
        let functions = self.store.functions(&job.tenant)?;
        let sql = job.sql.clone();
        let planned = crate::runtime::plan_apart(&self.runtimes, &job.tenant, move || {
            plan_script(session, functions, sql)
        })
        .await
        .map_err(|e| ServiceError::BadRequest(format!("the SQL does not plan: {e}")))?;
        let mut graph = planned
            .map_err(|e| ServiceError::BadRequest(self.tenant_paths(&job.tenant).scrub(&e)))?;
        graph.name = job.id.clone();
        graph.config.checkpointing.dir = Some(self.checkpoint_dir(&job.id));
        graph.config.checkpointing.storage_options.clear();
        fungi_execution::plan::PhysicalPlan::new(graph)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))
    }

    /// A SQL session confined to `tenant`: its files, plugins, egress hosts, Python
    /// policy and plugin limits.
    pub(super) fn confined_session(
        &self,
        tenant: &str,
        config: fungi_common::config::JobConfig,
    ) -> ServiceResult<fungi_sql::SqlSession> {
        let tenant = self.tenant(tenant)?;
        let scope = self.tenant_scope(&tenant)?;
        let mut session = fungi_sql::SqlSession::new(config);
        session.confine(crate::confine::confinement(
            &scope,
            self.plugin_host()?,
            self.plugin_tenant(&tenant),
        ));
        Ok(session)
    }

    /// `tenant`'s confinement: its files (created if missing) and plugins directories.
    pub(super) fn tenant_scope(&self, tenant: &Tenant) -> ServiceResult<TenantScope> {
        let files_dir = self.files_dir(&tenant.id);
        std::fs::create_dir_all(&files_dir).map_err(|e| {
            ServiceError::Internal(format!("cannot create {}: {e}", files_dir.display()))
        })?;
        Ok(TenantScope {
            tenant: tenant.clone(),
            files_dir,
            plugin_dir: self.data_dir.join("plugins").join(&tenant.id),
        })
    }

    /// Runs a planned job under supervision on its tenant's job runtime, and records
    /// how it ends. A job that stays up for [`HEALTHY_AFTER`] or completes a checkpoint
    /// no longer counts towards a crash loop.
    pub(super) fn start(
        self: &Arc<Self>,
        job: JobRecord,
        plan: fungi_execution::plan::PhysicalPlan,
    ) -> ServiceResult<()> {
        if self.cluster().is_some() {
            return self.start_on_cluster(&job, graph_json(&plan.graph), true);
        }
        let runtime = self.runtimes.handle(&job.tenant).map_err(|e| {
            ServiceError::Internal(format!("cannot start the tenant's job runtime: {e}"))
        })?;
        let cancel = self.shutdown.child_token();
        let ended_by = Arc::new(Mutex::new(None));
        let quota_failure = Arc::new(Mutex::new(None));
        let (tx, rx) = watch::channel(Live::default());
        self.running.lock().expect("running lock").insert(
            job.id.clone(),
            Running {
                tenant: job.tenant.clone(),
                cancel: cancel.clone(),
                ended_by: ended_by.clone(),
                live: rx.clone(),
                graph: graph_json(&plan.graph),
                cluster: None,
            },
        );
        let max_state = self
            .store
            .tenant(&job.tenant)
            .ok()
            .flatten()
            .and_then(|t| t.quotas.max_state_bytes);
        if let Some(max) = max_state {
            tokio::spawn(watch_state_size(
                job.tenant.clone(),
                max,
                rx.clone(),
                cancel.clone(),
                quota_failure.clone(),
            ));
        }
        tokio::spawn(clear_resumes_when_healthy(
            self.store.clone(),
            job.id.clone(),
            rx,
            cancel.clone(),
        ));
        let savepoint = job
            .from_savepoint
            .as_deref()
            .map(|sp| self.savepoint_path(sp));
        let service = self.clone();
        let paths = self.tenant_paths(&job.tenant);
        runtime.spawn(async move {
            let supervised = fungi_scheduler::supervise(plan, savepoint, cancel, tx).await;
            let quota = quota_failure.lock().expect("quota lock").clone();
            let by_user = *ended_by.lock().expect("ended lock");
            let (status, error) = match supervised.result {
                _ if quota.is_some() => (Some(JobStatus::Failed), quota),
                Ok(s) if s.stopped_with_savepoint.is_some() => (Some(JobStatus::Stopped), None),
                Ok(_) => (Some(JobStatus::Finished), None),
                Err(_) if by_user.is_some() => (by_user, None),
                // The server is stopping: the job stays RUNNING and resumes on restart.
                Err(fungi_common::FungiError::Cancelled) => (None, None),
                Err(e) => (Some(JobStatus::Failed), Some(paths.scrub(&e))),
            };
            if let Some(status) = status
                && let Err(e) =
                    service
                        .store
                        .set_job_status(&job.id, status, error.as_deref(), now_ms())
            {
                tracing::error!(job = %job.id, error = %e, "cannot record the job's end");
            }
            service
                .running
                .lock()
                .expect("running lock")
                .remove(&job.id);
        });
        Ok(())
    }

    /// Starts every job the store says is running (after a restart): each resumes from
    /// its latest checkpoint. Returns how many were started. A job that no longer plans
    /// is marked failed. A job is suspended instead of resumed when the server starts in
    /// safe mode, or when the server has started [`CRASH_LOOP_STARTS`] times with the
    /// job running and the job never got anywhere in between (a job that takes the
    /// server down would otherwise take it down again at every start).
    /// On a cluster, jobs run on without the server: every running job is followed
    /// (see [`Service::follow_cluster_jobs`]), and no start counts towards a crash loop.
    pub async fn resume_jobs(self: &Arc<Self>, safe_mode: bool) -> ServiceResult<usize> {
        if self.cluster().is_some() {
            if safe_mode {
                return Err(ServiceError::BadRequest(
                    "safe mode suspends jobs a server runs; jobs on a cluster run on without \
                     it (cancel one with 'fungi job cancel')"
                        .into(),
                ));
            }
            let n = self.follow_cluster_jobs().await?;
            self.keep_following_cluster_jobs();
            return Ok(n);
        }
        let mut n = 0;
        for job in self.store.jobs(None)? {
            if job.status != JobStatus::Running {
                continue;
            }
            let starts = self.store.count_resume(&job.id)?;
            let suspended = if safe_mode {
                Some("the server started in safe mode".to_string())
            } else if starts >= CRASH_LOOP_STARTS {
                Some(format!(
                    "the server started {starts} times while this job was running, and the \
                     job neither completed a checkpoint nor ran for {}s in between",
                    HEALTHY_AFTER.as_secs()
                ))
            } else {
                None
            };
            if let Some(why) = suspended {
                tracing::warn!(job = %job.id, "{why}: suspended");
                self.store.set_job_status(
                    &job.id,
                    JobStatus::Suspended,
                    Some(&format!(
                        "suspended: {why}; resume it (POST /jobs/{}/resume, fungi job resume) \
                         or cancel it",
                        job.id
                    )),
                    now_ms(),
                )?;
                continue;
            }
            match self.plan(&job).await {
                Ok(plan) => {
                    tracing::info!(job = %job.id, "resuming");
                    self.start(job, plan)?;
                    n += 1;
                }
                Err(e) => {
                    self.store.set_job_status(
                        &job.id,
                        JobStatus::Failed,
                        Some(&e.to_string()),
                        now_ms(),
                    )?;
                }
            }
        }
        Ok(n)
    }

    /// Resumes a suspended job from its latest checkpoint.
    pub async fn resume_job(self: &Arc<Self>, p: &Principal, id: &str) -> ServiceResult<JobRecord> {
        let job = self.visible_job(p, Action::JobResume, id)?;
        let result = async {
            if job.status != JobStatus::Suspended {
                return Err(ServiceError::Conflict(format!(
                    "job '{id}' is {}, not SUSPENDED",
                    job.status.name()
                )));
            }
            let tenant = self.tenant(&job.tenant)?;
            let plan = self.plan(&job).await?;
            let shape = job_shape(&plan);
            tenant.quotas.admit_plan(&tenant.id, &shape)?;
            {
                let _admitting = self.admitting.lock().await;
                let usage = self.usage(&tenant.id)?;
                tenant
                    .quotas
                    .admit_job(&tenant.id, usage, shape.parallelism)?;
                self.store.clear_resumes(id)?;
                self.store
                    .set_job_status(id, JobStatus::Running, None, now_ms())?;
            }
            let job = self.store.job(id)?.unwrap_or(job.clone());
            self.start(job.clone(), plan)?;
            Ok(job)
        }
        .await;
        self.done(p, Action::JobResume, id, result)
    }

    /// Stops every job without changing its status (they resume when the server comes
    /// back), waiting up to `grace` for them to end. A clean stop is not a crash: the
    /// jobs' starts no longer count towards a crash loop.
    pub fn shutdown(&self, grace: std::time::Duration) {
        self.shutdown.cancel();
        let running: Vec<String> = self
            .running
            .lock()
            .expect("running lock")
            .keys()
            .cloned()
            .collect();
        for id in running {
            if let Err(e) = self.store.clear_resumes(&id) {
                tracing::warn!(job = %id, error = %e, "cannot clear the job's start count");
            }
        }
        // The jobs end at their next batch; then their runtimes go, with whatever
        // blocking work they still hold.
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline
            && !self.running.lock().expect("running lock").is_empty()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.runtimes.shutdown();
    }

    /// The caller's jobs (every tenant's for an admin).
    pub fn list_jobs(&self, p: &Principal) -> ServiceResult<Vec<JobRecord>> {
        self.authorize(p, Action::JobList, &p.tenant, "")?;
        let tenant = (p.role != Role::Admin).then_some(p.tenant.as_str());
        Ok(self.store.jobs(tenant)?)
    }

    /// A running job's dead-letter output (its ring of recent records and the counts);
    /// a job that is not running has none (its durable targets keep them).
    pub fn dead_letters(&self, p: &Principal, id: &str) -> ServiceResult<DeadLetters> {
        self.visible_job(p, Action::JobGet, id)?;
        if self.cluster().is_some() {
            return Err(ServiceError::Conflict(format!(
                "job '{id}' runs on the cluster; its dead letters are in the targets its SQL \
                 names (SET 'dead-letter.path' or 'dead-letter.kafka.*')"
            )));
        }
        let live = self
            .running
            .lock()
            .expect("running lock")
            .get(id)
            .map(|r| r.live.borrow().clone())
            .ok_or_else(|| {
                ServiceError::Conflict(format!(
                    "job '{id}' is not running; its dead letters are in the targets its SQL \
                     names (SET 'dead-letter.path' or 'dead-letter.kafka.*')"
                ))
            })?;
        Ok(DeadLetters {
            counts: live.dead_letters.counts(),
            recent: live
                .dead_letters
                .recent()
                .iter()
                .map(|l| serde_json::to_value(l).unwrap_or_default())
                .collect(),
        })
    }

    /// One job with its live counters.
    pub async fn get_job(&self, p: &Principal, id: &str) -> ServiceResult<JobDetails> {
        let job = self.visible_job(p, Action::JobGet, id)?;
        let (live, graph) = self
            .running
            .lock()
            .expect("running lock")
            .get(id)
            .map(|r| (r.live.borrow().clone(), r.graph.clone()))
            .unwrap_or_default();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let savepoints = self.savepoints_of(&job);
        let paths = self.tenant_paths(&job.tenant);
        let exceptions = live
            .exceptions
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.message = paths.scrub(&e.message);
                serde_json::to_value(e).unwrap_or_default()
            })
            .collect();
        Ok(JobDetails {
            job,
            dead_letters: live.dead_letters.counts(),
            operators: operators_json(&live.metrics.snapshot()),
            checkpoints: live.checkpoints.map(|c| CheckpointSummary {
                completed: load(&c.completed),
                aborted: load(&c.aborted),
                last_id: load(&c.last_id),
                last_duration_ms: load(&c.last_duration_ms),
                last_size_bytes: load(&c.last_size_bytes),
            }),
            graph,
            exceptions,
            restarts: live.restarts,
            savepoints,
            cluster: match self.cluster() {
                Some(_) => self.cluster_details(id).await,
                None => None,
            },
        })
    }

    /// Where a job checkpoints.
    pub(super) fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.data_dir.join("jobs").join(job).join("checkpoints")
    }

    /// The savepoints of a job, oldest first.
    pub(super) fn savepoints_of(&self, job: &JobRecord) -> Vec<String> {
        let dir = self.checkpoint_dir(&job.id).join("savepoints");
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("sp-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.into_iter()
            .map(|n| format!("{}/sp-{n}", job.id))
            .collect()
    }

    /// The directory of savepoint `sp` (`<job>/sp-<n>`), unchecked.
    pub(super) fn savepoint_path(&self, sp: &str) -> PathBuf {
        let (job, name) = sp.split_once('/').unwrap_or((sp, ""));
        self.checkpoint_dir(job).join("savepoints").join(name)
    }

    /// The directory of savepoint `sp`, if it is one of the caller's tenant's.
    pub(super) fn savepoint_dir(&self, p: &Principal, sp: &str) -> ServiceResult<PathBuf> {
        let bad = || {
            ServiceError::BadRequest(format!(
                "from_savepoint '{sp}' is not a savepoint of this tenant's jobs (expected \
                 '<job id>/sp-<n>' as returned by POST /jobs/{{id}}/savepoint)"
            ))
        };
        let (job, name) = sp.split_once('/').ok_or_else(bad)?;
        let owned = self.store.job(job)?.is_some_and(|j| j.tenant == p.tenant);
        let numbered = name
            .strip_prefix("sp-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let dir = self.savepoint_path(sp);
        if !owned || !numbered || !dir.is_dir() {
            return Err(bad());
        }
        Ok(dir)
    }

    /// Takes a savepoint of a running job (and stops it, when asked): the job's
    /// coordinator takes it at the next checkpoint.
    pub async fn savepoint_job(
        &self,
        p: &Principal,
        id: &str,
        req: TakeSavepoint,
    ) -> ServiceResult<Savepoint> {
        let job = self.visible_job(p, Action::JobSavepoint, id)?;
        let result = self.savepoint_inner(&job, req).await;
        self.done(p, Action::JobSavepoint, id, result)
    }

    pub(super) async fn savepoint_inner(
        &self,
        job: &JobRecord,
        req: TakeSavepoint,
    ) -> ServiceResult<Savepoint> {
        let id = &job.id;
        let checkpoints = {
            let running = self.running.lock().expect("running lock");
            match running.get(id) {
                // On a cluster the JobManager's coordinator takes the request.
                Some(r) if job.status == JobStatus::Running && r.cluster.is_some() => {
                    (!job.settings["checkpoint_interval_ms"].is_null()).then(Default::default)
                }
                Some(r) if job.status == JobStatus::Running => r.live.borrow().checkpoints.clone(),
                _ => {
                    return Err(ServiceError::Conflict(format!(
                        "job '{id}' is {:?}, not running",
                        job.status
                    )));
                }
            }
        };
        if checkpoints.is_none() {
            return Err(ServiceError::Conflict(format!(
                "job '{id}' does not checkpoint; a savepoint needs \
                 SET 'execution.checkpointing.interval' in its script"
            )));
        }
        let storage = fungi_checkpoint::CheckpointStorage::open(
            &self.checkpoint_dir(id),
            &Default::default(),
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        storage
            .request_savepoint(&fungi_checkpoint::SavepointRequest { stop: req.stop })
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(req.timeout_secs.unwrap_or(60).clamp(1, 3600));
        loop {
            if let Some(response) = storage.savepoint_response() {
                return match response.result {
                    Ok(_) => Ok(Savepoint {
                        id: format!("{id}/sp-{}", response.id),
                        checkpoint_id: response.id,
                        stopped: req.stop,
                    }),
                    Err(reason) => Err(ServiceError::Conflict(format!(
                        "the savepoint of job '{id}' failed: {reason}"
                    ))),
                };
            }
            if std::time::Instant::now() > deadline {
                return Err(ServiceError::Conflict(format!(
                    "job '{id}' took no savepoint within {}s",
                    req.timeout_secs.unwrap_or(60)
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Cancels a running job.
    pub async fn cancel_job(&self, p: &Principal, id: &str) -> ServiceResult<JobRecord> {
        let job = self.visible_job(p, Action::JobCancel, id)?;
        let result = async {
            if !matches!(job.status, JobStatus::Running | JobStatus::Suspended) {
                return Err(ServiceError::Conflict(format!(
                    "job '{id}' is {}, neither RUNNING nor SUSPENDED",
                    job.status.name()
                )));
            }
            self.end_job(&job).await?;
            self.store
                .set_job_status(id, JobStatus::Cancelled, None, now_ms())?;
            Ok(self.store.job(id)?.unwrap_or(job.clone()))
        }
        .await;
        self.done(p, Action::JobCancel, id, result)
    }
}

/// The parallelism `job` was submitted with (before its script's SETs).
pub(super) fn requested_parallelism(job: &JobRecord) -> u32 {
    job.settings["requested_parallelism"]
        .as_u64()
        .map_or(job.parallelism, |p| p as u32)
}

/// Fails a job whose checkpoints hold more state than its tenant's `max_state_bytes`.
async fn watch_state_size(
    tenant: String,
    max: u64,
    mut live: watch::Receiver<Live>,
    cancel: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = live.changed() => if changed.is_err() { return },
        }
        let stats = live.borrow().checkpoints.clone();
        let Some(stats) = stats else { continue };
        let size = stats.last_size_bytes.load(Ordering::Relaxed);
        if size > max {
            let quota = fungi_tenancy::QuotaExceeded {
                tenant: tenant.clone(),
                quota: "max_state_bytes",
                detail: format!(
                    "checkpoint {} holds {size} bytes of state, the limit is {max}",
                    stats.last_id.load(Ordering::Relaxed)
                ),
            };
            *failure.lock().expect("quota lock") = Some(quota.to_string());
            cancel.cancel();
            return;
        }
    }
}

/// Server starts with a job running, without the job getting anywhere in between, after
/// which the job is suspended instead of resumed.
pub(crate) const CRASH_LOOP_STARTS: u32 = 3;

/// How long a job runs before its starts no longer count towards a crash loop (a
/// completed checkpoint counts as well).
pub(crate) const HEALTHY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest script a job may be: planning time and memory grow with it.
pub(crate) const MAX_SCRIPT_BYTES: usize = 1 << 20;

/// The parallelism a submission asks for (1 when it names none), after refusing one
/// out of 1 to 1024 and a script over [`MAX_SCRIPT_BYTES`].
pub(super) fn check_request(sql: &str, parallelism: Option<u32>) -> ServiceResult<u32> {
    let parallelism = parallelism.unwrap_or(1);
    if parallelism == 0 || parallelism > 1024 {
        return Err(ServiceError::BadRequest(format!(
            "parallelism must be 1 to 1024, not {parallelism}"
        )));
    }
    check_script_size(sql)?;
    Ok(parallelism)
}

/// Refuses a script over [`MAX_SCRIPT_BYTES`].
pub(crate) fn check_script_size(sql: &str) -> ServiceResult<()> {
    if sql.len() > MAX_SCRIPT_BYTES {
        return Err(ServiceError::BadRequest(format!(
            "the script has {} bytes; the limit is {MAX_SCRIPT_BYTES}",
            sql.len()
        )));
    }
    Ok(())
}

/// Plans a tenant's script in `session`: its catalog functions first, as if the script
/// began with them, then the script, which must hold exactly one `INSERT INTO`.
async fn plan_script(
    mut session: fungi_sql::SqlSession,
    functions: Vec<FunctionRecord>,
    sql: String,
) -> Result<fungi_execution::graph::JobGraph, String> {
    for f in functions {
        session
            .execute(&f.statement)
            .await
            .map_err(|e| format!("the catalog function '{}' no longer loads: {e}", f.name))?;
    }
    let outcomes = session
        .execute_script(&sql)
        .await
        .map_err(|e| format!("the SQL does not plan: {e}"))?;
    crate::confine::single_insert(outcomes)
}

/// What a planned job runs, for the quotas.
pub(super) fn job_shape(plan: &fungi_execution::plan::PhysicalPlan) -> fungi_tenancy::JobShape {
    use fungi_common::config::RestartStrategy;
    let config = &plan.graph.config;
    let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let (restart_attempts, restart_min_delay_ms) = match &config.restart_strategy {
        RestartStrategy::None => (Some(0), None),
        RestartStrategy::FixedDelay { attempts: 0, .. } => (Some(0), None),
        RestartStrategy::FixedDelay { attempts, delay } => (Some(*attempts), Some(ms(*delay))),
        RestartStrategy::ExponentialDelay { initial, .. } => (None, Some(ms(*initial))),
        RestartStrategy::FailureRate { delay, .. } => (None, Some(ms(*delay))),
    };
    fungi_tenancy::JobShape {
        parallelism: plan
            .graph
            .nodes
            .iter()
            .map(|n| n.parallelism)
            .max()
            .unwrap_or(1),
        max_parallelism: config.max_parallelism,
        restart_attempts,
        restart_min_delay_ms,
        checkpoint_interval_ms: config.checkpointing.interval.map(ms),
        retained_checkpoints: config.checkpointing.retained.min(u32::MAX as usize) as u32,
    }
}

/// The settings a planned job runs with, as its record shows them.
pub(super) fn effective_settings(
    plan: &fungi_execution::plan::PhysicalPlan,
    requested_parallelism: u32,
) -> serde_json::Value {
    let config = &plan.graph.config;
    let shape = job_shape(plan);
    serde_json::json!({
        "requested_parallelism": requested_parallelism,
        "parallelism": shape.parallelism,
        "default_parallelism": config.parallelism,
        "max_parallelism": config.max_parallelism,
        "checkpoint_interval_ms": shape.checkpoint_interval_ms,
        "retained_checkpoints": config.checkpointing.retained,
        "state_backend": serde_json::to_value(config.state_backend).unwrap_or_default(),
        "restart_strategy": serde_json::to_value(&config.restart_strategy).unwrap_or_default(),
    })
}

/// Clears a running job's start count once it has run for [`HEALTHY_AFTER`] or
/// completed a checkpoint.
async fn clear_resumes_when_healthy(
    store: Arc<dyn MetadataStore>,
    job: String,
    live: watch::Receiver<Live>,
    cancel: CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + HEALTHY_AFTER;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let checkpointed = live
            .borrow()
            .checkpoints
            .as_ref()
            .is_some_and(|c| c.completed.load(Ordering::Relaxed) > 0);
        if checkpointed || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    if let Err(e) = store.clear_resumes(&job) {
        tracing::warn!(job = %job, error = %e, "cannot clear the job's start count");
    }
}
