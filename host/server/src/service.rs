//! The service layer: every API call goes through here, whatever the transport.
//!
//! A call authenticates its caller ([`Service::authenticate`]), is checked against the
//! role's permissions and the caller's tenant, and is recorded in the audit log when it
//! changes something or is refused. Jobs run in this process, each supervised by
//! `fungi-scheduler` (resumed from its latest checkpoint, restarted by its strategy).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fungi_execution::metrics::OperatorSnapshot;
use fungi_scheduler::Live;
use fungi_security::jwt::JwtVerifier;
use fungi_security::signing::SignatureStatus;
use fungi_security::{Action, ApiKey, AuditRecord, Principal, Role};
use fungi_tenancy::{Quotas, Tenant, TrustPolicy, Usage, check_tenant_id};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::{
    FunctionRecord, JobRecord, JobStatus, KeyRecord, MetadataStore, PluginRecord, StoreError,
};

/// The tenant of the key created when the server starts without any key.
pub const SYSTEM_TENANT: &str = "system";

/// Why a call did not succeed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No or a bad credential (401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The role or tenant may not do this (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A quota would be exceeded (403).
    #[error("{0}")]
    Quota(#[from] fungi_tenancy::QuotaExceeded),
    /// No such object, or one of another tenant (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// A request that cannot be carried out as written (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The object exists already, or is in a state that forbids the call (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The server failed (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

/// Results of the service.
pub type ServiceResult<T> = std::result::Result<T, ServiceError>;

/// `POST /jobs`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// A SQL script with exactly one `INSERT INTO` (tables, settings and functions
    /// before it).
    pub sql: String,
    /// Parallelism of every operator (default 1).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Start from this savepoint of one of the tenant's jobs: `<job id>/sp-<n>`, as
    /// returned by `POST /jobs/{id}/savepoint`.
    #[serde(default)]
    pub from_savepoint: Option<String>,
}

/// `POST /jobs/{id}/savepoint`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// Stop the job once the savepoint is complete (Flink's stop-with-savepoint).
    #[serde(default)]
    pub stop: bool,
    /// How long to wait for the savepoint, seconds (default 60).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A file of a tenant.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// Its path in the tenant's files directory.
    pub path: String,
    /// Its size.
    pub bytes: u64,
}

/// A completed savepoint.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Savepoint {
    /// What to pass as `from_savepoint`: `<job id>/sp-<n>`.
    pub id: String,
    /// The checkpoint id it was taken as.
    pub checkpoint_id: u64,
    /// Whether the job stopped.
    pub stopped: bool,
}

/// `POST /tenants`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant's id.
    pub id: String,
    /// Its quotas (unlimited where left out).
    #[serde(default)]
    pub quotas: Quotas,
    /// Its plugin trust policy (off when left out).
    #[serde(default)]
    pub trust: TrustPolicy,
}

/// `POST /functions`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFunction {
    /// One `CREATE FUNCTION ... LANGUAGE WASM|PYTHON ...` statement.
    pub sql: String,
}

/// `POST /keys`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The key's tenant (default: the caller's).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Its role.
    pub role: Role,
    /// A name to recognise it by.
    #[serde(default)]
    pub name: String,
}

/// A new key: the only time its secret is shown.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The key's record.
    pub record: KeyRecord,
    /// The key to present (`Authorization: Bearer <key>`).
    pub key: String,
}

/// A job with its live counters.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobDetails {
    /// The stored job.
    #[serde(flatten)]
    pub job: JobRecord,
    /// Per operator: rows in and out, late rows, watermark (of the current attempt).
    #[schema(value_type = Vec<Object>)]
    pub operators: Vec<serde_json::Value>,
    /// Checkpoints of the current attempt, when the job checkpoints.
    pub checkpoints: Option<CheckpointSummary>,
    /// The dataflow: nodes (operators with their parallelism) and edges.
    #[schema(value_type = Object)]
    pub graph: serde_json::Value,
    /// Failures the restart strategy recovered from, oldest first (the final one, if
    /// the job failed, is `error`).
    #[schema(value_type = Vec<Object>)]
    pub exceptions: Vec<serde_json::Value>,
    /// Restarts of the running job.
    pub restarts: u32,
    /// Savepoints taken of this job (`<job id>/sp-<n>`), oldest first.
    pub savepoints: Vec<String>,
    /// Records of the current attempt sent to the dead-letter output, per reason (the
    /// records themselves: `GET /jobs/{id}/dead-letters`).
    pub dead_letters: std::collections::BTreeMap<String, u64>,
}

/// A running job's dead-letter output: counts per reason and the most recent records.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetters {
    /// Records per reason (current attempt).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The most recent records, oldest first: operator, reason, message, position, the
    /// original bytes or row, and time.
    #[schema(value_type = Vec<Object>)]
    pub recent: Vec<serde_json::Value>,
}

