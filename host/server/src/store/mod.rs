//! Metadata: tenants, API keys, jobs and the audit log. [`MetadataStore`] is what the
//! service layer needs; [`SqliteStore`] keeps it in one SQLite file (the server's
//! default), so that it survives a restart; [`EtcdStore`] keeps it in etcd, where
//! several servers in front of one cluster share it and it survives the loss of any of
//! them.

mod etcd;

pub use etcd::EtcdStore;

use std::path::Path;
use std::sync::Mutex;

use fungi_security::{AuditRecord, Role};
use fungi_tenancy::{Quotas, Tenant, TrustPolicy};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// A store error.
#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct StoreError(pub(crate) String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Results of the store.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// A stored API key (never the secret: its Argon2 hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    /// The key's public id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: Role,
    /// A name to recognise it by.
    pub name: String,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The Argon2 hash of the secret.
    #[serde(skip)]
    pub hash: String,
}

/// A job's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Running (or being restarted by its strategy).
    Running,
    /// Read all its input and committed its output.
    Finished,
    /// Cancelled by a caller.
    Cancelled,
    /// Stopped with a savepoint by a caller (start a new job from it).
    Stopped,
    /// Failed beyond what its restart strategy allows.
    Failed,
    /// Not resumed when the server started: the server started in safe mode, or stopped
    /// several times while the job ran without the job getting anywhere (a crash loop).
    /// Resume it (`POST /jobs/{id}/resume`) or cancel it.
    Suspended,
}

impl JobStatus {
    /// The status as stored and shown (`RUNNING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Finished => "FINISHED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::Stopped => "STOPPED",
            JobStatus::Failed => "FAILED",
            JobStatus::Suspended => "SUSPENDED",
        }
    }

    pub(crate) fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "RUNNING" => JobStatus::Running,
            "FINISHED" => JobStatus::Finished,
            "CANCELLED" => JobStatus::Cancelled,
            "STOPPED" => JobStatus::Stopped,
            "FAILED" => JobStatus::Failed,
            "SUSPENDED" => JobStatus::Suspended,
            other => return Err(StoreError(format!("unknown job status '{other}'"))),
        })
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    /// The job's id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// The SQL script it was submitted as.
    pub sql: String,
    /// The slots it holds: the largest parallelism of its operators, as planned (after
    /// every `SET` of its script).
    pub parallelism: u32,
    /// The settings it runs with, as planned: parallelism, key groups, checkpoints,
    /// state backend, restart strategy.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Its status.
    pub status: JobStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The savepoint it started from (`<job>/sp-<id>`), if any.
    #[serde(default)]
    pub from_savepoint: Option<String>,
    /// When it was submitted (ms since the epoch).
    pub created_ms: i64,
    /// When its status last changed.
    pub updated_ms: i64,
}

/// A stored plugin: what inspecting it at upload found (its bytes are a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRecord {
    /// Its tenant.
    pub tenant: String,
    /// The name it was uploaded as.
    pub name: String,
    /// `blake3:<hex>` of the component bytes.
    pub digest: String,
    /// Size of the component.
    pub bytes: u64,
    /// scalar, aggregate, table, source or sink.
    pub kind: String,
    /// The plugin's manifest, exports and imports, as inspected at upload.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When it was uploaded (ms since the epoch).
    pub created_ms: i64,
}

/// A function registered in a tenant's catalog: its `CREATE FUNCTION` statement runs
/// before every job of the tenant (as Flink's catalog functions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionRecord {
    /// Its tenant.
    pub tenant: String,
    /// The name SQL calls it by.
    pub name: String,
    /// `wasm` or `python`.
    pub language: String,
    /// The `CREATE FUNCTION` statement.
    pub statement: String,
    /// When it was registered (ms since the epoch).
    pub created_ms: i64,
}

