//! The JobManager: keeps the TaskManagers' sessions, places jobs on their slots, runs
//! each job's checkpoint coordinator and follows its attempts to the end.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse as _;
use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::VERSION;
use crate::ha::{Election, HaConfig, HaError, Term};
use crate::proto::from_task_manager::Kind as Up;
use crate::proto::job_manager_server::{JobManager, JobManagerServer};
use crate::proto::to_task_manager::Kind as Down;
use crate::proto::{
    Assignment, CancelJobReply, CancelJobRequest, ClusterStatus, FollowRequest, FromTaskManager,
    JobEvent, JobStatus, Leadership, OperatorCount, PartStats, Registered, Snapshot, StatusRequest,
    SubmitRequest, TaskManagerStatus, ToTaskManager,
};
use crate::spec::{JobSpec, Planner};

mod coordination;
mod job;

use job::JobRunner;

/// How a JobManager is set up.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// A TaskManager silent this long is lost (its attempts fail).
    pub heartbeat_timeout: Duration,
    /// How long a TaskManager may take to build its part of an attempt.
    pub deploy_timeout: Duration,
    /// Where plugins and modules shipped with jobs are kept.
    pub artifact_dir: std::path::PathBuf,
    /// Mutual TLS with TaskManagers and clients, when set.
    pub tls: Option<crate::Tls>,
    /// Leader election through etcd, when set; otherwise this JobManager leads alone.
    pub ha: Option<HaConfig>,
}

/// Why a JobManager stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobManagerError {
    /// Its endpoint failed.
    #[error("the JobManager's endpoint failed")]
    Transport(#[from] tonic::transport::Error),
    /// High availability could not start.
    #[error("high availability")]
    Ha(#[from] HaError),
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        JobManagerConfig {
            heartbeat_timeout: Duration::from_secs(5),
            deploy_timeout: Duration::from_secs(60),
            artifact_dir: std::env::temp_dir().join("fungi-artifacts"),
            tls: None,
            ha: None,
        }
    }
}

