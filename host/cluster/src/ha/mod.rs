//! High availability: JobManagers elect one leader through etcd, and the leader keeps
//! there the few pointers a successor needs to resume every running job.
//!
//! - **Election**: each JobManager holds an etcd lease (`lease_ttl`, kept alive every
//!   third of it) with a member key under it; the leader is whoever created the
//!   `leader` key under its lease (a transaction that succeeds only while the key does
//!   not exist). The key's create revision is the leader's **epoch**: it grows with
//!   every new leader.
//! - **Fencing**: every write the leader makes (a job's record, the checkpoint number it
//!   reserves, the checkpoint it completes) is a transaction that holds only while the
//!   `leader` key still has the leader's create revision. A leader also steps down on
//!   its own as soon as a keep-alive could not be confirmed within the lease time, so a
//!   JobManager paused past its lease refuses to write even before it asks etcd.
//! - **What is kept**: under `/fungi/<cluster-id>/`, `jobs/<job>` (where the job's
//!   storage is, its status and attempt), `checkpoints/<job>` (its latest complete
//!   checkpoint: restores follow this pointer, never a newer directory a deposed leader
//!   may have written) and `counters/<job>` (the highest checkpoint number taken, so a
//!   successor never reuses one). The script and its plugins live in the job's own
//!   checkpoint storage (`_job/`), which every JobManager reaches.

mod etcd;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fungi_checkpoint::{CompletionGuard, GuardFuture};
use fungi_common::ids::CheckpointId;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use etcd::{Compare, Etcd, EtcdError, EtcdTls, KeyValue, Op};

/// The format of what a cluster keeps in etcd; another value under the same prefix is
/// refused.
const FORMAT: &str = "fungi-ha-1";

/// How a JobManager takes part in an election.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// Names the cluster: its keys live under `/fungi/<cluster_id>/`.
    pub cluster_id: String,
    /// How long a silent leader keeps its leadership.
    pub lease_ttl: Duration,
    /// This JobManager's name.
    pub id: String,
    /// Where TaskManagers and clients reach this JobManager.
    pub address: String,
    /// TLS to etcd, when set.
    pub tls: Option<EtcdTls>,
}

/// Why high availability cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// etcd cannot be reached or refused.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The prefix holds data that is not this cluster's.
    #[error(
        "etcd holds other data under {prefix} ({found}): it is not a Fungi cluster of this \
         version; give this cluster another --ha-cluster-id"
    )]
    ForeignData {
        /// The cluster's key prefix.
        prefix: String,
        /// What was found there.
        found: String,
    },
}

/// A JobManager as the election knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its name.
    pub id: String,
    /// Where it is reached.
    pub address: String,
}

/// What etcd keeps of a job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRecord {
    /// The job's checkpoint storage (its script and plugins are kept there too).
    pub location: String,
    /// The storage's options (object storage endpoint and credentials).
    pub options: BTreeMap<String, String>,
    /// running, finished, failed or cancelled.
    pub status: String,
    /// How it ended, in words.
    #[serde(default)]
    pub message: String,
    /// The latest attempt started.
    pub attempt: u64,
}

/// Takes part in the election of one cluster's JobManagers.
#[derive(Debug)]
pub struct Election {
    etcd: Etcd,
    prefix: String,
    config: HaConfig,
}

impl Election {
    /// Joins the cluster's election: checks that etcd answers and that the cluster's
    /// prefix holds this cluster's data (or nothing yet).
    pub async fn join(config: HaConfig) -> Result<Election, HaError> {
        let timeout = config.lease_ttl.min(Duration::from_secs(5));
        let etcd = Etcd::new(&config.endpoints, timeout, config.tls.as_ref())?;
        let prefix = format!("/fungi/{}/", config.cluster_id);
        let format_key = format!("{prefix}format");
        let mut marker = etcd.get(&format_key).await?.map(|kv| kv.value);
        let mut other = None;
        if marker.is_none() {
            // Nothing of Fungi's yet: claim the prefix if it is empty. Another JobManager
            // may be claiming it at this very moment, so the marker is read again after.
            other = etcd
                .range_prefix(&prefix, 2)
                .await?
                .into_iter()
                .find(|kv| kv.key != format_key)
                .map(|kv| kv.key);
            if other.is_none() {
                let claim = Op::Put {
                    key: format_key.clone(),
                    value: FORMAT.as_bytes().to_vec(),
                    lease: 0,
                };
                etcd.txn(&[Compare::Created(format_key.clone(), 0)], &[claim])
                    .await?;
            }
            marker = etcd.get(&format_key).await?.map(|kv| kv.value);
        }
        let found = match (marker, other) {
            (Some(m), _) if m == FORMAT.as_bytes() => None,
            (Some(m), _) => Some(format!("format '{}'", String::from_utf8_lossy(&m))),
            (None, key) => Some(format!(
                "key {} and no format marker",
                key.unwrap_or_default()
            )),
        };
        if let Some(found) = found {
            return Err(HaError::ForeignData { prefix, found });
        }
        Ok(Election {
            etcd,
            prefix,
            config,
        })
    }

