//! What a tenant stores besides jobs: plugins, files and catalog functions.

use super::*;

impl Service {
    /// Where a tenant's plugin components are kept.
    pub(super) fn plugin_path(&self, tenant: &str, name: &str) -> PathBuf {
        self.data_dir
            .join("plugins")
            .join(tenant)
            .join(format!("{name}.wasm"))
    }

    /// Stores a plugin for the caller's tenant after loading it (a component that does
    /// not load, or breaks a quota, is refused).
    /// `signature` is the base64 cosign-compatible signature of the bytes, checked
    /// against the tenant's trust policy.
    pub async fn upload_plugin(
        &self,
        p: &Principal,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<String>,
    ) -> ServiceResult<PluginRecord> {
        self.authorize(p, Action::PluginUpload, &p.tenant, name)?;
        let result = self.upload_plugin_inner(p, name, bytes, signature).await;
        self.done(p, Action::PluginUpload, name, result)
    }

    pub(super) async fn upload_plugin_inner(
        &self,
        p: &Principal,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<String>,
    ) -> ServiceResult<PluginRecord> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(ServiceError::BadRequest(format!(
                "plugin name '{name}' must be 1 to 63 lower-case letters, digits, '-' or '_'"
            )));
        }
        let tenant = self.tenant(&p.tenant)?;
        let stored = self.store.plugins(&p.tenant)?;
        let replacing = stored.iter().any(|s| s.name == name);
        tenant.quotas.admit_plugin(
            &tenant.id,
            stored.len() as u32 - replacing as u32,
            bytes.len() as u64,
        )?;
        let signature_status =
            fungi_security::signing::check(&tenant.trust, &bytes, signature.as_deref())
                .map_err(|e| ServiceError::Forbidden(e.to_string()))?;
        if let SignatureStatus::Warning { reason } = &signature_status {
            tracing::warn!(tenant = %tenant.id, plugin = name, "{reason}; stored because the trust policy is 'warn'");
        }
        let host = self.plugin_host()?;
        let (plugin_name, loaded) = (name.to_string(), bytes.clone());
        let details = tokio::task::spawn_blocking(move || {
            let plugin = host.load(&plugin_name, &loaded)?;
            let m = plugin.manifest();
            let functions: Vec<serde_json::Value> = plugin
                .functions()
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name,
                        "arguments": f.arguments.iter().map(|a| a.data_type().to_string()).collect::<Vec<_>>(),
                        "returns": f.returns.data_type().to_string(),
                        "volatility": format!("{:?}", f.volatility),
                    })
                })
                .collect();
            Ok::<_, fungi_plugin::PluginError>((
                match plugin.kind() {
                    fungi_plugin::PluginKind::Scalar => "scalar",
                    fungi_plugin::PluginKind::Aggregate => "aggregate",
                    fungi_plugin::PluginKind::Table => "table",
                    fungi_plugin::PluginKind::Source => "source",
                    fungi_plugin::PluginKind::Sink => "sink",
                }
                .to_string(),
                format!("blake3:{}", plugin.digest()),
                serde_json::json!({
                    "manifest": {
                        "name": m.name, "version": m.version, "description": m.description,
                        "network": m.network, "directories": m.directories,
                    },
                    "functions": functions,
                    "imports": plugin.imports(),
                    "contract": format!("fungi:plugin@{}", fungi_plugin::CONTRACT_VERSION),
                }),
            ))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::BadRequest(format!("the plugin does not load: {e}")))?;
        let (kind, digest, mut details) = details;
        details["signature"] = serde_json::to_value(&signature_status).unwrap_or_default();
        let path = self.plugin_path(&p.tenant, name);
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .and_then(|_| std::fs::write(&path, &bytes))
            .map_err(|e| ServiceError::Internal(format!("cannot store {}: {e}", path.display())))?;
        let record = PluginRecord {
            tenant: p.tenant.clone(),
            name: name.to_string(),
            digest,
            bytes: bytes.len() as u64,
            kind,
            details,
            created_ms: now_ms(),
        };
        self.store.put_plugin(&record)?;
        Ok(record)
    }

    /// The caller's tenant's plugins.
    pub fn list_plugins(&self, p: &Principal) -> ServiceResult<Vec<PluginRecord>> {
        self.authorize(p, Action::PluginList, &p.tenant, "")?;
        Ok(self.store.plugins(&p.tenant)?)
    }

    /// One of the caller's tenant's plugins, with the limits it runs under (from the
    /// tenant's quotas, as they are now).
    pub fn get_plugin(&self, p: &Principal, name: &str) -> ServiceResult<PluginRecord> {
        self.authorize(p, Action::PluginGet, &p.tenant, name)?;
        let mut record = self
            .store
            .plugin(&p.tenant, name)?
            .ok_or_else(|| ServiceError::NotFound(format!("no plugin '{name}'")))?;
        if let Some(tenant) = self.store.tenant(&p.tenant)? {
            let l = plugin_limits(&tenant.quotas);
            record.details["limits"] = serde_json::json!({
                "memory_per_instance": l.memory_per_instance,
                "memory_total": l.memory_total,
                "cpu_ms_per_second": l.cpu_budget_per_second.as_millis() as u64,
                "call_timeout_ms": l.call_timeout.map(|t| t.as_millis() as u64),
                "max_instances": l.max_instances,
                "network_allow": l.network_allow,
            });
        }
        Ok(record)
    }

    /// Deletes one of the caller's tenant's plugins.
    pub fn delete_plugin(&self, p: &Principal, name: &str) -> ServiceResult<()> {
        self.authorize(p, Action::PluginDelete, &p.tenant, name)?;
        let result = (|| {
            if !self.store.delete_plugin(&p.tenant, name)? {
                return Err(ServiceError::NotFound(format!("no plugin '{name}'")));
            }
            let _ = std::fs::remove_file(self.plugin_path(&p.tenant, name));
            Ok(())
        })();
        self.done(p, Action::PluginDelete, name, result)
    }

    /// A tenant's files directory (`filesystem` tables and Python modules of its jobs).
    pub(super) fn files_dir(&self, tenant: &str) -> PathBuf {
        self.data_dir.join("files").join(tenant)
    }

    /// `path` inside the caller's files directory, if it is a valid relative path.
    pub(super) fn tenant_file(&self, p: &Principal, path: &str) -> ServiceResult<PathBuf> {
        fungi_sql::path_inside(&self.files_dir(&p.tenant), path)
            .filter(|_| path.len() <= 255)
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "file path '{path}' must be relative, without '..', at most 255 bytes"
                ))
            })
    }

    /// Stores a file in the caller's tenant's files (what its jobs' `filesystem` tables
    /// and `LANGUAGE PYTHON ... USING` read).
    pub fn upload_file(&self, p: &Principal, path: &str, bytes: &[u8]) -> ServiceResult<FileEntry> {
        self.authorize(p, Action::FileUpload, &p.tenant, path)?;
        let result = (|| {
            let file = self.tenant_file(p, path)?;
            std::fs::create_dir_all(file.parent().expect("a parent"))
                .and_then(|_| std::fs::write(&file, bytes))
                .map_err(|e| ServiceError::Internal(format!("cannot store '{path}': {e}")))?;
            Ok(FileEntry {
                path: path.to_string(),
                bytes: bytes.len() as u64,
            })
        })();
        self.done(p, Action::FileUpload, path, result)
    }

    /// The caller's tenant's files, by path.
    pub fn list_files(&self, p: &Principal) -> ServiceResult<Vec<FileEntry>> {
        self.authorize(p, Action::FileList, &p.tenant, "")?;
        let root = self.files_dir(&p.tenant);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.metadata() {
                    Ok(m) if m.is_dir() => stack.push(path),
                    Ok(m) => out.push(FileEntry {
                        path: path
                            .strip_prefix(&root)
                            .unwrap_or(&path)
                            .to_string_lossy()
                            .into_owned(),
                        bytes: m.len(),
                    }),
                    Err(_) => {}
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes one of the caller's tenant's files.
    pub fn delete_file(&self, p: &Principal, path: &str) -> ServiceResult<()> {
        self.authorize(p, Action::FileDelete, &p.tenant, path)?;
        let result = (|| {
            let file = self.tenant_file(p, path)?;
            if !file.is_file() {
                return Err(ServiceError::NotFound(format!("no file '{path}'")));
            }
            std::fs::remove_file(&file)
                .map_err(|e| ServiceError::Internal(format!("cannot delete '{path}': {e}")))
        })();
        self.done(p, Action::FileDelete, path, result)
    }

    /// Registers a function in the caller's tenant's catalog: its `CREATE FUNCTION`
    /// statement is checked now (parsed, and loaded under the tenant's confinement and
    /// policy) and runs before each of the tenant's jobs from then on. A function of the
    /// same name is replaced.
    pub async fn register_function(
        &self,
        p: &Principal,
        req: RegisterFunction,
    ) -> ServiceResult<FunctionRecord> {
        self.authorize(p, Action::FunctionRegister, &p.tenant, "")?;
        let result = async {
            super::jobs::check_script_size(&req.sql)?;
            let (name, language) = fungi_sql::function_statement(&req.sql)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
            let mut session = self.confined_session(&p.tenant, Default::default())?;
            let statement = req.sql.trim().trim_end_matches(';').to_string();
            let loaded =
                crate::runtime::plan_apart(&self.runtimes, &p.tenant, move || async move {
                    session
                        .execute(&statement)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| ServiceError::BadRequest(format!("'{name}' does not load: {e}")))?;
            loaded.map_err(|e| {
                ServiceError::BadRequest(format!(
                    "'{name}' does not load: {}",
                    self.tenant_paths(&p.tenant).scrub(&e)
                ))
            })?;
            let record = FunctionRecord {
                tenant: p.tenant.clone(),
                name,
                language: language.to_string(),
                statement: req.sql.trim().trim_end_matches(';').to_string(),
                created_ms: now_ms(),
            };
            self.store.put_function(&record)?;
            Ok(record)
        }
        .await;
        let target = result.as_ref().map(|f| f.name.clone()).unwrap_or_default();
        self.done(p, Action::FunctionRegister, &target, result)
    }

    /// The caller's tenant's catalog functions.
    pub fn list_functions(&self, p: &Principal) -> ServiceResult<Vec<FunctionRecord>> {
        self.authorize(p, Action::FunctionList, &p.tenant, "")?;
        Ok(self.store.functions(&p.tenant)?)
    }

    /// Removes a function from the caller's tenant's catalog (running jobs keep it).
    pub fn delete_function(&self, p: &Principal, name: &str) -> ServiceResult<()> {
        self.authorize(p, Action::FunctionDelete, &p.tenant, name)?;
        let result = match self.store.delete_function(&p.tenant, name) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::NotFound(format!("no function '{name}'"))),
            Err(e) => Err(e.into()),
        };
        self.done(p, Action::FunctionDelete, name, result)
    }
}