/// What the service layer stores.
pub trait MetadataStore: Send + Sync {
    /// Adds a tenant; false if it exists.
    fn create_tenant(&self, tenant: &Tenant) -> StoreResult<bool>;
    /// A tenant.
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    /// Every tenant.
    fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Replaces a tenant's quotas and trust policy; false if there is no such tenant.
    fn update_tenant(&self, tenant: &Tenant) -> StoreResult<bool>;
    /// Removes a tenant with its keys, functions, plugin and job records, and remembers
    /// its id so that it is never given to another tenant (its audit records stay,
    /// append-only, under that id); false if there was none.
    fn delete_tenant(&self, id: &str) -> StoreResult<bool>;
    /// Whether a tenant of this id existed and was deleted.
    fn tenant_was_deleted(&self, id: &str) -> StoreResult<bool>;
    /// Adds a key.
    fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    /// A key by id.
    fn key(&self, id: &str) -> StoreResult<Option<KeyRecord>>;
    /// Keys, of one tenant or all.
    fn keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRecord>>;
    /// Marks a key revoked; false if there was none.
    fn revoke_key(&self, id: &str) -> StoreResult<bool>;
    /// Adds a job.
    fn insert_job(&self, job: &JobRecord) -> StoreResult<()>;
    /// Sets a job's status.
    fn set_job_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Counts one more start of a job by a starting server, and returns the count since
    /// the job last got somewhere ([`MetadataStore::clear_resumes`]).
    fn count_resume(&self, id: &str) -> StoreResult<u32>;
    /// The job got somewhere (it ran for a while, or completed a checkpoint), or the
    /// server stopped cleanly: its starts no longer count towards a crash loop.
    fn clear_resumes(&self, id: &str) -> StoreResult<()>;
    /// A job.
    fn job(&self, id: &str) -> StoreResult<Option<JobRecord>>;
    /// Jobs, of one tenant or all, oldest first.
    fn jobs(&self, tenant: Option<&str>) -> StoreResult<Vec<JobRecord>>;
    /// Adds or replaces a plugin.
    fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<()>;
    /// A tenant's plugin.
    fn plugin(&self, tenant: &str, name: &str) -> StoreResult<Option<PluginRecord>>;
    /// A tenant's plugins, by name.
    fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>>;
    /// Removes a plugin; false if there was none.
    fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    /// Registers (or replaces) a catalog function.
    fn put_function(&self, function: &FunctionRecord) -> StoreResult<()>;
    /// A tenant's catalog functions, by name.
    fn functions(&self, tenant: &str) -> StoreResult<Vec<FunctionRecord>>;
    /// Removes a catalog function; false if there was none.
    fn delete_function(&self, tenant: &str, name: &str) -> StoreResult<bool>;
    /// Appends an audit record (its `seq` is assigned).
    fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// The newest `limit` audit records, of one tenant or all, oldest first.
    fn audit(&self, tenant: Option<&str>, limit: u32) -> StoreResult<Vec<AuditRecord>>;
}

