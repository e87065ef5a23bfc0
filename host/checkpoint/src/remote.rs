//! Checkpoints in S3-compatible object storage, through `object_store`.
//!
//! The remote copy is the durable one; the local directory is where a checkpoint is
//! assembled (and where RocksDB keeps its working files) before it is uploaded. A
//! checkpoint exists remotely once its `_metadata` object is there: it is uploaded last,
//! after every file it lists, so a listing never sees a half-written checkpoint as
//! complete. Recovery on a machine that has none of the local files downloads the
//! checkpoint it restores from into the local directory first.
//!
//! `object_store` is asynchronous; checkpoint storage is called from blocking code (the
//! coordinator writes checkpoints on a blocking thread, the supervisor reads them before a
//! job starts), so every call runs on a small runtime of its own, driven from a scoped
//! thread so that it never nests inside the caller's runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{CheckpointError, Result};

/// Options of the `s3.*` family (Flink's names) and the object_store keys they set.
const S3_OPTIONS: &[(&str, &str)] = &[
    ("s3.endpoint", "aws_endpoint"),
    ("s3.access-key", "aws_access_key_id"),
    ("s3.secret-key", "aws_secret_access_key"),
    ("s3.region", "aws_region"),
];

/// The runtime every object storage call runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fungi-object-store")
            .enable_all()
            .build()
            .expect("the object storage runtime starts")
    })
}

/// Runs `f` to completion on the object storage runtime, from any thread.
fn block_on<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(f))
            .join()
            .expect("object storage call panicked")
    })
}

/// Whether `location` names object storage (`s3://bucket/prefix`) rather than a local
/// directory.
pub(crate) fn is_remote(location: &Path) -> bool {
    location
        .to_str()
        .is_some_and(|s| s.starts_with("s3://") || s.starts_with("s3a://"))
}

/// A job's checkpoint location in object storage.
#[derive(Debug)]
pub(crate) struct RemoteDir {
    store: Arc<dyn ObjectStore>,
    /// The key prefix under the bucket (`prefix/chk-7/...`).
    prefix: ObjectPath,
    /// The URL, for messages.
    url: String,
}

impl RemoteDir {
    /// Opens `url` (`s3://bucket/prefix`). Credentials, region and endpoint come from the
    /// `s3.*` options when given, else from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, ...), as for the AWS CLI.
    pub(crate) fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let bad = |reason: String| CheckpointError::Remote {
            location: url.to_string(),
            reason,
        };
        let url = url.replacen("s3a://", "s3://", 1);
        let parsed = url::Url::parse(&url).map_err(|e| bad(format!("not a URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no bucket: write s3://bucket/prefix".into()));
        }
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        for (key, value) in options {
            if key == "s3.path.style.access" {
                let path_style = value
                    .parse::<bool>()
                    .map_err(|_| bad(format!("{key} must be true or false, not '{value}'")))?;
                builder = builder.with_virtual_hosted_style_request(!path_style);
                continue;
            }
            let Some((_, s3_key)) = S3_OPTIONS.iter().find(|(k, _)| k == key) else {
                return Err(bad(format!(
                    "unknown option '{key}' (known: {}, s3.path.style.access)",
                    S3_OPTIONS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let config: AmazonS3ConfigKey = s3_key.parse().expect("a known object_store key");
            builder = builder.with_config(config, value);
            if key == "s3.endpoint" && value.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if std::env::var("AWS_ENDPOINT").is_ok_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        // Retries with exponential backoff (object_store's own); bounded so that an
        // unreachable store fails a checkpoint in seconds rather than minutes.
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 5,
            retry_timeout: std::time::Duration::from_secs(30),
        };
        let store = builder
            .with_retry(retry)
            .build()
            .map_err(|e| bad(format!("cannot open: {e}")))?;
        let prefix = ObjectPath::parse(parsed.path()).map_err(|e| bad(e.to_string()))?;
        Ok(RemoteDir {
            store: Arc::new(store),
            prefix,
            url: url.trim_end_matches('/').to_string(),
        })
    }

    /// The URL of a path relative to the job's location.
    pub(crate) fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn path(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn error(&self, rel: &str, e: object_store::Error) -> CheckpointError {
        CheckpointError::Remote {
            location: self.url_of(rel),
            reason: e.to_string(),
        }
    }

    /// Uploads the local file `from` as `rel`.
    pub(crate) fn put_file(&self, rel: &str, from: &Path) -> Result<()> {
        let bytes = std::fs::read(from).map_err(|e| CheckpointError::Io {
            path: from.display().to_string(),
            source: e,
        })?;
        self.put(rel, bytes)
    }

    /// Writes `bytes` as `rel` (one PUT: the object appears whole or not at all).
    pub(crate) fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(rel);
        block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.error(rel, e))
    }

    /// Reads `rel`; `None` when there is no such object.
    pub(crate) fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        let store = &self.store;
        match block_on(async move {
            let got = store.get(&path).await?;
            got.bytes().await
        }) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Downloads `rel` to the local file `to` (through a temporary file and a rename).
    /// `false` when there is no such object.
    pub(crate) fn get_file(&self, rel: &str, to: &Path) -> Result<bool> {
        let Some(bytes) = self.get(rel)? else {
            return Ok(false);
        };
        let io = |path: &Path, source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let tmp = to.with_extension("download");
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, to).map_err(|e| io(to, e))?;
        Ok(true)
    }

    /// The "directories" directly under `rel` (their names).
    pub(crate) fn dirs(&self, rel: &str) -> Result<Vec<String>> {
        let path = self.path(rel);
        let listed = block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| self.error(rel, e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(decode))
            .collect())
    }

