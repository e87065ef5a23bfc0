//! A TaskManager: offers slots to a JobManager and runs the subtasks it is given.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use fungi_checkpoint::{
    CheckpointStorage, Completed, CompletedCheckpoint, TaskChannels, TaskReport,
};
use fungi_common::FungiError;
use fungi_common::ids::CheckpointId;
use fungi_execution::executor::{JobPart, LocalExecutor, RemoteCoordinator};
use fungi_execution::plan::PhysicalPlan;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::{info, warn};

use crate::exchange::{
    AttemptLink, CONNECTION_WINDOW, Connections, DataService, FlightExchange, Inbox, MAX_FRAME,
    STREAM_WINDOW,
};
use crate::proto::from_task_manager::Kind as Up;
use crate::proto::job_manager_client::JobManagerClient;
use crate::proto::to_task_manager::Kind as Down;
use crate::proto::{
    Deploy, Deployed, FromTaskManager, Heartbeat, OperatorCount, OperatorState, PartEnded,
    PartStats, Register, Snapshot,
};
use crate::spec::{self, JobSpec, Planner};
use crate::{HEARTBEAT_INTERVAL, VERSION};

/// How a TaskManager is set up.
#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// Its name in the cluster (defaults to its data address).
    pub id: Option<String>,
    /// The JobManagers' addresses (`host:port`, comma-separated when several stand
    /// for election): the TaskManager registers with whichever leads.
    pub job_manager: String,
    /// Slots it offers: how many subtasks of one chain it may run at once.
    pub slots: u32,
    /// The address other TaskManagers reach its data endpoint at (default: the address
    /// it listens on, which is wrong when it listens on 0.0.0.0).
    pub advertise: Option<String>,
    /// Where plugins and modules shipped with jobs are kept.
    pub artifact_dir: std::path::PathBuf,
    /// Mutual TLS with the JobManager and other TaskManagers, when set.
    pub tls: Option<crate::Tls>,
}

/// Whether a TaskManager holds a session with a leader now.
#[derive(Debug, Clone, Default)]
pub struct Registration(Arc<std::sync::atomic::AtomicBool>);