/// A running job's checkpoint counters.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointSummary {
    /// Checkpoints completed by this attempt.
    pub completed: u64,
    /// Checkpoints aborted (timed out, failed to store).
    pub aborted: u64,
    /// The id of the last completed checkpoint.
    pub last_id: u64,
    /// How long it took.
    pub last_duration_ms: u64,
    /// How many bytes it stored.
    pub last_size_bytes: u64,
}

struct Running {
    tenant: String,
    cancel: CancellationToken,
    /// How a caller ended the job, if one did (its status).
    ended_by: Arc<Mutex<Option<JobStatus>>>,
    live: watch::Receiver<Live>,
    graph: serde_json::Value,
}

/// How the server authenticates callers besides API keys.
#[derive(Debug, Default)]
pub struct AuthConfig {
    /// Accept JWT bearer tokens checked by this verifier.
    pub jwt: Option<JwtVerifier>,
}

/// The service (see the module doc).
pub struct Service {
    store: Arc<dyn MetadataStore>,
    data_dir: PathBuf,
    auth: AuthConfig,
    running: Mutex<HashMap<String, Running>>,
    /// Cancelled when the server stops: jobs stop but stay RUNNING, to resume later.
    shutdown: CancellationToken,
    /// The plugin host every job and upload uses (made on first use).
    plugin_host: std::sync::OnceLock<Arc<fungi_plugin::PluginHost>>,
    /// Per tenant: the plugin host's tenant (limits from quotas, usage across jobs).
    plugin_tenants: Mutex<HashMap<String, Arc<fungi_plugin::Tenant>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The plugin host's limits for a tenant's quotas (host defaults where unset).
pub fn plugin_limits(q: &Quotas) -> fungi_plugin::TenantLimits {
    let mut limits = fungi_plugin::TenantLimits::default();
    if let Some(m) = q.plugin_memory_per_instance {
        limits.memory_per_instance = m as usize;
    }
    if let Some(m) = q.plugin_memory_total {
        limits.memory_total = m as usize;
    }
    if let Some(ms) = q.plugin_cpu_ms_per_second {
        limits.cpu_budget_per_second = std::time::Duration::from_millis(ms);
    }
    limits.network_allow = q.allowed_egress_hosts.clone();
    limits
}

fn graph_json(graph: &fungi_execution::graph::JobGraph) -> serde_json::Value {
    let name = |id: fungi_common::ids::OperatorId| {
        graph
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    };
    serde_json::json!({
        "nodes": graph.nodes.iter().map(|n| serde_json::json!({
            "name": n.name, "parallelism": n.parallelism, "stateful": n.stateful,
        })).collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|e| serde_json::json!({
            "from": name(e.from), "to": name(e.to),
            "partitioning": format!("{:?}", e.partitioning),
            "side_output": e.tag.as_deref(),
        })).collect::<Vec<_>>(),
    })
}

fn operators_json(ops: &[OperatorSnapshot]) -> Vec<serde_json::Value> {
    ops.iter()
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .collect()
}

impl Service {
    /// A service over `store`, keeping job checkpoints under `data_dir`.
    pub fn new(store: Arc<dyn MetadataStore>, data_dir: PathBuf, auth: AuthConfig) -> Arc<Service> {
        Arc::new(Service {
            store,
            data_dir,
            auth,
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            plugin_host: std::sync::OnceLock::new(),
            plugin_tenants: Mutex::new(HashMap::new()),
        })
    }

    /// A tenant, or not found.
    fn tenant(&self, id: &str) -> ServiceResult<Tenant> {
        self.store
            .tenant(id)?
            .ok_or_else(|| ServiceError::NotFound(format!("no tenant '{id}'")))
    }

    /// The server's plugin host.
    fn plugin_host(&self) -> ServiceResult<Arc<fungi_plugin::PluginHost>> {
        if let Some(h) = self.plugin_host.get() {
            return Ok(h.clone());
        }
        let host = fungi_plugin::PluginHost::new(fungi_plugin::HostOptions {
            cache_dir: Some(self.data_dir.join("plugin-cache")),
            ..Default::default()
        })
        .map_err(|e| ServiceError::Internal(format!("cannot start the plugin host: {e}")))?;
        Ok(self.plugin_host.get_or_init(|| host).clone())
    }

    /// The plugin host's tenant for `tenant`: one per tenant, so that memory and CPU
    /// limits hold across all its jobs.
    fn plugin_tenant(&self, tenant: &Tenant) -> Arc<fungi_plugin::Tenant> {
        let mut tenants = self.plugin_tenants.lock().expect("plugin tenants lock");
        let limits = plugin_limits(&tenant.quotas);
        match tenants.get(&tenant.id) {
            Some(t) if *t.limits() == limits => t.clone(),
            _ => {
                let t = Arc::new(fungi_plugin::Tenant::new(tenant.id.clone(), limits));
                tenants.insert(tenant.id.clone(), t.clone());
                t
            }
        }
    }

    /// When no key exists: creates the `system` tenant and an admin key, and returns the
    /// key (to be shown once). `FUNGI_ADMIN_KEY`-style provisioning goes through
    /// [`Service::install_admin_key`].
    pub fn bootstrap(&self) -> ServiceResult<Option<String>> {
        if !self.store.keys(None)?.is_empty() {
            return Ok(None);
        }
        let key = ApiKey::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.install_admin_key(&key)?;
        Ok(Some(key.reveal()))
    }

