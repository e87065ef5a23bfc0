//! What a job is to the cluster: the text that rebuilds its plan on every process, and
//! the fingerprint that proves every process built the same one.

use std::sync::Arc;

use fungi_execution::plan::PhysicalPlan;
use serde::{Deserialize, Serialize};

/// A job as it travels from the client to the JobManager and on to the TaskManagers.
/// Operators are not serialised: every process plans the same text into the same
/// physical plan and runs only its own subtasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobSpec {
    /// The file name the job came from (`.sql` for streaming SQL, otherwise a job
    /// file); it names the job.
    pub file_name: String,
    /// The file's text.
    pub text: String,
    /// The parallelism asked for on the command line, if any.
    pub parallelism: Option<u32>,
    /// Which job of the script this is, counting its INSERTs and SELECTs from 0.
    pub statement: usize,
    /// A savepoint (its directory, as every process reaches it) to start from when the
    /// job has no checkpoint of its own yet.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// The job's name on the cluster (letters, digits, `.`, `_`, `-`; unique: a second
    /// submission of a name the cluster knows is refused). The JobManager names it
    /// after the file when not given.
    #[serde(default)]
    pub name: Option<String>,
    /// The job outlives its submitter's connection (a server submits this way and
    /// follows the job from wherever it is); otherwise, without high availability, the
    /// job is cancelled when its submitter goes away.
    #[serde(default)]
    pub detached: bool,
    /// Where the job checkpoints, overriding what its script says (every process must
    /// reach it).
    #[serde(default)]
    pub checkpoint_dir: Option<String>,
    /// The tenant the job runs for, when a server submitted it: every process plans
    /// and runs it confined to the tenant's files, plugins, egress hosts, Python policy
    /// and plugin limits, as the server would.
    #[serde(default)]
    pub tenant: Option<TenantScope>,
}

/// A tenant's confinement, as it travels with a job (see [`JobSpec::tenant`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantScope {
    /// The tenant: its quotas (egress hosts, Python policy, plugin limits) and trust
    /// policy.
    pub tenant: fungi_tenancy::Tenant,
    /// Its files (a `filesystem` table's path is relative to it); every process must
    /// reach it at this path.
    pub files_dir: std::path::PathBuf,
    /// Its uploaded plugins; every process must reach it at this path.
    pub plugin_dir: std::path::PathBuf,
}

/// Whether `name` may name a job: 1 to 128 letters, digits, `.`, `_` or `-`, not
/// starting with `.` (names become keys in etcd and parts of paths).
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl JobSpec {
    /// The spec as it travels (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job spec serialises")
    }

    /// Reads a spec, or says why it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Result<JobSpec, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a job specification: {e}"))
    }
}

/// Plans a job spec into a physical plan; the binary provides it (it knows SQL, job
/// files, plugins and connectors), so the cluster depends only on the runtime.
pub trait Planner: Send + Sync + 'static {
    /// The plan of `spec`, or why it does not plan.
    fn plan(&self, spec: &JobSpec) -> Result<PhysicalPlan, String>;
}

/// The stack of a planning thread: planning recurses over expressions.
const PLANNING_STACK: usize = 256 << 20;

/// Plans `spec` on a thread of its own (a roomy stack, and the async runtime stays free).
pub(crate) async fn plan(planner: Arc<dyn Planner>, spec: JobSpec) -> Result<PhysicalPlan, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fungi-plan".into())
        .stack_size(PLANNING_STACK)
        .spawn(move || {
            let _ = tx.send(planner.plan(&spec));
        })
        .map_err(|e| format!("cannot start a planning thread: {e}"))?;
    rx.await.map_err(|_| "the planner panicked".to_string())?
}

/// A digest of what decides where data flows in `plan`: EXPLAIN names every operator,
/// chain, parallelism, edge and the max parallelism; the checkpoint interval decides
/// whether barriers flow.
pub fn fingerprint(plan: &PhysicalPlan) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(plan.explain().as_bytes());
    hasher.update(format!("{:?}", plan.graph.config.checkpointing.interval).as_bytes());
    hasher.finalize().to_hex()[..16].to_string()
}
