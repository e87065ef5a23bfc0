//! The distributed mode's commands: `fungi jobmanager`, `fungi taskmanager`,
//! `fungi run --cluster ADDR` and `fungi cluster status`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fungi_cluster::ha::{EtcdTls, HaConfig};
use fungi_cluster::jobmanager::JobManagerConfig;
use fungi_cluster::taskmanager::{self, Registration, TaskManagerConfig};
use fungi_cluster::{ClusterClient, JobSpec, Planner, Tls, TlsFiles};
use fungi_execution::plan::PhysicalPlan;
use tokio_util::sync::CancellationToken;

use crate::RunArgs;

/// Mutual TLS between the processes of a cluster.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ClusterTlsArgs {
    /// This process's certificate (PEM, signed by the cluster's CA, naming the host
    /// others reach it at). With the key and the CA, every connection of the cluster
    /// (sessions, data, clients) is mutual TLS.
    #[arg(
        long,
        env = "FUNGI_CLUSTER_TLS_CERT",
        requires_all = ["cluster_tls_key", "cluster_tls_ca"]
    )]
    cluster_tls_cert: Option<PathBuf>,
    /// This process's private key (PEM).
    #[arg(long, env = "FUNGI_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    cluster_tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): peers must present a certificate it signed.
    #[arg(long, env = "FUNGI_CLUSTER_TLS_CA", requires = "cluster_tls_cert")]
    cluster_tls_ca: Option<PathBuf>,
}

impl ClusterTlsArgs {
    /// The TLS identity, when certificates are given.
    pub(crate) fn load(&self) -> Result<Option<Tls>> {
        let (Some(cert), Some(key), Some(ca)) = (
            &self.cluster_tls_cert,
            &self.cluster_tls_key,
            &self.cluster_tls_ca,
        ) else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        Ok(Some(Tls::load(&files).map_err(anyhow::Error::msg)?))
    }
}

#[derive(Debug, Args)]
pub(crate) struct JobManagerArgs {
    /// Where to listen for TaskManagers and clients (`host:port`; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:6123")]
    listen: String,
    /// A TaskManager silent this long is lost and its jobs' attempts fail.
    #[arg(long, default_value_t = 5000)]
    heartbeat_timeout_ms: u64,
    /// Serve Prometheus metrics (TaskManagers, slots, bytes between hosts,
    /// backpressure, rows per operator) at http://ADDR/metrics, and the health and
    /// readiness probes at /healthz and /readyz (ready while it leads).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Where plugins and Python modules shipped with jobs are kept (by digest).
    #[arg(long, default_value_os_t = default_artifact_dir())]
    artifact_dir: std::path::PathBuf,
    #[command(flatten)]
    tls: ClusterTlsArgs,
    #[command(flatten)]
    ha: HaArgs,
}

/// How JobManagers elect a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HaMode {
    /// One JobManager, no election: it leads until it stops.
    None,
    /// JobManagers elect one leader through etcd; standbys take over when it is lost.
    Etcd,
}

/// High availability of the JobManager.
#[derive(Debug, Args)]
struct HaArgs {
    /// High availability: `none`, or `etcd` (start several JobManagers with the same
    /// --ha-endpoints and --ha-cluster-id; give TaskManagers and clients all of their
    /// addresses, comma-separated).
    #[arg(long, value_enum, default_value = "none")]
    ha: HaMode,
    /// etcd's client URLs, comma-separated (`http://host:2379,...`).
    #[arg(long, value_delimiter = ',', required_if_eq("ha", "etcd"))]
    ha_endpoints: Vec<String>,
    /// Names the cluster in etcd (its keys live under /fungi/ID/).
    #[arg(long, default_value = "default")]
    ha_cluster_id: String,
    /// Seconds a leader that stopped answering keeps its lead: a standby takes over
    /// within this time.
    #[arg(long, default_value_t = 15)]
    ha_lease_ttl: u64,
    /// TLS to etcd: the CA certificate (PEM) that signed etcd's; endpoints then default
    /// to https.
    #[arg(long, value_name = "PEM")]
    ha_etcd_ca: Option<PathBuf>,
    /// This JobManager's client certificate for etcd (PEM), when etcd checks clients.
    #[arg(long, value_name = "PEM", requires_all = ["ha_etcd_ca", "ha_etcd_key"])]
    ha_etcd_cert: Option<PathBuf>,
    /// The key of --ha-etcd-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "ha_etcd_cert")]
    ha_etcd_key: Option<PathBuf>,
    /// The address TaskManagers and clients reach this JobManager at (default: the
    /// address it listens on).
    #[arg(long)]
    advertise: Option<String>,
    /// This JobManager's name among the others (default: its advertised address).
    #[arg(long)]
    id: Option<String>,
}