    /// Stores `key` as an admin key of the `system` tenant (idempotent).
    pub fn install_admin_key(&self, key: &ApiKey) -> ServiceResult<()> {
        self.store.create_tenant(&Tenant {
            id: SYSTEM_TENANT.into(),
            quotas: Quotas::default(),
            trust: TrustPolicy::default(),
        })?;
        if self.store.key(&key.id)?.is_some() {
            return Ok(());
        }
        self.store.insert_key(&KeyRecord {
            id: key.id.clone(),
            tenant: SYSTEM_TENANT.into(),
            role: Role::Admin,
            name: "bootstrap admin".into(),
            created_ms: now_ms(),
            revoked: false,
            hash: key
                .hash()
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        })?;
        Ok(())
    }

    fn audit(&self, who: &str, tenant: &str, action: &str, target: &str, result: &str) {
        let record = AuditRecord {
            seq: 0,
            time_ms: now_ms(),
            who: who.into(),
            tenant: tenant.into(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
        };
        if let Err(e) = self.store.append_audit(&record) {
            tracing::error!(error = %e, ?record, "cannot write the audit log");
        }
    }

    /// Who is calling: the key in `Authorization: Bearer <key>`. A failure is audited
    /// with the request line (`what`).
    pub fn authenticate(&self, bearer: Option<&str>, what: &str) -> ServiceResult<Principal> {
        let fail = |reason: &str| {
            self.audit(
                "anonymous",
                "",
                what,
                "",
                &format!("unauthenticated: {reason}"),
            );
            ServiceError::Unauthenticated(reason.to_string())
        };
        let Some(text) = bearer else {
            return Err(fail("no API key; send 'Authorization: Bearer <key>'"));
        };
        if fungi_security::jwt::looks_like_jwt(text) {
            let Some(verifier) = &self.auth.jwt else {
                return Err(fail("JWT bearer tokens are not enabled on this server"));
            };
            let p = verifier.verify(text).map_err(|e| fail(&e.to_string()))?;
            if self.store.tenant(&p.tenant)?.is_none() {
                return Err(fail(&format!(
                    "the token's tenant '{}' does not exist",
                    p.tenant
                )));
            }
            return Ok(p);
        }
        let key = ApiKey::parse(text).map_err(|e| fail(&e.to_string()))?;
        let record = match self.store.key(&key.id)? {
            Some(r) if !r.revoked && key.verify(&r.hash) => r,
            Some(r) if r.revoked => return Err(fail("the API key was revoked")),
            _ => return Err(fail("unknown API key")),
        };
        Ok(Principal {
            key_id: record.id,
            tenant: record.tenant,
            role: record.role,
        })
    }

    /// Checks that `p` may do `action` on an object of `tenant`; audits refusals and,
    /// through [`Service::done`], mutations.
    fn authorize(
        &self,
        p: &Principal,
        action: Action,
        tenant: &str,
        target: &str,
    ) -> ServiceResult<()> {
        let reason = if !p.role.allows(action) {
            format!("role '{}' may not {}", p.role, action.name())
        } else if !p.sees_tenant(tenant) {
            format!("tenant '{}' cannot act on tenant '{tenant}'", p.tenant)
        } else {
            return Ok(());
        };
        self.audit(
            &p.key_id,
            &p.tenant,
            action.name(),
            target,
            &format!("denied: {reason}"),
        );
        Err(ServiceError::Forbidden(reason))
    }

    /// Audits the outcome of a mutation.
    fn done<T>(
        &self,
        p: &Principal,
        action: Action,
        target: &str,
        result: ServiceResult<T>,
    ) -> ServiceResult<T> {
        if action.is_mutation() {
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err(ServiceError::Quota(q)) => format!("denied: {q}"),
                Err(e) => format!("failed: {e}"),
            };
            self.audit(&p.key_id, &p.tenant, action.name(), target, &outcome);
        }
        result
    }

    /// A job the caller may see (another tenant's job reads as not found).
    fn visible_job(&self, p: &Principal, action: Action, id: &str) -> ServiceResult<JobRecord> {
        let job = self.store.job(id)?;
        match job {
            Some(j) if p.sees_tenant(&j.tenant) => {
                self.authorize(p, action, &j.tenant, id)?;
                Ok(j)
            }
            _ => {
                // Authorise against the caller's own tenant first, so that a role that
                // may not act at all reads 403 whatever the id.
                self.authorize(p, action, &p.tenant, id)?;
                Err(ServiceError::NotFound(format!("no job '{id}'")))
            }
        }
    }

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

