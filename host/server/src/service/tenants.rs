//! Tenants, their keys and the audit log.

use super::*;

impl Service {
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
            if self.store.tenant_was_deleted(&req.id)? {
                return Err(ServiceError::Conflict(format!(
                    "tenant id '{}' belonged to a deleted tenant; ids are not reused (its \
                     audit records keep that id), choose another",
                    req.id
                )));
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

    /// Deletes a tenant with everything it owns (admins): its keys, catalog functions,
    /// plugins, files, and jobs with their checkpoints and savepoints. A tenant with
    /// running jobs is deleted only with `force`, which cancels them first. Its audit
    /// records stay (append-only) under its id, which is never given to another tenant.
    pub async fn delete_tenant(&self, p: &Principal, id: &str, force: bool) -> ServiceResult<()> {
        self.authorize(p, Action::TenantDelete, id, id)?;
        let result = self.delete_tenant_inner(id, force).await;
        self.done(p, Action::TenantDelete, id, result)
    }

    pub(super) async fn delete_tenant_inner(&self, id: &str, force: bool) -> ServiceResult<()> {
        if id == SYSTEM_TENANT {
            return Err(ServiceError::Conflict("the system tenant stays".into()));
        }
        self.tenant(id)?;
        let jobs = self.store.jobs(Some(id))?;
        let running: Vec<&JobRecord> = jobs
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .collect();
        if !running.is_empty() && !force {
            return Err(ServiceError::Conflict(format!(
                "tenant '{id}' has {} running job(s); cancel them first, or delete with \
                 force (DELETE /tenants/{id}?force=true) to cancel them",
                running.len()
            )));
        }
        for job in &running {
            self.end_job(job).await?;
            self.store
                .set_job_status(&job.id, JobStatus::Cancelled, None, now_ms())?;
        }
        // Wait (bounded) for the cancelled jobs to let go of their files.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline
            && self
                .running
                .lock()
                .expect("running lock")
                .values()
                .any(|r| r.tenant == id)
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if !self.store.delete_tenant(id)? {
            return Err(ServiceError::NotFound(format!("no tenant '{id}'")));
        }
        self.runtimes.remove(id);
        self.plugin_tenants
            .lock()
            .expect("plugin tenants lock")
            .remove(id);
        let mut dirs = vec![self.files_dir(id), self.data_dir.join("plugins").join(id)];
        dirs.extend(jobs.iter().map(|j| self.data_dir.join("jobs").join(&j.id)));
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!(tenant = id, dir = %dir.display(), error = %e,
                    "cannot remove a deleted tenant's data"),
            }
        }
        Ok(())
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
                self.key_checks.forget(id);
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
}