fn default_artifact_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("fungi-artifacts")
}

#[derive(Debug, Args)]
pub(crate) struct TaskManagerArgs {
    /// The JobManager's address (`host:port`); with high availability, every
    /// JobManager's, comma-separated: it registers with the leader.
    #[arg(long)]
    jobmanager: String,
    /// Slots offered: how many subtasks of one chain this TaskManager may run.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Threads that run its subtasks (default: one per core). On a machine shared with
    /// other TaskManagers, their sum is best kept at the cores they share.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    worker_threads: Option<u32>,
    /// Where its data endpoint (Arrow Flight, for other TaskManagers) listens; port 0
    /// picks one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Its name in the cluster (default: its data address).
    #[arg(long)]
    id: Option<String>,
    /// The address other TaskManagers reach its data endpoint at (default: the address
    /// it listens on; set it when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<String>,
    /// Where plugins and Python modules shipped with jobs are kept (by digest).
    #[arg(long, default_value_os_t = default_artifact_dir())]
    artifact_dir: std::path::PathBuf,
    /// Serve health and readiness probes at http://ADDR/healthz and /readyz (ready
    /// while registered with a leading JobManager).
    #[arg(long, value_name = "ADDR")]
    probe_listen: Option<String>,
    #[command(flatten)]
    tls: ClusterTlsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// The TaskManagers (slots, free and used, last heartbeat) and the running jobs with
    /// where each subtask runs.
    Status {
        /// The JobManager's address (`host:port`; several, comma-separated, with high
        /// availability: the leader answers).
        #[arg(long, env = "FUNGI_JOBMANAGER", default_value = "127.0.0.1:6123")]
        jobmanager: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tls: ClusterTlsArgs,
    },
    /// Cancels a running job.
    Cancel {
        /// The job, as `fungi cluster status` names it.
        job: String,
        /// The JobManager's address (`host:port`; several, comma-separated).
        #[arg(long, env = "FUNGI_JOBMANAGER", default_value = "127.0.0.1:6123")]
        jobmanager: String,
        #[command(flatten)]
        tls: ClusterTlsArgs,
    },
}

/// Plans jobs as `fungi run` does, for the JobManager and every TaskManager.
struct CliPlanner;

impl Planner for CliPlanner {
    fn plan(&self, spec: &JobSpec) -> std::result::Result<PhysicalPlan, String> {
        // A server's job is planned confined to its tenant, as the server planned it.
        if let Some(scope) = &spec.tenant {
            return fungi_server::plan_scoped(spec, scope);
        }
        let plan = plan_spec(spec).map_err(|e| format!("{e:#}"))?;
        match &spec.checkpoint_dir {
            Some(dir) => {
                let mut graph = plan.graph;
                graph.config.checkpointing.dir = Some(dir.into());
                PhysicalPlan::new(graph).map_err(|e| e.to_string())
            }
            None => Ok(plan),
        }
    }
}

/// Plans `spec` into its physical plan.
fn plan_spec(spec: &JobSpec) -> Result<PhysicalPlan> {
    let mut plans = plan_all(spec)?;
    let count = plans.len();
    if spec.statement >= count {
        bail!(
            "{} has {count} jobs; there is no job {}",
            spec.file_name,
            spec.statement + 1
        );
    }
    Ok(plans.swap_remove(spec.statement))
}