    async fn submit_job_inner(
        self: &Arc<Self>,
        p: &Principal,
        req: SubmitJob,
    ) -> ServiceResult<JobRecord> {
        let parallelism = req.parallelism.unwrap_or(1);
        if parallelism == 0 || parallelism > 1024 {
            return Err(ServiceError::BadRequest(format!(
                "parallelism must be 1 to 1024, not {parallelism}"
            )));
        }
        let tenant = self.tenant(&p.tenant)?;
        let usage = self
            .store
            .jobs(Some(&p.tenant))?
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .fold(Usage::default(), |u, j| Usage {
                jobs: u.jobs + 1,
                parallelism: u.parallelism + j.parallelism,
            });
        tenant.quotas.admit_job(&tenant.id, usage, parallelism)?;
        let id = format!(
            "job-{}",
            &ApiKey::generate()
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .id[..12]
        );
        if let Some(sp) = &req.from_savepoint {
            self.savepoint_dir(p, sp)?;
        }
        let job = JobRecord {
            id: id.clone(),
            tenant: p.tenant.clone(),
            sql: req.sql,
            parallelism,
            status: JobStatus::Running,
            error: None,
            from_savepoint: req.from_savepoint,
            created_ms: now_ms(),
            updated_ms: now_ms(),
        };
        // Planned before it is stored: a script that does not plan is a bad request.
        let plan = self.plan(&job).await?;
        self.store.insert_job(&job)?;
        self.start(job.clone(), plan);
        Ok(job)
    }

    /// Plans a job's SQL; its checkpoints go to the server's directory for the job
    /// whatever the script says, so that tenants cannot reach each other's state.
    async fn plan(&self, job: &JobRecord) -> ServiceResult<fungi_execution::plan::PhysicalPlan> {
        let config = fungi_common::config::JobConfig {
            parallelism: job.parallelism,
            ..Default::default()
        };
        let mut session = self.confined_session(&job.tenant, config)?;
        // The tenant's catalog functions first, as if the script began with them.
        for f in self.store.functions(&job.tenant)? {
            session.execute(&f.statement).await.map_err(|e| {
                ServiceError::BadRequest(format!(
                    "the catalog function '{}' no longer loads: {e}",
                    f.name
                ))
            })?;
        }
        let outcomes = session
            .execute_script(&job.sql)
            .await
            .map_err(|e| ServiceError::BadRequest(format!("the SQL does not plan: {e}")))?;
        let mut graphs: Vec<_> = outcomes
            .into_iter()
            .filter_map(|o| match o {
                fungi_sql::Outcome::Insert(g) => Some(g),
                _ => None,
            })
            .collect();
        if graphs.len() != 1 {
            return Err(ServiceError::BadRequest(format!(
                "a job is a script with exactly one INSERT INTO; this one has {}",
                graphs.len()
            )));
        }
        let mut graph = graphs.remove(0);
        graph.name = job.id.clone();
        graph.config.checkpointing.dir =
            Some(self.data_dir.join("jobs").join(&job.id).join("checkpoints"));
        graph.config.checkpointing.storage_options.clear();
        fungi_execution::plan::PhysicalPlan::new(graph)
            .map_err(|e| ServiceError::BadRequest(e.to_string()))
    }

    /// A SQL session confined to `tenant`: its files, plugins, egress hosts, Python
    /// policy and plugin limits.
    fn confined_session(
        &self,
        tenant: &str,
        config: fungi_common::config::JobConfig,
    ) -> ServiceResult<fungi_sql::SqlSession> {
        let tenant = self.tenant(tenant)?;
        let mut session = fungi_sql::SqlSession::new(config);
        let files_dir = self.files_dir(&tenant.id);
        std::fs::create_dir_all(&files_dir).map_err(|e| {
            ServiceError::Internal(format!("cannot create {}: {e}", files_dir.display()))
        })?;
        session.confine(fungi_sql::Confinement {
            files_dir,
            egress: tenant.quotas.allowed_egress_hosts.clone(),
            allow_native_python: tenant.quotas.allow_unsandboxed_python,
            plugin_dir: self.data_dir.join("plugins").join(&tenant.id),
            host: self.plugin_host()?,
            tenant: self.plugin_tenant(&tenant),
        });
        Ok(session)
    }

