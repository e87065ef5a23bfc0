//! The gRPC API (tonic): the services of `proto/fungi/v1/fungi.proto`, answering the
//! same calls as the REST API through the same [`Service`] methods, so that both give
//! the same answers and the same audit records. The caller's credential is the
//! `authorization: Bearer <key or JWT>` metadata entry; [`ServiceError`]s map to gRPC
//! codes as the proto file documents.
//!
//! The generated code (`grpc/fungi.v1.rs`) is committed, so that building Fungi needs
//! no `protoc`; a test regenerates it and fails when it is stale.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::service::{
    CreateKey, CreateTenant, Service, ServiceError, ServiceResult, SubmitJob, TakeSavepoint,
    UpgradeJob,
};
use crate::store::{JobRecord, KeyRecord, PluginRecord};

/// The messages and services generated from `proto/fungi/v1/fungi.proto`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    include!("grpc/fungi.v1.rs");
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let message = e.to_string();
        match e {
            ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
            ServiceError::Forbidden(_) | ServiceError::Quota(_) => {
                Status::permission_denied(message)
            }
            ServiceError::NotFound(_) => Status::not_found(message),
            ServiceError::BadRequest(_) => Status::invalid_argument(message),
            ServiceError::Conflict(_) => Status::failed_precondition(message),
            ServiceError::Internal(_) => Status::internal(message),
            ServiceError::Unavailable(_) => Status::unavailable(message),
            ServiceError::RateLimited { .. } => Status::resource_exhausted(message),
        }
    }
}

/// The gRPC services over one [`Service`].
#[derive(Clone)]
pub struct Grpc {
    service: Arc<Service>,
}

impl Grpc {
    /// The services over `service`.
    pub fn new(service: Arc<Service>) -> Grpc {
        Grpc { service }
    }

    /// Who is calling (audited as `grpc <method>` when it fails).
    fn caller<T>(
        &self,
        req: &Request<T>,
        method: &str,
    ) -> Result<fungi_security::Principal, Status> {
        let bearer = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        Ok(self
            .service
            .authenticate(bearer, &format!("grpc {method}"))?)
    }

    /// Audits a request refused before it reached the service, and refuses it.
    fn bad_request(&self, p: &fungi_security::Principal, method: &str, reason: String) -> Status {
        self.service
            .audit_bad_request(Some(p), &format!("grpc {method}"), &reason);
        Status::invalid_argument(format!("bad request: {reason}"))
    }