/// Metadata in one SQLite file.
pub struct SqliteStore {
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, quotas TEXT NOT NULL, trust TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL,
    hash TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, sql TEXT NOT NULL, parallelism INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    from_savepoint TEXT, settings TEXT NOT NULL DEFAULT '{}', resumes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deleted_tenants (id TEXT PRIMARY KEY, deleted_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, who TEXT NOT NULL,
    tenant TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS functions (
    tenant TEXT NOT NULL, name TEXT NOT NULL, language TEXT NOT NULL, statement TEXT NOT NULL,
    created_ms INTEGER NOT NULL, PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS plugins (
    tenant TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL, bytes INTEGER NOT NULL,
    kind TEXT NOT NULL, details TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name));
-- The audit log is append-only: rows cannot be changed or removed.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

impl SqliteStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let db = Connection::open(path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(SCHEMA)?;
        // Columns added after the first release of the schema.
        for (table, name, column) in [
            ("tenants", "trust", "TEXT NOT NULL DEFAULT '{}'"),
            ("jobs", "from_savepoint", "TEXT"),
            ("jobs", "settings", "TEXT NOT NULL DEFAULT '{}'"),
            ("jobs", "resumes", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let present: bool = db.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                params![table, name],
                |r| r.get(0),
            )?;
            if !present {
                db.execute(
                    &format!("ALTER TABLE {table} ADD COLUMN {name} {column}"),
                    [],
                )?;
            }
        }
        Ok(SqliteStore { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tenant's plugins, or the one called `name`.
    fn query_plugins(&self, tenant: &str, name: Option<&str>) -> StoreResult<Vec<PluginRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT tenant, name, digest, bytes, kind, details, created_ms FROM plugins
             WHERE tenant = ?1 AND (?2 IS NULL OR name = ?2) ORDER BY name",
        )?;
        let rows = stmt.query_map(params![tenant, name], |r| {
            let details: String = r.get(5)?;
            Ok(PluginRecord {
                tenant: r.get(0)?,
                name: r.get(1)?,
                digest: r.get(2)?,
                bytes: r.get::<_, i64>(3)? as u64,
                kind: r.get(4)?,
                details: serde_json::from_str(&details).unwrap_or_default(),
                created_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(KeyRecord, String)> {
    let role: String = row.get(2)?;
    Ok((
        KeyRecord {
            id: row.get(0)?,
            tenant: row.get(1)?,
            role: Role::Viewer,
            name: row.get(3)?,
            hash: row.get(4)?,
            created_ms: row.get(5)?,
            revoked: row.get::<_, i64>(6)? != 0,
        },
        role,
    ))
}

fn with_role((mut key, role): (KeyRecord, String)) -> StoreResult<KeyRecord> {
    key.role = role
        .parse()
        .map_err(|e: fungi_security::SecurityError| StoreError(e.to_string()))?;
    Ok(key)
}

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(JobRecord, String)> {
    let status: String = row.get(4)?;
    Ok((
        JobRecord {
            id: row.get(0)?,
            tenant: row.get(1)?,
            sql: row.get(2)?,
            parallelism: row.get(3)?,
            status: JobStatus::Running,
            error: row.get(5)?,
            created_ms: row.get(6)?,
            updated_ms: row.get(7)?,
            from_savepoint: row.get(8)?,
            settings: serde_json::from_str(&row.get::<_, String>(9)?).unwrap_or_default(),
        },
        status,
    ))
}

fn with_status((mut job, status): (JobRecord, String)) -> StoreResult<JobRecord> {
    job.status = JobStatus::parse(&status)?;
    Ok(job)
}

fn tenant_from((id, quotas, trust): (String, String, String)) -> StoreResult<Tenant> {
    let quotas: Quotas = serde_json::from_str(&quotas)
        .map_err(|e| StoreError(format!("tenant '{id}': bad quotas: {e}")))?;
    let trust: TrustPolicy = serde_json::from_str(&trust)
        .map_err(|e| StoreError(format!("tenant '{id}': bad trust policy: {e}")))?;
    Ok(Tenant { id, quotas, trust })
}

fn tenant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError(e.to_string()))
}

const JOB_COLUMNS: &str = "id, tenant, sql, parallelism, status, error, created_ms, updated_ms, \
                           from_savepoint, settings";
const KEY_COLUMNS: &str = "id, tenant, role, name, hash, created_ms, revoked";

impl MetadataStore for SqliteStore {
    fn create_tenant(&self, tenant: &Tenant) -> StoreResult<bool> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO tenants (id, quotas, trust) VALUES (?1, ?2, ?3)",
            params![tenant.id, json(&tenant.quotas)?, json(&tenant.trust)?],
        )?;
        Ok(n == 1)
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        let row = self
            .db()
            .query_row(
                "SELECT id, quotas, trust FROM tenants WHERE id = ?1",
                params![id],
                tenant_row,
            )
            .optional()?;
        row.map(tenant_from).transpose()
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT id, quotas, trust FROM tenants ORDER BY id")?;
        let rows = stmt.query_map([], tenant_row)?;
        rows.map(|r| tenant_from(r?)).collect()
    }

    fn update_tenant(&self, tenant: &Tenant) -> StoreResult<bool> {
        let n = self.db().execute(
            "UPDATE tenants SET quotas = ?2, trust = ?3 WHERE id = ?1",
            params![tenant.id, json(&tenant.quotas)?, json(&tenant.trust)?],
        )?;
        Ok(n == 1)
    }

    fn delete_tenant(&self, id: &str) -> StoreResult<bool> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for table in ["api_keys", "functions", "plugins", "jobs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant = ?1"),
                params![id],
            )?;
        }
        let deleted = tx.execute("DELETE FROM tenants WHERE id = ?1", params![id])? == 1;
        if deleted {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            tx.execute(
                "INSERT OR IGNORE INTO deleted_tenants (id, deleted_ms) VALUES (?1, ?2)",
                params![id, now],
            )?;
        }
        tx.commit()?;
        Ok(deleted)
    }

    fn tenant_was_deleted(&self, id: &str) -> StoreResult<bool> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) > 0 FROM deleted_tenants WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?)
    }

    fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        self.db().execute(
            &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                key.id,
                key.tenant,
                key.role.name(),
                key.name,
                key.hash,
                key.created_ms,
                key.revoked as i64
            ],
        )?;
        Ok(())
    }

    fn key(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                params![id],
                key_from_row,
            )
            .optional()?;
        row.map(with_role).transpose()
    }

    fn keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map(params![tenant], key_from_row)?;
        rows.map(|r| with_role(r?)).collect()
    }

    fn revoke_key(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .db()
            .execute("UPDATE api_keys SET revoked = 1 WHERE id = ?1", params![id])?
            == 1)
    }

    fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        self.db().execute(
            &format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                job.id,
                job.tenant,
                job.sql,
                job.parallelism,
                job.status.name(),
                job.error,
                job.created_ms,
                job.updated_ms,
                job.from_savepoint,
                job.settings.to_string()
            ],
        )?;
        Ok(())
    }

    fn set_job_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.db().execute(
            "UPDATE jobs SET status = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, status.name(), error, now_ms],
        )?;
        Ok(())
    }

    fn count_resume(&self, id: &str) -> StoreResult<u32> {
        let db = self.db();
        db.execute(
            "UPDATE jobs SET resumes = resumes + 1 WHERE id = ?1",
            params![id],
        )?;
        Ok(
            db.query_row("SELECT resumes FROM jobs WHERE id = ?1", params![id], |r| {
                r.get(0)
            })?,
        )
    }

    fn clear_resumes(&self, id: &str) -> StoreResult<()> {
        self.db()
            .execute("UPDATE jobs SET resumes = 0 WHERE id = ?1", params![id])?;
        Ok(())
    }

    fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?;
        row.map(with_status).transpose()
    }

    fn jobs(&self, tenant: Option<&str>) -> StoreResult<Vec<JobRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map(params![tenant], job_from_row)?;
        rows.map(|r| with_status(r?)).collect()
    }

    fn put_plugin(&self, p: &PluginRecord) -> StoreResult<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO plugins (tenant, name, digest, bytes, kind, details, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.tenant, p.name, p.digest, p.bytes as i64, p.kind, p.details.to_string(), p.created_ms],
        )?;
        Ok(())
    }

    fn plugin(&self, tenant: &str, name: &str) -> StoreResult<Option<PluginRecord>> {
        Ok(self.query_plugins(tenant, Some(name))?.pop())
    }

    fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        self.query_plugins(tenant, None)
    }

    fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        Ok(self.db().execute(
            "DELETE FROM plugins WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )? == 1)
    }

    fn put_function(&self, f: &FunctionRecord) -> StoreResult<()> {
        self.db().execute(
            "INSERT OR REPLACE INTO functions (tenant, name, language, statement, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.tenant, f.name, f.language, f.statement, f.created_ms],
        )?;
        Ok(())
    }

    fn functions(&self, tenant: &str) -> StoreResult<Vec<FunctionRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT tenant, name, language, statement, created_ms FROM functions
             WHERE tenant = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![tenant], |r| {
            Ok(FunctionRecord {
                tenant: r.get(0)?,
                name: r.get(1)?,
                language: r.get(2)?,
                statement: r.get(3)?,
                created_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_function(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        Ok(self.db().execute(
            "DELETE FROM functions WHERE tenant = ?1 AND name = ?2",
            params![tenant, name],
        )? == 1)
    }

    fn append_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        self.db().execute(
            "INSERT INTO audit (time_ms, who, tenant, action, target, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.time_ms, r.who, r.tenant, r.action, r.target, r.result],
        )?;
        Ok(())
    }

    fn audit(&self, tenant: Option<&str>, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT seq, time_ms, who, tenant, action, target, result FROM audit
             WHERE ?1 IS NULL OR tenant = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![tenant, limit], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                time_ms: r.get(1)?,
                who: r.get(2)?,
                tenant: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                result: r.get(6)?,
            })
        })?;
        let mut out: Vec<AuditRecord> = rows.collect::<Result<_, _>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_reopening_and_the_audit_log_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            let t = Tenant {
                id: "a".into(),
                quotas: Quotas {
                    max_jobs: Some(3),
                    ..Default::default()
                },
                trust: Default::default(),
            };
            assert!(s.create_tenant(&t).unwrap());
            assert!(!s.create_tenant(&t).unwrap());
            s.insert_job(&JobRecord {
                id: "j1".into(),
                tenant: "a".into(),
                sql: "SELECT 1".into(),
                parallelism: 2,
                status: JobStatus::Running,
                error: None,
                from_savepoint: None,
                created_ms: 1,
                updated_ms: 1,
                settings: serde_json::json!({"parallelism": 2}),
            })
            .unwrap();
            s.append_audit(&AuditRecord {
                seq: 0,
                time_ms: 5,
                who: "k".into(),
                tenant: "a".into(),
                action: "job.submit".into(),
                target: "j1".into(),
                result: "ok".into(),
            })
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.tenant("a").unwrap().unwrap().quotas.max_jobs, Some(3));
        assert_eq!(s.jobs(Some("a")).unwrap().len(), 1);
        assert_eq!(s.jobs(Some("b")).unwrap().len(), 0);
        s.set_job_status("j1", JobStatus::Failed, Some("boom"), 9)
            .unwrap();
        let j = s.job("j1").unwrap().unwrap();
        assert_eq!(
            (j.status, j.error.as_deref()),
            (JobStatus::Failed, Some("boom"))
        );
        assert_eq!(j.settings["parallelism"], 2);
        assert_eq!(s.count_resume("j1").unwrap(), 1);
        assert_eq!(s.count_resume("j1").unwrap(), 2);
        s.clear_resumes("j1").unwrap();
        assert_eq!(s.count_resume("j1").unwrap(), 1);
        // Deleting a tenant removes what it owned but its audit records, and its id is
        // never handed out again.
        assert!(s.delete_tenant("a").unwrap());
        assert!(s.jobs(Some("a")).unwrap().is_empty());
        assert!(s.tenant_was_deleted("a").unwrap());
        assert!(!s.tenant_was_deleted("b").unwrap());
        assert!(!s.delete_tenant("a").unwrap());
        let audit = s.audit(None, 10).unwrap();
        assert_eq!(audit.len(), 1);
        let err = s.db().execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}