    fn leader_key(&self) -> String {
        format!("{}leader", self.prefix)
    }

    /// Stands for election until this JobManager leads (its term) or `shutdown`. etcd
    /// being away only delays: the campaign retries.
    pub async fn campaign(self: &Arc<Self>, shutdown: &CancellationToken) -> Option<Arc<Term>> {
        let ttl = self.config.lease_ttl;
        let retry = (ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(1));
        let me = serde_json::to_vec(&self.me()).expect("a member serialises");
        let mut lease = None;
        let mut reported = false;
        loop {
            let attempt = async {
                let id = match lease {
                    Some((id, _)) => id,
                    None => {
                        let id = self.etcd.grant(ttl).await?;
                        self.etcd
                            .txn(
                                &[],
                                &[Op::Put {
                                    key: format!("{}members/{}", self.prefix, self.config.id),
                                    value: me.clone(),
                                    lease: id,
                                }],
                            )
                            .await?;
                        lease = Some((id, Instant::now()));
                        id
                    }
                };
                // The lease must still live: keep it alive while standing by.
                let sent = Instant::now();
                if self.etcd.keep_alive(id).await? == 0 {
                    lease = None;
                    return Ok(None);
                }
                lease = Some((id, sent));
                let won = self
                    .etcd
                    .txn(
                        &[Compare::Created(self.leader_key(), 0)],
                        &[Op::Put {
                            key: self.leader_key(),
                            value: me.clone(),
                            lease: id,
                        }],
                    )
                    .await?;
                Ok::<_, EtcdError>(won.succeeded.then_some((id, won.revision, sent)))
            };
            match attempt.await {
                Ok(Some((lease_id, epoch, sent))) => {
                    info!(epoch, id = %self.config.id, "elected leader");
                    return Some(Term::start(self.clone(), lease_id, epoch, sent + ttl));
                }
                Ok(None) => reported = false,
                Err(e) => {
                    if !reported {
                        warn!(error = %e, "cannot stand for election; retrying");
                        reported = true;
                    }
                    // A lease not renewed for its whole time is gone.
                    if lease.is_some_and(|(_, at)| at.elapsed() > ttl) {
                        lease = None;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.cancelled() => {
                    if let Some((id, _)) = lease {
                        let _ = self.etcd.revoke(id).await;
                    }
                    return None;
                }
            }
        }
    }

    /// The leader and the other members, as etcd has them now.
    pub async fn view(&self) -> Result<(Option<(Member, i64)>, Vec<Member>), EtcdError> {
        let leader = self.etcd.get(&self.leader_key()).await?.and_then(|kv| {
            serde_json::from_slice::<Member>(&kv.value)
                .ok()
                .map(|m| (m, kv.create_revision))
        });
        let members = self
            .etcd
            .range_prefix(&format!("{}members/", self.prefix), 0)
            .await?
            .into_iter()
            .filter_map(|kv| serde_json::from_slice::<Member>(&kv.value).ok())
            .collect();
        Ok((leader, members))
    }

    /// The records of every job the cluster knows.
    pub async fn jobs(&self) -> Result<Vec<(String, JobRecord)>, EtcdError> {
        let prefix = format!("{}jobs/", self.prefix);
        Ok(self
            .etcd
            .range_prefix(&prefix, 0)
            .await?
            .into_iter()
            .filter_map(|kv| {
                let job = kv.key.strip_prefix(&prefix)?.to_string();
                Some((job, serde_json::from_slice(&kv.value).ok()?))
            })
            .collect())
    }

    /// A number kept under `key` (a job's checkpoint pointer or counter).
    pub async fn number(&self, kind: &str, job: &str) -> Result<Option<u64>, EtcdError> {
        let key = format!("{}{kind}/{job}", self.prefix);
        Ok(self
            .etcd
            .get(&key)
            .await?
            .and_then(|kv| String::from_utf8_lossy(&kv.value).parse().ok()))
    }

    /// This JobManager's name and address.
    pub fn me(&self) -> Member {
        Member {
            id: self.config.id.clone(),
            address: self.config.address.clone(),
        }
    }
}

/// Why a fenced write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Fenced {
    /// This JobManager no longer leads.
    #[error("JobManager {id} no longer leads the cluster (its epoch {epoch} ended): {reason}")]
    Deposed {
        /// The JobManager.
        id: String,
        /// Its epoch.
        epoch: i64,
        /// How it found out.
        reason: String,
    },
    /// etcd could not be asked.
    #[error("the write could not be fenced: {0}")]
    Etcd(#[from] EtcdError),
}

/// Why a leader steps down when its lease time passed without a confirmed keep-alive.
const UNCONFIRMED: &str = "no keep-alive of its lease was confirmed within the lease time";

/// One JobManager's leadership, from election to loss.
#[derive(Debug)]
pub struct Term {
    election: Arc<Election>,
    lease: i64,
    /// etcd's revision of the election: the leader's epoch.
    pub epoch: i64,
    /// Until when the lease surely lives (a keep-alive confirmed before it).
    deadline: Mutex<Instant>,
    /// Cancelled the moment the leadership ends.
    pub lost: CancellationToken,
}

impl Term {
    fn start(election: Arc<Election>, lease: i64, epoch: i64, deadline: Instant) -> Arc<Term> {
        let term = Arc::new(Term {
            election,
            lease,
            epoch,
            deadline: Mutex::new(deadline),
            lost: CancellationToken::new(),
        });
        tokio::spawn(term.clone().keep_alive());
        term
    }

    /// Renews the lease every third of its time; ends the term when a renewal is
    /// refused or none was confirmed within the lease time (even while a renewal hangs).
    async fn keep_alive(self: Arc<Self>) {
        let ttl = self.election.config.lease_ttl;
        let mut tick = tokio::time::interval(ttl / 3);
        loop {
            let expired = tokio::time::sleep_until(self.deadline().into());
            tokio::pin!(expired);
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut expired => return self.end(UNCONFIRMED),
                _ = self.lost.cancelled() => return,
            }
            let sent = Instant::now();
            let renewed = tokio::select! {
                renewed = self.election.etcd.keep_alive(self.lease) => renewed,
                _ = &mut expired => return self.end(UNCONFIRMED),
            };
            match renewed {
                Ok(0) => return self.end("its lease expired"),
                Ok(_) => *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = sent + ttl,
                Err(e) => warn!(error = %e, "the leader's lease could not be renewed"),
            }
        }
    }

    /// Until when the lease surely lives.
    fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end(&self, reason: &str) {
        if !self.lost.is_cancelled() {
            warn!(epoch = self.epoch, %reason, "leadership lost; stepping down");
            self.lost.cancel();
        }
    }

    /// Whether this term still holds, by the local clock alone.
    pub fn check(&self) -> Result<(), String> {
        if self.lost.is_cancelled() {
            return Err("it stepped down".into());
        }
        if Instant::now() >= self.deadline() {
            self.end(UNCONFIRMED);
            return Err(UNCONFIRMED.into());
        }
        Ok(())
    }

    /// Runs `ops` if and only if this term still leads.
    pub async fn write(&self, ops: &[Op]) -> Result<(), Fenced> {
        let deposed = |reason: String| Fenced::Deposed {
            id: self.election.config.id.clone(),
            epoch: self.epoch,
            reason,
        };
        self.check().map_err(deposed)?;
        let done = self
            .election
            .etcd
            .txn(
                &[Compare::Created(self.election.leader_key(), self.epoch)],
                ops,
            )
            .await?;
        if !done.succeeded {
            self.end("another JobManager leads now");
            return Err(deposed("another JobManager leads now".into()));
        }
        Ok(())
    }

    /// Writes a job's record.
    pub async fn put_job(&self, job: &str, record: &JobRecord) -> Result<(), Fenced> {
        self.write(&[Op::Put {
            key: format!("{}jobs/{job}", self.election.prefix),
            value: serde_json::to_vec(record).expect("a record serialises"),
            lease: 0,
        }])
        .await
    }

    /// Writes a job's number (`checkpoints` or `counters`).
    async fn put_number(&self, kind: &str, job: &str, value: u64) -> Result<(), Fenced> {
        self.write(&[Op::Put {
            key: format!("{}{kind}/{job}", self.election.prefix),
            value: value.to_string().into_bytes(),
            lease: 0,
        }])
        .await
    }

    /// Sets a job's checkpoint pointer (the checkpoint its next attempt restores).
    pub async fn point_to_checkpoint(&self, job: &str, id: u64) -> Result<(), Fenced> {
        self.put_number("checkpoints", job, id).await
    }

    /// Ends this term on purpose (shutdown): the lease goes, a standby takes over at
    /// once.
    pub async fn resign(&self) {
        self.lost.cancel();
        let _ = self.election.etcd.revoke(self.lease).await;
    }

    /// The election this term came from.
    pub fn election(&self) -> &Arc<Election> {
        &self.election
    }
}

/// Fences one job's checkpoint coordinator by the term of the JobManager running it.
pub struct JobFence {
    /// The term.
    pub term: Arc<Term>,
    /// The job.
    pub job: String,
}

impl CompletionGuard for JobFence {
    fn reserve(&self, id: CheckpointId) -> GuardFuture<'_, ()> {
        Box::pin(async move {
            self.term
                .put_number("counters", &self.job, id.get())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn may_write(&self) -> Result<(), String> {
        self.term.check()
    }

    fn commit(&self, id: CheckpointId) -> GuardFuture<'_, ()> {
        Box::pin(async move {
            self.term
                .point_to_checkpoint(&self.job, id.get())
                .await
                .map_err(|e| e.to_string())
        })
    }
}
