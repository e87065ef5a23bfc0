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

mod artifacts;
mod cluster;
mod explain;
mod history;
mod jobs;
mod tenants;
mod upgrade;

pub use cluster::ClusterBackend;
pub use explain::{ExplainSql, Explained};
pub use history::{
    CheckpointEntry, HistoryPoint, JobHistory, JobStats, OperatorRates, PluginLimitsView,
    PluginUsagePoint, TenantUsage,
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
    /// A service the call needs (the cluster) does not answer now; try again (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The caller's key made more calls than its rate allows (429).
    #[error(
        "rate limited: key '{key}' may make {per_second} calls a second; retry in {retry_after_ms} ms"
    )]
    RateLimited {
        /// The key's id.
        key: String,
        /// Its rate.
        per_second: u32,
        /// When a call will be let through again.
        retry_after_ms: u64,
    },
}

impl ServiceError {
    /// The error with the server's paths written as the tenant names them.
    pub(crate) fn scrubbed(self, paths: &TenantPaths) -> ServiceError {
        use ServiceError::*;
        match self {
            Unauthenticated(m) => Unauthenticated(paths.scrub(&m)),
            Forbidden(m) => Forbidden(paths.scrub(&m)),
            NotFound(m) => NotFound(paths.scrub(&m)),
            BadRequest(m) => BadRequest(paths.scrub(&m)),
            Conflict(m) => Conflict(paths.scrub(&m)),
            Internal(m) => Internal(paths.scrub(&m)),
            Unavailable(m) => Unavailable(paths.scrub(&m)),
            other @ (Quota(_) | RateLimited { .. }) => other,
        }
    }
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

/// `POST /jobs/{id}/upgrade`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeJob {
    /// The new version of the job's SQL script.
    pub sql: String,
    /// Its parallelism (default: the running job's).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// How long to wait for the savepoint the old version stops with, seconds
    /// (default 60).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `POST /jobs/{id}/savepoint`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeSavepoint {
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
    /// Where the job runs, when the server runs jobs on a cluster: the cluster's status
    /// of it and attempt, each subtask's TaskManager, and per part the rows per
    /// operator, bytes between hosts and time backpressured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cluster: Option<serde_json::Value>,
    /// Records of the current attempt sent to the dead-letter output, per reason (the
    /// records themselves: `GET /jobs/{id}/dead-letters`).
    pub dead_letters: std::collections::BTreeMap<String, u64>,
}

/// Who the caller is and what it may do (`GET /api/v1/whoami`), so that a client shows
/// only what the caller's role allows.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The key's id (or the token's subject).
    pub key_id: String,
    /// The caller's tenant.
    pub tenant: String,
    /// The caller's role.
    pub role: Role,
    /// The actions the role allows (`job.submit`, `key.create`, ...), within its tenant
    /// (across tenants for admins).
    pub permissions: Vec<String>,
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
    /// What the cluster last said of the job, when it runs on one.
    cluster: Option<cluster::ClusterView>,
}

/// How the server authenticates callers besides API keys, and how often a caller may
/// call.
#[derive(Debug, Default)]
pub struct AuthConfig {
    /// Accept JWT bearer tokens checked by this verifier.
    pub jwt: Option<JwtVerifier>,
    /// Calls a second each key (or token subject) may make, with bursts of five times
    /// that; unlimited when `None`.
    pub rate_per_key: Option<std::num::NonZeroU32>,
}

/// Calls per key: a token bucket per key id (governor's GCRA).
type KeyRates = governor::DefaultKeyedRateLimiter<String>;

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
    plugin_tenants: Mutex<HashMap<String, Arc<fungi_plugin::PluginTenant>>>,
    /// Where jobs run and scripts are planned: apart from the API's runtime.
    runtimes: crate::runtime::JobRuntimes,
    /// The cluster jobs run on, or none: in this process.
    cluster: Option<ClusterBackend>,
    /// Held while a job is admitted against its tenant's running jobs and stored.
    admitting: tokio::sync::Mutex<()>,
    /// Keys that verified, and failed attempts per key id.
    key_checks: fungi_security::KeyChecks,
    /// Calls per key, when limited.
    rates: Option<KeyRates>,
    /// Recent counters of each job (see `history`).
    history: Mutex<history::Histories>,
}