/// Every job of `spec`'s file.
fn plan_all(spec: &JobSpec) -> Result<Vec<PhysicalPlan>> {
    if spec.file_name.ends_with(".sql") {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a planning runtime")?;
        let planned = runtime
            .block_on(crate::plan_sql(&spec.text, spec.parallelism))
            .with_context(|| spec.file_name.clone())?;
        Ok(planned.plans)
    } else {
        let job = crate::job::JobFile::parse(&spec.text, &spec.file_name)?;
        Ok(vec![PhysicalPlan::new(job.to_graph(spec.parallelism)?)?])
    }
}

/// A runtime for a long-running role (with `worker_threads`, or one per core), and a
/// token cancelled on Ctrl-C or SIGTERM.
fn role_runtime(
    worker_threads: Option<u32>,
) -> Result<(tokio::runtime::Runtime, CancellationToken)> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = worker_threads {
        builder.worker_threads(n as usize);
    }
    let runtime = builder.build().context("cannot start the tokio runtime")?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    Ok((runtime, shutdown))
}

/// `fungi jobmanager`.
pub(crate) fn job_manager(args: JobManagerArgs) -> Result<()> {
    let (runtime, shutdown) = role_runtime(None)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let metrics = match &args.metrics_listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address}"))?,
            ),
            None => None,
        };
        println!("JobManager listening on {}", listener.local_addr()?);
        if let Some(m) = &metrics {
            println!("metrics on http://{}/metrics", m.local_addr()?);
        }
        std::io::stdout().flush()?;
        let address = match &args.ha.advertise {
            Some(a) => a.clone(),
            None => listener.local_addr()?.to_string(),
        };
        let ha = match args.ha.ha {
            HaMode::None => None,
            HaMode::Etcd => {
                if args.ha.ha_lease_ttl < 2 {
                    bail!("--ha-lease-ttl must be at least 2 seconds (etcd's shortest lease)");
                }
                Some(HaConfig {
                    endpoints: args.ha.ha_endpoints.clone(),
                    cluster_id: args.ha.ha_cluster_id.clone(),
                    lease_ttl: Duration::from_secs(args.ha.ha_lease_ttl),
                    id: args.ha.id.clone().unwrap_or_else(|| address.clone()),
                    address,
                    tls: args.ha.ha_etcd_ca.clone().map(|ca| EtcdTls {
                        ca,
                        identity: args
                            .ha
                            .ha_etcd_cert
                            .clone()
                            .zip(args.ha.ha_etcd_key.clone()),
                    }),
                })
            }
        };
        let config = JobManagerConfig {
            heartbeat_timeout: Duration::from_millis(args.heartbeat_timeout_ms),
            artifact_dir: args.artifact_dir,
            tls: args.tls.load()?,
            ha,
            ..Default::default()
        };
        fungi_cluster::jobmanager::serve(listener, metrics, Arc::new(CliPlanner), config, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

/// `fungi taskmanager`.
pub(crate) fn task_manager(args: TaskManagerArgs) -> Result<()> {
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let (runtime, shutdown) = role_runtime(args.worker_threads)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        println!(
            "TaskManager {} with {} slots, data endpoint on {address}, JobManager {}",
            args.id.as_deref().unwrap_or("(named by its address)"),
            args.slots,
            args.jobmanager
        );
        std::io::stdout().flush()?;
        let registration = Registration::default();
        if let Some(probes) = &args.probe_listen {
            let probes = tokio::net::TcpListener::bind(probes)
                .await
                .with_context(|| format!("cannot listen on {probes}"))?;
            println!("probes on http://{}/readyz", probes.local_addr()?);
            std::io::stdout().flush()?;
            taskmanager::serve_probes(probes, registration.clone(), shutdown.clone());
        }
        let config = TaskManagerConfig {
            id: args.id,
            job_manager: args.jobmanager,
            slots: args.slots,
            advertise: args.advertise,
            artifact_dir: args.artifact_dir,
            tls: args.tls.load()?,
        };
        let planner = Arc::new(CliPlanner);
        taskmanager::run(config, listener, planner, registration, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

/// `fungi run --cluster ADDR FILE`: submits every job of the file and follows them
/// until they end; Ctrl-C cancels them.
pub(crate) fn submit(args: &RunArgs, job_manager: &str) -> Result<()> {
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("cannot read {}", args.job.display()))?;
    let file_name = args
        .job
        .file_name()
        .map_or_else(|| "job".into(), |n| n.to_string_lossy().into_owned());
    let spec = JobSpec {
        file_name,
        text,
        parallelism: args.parallelism,
        statement: 0,
        savepoint: match &args.from_savepoint {
            Some(path) => Some(
                std::path::absolute(path)
                    .with_context(|| format!("savepoint {}", path.display()))?
                    .display()
                    .to_string(),
            ),
            None => None,
        },
        ..Default::default()
    };
    // Planned here first: a job that does not plan is refused before it travels.
    let plans = plan_all(&spec).map_err(|e| anyhow::anyhow!("{}: {e:#}", args.job.display()))?;
    if args.explain {
        for plan in &plans {
            print!("{}", plan.explain());
        }
        return Ok(());
    }
    let artifacts = fungi_cluster::artifacts::collect(&spec.text, &std::env::current_dir()?)
        .context("cannot read a plugin or module the job names")?;
    let tls = args.cluster_tls.load()?;
    let (runtime, stop) = role_runtime(None)?;
    runtime.block_on(async {
        let client = ClusterClient::leader(job_manager, tls.as_ref()).await?;
        let mut runs = tokio::task::JoinSet::new();
        for statement in 0..plans.len() {
            let spec = JobSpec {
                statement,
                ..spec.clone()
            };
            let mut client = client.clone();
            let stop = stop.clone();
            let artifacts = artifacts.clone();
            let (addresses, tls) = (job_manager.to_string(), tls.clone());
            runs.spawn(async move {
                let mut events = client.submit(&spec, artifacts).await?;
                let mut job: Option<String> = None;
                loop {
                    let event = tokio::select! {
                        event = events.message() => event,
                        _ = stop.cancelled() => {
                            if let Some(job) = &job {
                                let _ = client.cancel(job).await;
                            }
                            bail!("cancelled");
                        }
                    };
                    let event = match (event, &job) {
                        (Ok(Some(event)), _) => event,
                        // The leader was lost: follow the job on the next one.
                        (Err(e), Some(job)) if addresses.contains(',') => {
                            eprintln!("job {job}: the JobManager's stream broke ({}); following it on the next leader", e.message());
                            (client, events) = follow_on_leader(&addresses, tls.as_ref(), job, &stop).await?;
                            continue;
                        }
                        (Err(e), _) => bail!("the JobManager's stream broke: {}", e.message()),
                        (Ok(None), _) => bail!("the JobManager ended the job's stream without an outcome"),
                    };
                    job.get_or_insert_with(|| event.job.clone());
                    eprintln!("job {}: {} {}", event.job, event.status, event.message);
                    match event.status.as_str() {
                        "finished" => {
                            for o in &event.operators {
                                eprintln!(
                                    "  {:<32} {:>12} in {:>12} out",
                                    o.operator, o.records_in, o.records_out
                                );
                            }
                            return Ok(());
                        }
                        "stopped" => return Ok(()),
                        "failed" => bail!("job {} failed: {}", event.job, event.message),
                        "cancelled" => bail!("job {} was cancelled", event.job),
                        _ => {}
                    }
                }
            });
        }
        let mut first_error = None;
        while let Some(result) = runs.join_next().await {
            if let Err(e) = result.context("a job's follower panicked").and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Finds the new leader among `addresses` and follows `job` there (for up to two
/// minutes: a standby takes over within its lease time).
async fn follow_on_leader(
    addresses: &str,
    tls: Option<&Tls>,
    job: &str,
    stop: &CancellationToken,
) -> Result<(ClusterClient, fungi_cluster::client::JobEvents)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let last = match ClusterClient::leader(addresses, tls).await {
            Ok(mut client) => match client.follow(job).await {
                Ok(events) => return Ok((client, events)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() > deadline {
            bail!("job {job} could not be followed on any JobManager of {addresses}: {last}");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.cancelled() => bail!("cancelled"),
        }
    }
}

/// `fungi cluster ...`.
pub(crate) fn command(command: ClusterCommand) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let (jobmanager, json, tls) = match command {
        ClusterCommand::Status {
            jobmanager,
            json,
            tls,
        } => (jobmanager, json, tls.load()?),
        ClusterCommand::Cancel {
            job,
            jobmanager,
            tls,
        } => {
            let tls = tls.load()?;
            let message = runtime.block_on(async {
                let mut client = ClusterClient::leader(&jobmanager, tls.as_ref()).await?;
                anyhow::Ok(client.cancel(&job).await?)
            })?;
            println!("{message}");
            return Ok(());
        }
    };
    let status = runtime.block_on(async {
        // The leader knows the TaskManagers and jobs; without one, any JobManager tells
        // who leads.
        let mut client = match ClusterClient::leader(&jobmanager, tls.as_ref()).await {
            Ok(c) => c,
            Err(e) => {
                let first = jobmanager.split(',').next().unwrap_or_default().trim();
                eprintln!("{e}");
                ClusterClient::connect(first, tls.as_ref()).await?
            }
        };
        anyhow::Ok(client.status().await?)
    })?;
    let leadership = status.leadership.clone().unwrap_or_default();
    if json {
        let value = serde_json::json!({
            "version": status.version,
            "leadership": {
                "mode": leadership.mode, "leading": leadership.leading,
                "this_job_manager": leadership.this_job_manager,
                "leader": leadership.leader, "epoch": leadership.epoch,
                "standbys": leadership.standbys,
            },
            "task_managers": status.task_managers.iter().map(|t| serde_json::json!({
                "id": t.id, "data_address": t.data_address, "slots": t.slots,
                "used": t.used, "free": t.slots - t.used,
                "since_heartbeat_ms": t.since_heartbeat_ms,
            })).collect::<Vec<_>>(),
            "jobs": status.jobs.iter().map(|j| serde_json::json!({
                "job": j.job, "status": j.status, "attempt": j.attempt,
                "subtasks": j.assignments.iter().map(|a| serde_json::json!({
                    "chain": a.chain, "subtask": a.subtask, "task_manager": a.task_manager,
                })).collect::<Vec<_>>(),
                "parts": j.parts.iter().map(|p| serde_json::json!({
                    "task_manager": p.task_manager, "bytes_sent": p.bytes_sent,
                    "bytes_received": p.bytes_received, "backpressured_ms": p.backpressured_ms,
                    "operators": p.operators.iter().map(|o| serde_json::json!({
                        "operator": o.operator, "records_in": o.records_in,
                        "records_out": o.records_out,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("JobManager {jobmanager} (Fungi {})", status.version);
    if leadership.mode == "etcd" {
        println!(
            "leader {} (epoch {}), standbys: {}",
            if leadership.leader.is_empty() {
                "none"
            } else {
                &leadership.leader
            },
            leadership.epoch,
            if leadership.standbys.is_empty() {
                "none".to_string()
            } else {
                leadership.standbys.join(", ")
            }
        );
    }
    println!(
        "{:<24} {:<22} {:>5} {:>5} {:>5} {:>14}",
        "TASKMANAGER", "DATA ADDRESS", "SLOTS", "USED", "FREE", "HEARTBEAT"
    );
    for t in &status.task_managers {
        println!(
            "{:<24} {:<22} {:>5} {:>5} {:>5} {:>11} ms",
            t.id,
            t.data_address,
            t.slots,
            t.used,
            t.slots - t.used,
            t.since_heartbeat_ms
        );
    }
    for j in &status.jobs {
        println!("job {} {} (attempt {})", j.job, j.status, j.attempt);
        for a in &j.assignments {
            println!(
                "  chain {} subtask {} on {}",
                a.chain, a.subtask, a.task_manager
            );
        }
        for p in &j.parts {
            println!(
                "  on {}: {:.1} MB sent, {:.1} MB received, backpressured {} ms",
                p.task_manager,
                p.bytes_sent as f64 / 1e6,
                p.bytes_received as f64 / 1e6,
                p.backpressured_ms
            );
        }
    }
    Ok(())
}