impl Registration {
    fn set(&self, registered: bool) {
        self.0
            .store(registered, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it is registered.
    pub fn registered(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves the TaskManager's probes on `listener` (`/readyz` while `registration` is).
pub fn serve_probes(
    listener: TcpListener,
    registration: Registration,
    shutdown: CancellationToken,
) {
    crate::probes::serve(
        listener,
        crate::probes::router(move || registration.registered()),
        shutdown,
    );
}

/// Why a TaskManager stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskManagerError {
    /// The JobManager refused it for good (e.g. another version).
    #[error("the JobManager refused this TaskManager: {0}")]
    Refused(String),
    /// Its data endpoint failed.
    #[error("the data endpoint failed: {0}")]
    Endpoint(String),
}

/// One attempt's part on this TaskManager.
struct Part {
    attempt: u64,
    /// Cancels the part, whether it is still being prepared or running.
    cancel: CancellationToken,
    trigger: watch::Sender<CheckpointId>,
    completed: watch::Sender<Completed>,
    stage: Stage,
}

/// Where a part is in its life.
enum Stage {
    /// Planning, checking the plan, reading the checkpoint.
    Preparing,
    /// Ready to start.
    Prepared(Box<Prepared>),
    /// Its subtasks run (their counters, once started).
    Running(Option<Running>),
}

/// A running part's counters.
struct Running {
    link: Arc<AttemptLink>,
    metrics: fungi_execution::metrics::JobMetrics,
}

/// The counters of every running part, for a heartbeat.
fn part_stats(state: &State) -> Vec<PartStats> {
    let parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
    parts
        .iter()
        .filter_map(|(job, part)| {
            let Stage::Running(Some(running)) = &part.stage else {
                return None;
            };
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            Some(PartStats {
                job: job.clone(),
                attempt: part.attempt,
                bytes_sent: load(&running.link.bytes_out),
                bytes_received: load(&running.link.bytes_in),
                backpressured_ms: load(&running.link.backpressured_ns) / 1_000_000,
                operators: counts(&running.metrics.snapshot()),
                task_manager: String::new(),
            })
        })
        .collect()
}

/// Rows in and out per operator.
fn counts(operators: &[fungi_execution::metrics::OperatorSnapshot]) -> Vec<OperatorCount> {
    operators
        .iter()
        .map(|o| OperatorCount {
            operator: o.name.clone(),
            records_in: o.records_in,
            records_out: o.records_out,
            source: o.source,
        })
        .collect()
}

/// A part ready to start.
struct Prepared {
    plan: PhysicalPlan,
    restored: Option<CompletedCheckpoint>,
    deploy: Deploy,
    trigger: watch::Receiver<CheckpointId>,
    completed: watch::Receiver<Completed>,
}

/// What the session's handlers share.
struct State {
    id: String,
    data_address: String,
    planner: Arc<dyn Planner>,
    artifact_dir: std::path::PathBuf,
    inbox: Arc<Inbox>,
    connections: Arc<Connections>,
    parts: Mutex<HashMap<String, Part>>,
    /// The newest leader epoch served: a JobManager of an older one was deposed.
    epoch: std::sync::atomic::AtomicI64,
    registration: Registration,
}

/// Runs a TaskManager whose data endpoint listens on `listener` until `shutdown`;
/// reconnects to the JobManager whenever its session ends (parts running then are
/// cancelled: the JobManager restarts their jobs).
pub async fn run(
    config: TaskManagerConfig,
    listener: TcpListener,
    planner: Arc<dyn Planner>,
    registration: Registration,
    shutdown: CancellationToken,
) -> Result<(), TaskManagerError> {
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| TaskManagerError::Endpoint(e.to_string()))?;
    let data_address = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());
    let inbox = Arc::new(Inbox::default());
    let service = FlightServiceServer::new(DataService {
        inbox: inbox.clone(),
    })
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    let endpoint_shutdown = shutdown.clone();
    let mut server = Server::builder();
    if let Some(tls) = &config.tls {
        server = server
            .tls_config(tls.server())
            .map_err(|e| TaskManagerError::Endpoint(format!("TLS: {e}")))?;
    }
    let endpoint = tokio::spawn(
        server
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                endpoint_shutdown.cancelled_owned(),
            ),
    );
    let state = Arc::new(State {
        id: config.id.clone().unwrap_or_else(|| data_address.clone()),
        data_address,
        planner,
        artifact_dir: config.artifact_dir.clone(),
        inbox,
        connections: Arc::new(Connections::new(config.tls.clone())),
        parts: Mutex::default(),
        epoch: std::sync::atomic::AtomicI64::new(0),
        registration,
    });
    let addresses: Vec<&str> = config
        .job_manager
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let mut next = 0;
    info!(id = %state.id, data = %state.data_address, "TaskManager started");
    let result = loop {
        let address = addresses
            .get(next % addresses.len().max(1))
            .copied()
            .unwrap_or_default();
        let session = session(&config, address, &state, &shutdown);
        let outcome = tokio::select! {
            outcome = session => outcome,
            _ = shutdown.cancelled() => break Ok(()),
        };
        cancel_all(&state);
        state.registration.set(false);
        match outcome {
            Err(Ended::Refused(reason)) => break Err(TaskManagerError::Refused(reason)),
            Err(Ended::Lost(reason)) => {
                warn!(job_manager = %address, %reason, "no session with the JobManager; trying the next");
            }
            Ok(()) => {}
        }
        // Every JobManager is tried in turn; a full round without a session waits.
        next += 1;
        if next % addresses.len().max(1) == 0 {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                _ = shutdown.cancelled() => break Ok(()),
            }
        }
    };
    cancel_all(&state);
    shutdown.cancel();
    match endpoint.await {
        Ok(Err(e)) => Err(TaskManagerError::Endpoint(e.to_string())),
        _ => result,
    }
}

fn cancel_all(state: &State) {
    for (_, part) in state
        .parts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
    {
        part.cancel.cancel();
    }
}

/// How a session with the JobManager ended.
enum Ended {
    Refused(String),
    Lost(String),
}