    /// Every object under `rel`, recursively: (path relative to `rel`, last modified).
    pub(crate) fn files(&self, rel: &str) -> Result<Vec<(String, SystemTime)>> {
        let path = self.path(rel);
        let listed: Vec<_> = block_on(self.store.list(Some(&path)).try_collect::<Vec<_>>())
            .map_err(|e| self.error(rel, e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&path)?
                    .map(|p| decode(p.as_ref()))
                    .collect();
                Some((parts.join("/"), SystemTime::from(meta.last_modified)))
            })
            .collect())
    }

    /// Deletes the objects `rels` (missing ones are not an error).
    pub(crate) fn delete(&self, rels: &[String]) -> Result<()> {
        for rel in rels {
            let path = self.path(rel);
            match block_on(self.store.delete(&path)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(rel, e)),
            }
        }
        Ok(())
    }

    /// Uploads the local directory `from` (recursively) under `rel`; a top-level
    /// `_metadata` goes last, so that the copy is complete once it is there.
    pub(crate) fn put_dir(&self, rel: &str, from: &Path) -> Result<()> {
        let (metadata, rest): (Vec<_>, Vec<_>) = local_files(from)?
            .into_iter()
            .partition(|(sub, _)| sub == "_metadata");
        for (sub, path) in rest.into_iter().chain(metadata) {
            self.put_file(&format!("{rel}/{sub}"), &path)?;
        }
        Ok(())
    }

    /// Downloads everything under `rel` into the local directory `to`.
    pub(crate) fn get_dir(&self, rel: &str, to: &Path) -> Result<()> {
        for (sub, _) in self.files(rel)? {
            self.get_file(&format!("{rel}/{sub}"), &to.join(&sub))?;
        }
        Ok(())
    }
}

/// Object names are percent-encoded by `object_store` where S3 advises against a
/// character (`#` in `window#1.state`); listings give them back decoded.
fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// Every file under `dir`, recursively: (path relative to `dir` with `/`, full path).
pub(crate) fn local_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let read = std::fs::read_dir(&path).map_err(|e| CheckpointError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        for entry in read.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sub = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.path().is_dir() {
                stack.push((sub, entry.path()));
            } else {
                out.push((sub, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}
