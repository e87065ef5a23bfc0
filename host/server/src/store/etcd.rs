//! Metadata in etcd, shared by every server in front of one cluster: tenants, keys,
//! jobs, plugins and catalog functions are one JSON value per key, and the audit log
//! is a numbered key per record under a counter that every append moves by one in the
//! same transaction (so its sequence has no gaps and no two servers write the same
//! number). Records are small; etcd keeps them on a quorum of its members, so the
//! metadata survives the loss of any server and of a minority of etcd's members.
//!
//! Keys live under `/fungi-server/<cluster-id>/`, apart from the JobManagers' election
//! (`/fungi/<cluster-id>/`), behind a format marker: a store pointed at a prefix that
//! holds something else refuses to start.
//!
//! The [`MetadataStore`] trait is synchronous (the service calls it from async and
//! blocking code alike); each call runs on the store's own small runtime and the caller
//! waits where blocking is allowed ([`fungi_reliability::outside_async_runtime`]), as
//! it waits for SQLite's disk.

use std::time::Duration;

use fungi_cluster::ha::{Compare, Etcd, EtcdError, EtcdTls, KeyValue, Op};
use fungi_security::AuditRecord;
use fungi_tenancy::Tenant;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    FunctionRecord, JobRecord, JobStatus, KeyRecord, MetadataStore, PluginRecord, StoreError,
    StoreResult,
};

/// The marker of this layout.
const FORMAT: &str = "fungi-server-1";

/// How often a read-modify-write is tried again when another server changed the same
/// key in between.
const RETRIES: usize = 64;

/// How long one etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A key as stored: the record and its hash (which [`KeyRecord`] never serialises).
#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(flatten)]
    record: KeyRecord,
    hash: String,
}

/// A job as stored: the record and its starts since it last got somewhere.
#[derive(Serialize, Deserialize)]
struct StoredJob {
    #[serde(flatten)]
    record: JobRecord,
    #[serde(default)]
    resumes: u32,
}

/// Metadata in etcd (see the module doc).
pub struct EtcdStore {
    etcd: Etcd,
    prefix: String,
    /// Taken out only when the store is dropped (see [`Drop`]).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // A runtime may not be dropped where blocking is not allowed (the store may go
        // with the last service handle on an async thread): let it wind down apart.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn etcd_error(e: EtcdError) -> StoreError {
    StoreError(e.to_string())
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> StoreResult<T> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| StoreError(format!("{} holds no valid record: {e}", kv.key)))
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError(e.to_string()))
}

fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put {
        key,
        value,
        lease: 0,
    }
}