/// How a tenant sees the server's paths: its files as `files/...`, its plugins as
/// `plugins/...`, anything else of the server as `<server>/...`. Messages a tenant reads
/// go through [`TenantPaths::scrub`], so they never show where the server keeps data.
pub(crate) struct TenantPaths {
    /// (server path, what the tenant reads instead), longest first.
    replacements: Vec<(String, &'static str)>,
}

impl TenantPaths {
    /// `message` with the server's paths written as the tenant names them.
    pub(crate) fn scrub(&self, message: &dyn std::fmt::Display) -> String {
        let mut text = message.to_string();
        for (path, name) in &self.replacements {
            if !path.is_empty() {
                text = text.replace(path.as_str(), name);
            }
        }
        text
    }
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
    if let Some(n) = q.plugin_host_resources {
        limits.max_host_resources = n as usize;
    }
    if let Some(n) = q.plugin_max_output_bytes {
        limits.max_output_bytes = n as usize;
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
    /// A service over `store`, keeping job checkpoints under `data_dir`, running jobs in
    /// this process.
    pub fn new(store: Arc<dyn MetadataStore>, data_dir: PathBuf, auth: AuthConfig) -> Arc<Service> {
        Self::with_cluster(store, data_dir, auth, None)
    }

    /// A service running jobs on `cluster` (in this process when `None`).
    pub fn with_cluster(
        store: Arc<dyn MetadataStore>,
        data_dir: PathBuf,
        auth: AuthConfig,
        cluster: Option<ClusterBackend>,
    ) -> Arc<Service> {
        // Absolute, so that paths derived from it (the plugin cache) are, and a message
        // names them whole.
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        let rates = auth.rate_per_key.map(|per_second| {
            let burst = per_second.saturating_mul(std::num::NonZeroU32::new(5).expect("5 > 0"));
            governor::RateLimiter::dashmap(
                governor::Quota::per_second(per_second).allow_burst(burst),
            )
        });
        Arc::new(Service {
            rates,
            cluster,
            store,
            data_dir,
            auth,
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            plugin_host: std::sync::OnceLock::new(),
            plugin_tenants: Mutex::new(HashMap::new()),
            runtimes: crate::runtime::JobRuntimes::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            admitting: tokio::sync::Mutex::new(()),
            key_checks: fungi_security::KeyChecks::default(),
            history: Default::default(),
        })
    }

    /// How `tenant` sees the server's paths (see [`TenantPaths`]).
    pub(crate) fn tenant_paths(&self, tenant: &str) -> TenantPaths {
        let show = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut replacements = vec![
            (show(self.files_dir(tenant)), "files"),
            (show(self.data_dir.join("plugins").join(tenant)), "plugins"),
            (show(self.data_dir.join("jobs")), "jobs"),
            (show(self.data_dir.clone()), "<server>"),
        ];
        // Also the canonical form, should the data directory be reached through a link.
        if let Ok(canonical) = self.data_dir.canonicalize()
            && canonical != self.data_dir
        {
            replacements.push((show(canonical), "<server>"));
        }
        replacements.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        TenantPaths { replacements }
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
    fn plugin_tenant(&self, tenant: &Tenant) -> Arc<fungi_plugin::PluginTenant> {
        crate::confine::plugin_tenant(&self.plugin_tenants, tenant)
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
            return self.within_rate(p);
        }
        let key = ApiKey::parse(text).map_err(|e| fail(&e.to_string()))?;
        let record = match self.store.key(&key.id)? {
            Some(r) if r.revoked => return Err(fail("the API key was revoked")),
            Some(r) => {
                // Argon2 is slow on purpose: off the API's async threads.
                let check = fungi_reliability::outside_async_runtime(|| {
                    self.key_checks.check(&key, &r.hash)
                });
                match check {
                    fungi_security::KeyCheck::Valid => r,
                    fungi_security::KeyCheck::Invalid => return Err(fail("unknown API key")),
                    fungi_security::KeyCheck::Throttled => {
                        return Err(fail(
                            "too many failed attempts with this key id; it is checked once a \
                             second for a minute",
                        ));
                    }
                }
            }
            None => return Err(fail("unknown API key")),
        };
        self.within_rate(Principal {
            key_id: record.id,
            tenant: record.tenant,
            role: record.role,
        })
    }

    /// `p`, unless its key called more often than its rate allows. Refusals are not
    /// audited: a flood would flood the audit log.
    fn within_rate(&self, p: Principal) -> ServiceResult<Principal> {
        let (Some(rates), Some(per_second)) = (&self.rates, self.auth.rate_per_key) else {
            return Ok(p);
        };
        match rates.check_key(&p.key_id) {
            Ok(()) => Ok(p),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Err(ServiceError::RateLimited {
                    key: p.key_id,
                    per_second: per_second.get(),
                    retry_after_ms: wait.as_millis().max(1) as u64,
                })
            }
        }
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
        // What the caller reads names its files and plugins as it does.
        let result = result.map_err(|e| e.scrubbed(&self.tenant_paths(&p.tenant)));
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
            // Jobs on a cluster are measured by its JobManager and TaskManagers.
            .filter(|(_, r)| r.cluster.is_none() && (all || r.tenant == p.tenant))
            .map(|(id, r)| crate::metrics::JobSample {
                job: id.clone(),
                tenant: r.tenant.clone(),
                live: r.live.borrow().clone(),
            })
            .collect();
        let tenants: Vec<Arc<fungi_plugin::PluginTenant>> = self
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

    /// Whether the service can answer calls: its metadata store answers.
    pub fn check_ready(&self) -> ServiceResult<()> {
        self.store.tenant(SYSTEM_TENANT)?;
        Ok(())
    }

    /// Who the caller is and what it may do.
    pub fn whoami(&self, p: &Principal) -> WhoAmI {
        WhoAmI {
            key_id: p.key_id.clone(),
            tenant: p.tenant.clone(),
            role: p.role,
            permissions: Action::ALL
                .into_iter()
                .filter(|a| p.role.allows(*a))
                .map(|a| a.name().to_string())
                .collect(),
        }
    }

    /// Audits a call that another interface served through this service (an MCP
    /// agent's read), under the caller's key.
    pub fn record_call(&self, p: &Principal, action: &str, target: &str, result: &str) {
        self.audit(&p.key_id, &p.tenant, action, target, result);
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