/// One session: register, then heartbeat and follow the JobManager's orders until the
/// session ends.
async fn session(
    config: &TaskManagerConfig,
    address: &str,
    state: &Arc<State>,
    shutdown: &CancellationToken,
) -> Result<(), Ended> {
    let endpoint = crate::tls::endpoint(address, config.tls.as_ref())
        .map_err(Ended::Refused)?
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Ended::Lost(format!("cannot reach {address}: {e}")))?;
    let (up, up_rx) = mpsc::unbounded_channel();
    let _ = up.send(FromTaskManager {
        kind: Some(Up::Register(Register {
            id: state.id.clone(),
            version: VERSION.to_string(),
            data_address: state.data_address.clone(),
            slots: config.slots,
        })),
    });
    let mut down = JobManagerClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .session(UnboundedReceiverStream::new(up_rx))
        .await
        .map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => {
                Ended::Refused(s.message().to_string())
            }
            _ => Ended::Lost(s.message().to_string()),
        })?
        .into_inner();
    // Heartbeats stop when the session does.
    let _heartbeats = {
        let up = up.clone();
        let state = state.clone();
        let stop = shutdown.child_token();
        let guard = stop.clone().drop_guard();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let heartbeat = FromTaskManager {
                    kind: Some(Up::Heartbeat(Heartbeat {
                        parts: part_stats(&state),
                    })),
                };
                if up.send(heartbeat).is_err() {
                    return;
                }
            }
        });
        guard
    };
    loop {
        let order = match down.message().await {
            Ok(Some(order)) => order,
            Ok(None) => return Err(Ended::Lost("the JobManager ended the session".into())),
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                return Err(Ended::Refused(s.message().to_string()));
            }
            Err(s) => return Err(Ended::Lost(s.message().to_string())),
        };
        match order.kind {
            Some(Down::Registered(r)) => {
                let newest = state
                    .epoch
                    .fetch_max(r.epoch, std::sync::atomic::Ordering::SeqCst);
                if r.epoch < newest {
                    return Err(Ended::Lost(format!(
                        "the JobManager at {address} leads epoch {}, older than epoch {newest} \
                         this TaskManager served: it was deposed",
                        r.epoch
                    )));
                }
                state.registration.set(true);
                info!(job_manager = %address, epoch = r.epoch, version = %r.job_manager_version, "registered");
            }
            Some(Down::Deploy(deploy)) => {
                let state = state.clone();
                let up = up.clone();
                tokio::spawn(async move { prepare_part(state, deploy, up).await });
            }
            Some(Down::Start(s)) => {
                let state = state.clone();
                let up = up.clone();
                tokio::spawn(async move { run_part(state, s.job, s.attempt, up).await });
            }
            Some(Down::Cancel(c)) => cancel_part(state, &c.job, c.attempt, &up),
            Some(Down::Trigger(t)) => with_part(state, &t.job, t.attempt, |p| {
                p.trigger.send_replace(CheckpointId(t.checkpoint));
            }),
            Some(Down::Complete(c)) => with_part(state, &c.job, c.attempt, |p| {
                p.completed.send_replace(Completed {
                    id: CheckpointId(c.checkpoint),
                    last: c.last,
                });
            }),
            None => {}
        }
    }
}

fn with_part(state: &State, job: &str, attempt: u64, f: impl FnOnce(&Part)) {
    if let Some(part) = state
        .parts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(job)
        && part.attempt == attempt
    {
        f(part);
    }
}

/// Cancels a part: a running one through its token (it reports its end itself), one
/// not started yet at once.
fn cancel_part(
    state: &State,
    job: &str,
    attempt: u64,
    up: &mpsc::UnboundedSender<FromTaskManager>,
) {
    let mut parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
    let Some(part) = parts.get(job).filter(|p| p.attempt == attempt) else {
        return;
    };
    part.cancel.cancel();
    if matches!(part.stage, Stage::Prepared(_)) {
        parts.remove(job);
        send_ended(
            up,
            job,
            attempt,
            "cancelled before it started".into(),
            Vec::new(),
            (0, 0),
        );
    }
}

fn send_ended(
    up: &mpsc::UnboundedSender<FromTaskManager>,
    job: &str,
    attempt: u64,
    error: String,
    operators: Vec<OperatorCount>,
    (bytes_sent, bytes_received): (u64, u64),
) {
    info!(%job, attempt, %error, bytes_sent, bytes_received, "part ended");
    let _ = up.send(FromTaskManager {
        kind: Some(Up::PartEnded(PartEnded {
            job: job.to_string(),
            attempt,
            error,
            operators,
            bytes_sent,
            bytes_received,
        })),
    });
}