/// Serves the JobManager on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    planner: Arc<dyn Planner>,
    config: JobManagerConfig,
    shutdown: CancellationToken,
) -> Result<(), JobManagerError> {
    let mut server = Server::builder().tcp_nodelay(true);
    if let Some(tls) = &config.tls {
        server = server.tls_config(tls.server())?;
    }
    let election = match &config.ha {
        Some(ha) => Some(Arc::new(Election::join(ha.clone()).await?)),
        None => None,
    };
    let shared = Arc::new(Shared {
        planner,
        config,
        registry: Mutex::default(),
        changed: Notify::new(),
        next_session: AtomicU64::new(1),
        next_job: AtomicU64::new(1),
        election: election.clone(),
        term: Mutex::default(),
        alone: shutdown.clone(),
    });
    let monitor = tokio::spawn(watch_heartbeats(shared.clone(), shutdown.clone()));
    let leading = election.map(|e| tokio::spawn(lead(shared.clone(), e, shutdown.clone())));
    if let Some(metrics) = metrics {
        let shared = shared.clone();
        let ready = shared.clone();
        let app = crate::probes::router(move || ready.leads()).route(
            "/metrics",
            axum::routing::get(move || {
                let shared = shared.clone();
                async move {
                    match crate::metrics::render(&shared.status()) {
                        Ok(text) => (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(metrics, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
    }
    info!(address = ?listener.local_addr().ok(), "JobManager started");
    let served = server
        .add_service(
            JobManagerServer::new(Service(shared))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await;
    monitor.abort();
    if let Some(leading) = leading {
        let _ = leading.await;
    }
    Ok(served?)
}

/// Stands for election, leads while elected (resuming the cluster's running jobs), and
/// stands again after losing the lead, until `shutdown` (which resigns the lead).
async fn lead(shared: Arc<Shared>, election: Arc<Election>, shutdown: CancellationToken) {
    loop {
        let Some(term) = election.campaign(&shutdown).await else {
            return;
        };
        *shared.term.lock().unwrap_or_else(|e| e.into_inner()) = Some(term.clone());
        job::resume_all(&shared, &term).await;
        tokio::select! {
            _ = term.lost.cancelled() => {}
            _ = shutdown.cancelled() => term.resign().await,
        }
        shared.term.lock().unwrap_or_else(|e| e.into_inner()).take();
        // The TaskManagers' sessions end with the term: they go to the next leader.
        let sessions = std::mem::take(&mut shared.registry().task_managers);
        drop(sessions);
        shared.changed.notify_waiters();
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// The right to act as the cluster's leader, for as long as it lasts.
#[derive(Clone)]
pub(crate) struct Lead {
    /// The etcd term (none for a JobManager leading alone).
    pub(crate) term: Option<Arc<Term>>,
    /// Cancelled when the lead ends.
    pub(crate) lost: CancellationToken,
}

impl Lead {
    /// The lead of `term`.
    pub(crate) fn of(term: Arc<Term>) -> Lead {
        Lead {
            lost: term.lost.clone(),
            term: Some(term),
        }
    }

    /// The epoch (0 leading alone).
    pub(crate) fn epoch(&self) -> i64 {
        self.term.as_ref().map_or(0, |t| t.epoch)
    }
}

struct Shared {
    planner: Arc<dyn Planner>,
    config: JobManagerConfig,
    registry: Mutex<Registry>,
    /// Notified when TaskManagers join or leave, or slots free up.
    changed: Notify,
    next_session: AtomicU64,
    next_job: AtomicU64,
    /// The election, with high availability.
    election: Option<Arc<Election>>,
    /// The current term while this JobManager leads (high availability).
    term: Mutex<Option<Arc<Term>>>,
    /// Without high availability the JobManager leads until it shuts down.
    alone: CancellationToken,
}

#[derive(Default)]
struct Registry {
    task_managers: BTreeMap<String, TaskManagerEntry>,
    jobs: BTreeMap<String, JobEntry>,
    /// The final events of the latest jobs that ended, for followers that come late
    /// (a server that lost its connection while the job ended), oldest first.
    ended: std::collections::VecDeque<JobEvent>,
}

/// How many ended jobs the JobManager remembers.
const ENDED_KEPT: usize = 1024;

impl Registry {
    /// Keeps `last` (a job's final event) among the ended jobs.
    fn remember_ended(&mut self, last: JobEvent) {
        self.ended.retain(|e| e.job != last.job);
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back(last);
    }

    /// Whether a job of this name runs or ended here.
    fn knows(&self, job: &str) -> bool {
        self.jobs.contains_key(job) || self.ended.iter().any(|e| e.job == job)
    }
}

struct TaskManagerEntry {
    session: u64,
    data_address: String,
    slots: u32,
    used: u32,
    last_heartbeat: Instant,
    orders: mpsc::UnboundedSender<Result<ToTaskManager, Status>>,
}

struct JobEntry {
    /// Which runner runs it (a later leadership of this JobManager may resume the job
    /// with a new runner while the old one winds down).
    runner: u64,
    /// Cancels the job (a client's request, or its submitter went away).
    cancel: CancellationToken,
    /// Its events, for whoever follows it; the latest is kept for new followers.
    events: broadcast::Sender<JobEvent>,
    last_event: Option<JobEvent>,
    status: String,
    attempt: u64,
    assignments: Vec<Assignment>,
    /// The running attempt's parts, per TaskManager, as their last heartbeats told.
    parts: BTreeMap<String, PartStats>,
    inputs: mpsc::UnboundedSender<JobInput>,
}

/// What a job's runner hears from the TaskManagers.
enum JobInput {
    Deployed {
        tm: String,
        attempt: u64,
        error: String,
    },
    PartEnded {
        tm: String,
        attempt: u64,
        error: String,
        operators: Vec<OperatorCount>,
        bytes_sent: u64,
    },
    Snapshot(Snapshot),
    Lost {
        tm: String,
        reason: String,
    },
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this JobManager leads now (always, without high availability).
    fn leads(&self) -> bool {
        self.election.is_none()
            || self
                .term
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|t| t.check().is_ok())
    }

    /// Refuses `name` for a new job when it is not a name or the cluster knows a job
    /// of that name (running, ended here, or recorded in etcd).
    async fn check_new_name(&self, name: &str, lead: &Lead) -> Result<(), Status> {
        if !crate::spec::valid_job_name(name) {
            return Err(Status::invalid_argument(format!(
                "'{name}' cannot name a job: use 1 to 128 letters, digits, '.', '_' or '-'"
            )));
        }
        let exists = || Status::already_exists(format!("the cluster has a job named {name}"));
        if self.registry().knows(name) {
            return Err(exists());
        }
        if let (Some(election), Some(_)) = (&self.election, &lead.term) {
            let recorded = election
                .jobs()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
                .into_iter()
                .any(|(job, _)| job == name);
            if recorded {
                return Err(exists());
            }
        }
        Ok(())
    }

    /// The right to lead, or a refusal naming the leader to go to.
    async fn lead(&self) -> Result<Lead, Status> {
        let Some(election) = &self.election else {
            return Ok(Lead {
                term: None,
                lost: self.alone.clone(),
            });
        };
        let term = self.term.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(term) = term.filter(|t| t.check().is_ok()) {
            return Ok(Lead::of(term));
        }
        let leader = match election.view().await {
            Ok((Some((leader, epoch)), _)) => {
                format!(
                    "the leader is {} at {} (epoch {epoch})",
                    leader.id, leader.address
                )
            }
            Ok((None, _)) => "no JobManager leads right now; try again shortly".into(),
            Err(e) => format!("the leader cannot be looked up: {e}"),
        };
        Err(Status::unavailable(format!(
            "JobManager {} is a standby, not the leader: {leader}",
            election.me().id
        )))
    }

    /// Who leads, as this JobManager sees it.
    async fn leadership(&self) -> Leadership {
        let Some(election) = &self.election else {
            return Leadership {
                mode: "single".into(),
                leading: true,
                ..Default::default()
            };
        };
        let me = election.me();
        let mut leadership = Leadership {
            mode: "etcd".into(),
            this_job_manager: me.address.clone(),
            ..Default::default()
        };
        leadership.leading = self.leads();
        if let Ok((leader, members)) = election.view().await {
            if let Some((leader, epoch)) = &leader {
                leadership.leader = leader.address.clone();
                leadership.epoch = *epoch;
            }
            leadership.standbys = members
                .into_iter()
                .filter(|m| leader.as_ref().is_none_or(|(l, _)| l.id != m.id))
                .map(|m| m.address)
                .collect();
        }
        leadership
    }

    /// The TaskManagers, their slots and the jobs, now.
    fn status(&self) -> ClusterStatus {
        let registry = self.registry();
        ClusterStatus {
            version: VERSION.to_string(),
            task_managers: registry
                .task_managers
                .iter()
                .map(|(id, e)| TaskManagerStatus {
                    id: id.clone(),
                    data_address: e.data_address.clone(),
                    slots: e.slots,
                    used: e.used,
                    since_heartbeat_ms: e.last_heartbeat.elapsed().as_millis() as u64,
                })
                .collect(),
            jobs: registry
                .jobs
                .iter()
                .map(|(job, e)| JobStatus {
                    job: job.clone(),
                    status: e.status.clone(),
                    attempt: e.attempt,
                    assignments: e.assignments.clone(),
                    parts: e.parts.values().cloned().collect(),
                })
                .collect(),
            leadership: None,
        }
    }

    /// Forgets TaskManager `tm` (if `session` is still its session): the attempts it
    /// ran parts of fail.
    fn lose(&self, tm: &str, session: u64, reason: &str) {
        let mut registry = self.registry();
        if registry
            .task_managers
            .get(tm)
            .is_none_or(|e| e.session != session)
        {
            return;
        }
        warn!(task_manager = %tm, %reason, "TaskManager lost");
        registry.task_managers.remove(tm);
        for job in registry.jobs.values() {
            if job.assignments.iter().any(|a| a.task_manager == tm) {
                let _ = job.inputs.send(JobInput::Lost {
                    tm: tm.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
        drop(registry);
        self.changed.notify_waiters();
    }

    /// Sends `order` to TaskManager `tm`; false when it is gone.
    fn order(&self, tm: &str, order: Down) -> bool {
        self.registry().task_managers.get(tm).is_some_and(|e| {
            e.orders
                .send(Ok(ToTaskManager { kind: Some(order) }))
                .is_ok()
        })
    }

    /// Hands a TaskManager's message to the job it is about. Messages of a session that
    /// is no longer the TaskManager's (it was lost, say cut off, and registered again)
    /// are dropped: only the current session speaks for it.
    fn route(&self, tm: &str, session: u64, message: FromTaskManager) {
        if self
            .registry()
            .task_managers
            .get(tm)
            .is_none_or(|e| e.session != session)
        {
            debug!(task_manager = %tm, session, "a message of a stale session");
            return;
        }
        let (job, input) = match message.kind {
            Some(Up::Heartbeat(heartbeat)) => {
                let mut registry = self.registry();
                if let Some(e) = registry.task_managers.get_mut(tm) {
                    e.last_heartbeat = Instant::now();
                }
                for mut stats in heartbeat.parts {
                    if let Some(job) = registry
                        .jobs
                        .get_mut(&stats.job)
                        .filter(|j| j.attempt == stats.attempt)
                    {
                        stats.task_manager = tm.to_string();
                        job.parts.insert(tm.to_string(), stats);
                    }
                }
                return;
            }
            Some(Up::Deployed(d)) => (
                d.job,
                JobInput::Deployed {
                    tm: tm.to_string(),
                    attempt: d.attempt,
                    error: d.error,
                },
            ),
            Some(Up::PartEnded(p)) => (
                p.job,
                JobInput::PartEnded {
                    tm: tm.to_string(),
                    attempt: p.attempt,
                    error: p.error,
                    operators: p.operators,
                    bytes_sent: p.bytes_sent,
                },
            ),
            Some(Up::Snapshot(s)) => (s.job.clone(), JobInput::Snapshot(s)),
            Some(Up::Register(_)) | None => return,
        };
        if let Some(entry) = self.registry().jobs.get(&job) {
            let _ = entry.inputs.send(input);
        } else {
            debug!(%job, task_manager = %tm, "a report for a job that is not running");
        }
    }
}

/// Loses TaskManagers whose heartbeats stopped.
async fn watch_heartbeats(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let timeout = shared.config.heartbeat_timeout;
        let silent: Vec<(String, u64, Duration)> = shared
            .registry()
            .task_managers
            .iter()
            .filter(|(_, e)| e.last_heartbeat.elapsed() > timeout)
            .map(|(id, e)| (id.clone(), e.session, e.last_heartbeat.elapsed()))
            .collect();
        for (id, session, silence) in silent {
            shared.lose(
                &id,
                session,
                &format!("no heartbeat for {:.1} s", silence.as_secs_f64()),
            );
        }
    }
}

struct Service(Arc<Shared>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl JobManager for Service {
    type SessionStream = BoxStream<ToTaskManager>;
    type SubmitStream = BoxStream<JobEvent>;

    async fn session(
        &self,
        request: Request<Streaming<FromTaskManager>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the session ended before registering"))?;
        let Some(Up::Register(register)) = first.kind else {
            return Err(Status::invalid_argument("a session starts with Register"));
        };
        if register.version != VERSION {
            return Err(Status::failed_precondition(format!(
                "TaskManager {} runs Fungi {}, this JobManager runs Fungi {VERSION}: every \
                 process of a cluster must run the same version",
                register.id, register.version
            )));
        }
        if register.slots == 0 || register.id.is_empty() || register.data_address.is_empty() {
            return Err(Status::invalid_argument(
                "a TaskManager registers with an id, a data address and at least one slot",
            ));
        }
        let shared = self.0.clone();
        let lead = shared.lead().await?;
        let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
        let (orders, orders_rx) = mpsc::unbounded_channel();
        let _ = orders.send(Ok(ToTaskManager {
            kind: Some(Down::Registered(Registered {
                job_manager_version: VERSION.to_string(),
                epoch: lead.epoch(),
            })),
        }));
        let id = register.id.clone();
        let replaced = shared.registry().task_managers.get(&id).map(|e| e.session);
        if let Some(old) = replaced {
            shared.lose(&id, old, "it registered again");
        }
        shared.registry().task_managers.insert(
            id.clone(),
            TaskManagerEntry {
                session,
                data_address: register.data_address.clone(),
                slots: register.slots,
                used: 0,
                last_heartbeat: Instant::now(),
                orders,
            },
        );
        shared.changed.notify_waiters();
        info!(task_manager = %id, data = %register.data_address, slots = register.slots, "TaskManager registered");
        tokio::spawn(async move {
            let reason = loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    _ = lead.lost.cancelled() => break "this JobManager stopped leading".to_string(),
                };
                match message {
                    Ok(Some(message)) => shared.route(&id, session, message),
                    Ok(None) => break "it ended its session".to_string(),
                    Err(s) => break format!("its session broke: {}", s.message()),
                }
            };
            shared.lose(&id, session, &reason);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            orders_rx,
        ))))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<Self::SubmitStream>, Status> {
        let request = request.into_inner();
        let spec = JobSpec::from_bytes(&request.spec).map_err(Status::invalid_argument)?;
        let lead = self.0.lead().await?;
        if let Some(name) = &spec.name {
            self.0.check_new_name(name, &lead).await?;
        }
        let artifacts = Arc::new(request.artifacts);
        let shared = self.0.clone();
        let runner = JobRunner::new(shared.clone(), &spec, artifacts, lead, None);
        let events = runner.subscribe();
        // Without high availability a job lives as long as its submitter listens,
        // unless it was submitted detached.
        let cancel_when_gone =
            (shared.election.is_none() && !spec.detached).then(|| runner.cancel.clone());
        tokio::spawn(runner.run_to_end(spec));
        Ok(Response::new(follow(events, None, cancel_when_gone)))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<ClusterStatus>, Status> {
        let mut status = self.0.status();
        status.leadership = Some(self.0.leadership().await);
        Ok(Response::new(status))
    }

    type FollowStream = BoxStream<JobEvent>;

    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let job = request.into_inner().job;
        let (followed, ended) = {
            let registry = self.0.registry();
            (
                registry
                    .jobs
                    .get(&job)
                    .map(|e| (e.events.subscribe(), e.last_event.clone())),
                registry.ended.iter().find(|e| e.job == job).cloned(),
            )
        };
        if let Some((events, last)) = followed {
            return Ok(Response::new(follow(events, last, None)));
        }
        if let Some(last) = ended {
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(last)))));
        }
        // A job that ended (or is about to be resumed) is known to etcd.
        let lead = self.0.lead().await?;
        let record = match (&self.0.election, lead.term) {
            (Some(election), Some(_)) => election
                .jobs()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
                .into_iter()
                .find(|(j, _)| *j == job)
                .map(|(_, r)| r),
            _ => None,
        };
        match record {
            Some(record) if record.status != "running" => {
                let event = JobEvent {
                    job,
                    status: record.status,
                    message: record.message,
                    attempt: record.attempt,
                    ..Default::default()
                };
                Ok(Response::new(Box::pin(tokio_stream::once(Ok(event)))))
            }
            Some(_) => Err(Status::unavailable(format!(
                "job {job} is being resumed by this JobManager; follow it again shortly"
            ))),
            None => Err(Status::not_found(format!("no job {job} on this cluster"))),
        }
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobReply>, Status> {
        let job = request.into_inner().job;
        self.0.lead().await?;
        let cancel = self.0.registry().jobs.get(&job).map(|e| e.cancel.clone());
        match cancel {
            Some(cancel) => {
                cancel.cancel();
                Ok(Response::new(CancelJobReply {
                    message: format!("job {job} is being cancelled"),
                }))
            }
            None => Err(Status::not_found(format!("no running job {job}"))),
        }
    }
}

/// A job's events as a response stream: `first` (its latest, if known), then every
/// event until one that ends it. When the receiver goes away, `cancel_when_gone` fires.
fn follow(
    events: broadcast::Receiver<JobEvent>,
    first: Option<JobEvent>,
    cancel_when_gone: Option<CancellationToken>,
) -> BoxStream<JobEvent> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let guard = cancel_when_gone.map(CancellationToken::drop_guard);
        if relay(events, first, &tx).await
            && let Some(guard) = guard
        {
            guard.disarm();
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Sends `first`, then the job's events, to `tx` until one ends the job. False when the
/// receiver went away first.
async fn relay(
    mut events: broadcast::Receiver<JobEvent>,
    mut next: Option<JobEvent>,
    tx: &mpsc::Sender<Result<JobEvent, Status>>,
) -> bool {
    loop {
        let event = match next.take() {
            Some(e) => e,
            None => match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                // The job's runner ended without an outcome: its JobManager stopped
                // leading; the job goes on with the next leader.
                Err(broadcast::error::RecvError::Closed) => {
                    let moved = Status::unavailable(
                        "this JobManager stopped leading; follow the job on the new leader",
                    );
                    let _ = tx.send(Err(moved)).await;
                    return true;
                }
            },
        };
        let done = job::is_final(&event.status);
        if tx.send(Ok(event)).await.is_err() {
            return false;
        }
        if done {
            return true;
        }
    }
}