    /// Runs a planned job under supervision and records how it ends.
    fn start(self: &Arc<Self>, job: JobRecord, plan: fungi_execution::plan::PhysicalPlan) {
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
                rx,
                cancel.clone(),
                quota_failure.clone(),
            ));
        }
        let savepoint = job
            .from_savepoint
            .as_deref()
            .map(|sp| self.savepoint_path(sp));
        let service = self.clone();
        tokio::spawn(async move {
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
                Err(e) => (Some(JobStatus::Failed), Some(e.to_string())),
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
    }

    /// Starts every job the store says is running (after a restart): each resumes from
    /// its latest checkpoint. Returns how many were started; a job that no longer plans
    /// is marked failed.
    pub async fn resume_jobs(self: &Arc<Self>) -> ServiceResult<usize> {
        let mut n = 0;
        for job in self.store.jobs(None)? {
            if job.status != JobStatus::Running {
                continue;
            }
            match self.plan(&job).await {
                Ok(plan) => {
                    tracing::info!(job = %job.id, "resuming");
                    self.start(job, plan);
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

    /// The Prometheus exposition of the caller's tenant's jobs and plugins (every
    /// tenant's for admins).
    pub fn metrics(&self, p: &Principal) -> ServiceResult<String> {
        self.authorize(p, Action::MetricsRead, &p.tenant, "")?;
        let all = p.role == Role::Admin;
        let jobs: Vec<crate::metrics::JobSample> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .filter(|(_, r)| all || r.tenant == p.tenant)
            .map(|(id, r)| crate::metrics::JobSample {
                job: id.clone(),
                tenant: r.tenant.clone(),
                live: r.live.borrow().clone(),
            })
            .collect();
        let tenants: Vec<Arc<fungi_plugin::Tenant>> = self
            .plugin_tenants
            .lock()
            .expect("plugin tenants lock")
            .iter()
            .filter(|(id, _)| all || **id == p.tenant)
            .map(|(_, t)| t.clone())
            .collect();
        crate::metrics::render(&jobs, &tenants, now_ms())
            .map_err(|e| ServiceError::Internal(format!("cannot render metrics: {e}")))
    }

    /// Stops every job without changing its status (they resume when the server comes
    /// back).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
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
    pub fn get_job(&self, p: &Principal, id: &str) -> ServiceResult<JobDetails> {
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
            exceptions: live
                .exceptions
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect(),
            restarts: live.restarts,
            savepoints,
        })
    }

    /// Where a job checkpoints.
    fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.data_dir.join("jobs").join(job).join("checkpoints")
    }

    /// The savepoints of a job, oldest first.
    fn savepoints_of(&self, job: &JobRecord) -> Vec<String> {
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
    fn savepoint_path(&self, sp: &str) -> PathBuf {
        let (job, name) = sp.split_once('/').unwrap_or((sp, ""));
        self.checkpoint_dir(job).join("savepoints").join(name)
    }

    /// The directory of savepoint `sp`, if it is one of the caller's tenant's.
    fn savepoint_dir(&self, p: &Principal, sp: &str) -> ServiceResult<PathBuf> {
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
        req: SavepointRequest,
    ) -> ServiceResult<Savepoint> {
        let job = self.visible_job(p, Action::JobSavepoint, id)?;
        let result = self.savepoint_inner(&job, req).await;
        self.done(p, Action::JobSavepoint, id, result)
    }

    async fn savepoint_inner(
        &self,
        job: &JobRecord,
        req: SavepointRequest,
    ) -> ServiceResult<Savepoint> {
        let id = &job.id;
        let checkpoints = {
            let running = self.running.lock().expect("running lock");
            match running.get(id) {
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
    pub fn cancel_job(&self, p: &Principal, id: &str) -> ServiceResult<JobRecord> {
        let job = self.visible_job(p, Action::JobCancel, id)?;
        let result = (|| {
            if job.status != JobStatus::Running {
                return Err(ServiceError::Conflict(format!(
                    "job '{id}' is {:?}, not running",
                    job.status
                )));
            }
            if let Some(r) = self.running.lock().expect("running lock").get(id) {
                *r.ended_by.lock().expect("ended lock") = Some(JobStatus::Cancelled);
                r.cancel.cancel();
            }
            self.store
                .set_job_status(id, JobStatus::Cancelled, None, now_ms())?;
            Ok(self.store.job(id)?.unwrap_or(job.clone()))
        })();
        self.done(p, Action::JobCancel, id, result)
    }

    /// Creates a tenant (admins).
    pub fn create_tenant(&self, p: &Principal, req: CreateTenant) -> ServiceResult<Tenant> {
        self.authorize(p, Action::TenantCreate, &req.id, &req.id)?;
        let result = (|| {
            check_tenant_id(&req.id).map_err(ServiceError::BadRequest)?;
            let tenant = Tenant {
                id: req.id.clone(),
                quotas: req.quotas,
                trust: req.trust.clone(),
            };
            for key in &tenant.trust.keys {
                fungi_security::signing::check_public_key(key)
                    .map_err(|e| ServiceError::BadRequest(format!("trust policy: {e}")))?;
            }
            if !self.store.create_tenant(&tenant)? {
                return Err(ServiceError::Conflict(format!(
                    "tenant '{}' exists",
                    req.id
                )));
            }
            Ok(tenant)
        })();
        self.done(p, Action::TenantCreate, &req.id, result)
    }

    /// Sets a tenant's plugin trust policy (admins, and the tenant's own tenant admins).
    pub fn set_trust(&self, p: &Principal, id: &str, policy: TrustPolicy) -> ServiceResult<Tenant> {
        self.authorize(p, Action::TenantTrust, id, id)?;
        let result = (|| {
            for (i, key) in policy.keys.iter().enumerate() {
                fungi_security::signing::check_public_key(key)
                    .map_err(|e| ServiceError::BadRequest(format!("trusted key {i}: {e}")))?;
            }
            let mut tenant = self.tenant(id)?;
            tenant.trust = policy;
            self.store.update_tenant(&tenant)?;
            Ok(tenant)
        })();
        self.done(p, Action::TenantTrust, id, result)
    }

    /// Every tenant (admins).
    pub fn list_tenants(&self, p: &Principal) -> ServiceResult<Vec<Tenant>> {
        self.authorize(p, Action::TenantList, &p.tenant, "")?;
        Ok(self.store.tenants()?)
    }

    /// Deletes a tenant without running jobs (admins).
    pub fn delete_tenant(&self, p: &Principal, id: &str) -> ServiceResult<()> {
        self.authorize(p, Action::TenantDelete, id, id)?;
        let result = (|| {
            if id == SYSTEM_TENANT {
                return Err(ServiceError::Conflict("the system tenant stays".into()));
            }
            if self
                .store
                .jobs(Some(id))?
                .iter()
                .any(|j| j.status == JobStatus::Running)
            {
                return Err(ServiceError::Conflict(format!(
                    "tenant '{id}' has running jobs; cancel them first"
                )));
            }
            if !self.store.delete_tenant(id)? {
                return Err(ServiceError::NotFound(format!("no tenant '{id}'")));
            }
            Ok(())
        })();
        self.done(p, Action::TenantDelete, id, result)
    }

    /// Creates a key: in the caller's tenant (tenant admins), or any tenant (admins). A
    /// key never gets a role above its creator's.
    pub fn create_key(&self, p: &Principal, req: CreateKey) -> ServiceResult<CreatedKey> {
        let tenant = req.tenant.clone().unwrap_or_else(|| p.tenant.clone());
        self.authorize(p, Action::KeyCreate, &tenant, &tenant)?;
        let result = (|| {
            if req.role < p.role {
                return Err(ServiceError::Forbidden(format!(
                    "a {} cannot create a {} key",
                    p.role, req.role
                )));
            }
            if self.store.tenant(&tenant)?.is_none() {
                return Err(ServiceError::NotFound(format!("no tenant '{tenant}'")));
            }
            let key = ApiKey::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
            let record = KeyRecord {
                id: key.id.clone(),
                tenant: tenant.clone(),
                role: req.role,
                name: req.name.clone(),
                created_ms: now_ms(),
                revoked: false,
                hash: key
                    .hash()
                    .map_err(|e| ServiceError::Internal(e.to_string()))?,
            };
            self.store.insert_key(&record)?;
            Ok(CreatedKey {
                record,
                key: key.reveal(),
            })
        })();
        let target = result
            .as_ref()
            .map(|k| format!("{}/{}", tenant, k.record.id))
            .unwrap_or(tenant.clone());
        self.done(p, Action::KeyCreate, &target, result)
    }

    /// Keys of the caller's tenant (every key for an admin).
    pub fn list_keys(&self, p: &Principal) -> ServiceResult<Vec<KeyRecord>> {
        self.authorize(p, Action::KeyList, &p.tenant, "")?;
        let tenant = (p.role != Role::Admin).then_some(p.tenant.as_str());
        Ok(self.store.keys(tenant)?)
    }

    /// Revokes a key of the caller's tenant (any key for an admin).
    pub fn revoke_key(&self, p: &Principal, id: &str) -> ServiceResult<()> {
        let key = self.store.key(id)?;
        let tenant = match &key {
            Some(k) if p.sees_tenant(&k.tenant) => k.tenant.clone(),
            _ => p.tenant.clone(),
        };
        self.authorize(p, Action::KeyRevoke, &tenant, id)?;
        let result = match key {
            Some(k) if p.sees_tenant(&k.tenant) => {
                self.store.revoke_key(id)?;
                Ok(())
            }
            _ => Err(ServiceError::NotFound(format!("no key '{id}'"))),
        };
        self.done(p, Action::KeyRevoke, id, result)
    }

    /// The newest audit records: the caller's tenant's (every tenant's for an admin).
    pub fn audit_log(&self, p: &Principal, limit: Option<u32>) -> ServiceResult<Vec<AuditRecord>> {
        self.authorize(p, Action::AuditRead, &p.tenant, "")?;
        let tenant = (p.role != Role::Admin).then_some(p.tenant.as_str());
        Ok(self.store.audit(tenant, limit.unwrap_or(100).min(10_000))?)
    }

    /// Where a tenant's plugin components are kept.
    fn plugin_path(&self, tenant: &str, name: &str) -> PathBuf {
        self.data_dir
            .join("plugins")
            .join(tenant)
            .join(format!("{name}.wasm"))
    }

    /// Stores a plugin for the caller's tenant after loading it (a component that does
    /// not load, or breaks a quota, is refused).
    /// `signature` is the base64 cosign-compatible signature of the bytes, checked
    /// against the tenant's trust policy.
    pub async fn upload_plugin(
        &self,
        p: &Principal,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<String>,
    ) -> ServiceResult<PluginRecord> {
        self.authorize(p, Action::PluginUpload, &p.tenant, name)?;
        let result = self.upload_plugin_inner(p, name, bytes, signature).await;
        self.done(p, Action::PluginUpload, name, result)
    }

    async fn upload_plugin_inner(
        &self,
        p: &Principal,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<String>,
    ) -> ServiceResult<PluginRecord> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(ServiceError::BadRequest(format!(
                "plugin name '{name}' must be 1 to 63 lower-case letters, digits, '-' or '_'"
            )));
        }
        let tenant = self.tenant(&p.tenant)?;
        let stored = self.store.plugins(&p.tenant)?;
        let replacing = stored.iter().any(|s| s.name == name);
        tenant.quotas.admit_plugin(
            &tenant.id,
            stored.len() as u32 - replacing as u32,
            bytes.len() as u64,
        )?;
        let signature_status =
            fungi_security::signing::check(&tenant.trust, &bytes, signature.as_deref())
                .map_err(|e| ServiceError::Forbidden(e.to_string()))?;
        if let SignatureStatus::Warning { reason } = &signature_status {
            tracing::warn!(tenant = %tenant.id, plugin = name, "{reason}; stored because the trust policy is 'warn'");
        }
        let host = self.plugin_host()?;
        let (plugin_name, loaded) = (name.to_string(), bytes.clone());
        let details = tokio::task::spawn_blocking(move || {
            let plugin = host.load(&plugin_name, &loaded)?;
            let m = plugin.manifest();
            let functions: Vec<serde_json::Value> = plugin
                .functions()
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name,
                        "arguments": f.arguments.iter().map(|a| a.data_type().to_string()).collect::<Vec<_>>(),
                        "returns": f.returns.data_type().to_string(),
                        "volatility": format!("{:?}", f.volatility),
                    })
                })
                .collect();
            Ok::<_, fungi_plugin::PluginError>((
                match plugin.kind() {
                    fungi_plugin::PluginKind::Scalar => "scalar",
                    fungi_plugin::PluginKind::Aggregate => "aggregate",
                    fungi_plugin::PluginKind::Table => "table",
                    fungi_plugin::PluginKind::Source => "source",
                    fungi_plugin::PluginKind::Sink => "sink",
                }
                .to_string(),
                format!("blake3:{}", plugin.digest()),
                serde_json::json!({
                    "manifest": {
                        "name": m.name, "version": m.version, "description": m.description,
                        "network": m.network, "directories": m.directories,
                    },
                    "functions": functions,
                    "imports": plugin.imports(),
                    "contract": format!("fungi:plugin@{}", fungi_plugin::CONTRACT_VERSION),
                }),
            ))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::BadRequest(format!("the plugin does not load: {e}")))?;
        let (kind, digest, mut details) = details;
        details["signature"] = serde_json::to_value(&signature_status).unwrap_or_default();
        let path = self.plugin_path(&p.tenant, name);
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .and_then(|_| std::fs::write(&path, &bytes))
            .map_err(|e| ServiceError::Internal(format!("cannot store {}: {e}", path.display())))?;
        let record = PluginRecord {
            tenant: p.tenant.clone(),
            name: name.to_string(),
            digest,
            bytes: bytes.len() as u64,
            kind,
            details,
            created_ms: now_ms(),
        };
        self.store.put_plugin(&record)?;
        Ok(record)
    }

    /// The caller's tenant's plugins.
    pub fn list_plugins(&self, p: &Principal) -> ServiceResult<Vec<PluginRecord>> {
        self.authorize(p, Action::PluginList, &p.tenant, "")?;
        Ok(self.store.plugins(&p.tenant)?)
    }

    /// One of the caller's tenant's plugins, with the limits it runs under (from the
    /// tenant's quotas, as they are now).
    pub fn get_plugin(&self, p: &Principal, name: &str) -> ServiceResult<PluginRecord> {
        self.authorize(p, Action::PluginGet, &p.tenant, name)?;
        let mut record = self
            .store
            .plugin(&p.tenant, name)?
            .ok_or_else(|| ServiceError::NotFound(format!("no plugin '{name}'")))?;
        if let Some(tenant) = self.store.tenant(&p.tenant)? {
            let l = plugin_limits(&tenant.quotas);
            record.details["limits"] = serde_json::json!({
                "memory_per_instance": l.memory_per_instance,
                "memory_total": l.memory_total,
                "cpu_ms_per_second": l.cpu_budget_per_second.as_millis() as u64,
                "call_timeout_ms": l.call_timeout.map(|t| t.as_millis() as u64),
                "max_instances": l.max_instances,
                "network_allow": l.network_allow,
            });
        }
        Ok(record)
    }

    /// Deletes one of the caller's tenant's plugins.
    pub fn delete_plugin(&self, p: &Principal, name: &str) -> ServiceResult<()> {
        self.authorize(p, Action::PluginDelete, &p.tenant, name)?;
        let result = (|| {
            if !self.store.delete_plugin(&p.tenant, name)? {
                return Err(ServiceError::NotFound(format!("no plugin '{name}'")));
            }
            let _ = std::fs::remove_file(self.plugin_path(&p.tenant, name));
            Ok(())
        })();
        self.done(p, Action::PluginDelete, name, result)
    }

    /// A tenant's files directory (`filesystem` tables and Python modules of its jobs).
    fn files_dir(&self, tenant: &str) -> PathBuf {
        self.data_dir.join("files").join(tenant)
    }

    /// `path` inside the caller's files directory, if it is a valid relative path.
    fn tenant_file(&self, p: &Principal, path: &str) -> ServiceResult<PathBuf> {
        fungi_sql::path_inside(&self.files_dir(&p.tenant), path)
            .filter(|_| path.len() <= 255)
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "file path '{path}' must be relative, without '..', at most 255 bytes"
                ))
            })
    }

    /// Stores a file in the caller's tenant's files (what its jobs' `filesystem` tables
    /// and `LANGUAGE PYTHON ... USING` read).
    pub fn upload_file(&self, p: &Principal, path: &str, bytes: &[u8]) -> ServiceResult<FileEntry> {
        self.authorize(p, Action::FileUpload, &p.tenant, path)?;
        let result = (|| {
            let file = self.tenant_file(p, path)?;
            std::fs::create_dir_all(file.parent().expect("a parent"))
                .and_then(|_| std::fs::write(&file, bytes))
                .map_err(|e| ServiceError::Internal(format!("cannot store '{path}': {e}")))?;
            Ok(FileEntry {
                path: path.to_string(),
                bytes: bytes.len() as u64,
            })
        })();
        self.done(p, Action::FileUpload, path, result)
    }

    /// The caller's tenant's files, by path.
    pub fn list_files(&self, p: &Principal) -> ServiceResult<Vec<FileEntry>> {
        self.authorize(p, Action::FileList, &p.tenant, "")?;
        let root = self.files_dir(&p.tenant);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.metadata() {
                    Ok(m) if m.is_dir() => stack.push(path),
                    Ok(m) => out.push(FileEntry {
                        path: path
                            .strip_prefix(&root)
                            .unwrap_or(&path)
                            .to_string_lossy()
                            .into_owned(),
                        bytes: m.len(),
                    }),
                    Err(_) => {}
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes one of the caller's tenant's files.
    pub fn delete_file(&self, p: &Principal, path: &str) -> ServiceResult<()> {
        self.authorize(p, Action::FileDelete, &p.tenant, path)?;
        let result = (|| {
            let file = self.tenant_file(p, path)?;
            if !file.is_file() {
                return Err(ServiceError::NotFound(format!("no file '{path}'")));
            }
            std::fs::remove_file(&file)
                .map_err(|e| ServiceError::Internal(format!("cannot delete '{path}': {e}")))
        })();
        self.done(p, Action::FileDelete, path, result)
    }

    /// Registers a function in the caller's tenant's catalog: its `CREATE FUNCTION`
    /// statement is checked now (parsed, and loaded under the tenant's confinement and
    /// policy) and runs before each of the tenant's jobs from then on. A function of the
    /// same name is replaced.
    pub async fn register_function(
        &self,
        p: &Principal,
        req: RegisterFunction,
    ) -> ServiceResult<FunctionRecord> {
        self.authorize(p, Action::FunctionRegister, &p.tenant, "")?;
        let result = async {
            let (name, language) = fungi_sql::function_statement(&req.sql)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
            let mut session = self.confined_session(&p.tenant, Default::default())?;
            session
                .execute(req.sql.trim().trim_end_matches(';'))
                .await
                .map_err(|e| ServiceError::BadRequest(format!("'{name}' does not load: {e}")))?;
            let record = FunctionRecord {
                tenant: p.tenant.clone(),
                name,
                language: language.to_string(),
                statement: req.sql.trim().trim_end_matches(';').to_string(),
                created_ms: now_ms(),
            };
            self.store.put_function(&record)?;
            Ok(record)
        }
        .await;
        let target = result.as_ref().map(|f| f.name.clone()).unwrap_or_default();
        self.done(p, Action::FunctionRegister, &target, result)
    }

    /// The caller's tenant's catalog functions.
    pub fn list_functions(&self, p: &Principal) -> ServiceResult<Vec<FunctionRecord>> {
        self.authorize(p, Action::FunctionList, &p.tenant, "")?;
        Ok(self.store.functions(&p.tenant)?)
    }

    /// Removes a function from the caller's tenant's catalog (running jobs keep it).
    pub fn delete_function(&self, p: &Principal, name: &str) -> ServiceResult<()> {
        self.authorize(p, Action::FunctionDelete, &p.tenant, name)?;
        let result = match self.store.delete_function(&p.tenant, name) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::NotFound(format!("no function '{name}'"))),
            Err(e) => Err(e.into()),
        };
        self.done(p, Action::FunctionDelete, name, result)
    }

    /// Audits a request refused before it reached the service (a malformed body).
    pub fn audit_bad_request(&self, p: Option<&Principal>, what: &str, reason: &str) {
        let (who, tenant) = p.map_or(("anonymous", ""), |p| {
            (p.key_id.as_str(), p.tenant.as_str())
        });
        self.audit(
            who,
            tenant,
            what,
            "",
            &format!("failed: bad request: {reason}"),
        );
    }
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
