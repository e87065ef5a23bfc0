//! A client of a JobManager: submit jobs, read the cluster's status.

use tonic::transport::Channel;

use crate::tls::Tls;

use crate::proto::job_manager_client::JobManagerClient;
use crate::proto::{Artifact, ClusterStatus, JobEvent, StatusRequest, SubmitRequest};
use crate::spec::JobSpec;

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
        let endpoint = crate::tls::endpoint(address, tls)
            .map_err(|e| ClientError::Address(address.into(), e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ClientError::Unreachable(address.into(), e.to_string()))?;
        Ok(ClusterClient {
            inner: JobManagerClient::new(channel).max_decoding_message_size(usize::MAX),
        })
    }

    /// Submits a job with the plugins and modules its script names
    /// ([`crate::artifacts::collect`]); its events follow until it ends (dropping the
    /// stream cancels it).
    pub async fn submit(
        &mut self,
        spec: &JobSpec,
        artifacts: Vec<Artifact>,
    ) -> Result<tonic::Streaming<JobEvent>, ClientError> {
        Ok(self
            .inner
            .submit(SubmitRequest {
                spec: spec.to_bytes(),
                artifacts,
            })
            .await
            .map_err(|s| ClientError::Refused(s.message().to_string()))?
            .into_inner())
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