impl EtcdStore {
    /// Opens the metadata of cluster `cluster_id` in the etcd at `endpoints`: checks
    /// that etcd answers and that the prefix holds this store's data (or nothing yet).
    pub fn open(
        endpoints: &[String],
        cluster_id: &str,
        tls: Option<&EtcdTls>,
    ) -> StoreResult<EtcdStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fungi-metadata")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("cannot start the etcd client: {e}")))?;
        let etcd = {
            let _entered = runtime.enter();
            Etcd::new(endpoints, CALL_TIMEOUT, tls).map_err(etcd_error)?
        };
        let store = EtcdStore {
            etcd,
            prefix: format!("/fungi-server/{cluster_id}/"),
            runtime: Some(runtime),
        };
        store.claim()?;
        Ok(store)
    }

    /// Runs `call` on the store's runtime and waits for it.
    fn run<T: Send>(
        &self,
        call: impl std::future::Future<Output = StoreResult<T>> + Send,
    ) -> StoreResult<T> {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        fungi_reliability::outside_async_runtime(|| runtime.block_on(call))
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// Checks the format marker, writing it on an empty prefix.
    fn claim(&self) -> StoreResult<()> {
        let marker_key = self.at("format");
        self.run(async {
            let mut marker = self.etcd.get(&marker_key).await.map_err(etcd_error)?;
            if marker.is_none() {
                let other = self
                    .etcd
                    .range_prefix(&self.prefix, 1)
                    .await
                    .map_err(etcd_error)?;
                if let Some(kv) = other.first() {
                    return Err(StoreError(format!(
                        "etcd's {} holds {} and no format marker: it is not Fungi's metadata; \
                         give the server another --metadata-cluster-id",
                        self.prefix, kv.key
                    )));
                }
                self.etcd
                    .txn(
                        &[Compare::Created(marker_key.clone(), 0)],
                        &[put(marker_key.clone(), FORMAT.as_bytes().to_vec())],
                    )
                    .await
                    .map_err(etcd_error)?;
                marker = self.etcd.get(&marker_key).await.map_err(etcd_error)?;
            }
            match marker {
                Some(m) if m.value == FORMAT.as_bytes() => Ok(()),
                Some(m) => Err(StoreError(format!(
                    "etcd's {} holds metadata of format '{}', not {FORMAT}",
                    self.prefix,
                    String::from_utf8_lossy(&m.value)
                ))),
                None => Err(StoreError(format!(
                    "etcd lost the format marker {marker_key} just written"
                ))),
            }
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> StoreResult<Option<T>> {
        let key = self.at(path);
        self.run(async { self.etcd.get(&key).await.map_err(etcd_error) })?
            .map(|kv| decode(&kv))
            .transpose()
    }

    fn list<T: DeserializeOwned>(&self, path: &str) -> StoreResult<Vec<T>> {
        let prefix = self.at(path);
        self.run(async { self.etcd.range_prefix(&prefix, 0).await.map_err(etcd_error) })?
            .iter()
            .map(decode)
            .collect()
    }

    /// Writes `value` at `path` if nothing is there; false if something is.
    fn create<T: Serialize>(&self, path: &str, value: &T) -> StoreResult<bool> {
        let key = self.at(path);
        let value = encode(value)?;
        self.run(async {
            self.etcd
                .txn(
                    &[Compare::Created(key.clone(), 0)],
                    &[put(key.clone(), value)],
                )
                .await
                .map_err(etcd_error)
        })
        .map(|r| r.succeeded)
    }

    /// Writes `value` at `path`, whatever is there.
    fn replace<T: Serialize>(&self, path: &str, value: &T) -> StoreResult<()> {
        let key = self.at(path);
        let value = encode(value)?;
        self.run(async {
            self.etcd
                .txn(&[], &[put(key.clone(), value)])
                .await
                .map_err(etcd_error)
        })
        .map(|_| ())
    }

    /// Deletes `path`; false if it was not there.
    fn delete(&self, path: &str) -> StoreResult<bool> {
        let key = self.at(path);
        self.run(async {
            let Some(kv) = self.etcd.get(&key).await.map_err(etcd_error)? else {
                return Ok(false);
            };
            self.etcd
                .txn(
                    &[Compare::Modified(key.clone(), kv.mod_revision)],
                    &[Op::Delete(key.clone())],
                )
                .await
                .map_err(etcd_error)
                .map(|r| r.succeeded)
        })
    }

    /// Changes the record at `path` with `change` (which returns what to give back),
    /// again on a fresh copy when another server changed it in between. `None` when
    /// there is no record.
    fn update<T, R>(
        &self,
        path: &str,
        mut change: impl FnMut(&mut T) -> R,
    ) -> StoreResult<Option<R>>
    where
        T: Serialize + DeserializeOwned,
        R: Send,
    {
        let key = self.at(path);
        for _ in 0..RETRIES {
            let Some(kv) = self.run(async { self.etcd.get(&key).await.map_err(etcd_error) })?
            else {
                return Ok(None);
            };
            let mut value: T = decode(&kv)?;
            let out = change(&mut value);
            let bytes = encode(&value)?;
            let done = self.run(async {
                self.etcd
                    .txn(
                        &[Compare::Modified(key.clone(), kv.mod_revision)],
                        &[put(key.clone(), bytes)],
                    )
                    .await
                    .map_err(etcd_error)
            })?;
            if done.succeeded {
                return Ok(Some(out));
            }
        }
        Err(StoreError(format!(
            "{key} changed {RETRIES} times while being updated"
        )))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The audit key of record `seq`: zero-padded, so that keys sort as numbers.
fn audit_path(seq: i64) -> String {
    format!("audit/{seq:020}")
}

impl MetadataStore for EtcdStore {
    fn create_tenant(&self, tenant: &Tenant) -> StoreResult<bool> {
        self.create(&format!("tenants/{}", tenant.id), tenant)
    }

    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.get(&format!("tenants/{id}"))
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.list("tenants/")
    }

    fn update_tenant(&self, tenant: &Tenant) -> StoreResult<bool> {
        Ok(self
            .update(&format!("tenants/{}", tenant.id), |t: &mut Tenant| {
                *t = tenant.clone();
            })?
            .is_some())
    }

    fn delete_tenant(&self, id: &str) -> StoreResult<bool> {
        let tenant_key = self.at(&format!("tenants/{id}"));
        let keys: Vec<StoredKey> = self.list("keys/")?;
        let jobs: Vec<StoredJob> = self.list("jobs/")?;
        let mut ops: Vec<Op> = keys
            .iter()
            .filter(|k| k.record.tenant == id)
            .map(|k| Op::Delete(self.at(&format!("keys/{}", k.record.id))))
            .chain(
                jobs.iter()
                    .filter(|j| j.record.tenant == id)
                    .map(|j| Op::Delete(self.at(&format!("jobs/{}", j.record.id)))),
            )
            .collect();
        ops.push(Op::DeletePrefix(self.at(&format!("functions/{id}/"))));
        ops.push(Op::DeletePrefix(self.at(&format!("plugins/{id}/"))));
        ops.push(Op::Delete(tenant_key.clone()));
        ops.push(put(
            self.at(&format!("deleted-tenants/{id}")),
            now_ms().to_string().into_bytes(),
        ));
        self.run(async {
            let Some(kv) = self.etcd.get(&tenant_key).await.map_err(etcd_error)? else {
                return Ok(false);
            };
            self.etcd
                .txn(
                    &[Compare::Modified(tenant_key.clone(), kv.mod_revision)],
                    &ops,
                )
                .await
                .map_err(etcd_error)
                .map(|r| r.succeeded)
        })
    }

    fn tenant_was_deleted(&self, id: &str) -> StoreResult<bool> {
        let key = self.at(&format!("deleted-tenants/{id}"));
        Ok(self
            .run(async { self.etcd.get(&key).await.map_err(etcd_error) })?
            .is_some())
    }

    fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        let stored = StoredKey {
            record: key.clone(),
            hash: key.hash.clone(),
        };
        if !self.create(&format!("keys/{}", key.id), &stored)? {
            return Err(StoreError(format!("key '{}' exists", key.id)));
        }
        Ok(())
    }

    fn key(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        Ok(self
            .get::<StoredKey>(&format!("keys/{id}"))?
            .map(|k| KeyRecord {
                hash: k.hash,
                ..k.record
            }))
    }

    fn keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRecord>> {
        let mut keys: Vec<KeyRecord> = self
            .list::<StoredKey>("keys/")?
            .into_iter()
            .filter(|k| tenant.is_none_or(|t| k.record.tenant == t))
            .map(|k| KeyRecord {
                hash: k.hash,
                ..k.record
            })
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    fn revoke_key(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .update(&format!("keys/{id}"), |k: &mut StoredKey| {
                k.record.revoked = true;
            })?
            .is_some())
    }

    fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        let stored = StoredJob {
            record: job.clone(),
            resumes: 0,
        };
        if !self.create(&format!("jobs/{}", job.id), &stored)? {
            return Err(StoreError(format!("job '{}' exists", job.id)));
        }
        Ok(())
    }

    fn set_job_status(
        &self,
        id: &str,
        status: JobStatus,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.update(&format!("jobs/{id}"), |j: &mut StoredJob| {
            j.record.status = status;
            j.record.error = error.map(str::to_string);
            j.record.updated_ms = now_ms;
        })?;
        Ok(())
    }

    fn count_resume(&self, id: &str) -> StoreResult<u32> {
        Ok(self
            .update(&format!("jobs/{id}"), |j: &mut StoredJob| {
                j.resumes += 1;
                j.resumes
            })?
            .unwrap_or(0))
    }

    fn clear_resumes(&self, id: &str) -> StoreResult<()> {
        self.update(&format!("jobs/{id}"), |j: &mut StoredJob| j.resumes = 0)?;
        Ok(())
    }

    fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        Ok(self
            .get::<StoredJob>(&format!("jobs/{id}"))?
            .map(|j| j.record))
    }

    fn jobs(&self, tenant: Option<&str>) -> StoreResult<Vec<JobRecord>> {
        let mut jobs: Vec<JobRecord> = self
            .list::<StoredJob>("jobs/")?
            .into_iter()
            .map(|j| j.record)
            .filter(|j| tenant.is_none_or(|t| j.tenant == t))
            .collect();
        jobs.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(jobs)
    }

    fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<()> {
        self.replace(
            &format!("plugins/{}/{}", plugin.tenant, plugin.name),
            plugin,
        )
    }

    fn plugin(&self, tenant: &str, name: &str) -> StoreResult<Option<PluginRecord>> {
        self.get(&format!("plugins/{tenant}/{name}"))
    }

    fn plugins(&self, tenant: &str) -> StoreResult<Vec<PluginRecord>> {
        self.list(&format!("plugins/{tenant}/"))
    }

    fn delete_plugin(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        self.delete(&format!("plugins/{tenant}/{name}"))
    }

    fn put_function(&self, function: &FunctionRecord) -> StoreResult<()> {
        self.replace(
            &format!("functions/{}/{}", function.tenant, function.name),
            function,
        )
    }

    fn functions(&self, tenant: &str) -> StoreResult<Vec<FunctionRecord>> {
        self.list(&format!("functions/{tenant}/"))
    }

    fn delete_function(&self, tenant: &str, name: &str) -> StoreResult<bool> {
        self.delete(&format!("functions/{tenant}/{name}"))
    }

    fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let counter = self.at("audit-seq");
        self.run(async {
            for _ in 0..RETRIES {
                let current = self.etcd.get(&counter).await.map_err(etcd_error)?;
                let (last, revision) = match &current {
                    Some(kv) => (
                        String::from_utf8_lossy(&kv.value)
                            .parse::<i64>()
                            .map_err(|e| {
                                StoreError(format!("{counter} holds no sequence number: {e}"))
                            })?,
                        kv.mod_revision,
                    ),
                    None => (0, 0),
                };
                let seq = last + 1;
                let record = AuditRecord {
                    seq,
                    ..record.clone()
                };
                let entry = self.at(&audit_path(seq));
                let done = self
                    .etcd
                    .txn(
                        &[
                            Compare::Modified(counter.clone(), revision),
                            Compare::Created(entry.clone(), 0),
                        ],
                        &[
                            put(counter.clone(), seq.to_string().into_bytes()),
                            put(entry, encode(&record)?),
                        ],
                    )
                    .await
                    .map_err(etcd_error)?;
                if done.succeeded {
                    return Ok(());
                }
            }
            Err(StoreError(format!(
                "the audit log moved {RETRIES} times while appending"
            )))
        })
    }

    fn audit(&self, tenant: Option<&str>, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let prefix = self.at("audit/");
        let limit = limit as usize;
        let mut out: Vec<AuditRecord> = Vec::new();
        let mut before: Option<String> = None;
        // Newest first, a page at a time, until `limit` records of the tenant are found.
        while out.len() < limit {
            let page = self.run(async {
                self.etcd
                    .range_prefix_back(&prefix, before.as_deref(), 512)
                    .await
                    .map_err(etcd_error)
            })?;
            let Some(last) = page.last() else { break };
            before = Some(last.key.clone());
            for kv in &page {
                let record: AuditRecord = decode(kv)?;
                if tenant.is_none_or(|t| record.tenant == t) && out.len() < limit {
                    out.push(record);
                }
            }
            if page.len() < 512 {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use fungi_tenancy::Quotas;

    use super::*;

    fn job(id: &str, tenant: &str, created_ms: i64) -> JobRecord {
        JobRecord {
            id: id.into(),
            tenant: tenant.into(),
            sql: "INSERT INTO o SELECT 1".into(),
            parallelism: 2,
            status: JobStatus::Running,
            error: None,
            from_savepoint: None,
            created_ms,
            updated_ms: created_ms,
            settings: serde_json::json!({"parallelism": 2}),
        }
    }

    fn audit(tenant: &str, n: i64) -> AuditRecord {
        AuditRecord {
            seq: 0,
            time_ms: n,
            who: "k".into(),
            tenant: tenant.into(),
            action: "job.submit".into(),
            target: format!("j{n}"),
            result: "ok".into(),
        }
    }

    #[test]
    fn two_servers_share_one_metadata_store_in_etcd() {
        let etcd = fungi_testkit::EtcdServer::start();
        let endpoints = [etcd.endpoint.clone()];
        let a = EtcdStore::open(&endpoints, "c1", None).unwrap();
        let b = EtcdStore::open(&endpoints, "c1", None).unwrap();
        let tenant = Tenant {
            id: "acme".into(),
            quotas: Quotas {
                max_jobs: Some(3),
                ..Default::default()
            },
            trust: Default::default(),
        };
        assert!(a.create_tenant(&tenant).unwrap());
        assert!(!b.create_tenant(&tenant).unwrap(), "created twice");
        assert_eq!(b.tenant("acme").unwrap().unwrap().quotas.max_jobs, Some(3));
        let key = KeyRecord {
            id: "k1".into(),
            tenant: "acme".into(),
            role: fungi_security::Role::Developer,
            name: "ci".into(),
            created_ms: 1,
            revoked: false,
            hash: "$argon2id$secret-hash".into(),
        };
        a.insert_key(&key).unwrap();
        assert!(b.insert_key(&key).is_err(), "a key id is never reused");
        assert_eq!(b.key("k1").unwrap().unwrap(), key, "the hash is kept");
        assert!(b.revoke_key("k1").unwrap());
        assert!(a.key("k1").unwrap().unwrap().revoked);
        // Jobs: oldest first, per tenant, status and start counts shared.
        a.insert_job(&job("j2", "acme", 20)).unwrap();
        b.insert_job(&job("j1", "acme", 10)).unwrap();
        b.insert_job(&job("x", "other", 5)).unwrap();
        let ids: Vec<String> = a
            .jobs(Some("acme"))
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, ["j1", "j2"]);
        assert_eq!(a.jobs(None).unwrap().len(), 3);
        b.set_job_status("j1", JobStatus::Failed, Some("boom"), 9)
            .unwrap();
        let j = a.job("j1").unwrap().unwrap();
        assert_eq!(
            (j.status, j.error.as_deref(), j.updated_ms),
            (JobStatus::Failed, Some("boom"), 9)
        );
        assert_eq!(a.count_resume("j2").unwrap(), 1);
        assert_eq!(b.count_resume("j2").unwrap(), 2);
        a.clear_resumes("j2").unwrap();
        assert_eq!(b.count_resume("j2").unwrap(), 1);
        // Plugins and functions.
        let plugin = PluginRecord {
            tenant: "acme".into(),
            name: "geo".into(),
            digest: "blake3:00".into(),
            bytes: 3,
            kind: "scalar".into(),
            details: serde_json::json!({}),
            created_ms: 1,
        };
        a.put_plugin(&plugin).unwrap();
        assert_eq!(b.plugins("acme").unwrap(), [plugin]);
        let function = FunctionRecord {
            tenant: "acme".into(),
            name: "f".into(),
            language: "wasm".into(),
            statement: "CREATE FUNCTION f ...".into(),
            created_ms: 1,
        };
        b.put_function(&function).unwrap();
        assert_eq!(a.functions("acme").unwrap(), [function]);
        assert!(a.delete_function("acme", "f").unwrap());
        assert!(!b.delete_function("acme", "f").unwrap());
        // The audit log: two servers appending at once get one gap-free sequence.
        std::thread::scope(|s| {
            for store in [&a, &b] {
                s.spawn(move || {
                    for n in 0..20 {
                        store
                            .append_audit(&audit(if n % 2 == 0 { "acme" } else { "other" }, n))
                            .unwrap();
                    }
                });
            }
        });
        let log = a.audit(None, 100).unwrap();
        let seqs: Vec<i64> = log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        let newest = b.audit(Some("acme"), 5).unwrap();
        assert_eq!(newest.len(), 5);
        assert!(newest.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(newest.iter().all(|r| r.tenant == "acme"));
        assert_eq!(
            newest.last().unwrap().seq,
            log.iter().rfind(|r| r.tenant == "acme").unwrap().seq
        );
        // Deleting a tenant removes what it owned but its audit records.
        assert!(b.delete_tenant("acme").unwrap());
        assert!(a.tenant("acme").unwrap().is_none());
        assert!(a.jobs(Some("acme")).unwrap().is_empty());
        assert_eq!(a.jobs(None).unwrap().len(), 1);
        assert!(a.plugins("acme").unwrap().is_empty());
        assert!(a.key("k1").unwrap().is_none());
        assert!(a.tenant_was_deleted("acme").unwrap());
        assert!(!a.tenant_was_deleted("other").unwrap());
        assert!(!a.delete_tenant("acme").unwrap());
        assert_eq!(a.audit(None, 100).unwrap().len(), 40);
        // Another cluster's metadata is apart.
        let c = EtcdStore::open(&endpoints, "c2", None).unwrap();
        assert!(c.jobs(None).unwrap().is_empty());
        assert!(c.audit(None, 10).unwrap().is_empty());
        // Used from async code as well.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let found = runtime.block_on(async { a.job("x").unwrap() });
        assert!(found.is_some());
        drop(runtime);
    }

    #[test]
    fn a_prefix_holding_something_else_or_no_etcd_is_refused_with_the_reason() {
        let etcd = fungi_testkit::EtcdServer::start();
        let endpoints = [etcd.endpoint.clone()];
        let raw = Etcd::new(&endpoints, CALL_TIMEOUT, None).unwrap();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(raw.txn(&[], &[put("/fungi-server/busy/x".into(), b"1".to_vec())]))
            .unwrap();
        let err = EtcdStore::open(&endpoints, "busy", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not Fungi's metadata"), "{err}");
        drop(etcd);
        let err = EtcdStore::open(&endpoints, "c1", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("etcd is unreachable"), "{err}");
    }
}