/// Prepares this TaskManager's part of an attempt and answers `Deployed`.
async fn prepare_part(
    state: Arc<State>,
    deploy: Deploy,
    up: mpsc::UnboundedSender<FromTaskManager>,
) {
    let (job, attempt) = (deploy.job.clone(), deploy.attempt);
    let (trigger, trigger_rx) = watch::channel(CheckpointId::default());
    let (completed, completed_rx) = watch::channel(Completed::default());
    let cancel = CancellationToken::new();
    {
        let mut parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
        let part = Part {
            attempt,
            cancel: cancel.clone(),
            trigger,
            completed,
            stage: Stage::Preparing,
        };
        if let Some(older) = parts.insert(job.clone(), part) {
            older.cancel.cancel();
        }
    }
    let prepared = prepare(&state, deploy)
        .await
        .and_then(|(plan, restored, deploy)| {
            if cancel.is_cancelled() {
                return Err("cancelled while it was being prepared".to_string());
            }
            Ok(Prepared {
                plan,
                restored,
                deploy,
                trigger: trigger_rx,
                completed: completed_rx,
            })
        });
    let error = {
        let mut parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
        let current = parts.get_mut(&job).filter(|p| p.attempt == attempt);
        match (prepared, current) {
            (Ok(prepared), Some(part)) => {
                part.stage = Stage::Prepared(Box::new(prepared));
                String::new()
            }
            (Ok(_), None) => "cancelled while it was being prepared".to_string(),
            (Err(e), current) => {
                if current.is_some() {
                    parts.remove(&job);
                }
                e
            }
        }
    };
    let _ = up.send(FromTaskManager {
        kind: Some(Up::Deployed(Deployed {
            job,
            attempt,
            error,
        })),
    });
}

/// Plans the job, checks the plan is the JobManager's, reads the checkpoint to resume.
async fn prepare(
    state: &Arc<State>,
    deploy: Deploy,
) -> Result<(PhysicalPlan, Option<CompletedCheckpoint>, Deploy), String> {
    let spec = JobSpec::from_bytes(&deploy.spec)?;
    let spec = crate::artifacts::localize(&spec, &deploy.artifacts, &state.artifact_dir)?;
    let plan = spec::plan(state.planner.clone(), spec).await?;
    let here = crate::fingerprint(&plan);
    if here != deploy.fingerprint {
        return Err(format!(
            "the job plans differently on TaskManager {} (plan fingerprint {here}, the \
             JobManager's {}): a different Fungi build, or inputs that differ between hosts",
            state.id, deploy.fingerprint
        ));
    }
    let checkpointing = &plan.graph.config.checkpointing;
    let restored = match (deploy.restore_checkpoint, &checkpointing.dir) {
        (0, _) if !deploy.restore_savepoint.is_empty() => Some(
            CheckpointStorage::load_dir(
                Path::new(&deploy.restore_savepoint),
                &checkpointing.storage_options,
            )
            .map_err(|e| format!("cannot read savepoint {}: {e}", deploy.restore_savepoint))?,
        ),
        (0, _) => None,
        (id, Some(dir)) => Some(
            CheckpointStorage::open(dir, &checkpointing.storage_options)
                .and_then(|s| s.load(id))
                .map_err(|e| format!("cannot read checkpoint {id} to resume from: {e}"))?,
        ),
        (id, None) => {
            return Err(format!(
                "asked to resume from checkpoint {id}, but the job has no checkpoint directory"
            ));
        }
    };
    Ok((plan, restored, deploy))
}

/// Starts a prepared part, and reports `PartEnded` when it ends.
async fn run_part(
    state: Arc<State>,
    job: String,
    attempt: u64,
    up: mpsc::UnboundedSender<FromTaskManager>,
) {
    let (prepared, cancel) = {
        let mut parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(part) = parts.get_mut(&job).filter(|p| p.attempt == attempt) else {
            return;
        };
        match std::mem::replace(&mut part.stage, Stage::Running(None)) {
            Stage::Prepared(p) => (p, part.cancel.clone()),
            other => {
                part.stage = other;
                return;
            }
        }
    };
    let link = Arc::new(AttemptLink::new(attempt));
    let started = start_part(&state, *prepared, &link, &cancel, &up);
    let handle = match started {
        Ok(handle) => handle,
        Err(error) => {
            remove_part(&state, &job, attempt);
            return send_ended(&up, &job, attempt, error, Vec::new(), (0, 0));
        }
    };
    // Its channels are all in place: streams of the attempt may come in.
    state.inbox.publish(&job, link.clone());
    if let Some(part) = state
        .parts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&job)
        .filter(|p| p.attempt == attempt)
    {
        part.stage = Stage::Running(Some(Running {
            link: link.clone(),
            metrics: handle.metrics().clone(),
        }));
    }
    let cancel = handle.cancel_token();
    let failed = link.failure.clone();
    let watcher = tokio::spawn(async move {
        failed.cancelled().await;
        cancel.cancel();
    });
    let result = handle.wait().await;
    watcher.abort();
    state.inbox.end(&job, attempt);
    remove_part(&state, &job, attempt);
    let (error, operators) = match result {
        Ok(summary) => (String::new(), counts(&summary.operators)),
        Err(e) => (
            link.reason().unwrap_or_else(|| match e {
                FungiError::Cancelled => "cancelled".into(),
                e => e.to_string(),
            }),
            Vec::new(),
        ),
    };
    let exchanged = (
        link.bytes_out.load(std::sync::atomic::Ordering::Relaxed),
        link.bytes_in.load(std::sync::atomic::Ordering::Relaxed),
    );
    send_ended(&up, &job, attempt, error, operators, exchanged);
}

