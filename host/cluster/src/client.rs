//! A client of a JobManager: submit jobs, read the cluster's status.

use tonic::transport::Channel;

use crate::tls::Tls;

use crate::proto::job_manager_client::JobManagerClient;
use crate::proto::{
    Artifact, CancelJobRequest, ClusterStatus, FollowRequest, JobEvent, StatusRequest,
    SubmitRequest,
};
use crate::spec::JobSpec;

/// A job's events as the JobManager streams them.
pub type JobEvents = tonic::Streaming<JobEvent>;

/// Why a call to the JobManager failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not one.
    #[error("bad JobManager address '{0}': {1}")]
    Address(String, String),
    /// No JobManager answers there.
    #[error("cannot reach the JobManager at {0}: {1}")]
    Unreachable(String, String),
    /// The JobManager refused or failed the call.
    #[error("the JobManager answered: {0}")]
    Refused(String),
    /// No JobManager of the list leads the cluster.
    #[error("no JobManager leads the cluster: {0}")]
    NoLeader(String),
    /// The cluster has no such job.
    #[error("the JobManager answered: {0}")]
    NotFound(String),
    /// The cluster has a job of that name already.
    #[error("the JobManager answered: {0}")]
    Exists(String),
}

impl ClientError {
    fn from_status(status: tonic::Status) -> ClientError {
        match status.code() {
            tonic::Code::Unavailable => ClientError::NoLeader(status.message().to_string()),
            tonic::Code::NotFound => ClientError::NotFound(status.message().to_string()),
            tonic::Code::AlreadyExists => ClientError::Exists(status.message().to_string()),
            _ => ClientError::Refused(status.message().to_string()),
        }
    }
}

/// A connection to a JobManager.
#[derive(Debug, Clone)]
pub struct ClusterClient {
    inner: JobManagerClient<Channel>,
}

impl ClusterClient {
    /// Connects to the JobManager at `address` (`host:port`), over mutual TLS when
    /// `tls` is given.
    pub async fn connect(address: &str, tls: Option<&Tls>) -> Result<ClusterClient, ClientError> {
        // A JobManager that stops answering (paused, cut off) breaks the connection
        // within seconds, so that a client can follow its jobs on the next leader.
        let endpoint = crate::tls::endpoint(address, tls)
            .map_err(|e| ClientError::Address(address.into(), e))?
            .http2_keep_alive_interval(std::time::Duration::from_secs(2))
            .keep_alive_timeout(std::time::Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_timeout(std::time::Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable(address.into(), e.to_string()))?;
        Ok(ClusterClient {
            inner: JobManagerClient::new(channel).max_decoding_message_size(usize::MAX),
        })
    }

    /// Connects to the JobManager that leads among `addresses` (comma-separated
    /// `host:port`; one address for a cluster without high availability).
    pub async fn leader(addresses: &str, tls: Option<&Tls>) -> Result<ClusterClient, ClientError> {
        let mut heard = Vec::new();
        for address in addresses
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let mut client = match ClusterClient::connect(address, tls).await {
                Ok(c) => c,
                Err(e) => {
                    heard.push(e.to_string());
                    continue;
                }
            };
            match client.status().await {
                Ok(status) if status.leadership.as_ref().is_none_or(|l| l.leading) => {
                    return Ok(client);
                }
                Ok(status) => {
                    let leader = status.leadership.map(|l| l.leader).unwrap_or_default();
                    heard.push(format!(
                        "{address} stands by (leader: {})",
                        if leader.is_empty() {
                            "none yet"
                        } else {
                            &leader
                        }
                    ));
                }
                Err(e) => heard.push(format!("{address}: {e}")),
            }
        }
        Err(ClientError::NoLeader(heard.join("; ")))
    }

    /// Submits a job with the plugins and modules its script names
    /// ([`crate::artifacts::collect`]); its events follow until it ends (dropping the
    /// stream cancels it, unless the cluster is highly available).
    pub async fn submit(
        &mut self,
        spec: &JobSpec,
        artifacts: Vec<Artifact>,
    ) -> Result<JobEvents, ClientError> {
        Ok(self
            .inner
            .submit(SubmitRequest {
                spec: spec.to_bytes(),
                artifacts,
            })
            .await
            .map_err(ClientError::from_status)?
            .into_inner())
    }

    /// Follows job `job` from its current status until it ends.
    pub async fn follow(&mut self, job: &str) -> Result<JobEvents, ClientError> {
        Ok(self
            .inner
            .follow(FollowRequest { job: job.into() })
            .await
            .map_err(ClientError::from_status)?
            .into_inner())
    }

    /// Cancels job `job`; what the JobManager says.
    pub async fn cancel(&mut self, job: &str) -> Result<String, ClientError> {
        Ok(self
            .inner
            .cancel_job(CancelJobRequest { job: job.into() })
            .await
            .map_err(ClientError::from_status)?
            .into_inner()
            .message)
    }

    /// The cluster's TaskManagers, slots and jobs.
    pub async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        Ok(self
            .inner
            .status(StatusRequest {})
            .await
            .map_err(|s| ClientError::Refused(s.message().to_string()))?
            .into_inner())
    }
}