    /// The services, ready for a tonic server.
    pub fn routes(self) -> tonic::service::Routes {
        tonic::service::Routes::new(pb::jobs_server::JobsServer::new(self.clone()))
            // Components are bigger than tonic's 4 MB default; quotas bound them.
            .add_service(
                pb::plugins_server::PluginsServer::new(self.clone())
                    .max_decoding_message_size(256 << 20),
            )
            .add_service(pb::tenants_server::TenantsServer::new(self.clone()))
            .add_service(pb::keys_server::KeysServer::new(self.clone()))
            .add_service(pb::audit_server::AuditServer::new(self))
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl From<JobRecord> for pb::Job {
    fn from(j: JobRecord) -> pb::Job {
        pb::Job {
            status: j.status.name().to_string(),
            id: j.id,
            tenant: j.tenant,
            sql: j.sql,
            parallelism: j.parallelism,
            error: j.error,
            from_savepoint: j.from_savepoint,
            created_ms: j.created_ms,
            updated_ms: j.updated_ms,
            settings_json: j.settings.to_string(),
        }
    }
}

impl From<PluginRecord> for pb::Plugin {
    fn from(p: PluginRecord) -> pb::Plugin {
        pb::Plugin {
            details_json: p.details.to_string(),
            tenant: p.tenant,
            name: p.name,
            digest: p.digest,
            bytes: p.bytes,
            kind: p.kind,
            created_ms: p.created_ms,
        }
    }
}

impl From<KeyRecord> for pb::Key {
    fn from(k: KeyRecord) -> pb::Key {
        pb::Key {
            role: k.role.name().to_string(),
            id: k.id,
            tenant: k.tenant,
            name: k.name,
            created_ms: k.created_ms,
            revoked: k.revoked,
        }
    }
}

impl From<fungi_tenancy::TrustPolicy> for pb::TrustPolicy {
    fn from(t: fungi_tenancy::TrustPolicy) -> pb::TrustPolicy {
        pb::TrustPolicy {
            mode: t.mode.name().to_string(),
            keys: t.keys,
        }
    }
}

impl From<fungi_tenancy::Tenant> for pb::Tenant {
    fn from(t: fungi_tenancy::Tenant) -> pb::Tenant {
        pb::Tenant {
            quotas_json: json(&t.quotas),
            trust: Some(t.trust.into()),
            id: t.id,
        }
    }
}

/// Reads a trust policy message (absent: off).
fn trust_policy(t: Option<pb::TrustPolicy>) -> Result<fungi_tenancy::TrustPolicy, String> {
    let Some(t) = t else {
        return Ok(Default::default());
    };
    let mode = if t.mode.is_empty() { "off" } else { &t.mode };
    let mode = fungi_tenancy::TrustMode::parse(mode)
        .ok_or_else(|| format!("trust mode '{mode}' is not one of off, warn, require"))?;
    Ok(fungi_tenancy::TrustPolicy { mode, keys: t.keys })
}

fn respond<T, U: From<T>>(r: ServiceResult<T>) -> Result<Response<U>, Status> {
    Ok(Response::new(U::from(r?)))
}

#[tonic::async_trait]
impl pb::jobs_server::Jobs for Grpc {
    async fn submit(
        &self,
        req: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let p = self.caller(&req, "Jobs/Submit")?;
        let r = req.into_inner();
        let submit = SubmitJob {
            sql: r.sql,
            parallelism: r.parallelism,
            from_savepoint: r.from_savepoint,
        };
        respond(self.service.submit_job(&p, submit).await)
    }

    async fn list(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let p = self.caller(&req, "Jobs/List")?;
        let jobs = self.service.list_jobs(&p)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get(&self, req: Request<pb::JobId>) -> Result<Response<pb::JobDetails>, Status> {
        let p = self.caller(&req, "Jobs/Get")?;
        let d = self.service.get_job(&p, &req.get_ref().id).await?;
        Ok(Response::new(pb::JobDetails {
            operators_json: json(&d.operators),
            checkpoints_json: json(&d.checkpoints),
            graph_json: json(&d.graph),
            exceptions_json: json(&d.exceptions),
            restarts: d.restarts,
            savepoints: d.savepoints,
            cluster_json: d.cluster.as_ref().map(json).unwrap_or_default(),
            job: Some(d.job.into()),
        }))
    }

    async fn cancel(&self, req: Request<pb::JobId>) -> Result<Response<pb::Job>, Status> {
        let p = self.caller(&req, "Jobs/Cancel")?;
        respond(self.service.cancel_job(&p, &req.get_ref().id).await)
    }

    async fn resume(&self, req: Request<pb::JobId>) -> Result<Response<pb::Job>, Status> {
        let p = self.caller(&req, "Jobs/Resume")?;
        respond(self.service.resume_job(&p, &req.get_ref().id).await)
    }

    async fn take_savepoint(
        &self,
        req: Request<pb::SavepointRequest>,
    ) -> Result<Response<pb::Savepoint>, Status> {
        let p = self.caller(&req, "Jobs/TakeSavepoint")?;
        let r = req.into_inner();
        let sp = self
            .service
            .savepoint_job(
                &p,
                &r.id,
                TakeSavepoint {
                    stop: r.stop,
                    timeout_secs: r.timeout_secs,
                },
            )
            .await?;
        Ok(Response::new(pb::Savepoint {
            id: sp.id,
            checkpoint_id: sp.checkpoint_id,
            stopped: sp.stopped,
        }))
    }

    async fn upgrade(
        &self,
        req: Request<pb::UpgradeJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let p = self.caller(&req, "Jobs/Upgrade")?;
        let r = req.into_inner();
        let upgrade = UpgradeJob {
            sql: r.sql,
            parallelism: r.parallelism,
            timeout_secs: r.timeout_secs,
        };
        respond(self.service.upgrade_job(&p, &r.id, upgrade).await)
    }
}

#[tonic::async_trait]
impl pb::plugins_server::Plugins for Grpc {
    async fn upload(
        &self,
        req: Request<pb::UploadPluginRequest>,
    ) -> Result<Response<pb::Plugin>, Status> {
        let p = self.caller(&req, "Plugins/Upload")?;
        let r = req.into_inner();
        respond(
            self.service
                .upload_plugin(&p, &r.name, r.component, r.signature)
                .await,
        )
    }

    async fn list(
        &self,
        req: Request<pb::ListPluginsRequest>,
    ) -> Result<Response<pb::ListPluginsResponse>, Status> {
        let p = self.caller(&req, "Plugins/List")?;
        let plugins = self.service.list_plugins(&p)?;
        Ok(Response::new(pb::ListPluginsResponse {
            plugins: plugins.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get(&self, req: Request<pb::PluginName>) -> Result<Response<pb::Plugin>, Status> {
        let p = self.caller(&req, "Plugins/Get")?;
        respond(self.service.get_plugin(&p, &req.get_ref().name))
    }

    async fn delete(&self, req: Request<pb::PluginName>) -> Result<Response<pb::Empty>, Status> {
        let p = self.caller(&req, "Plugins/Delete")?;
        self.service.delete_plugin(&p, &req.get_ref().name)?;
        Ok(Response::new(pb::Empty {}))
    }
}

#[tonic::async_trait]
impl pb::tenants_server::Tenants for Grpc {
    async fn create(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let p = self.caller(&req, "Tenants/Create")?;
        let r = req.into_inner();
        let quotas = if r.quotas_json.trim().is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&r.quotas_json)
                .map_err(|e| self.bad_request(&p, "Tenants/Create", format!("quotas_json: {e}")))?
        };
        let trust = trust_policy(r.trust).map_err(|e| self.bad_request(&p, "Tenants/Create", e))?;
        respond(self.service.create_tenant(
            &p,
            CreateTenant {
                id: r.id,
                quotas,
                trust,
            },
        ))
    }

    async fn list(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let p = self.caller(&req, "Tenants/List")?;
        let tenants = self.service.list_tenants(&p)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let p = self.caller(&req, "Tenants/Delete")?;
        let r = req.get_ref();
        self.service.delete_tenant(&p, &r.id, r.force).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn set_trust(
        &self,
        req: Request<pb::SetTrustRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let p = self.caller(&req, "Tenants/SetTrust")?;
        let r = req.into_inner();
        let trust =
            trust_policy(r.trust).map_err(|e| self.bad_request(&p, "Tenants/SetTrust", e))?;
        respond(self.service.set_trust(&p, &r.tenant, trust))
    }
}

#[tonic::async_trait]
impl pb::keys_server::Keys for Grpc {
    async fn create(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreatedKey>, Status> {
        let p = self.caller(&req, "Keys/Create")?;
        let r = req.into_inner();
        let role = r.role.parse().map_err(|e: fungi_security::SecurityError| {
            self.bad_request(&p, "Keys/Create", e.to_string())
        })?;
        let k = self.service.create_key(
            &p,
            CreateKey {
                tenant: r.tenant,
                role,
                name: r.name,
            },
        )?;
        Ok(Response::new(pb::CreatedKey {
            record: Some(k.record.into()),
            key: k.key,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let p = self.caller(&req, "Keys/List")?;
        let keys = self.service.list_keys(&p)?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.into_iter().map(Into::into).collect(),
        }))
    }

    async fn revoke(&self, req: Request<pb::KeyId>) -> Result<Response<pb::Empty>, Status> {
        let p = self.caller(&req, "Keys/Revoke")?;
        self.service.revoke_key(&p, &req.get_ref().id)?;
        Ok(Response::new(pb::Empty {}))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for Grpc {
    async fn read(
        &self,
        req: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let p = self.caller(&req, "Audit/Read")?;
        let records = self.service.audit_log(&p, req.get_ref().limit)?;
        Ok(Response::new(pb::AuditResponse {
            records: records
                .into_iter()
                .map(|r| pb::AuditRecord {
                    seq: r.seq,
                    time_ms: r.time_ms,
                    who: r.who,
                    tenant: r.tenant,
                    action: r.action,
                    target: r.target,
                    result: r.result,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    /// The committed generated code is what `tonic-prost-build` makes of the proto file
    /// now (needs `protoc`, installed by `scripts/install-test-services.sh`).
    #[test]
    fn the_generated_code_matches_the_proto_file() {
        let root = fungi_testkit::repo_root();
        let out = tempfile::tempdir().unwrap();
        tonic_prost_build::configure()
            .out_dir(out.path())
            .compile_protos(
                &[root.join("proto/fungi/v1/fungi.proto")],
                &[root.join("proto")],
            )
            .expect("protoc and tonic-prost-build compile the proto file");
        let fresh = std::fs::read_to_string(out.path().join("fungi.v1.rs")).unwrap();
        let committed = include_str!("grpc/fungi.v1.rs");
        if fresh != committed {
            let kept = std::env::temp_dir().join("fungi.v1.rs");
            std::fs::write(&kept, &fresh).unwrap();
            panic!(
                "host/server/src/grpc/fungi.v1.rs is stale: copy {} over it",
                kept.display()
            );
        }
    }
}