fn remove_part(state: &State, job: &str, attempt: u64) {
    let mut parts = state.parts.lock().unwrap_or_else(|e| e.into_inner());
    if parts.get(job).is_some_and(|p| p.attempt == attempt) {
        parts.remove(job);
    }
}

/// Starts the subtasks of a prepared part.
fn start_part(
    state: &Arc<State>,
    prepared: Prepared,
    link: &Arc<AttemptLink>,
    cancel: &CancellationToken,
    up: &mpsc::UnboundedSender<FromTaskManager>,
) -> Result<fungi_execution::executor::JobHandle, String> {
    let Prepared {
        plan,
        restored,
        deploy,
        trigger,
        completed,
    } = prepared;
    let mut addresses = HashMap::new();
    let mut local = std::collections::HashSet::new();
    for a in &deploy.assignments {
        let at = (a.chain as usize, a.subtask);
        if a.task_manager == state.id {
            local.insert(at);
        }
        addresses.insert(at, a.data_address.clone());
    }
    let exchange = FlightExchange {
        job: deploy.job.clone(),
        link: link.clone(),
        local,
        addresses,
        consumer_chain: plan
            .graph
            .edges
            .iter()
            .map(|e| plan.chain_of[e.to.0 as usize])
            .collect(),
        connections: state.connections.clone(),
    };
    let checkpointing = &plan.graph.config.checkpointing;
    let coordinator = match (&checkpointing.interval, &checkpointing.dir) {
        (Some(_), Some(dir)) => {
            let storage = CheckpointStorage::open(dir, &checkpointing.storage_options)
                .map_err(|e| e.to_string())?;
            let (reports, reports_rx) = mpsc::unbounded_channel();
            tokio::spawn(forward_reports(
                deploy.job.clone(),
                deploy.attempt,
                reports_rx,
                up.clone(),
            ));
            Some(RemoteCoordinator {
                channels: TaskChannels {
                    trigger,
                    completed,
                    reports,
                },
                local_dir: storage.dir().to_path_buf(),
            })
        }
        _ => None,
    };
    LocalExecutor::for_config(&plan.graph.config)
        .map_err(|e| e.to_string())?
        .cancelled_by(cancel.clone())
        .start_part(
            &plan,
            restored.as_ref(),
            JobPart {
                exchange: Arc::new(exchange),
                coordinator,
            },
        )
        .map_err(|e| e.to_string())
}

/// Sends this part's checkpoint reports to the JobManager's coordinator.
async fn forward_reports(
    job: String,
    attempt: u64,
    mut reports: mpsc::UnboundedReceiver<TaskReport>,
    up: mpsc::UnboundedSender<FromTaskManager>,
) {
    while let Some(report) = reports.recv().await {
        let (checkpoint, task, parallelism, snapshot, finished) = match report {
            TaskReport::Snapshot {
                checkpoint,
                task,
                parallelism,
                snapshot,
            } => (checkpoint, task, parallelism, snapshot, false),
            TaskReport::Finished {
                task,
                parallelism,
                snapshot,
            } => (CheckpointId::FINAL, task, parallelism, snapshot, true),
        };
        let message = Snapshot {
            job: job.clone(),
            attempt,
            checkpoint: checkpoint.get(),
            chain: task.chain,
            subtask: task.subtask,
            parallelism,
            finished,
            source: snapshot.source,
            operators: snapshot
                .operators
                .into_iter()
                .map(|(operator, state)| OperatorState { operator, state })
                .collect(),
        };
        if up
            .send(FromTaskManager {
                kind: Some(Up::Snapshot(message)),
            })
            .is_err()
        {
            return;
        }
    }
}
