//! Fungi's server mode (`fungi server`): one process serving the REST API (`/api/v1`,
//! with an OpenAPI document generated from the code) over one service layer that
//! authenticates callers, checks their role and tenant, enforces quotas, writes the
//! audit log, and runs jobs in process under supervision (resumed from their latest
//! checkpoint, also after the server restarts), each tenant's on a runtime of its own,
//! apart from the API's (see `runtime`), or, with a cluster, on its TaskManagers
//! (see `service::cluster`). Metadata lives in SQLite, or in etcd where several servers
//! share it. The same calls are served over gRPC ([`grpc`]) when a gRPC address is
//! configured, both listeners over TLS when a certificate is; Prometheus metrics are at
//! `/metrics`.

mod confine;
mod dashboard;
pub mod grpc;
pub mod metrics;
pub mod rest;
mod runtime;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use confine::plan_scoped;
pub use service::{AuthConfig, ClusterBackend, Service, ServiceError};
pub use store::{EtcdStore, MetadataStore, SqliteStore};

/// Where the server keeps its state and where it listens.
#[derive(Debug)]
pub struct ServerConfig {
    /// Metadata (`metadata.db`) and job checkpoints (`jobs/<id>/checkpoints`).
    pub data_dir: PathBuf,
    /// The REST listener.
    pub listen: SocketAddr,
    /// The gRPC listener, if any.
    pub grpc_listen: Option<SocketAddr>,
    /// TLS for both listeners, if configured.
    pub tls: Option<TlsFiles>,
    /// Credentials accepted besides API keys.
    pub auth: AuthConfig,
    /// Start without resuming any job: running jobs become SUSPENDED (for a server that
    /// a job keeps taking down).
    pub safe_mode: bool,
    /// Where metadata lives.
    pub metadata: Metadata,
    /// The cluster jobs run on; in this process when `None`.
    pub cluster: Option<ClusterBackend>,
    /// More routes on the REST listener, made over the service (the MCP endpoint).
    pub routes: Option<Routes>,
}

/// Routes another crate serves on the REST listener, over the server's service.
pub struct Routes(pub Box<dyn FnOnce(Arc<Service>) -> axum::Router + Send>);

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routes")
    }
}

/// Where a server keeps its metadata.
#[derive(Debug, Clone, Default)]
pub enum Metadata {
    /// `metadata.db` (SQLite) in the data directory: one server.
    #[default]
    Sqlite,
    /// etcd, shared by every server in front of one cluster.
    Etcd {
        /// etcd's client URLs.
        endpoints: Vec<String>,
        /// Names the metadata in etcd (under `/fungi-server/<id>/`).
        cluster_id: String,
        /// TLS to etcd.
        tls: Option<fungi_cluster::ha::EtcdTls>,
    },
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory or the metadata store.
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// The service refused to start.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// The listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory.
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// The TLS certificate or key.
    #[error("TLS: {0}")]
    Tls(String),
    /// The gRPC server.
    #[error("gRPC: {0}")]
    Grpc(String),
}

/// Serves until `stop` completes: opens the metadata store, creates the first admin key
/// when there is none (printed once on stderr), resumes the jobs that were running, and
/// answers the REST API. When it stops, running jobs stop without changing status, so
/// they resume when the server starts again.
pub async fn serve(
    config: ServerConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServerError::DataDir(config.data_dir.clone(), e))?;
    let store: Arc<dyn MetadataStore> = match &config.metadata {
        Metadata::Sqlite => Arc::new(SqliteStore::open(&config.data_dir.join("metadata.db"))?),
        Metadata::Etcd {
            endpoints,
            cluster_id,
            tls,
        } => Arc::new(EtcdStore::open(endpoints, cluster_id, tls.as_ref())?),
    };
    let service = Service::with_cluster(
        store,
        config.data_dir.clone(),
        config.auth,
        config.cluster.clone(),
    );
    if let Some(key) = service.bootstrap()? {
        eprintln!(
            "created the first admin key (shown once; keep it): {key}\n\
             use it as FUNGI_API_KEY or 'Authorization: Bearer <key>'"
        );
    }
    let resumed = service.resume_jobs(config.safe_mode).await?;
    match (&config.cluster, resumed) {
        (_, 0) => {}
        (Some(_), n) => eprintln!("following {n} job(s) running on the cluster"),
        (None, n) => eprintln!("resumed {n} running job(s)"),
    }
    let tls = match &config.tls {
        Some(files) => Some(read_tls(files)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stopping = tokio_util::sync::CancellationToken::new();
    {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            stop.await;
            stopping.cancel();
        });
    }
    let grpc = match config.grpc_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            let mut builder = tonic::transport::Server::builder();
            if let Some((cert, key)) = &tls {
                builder = builder
                    .tls_config(
                        tonic::transport::ServerTlsConfig::new()
                            .identity(tonic::transport::Identity::from_pem(cert, key)),
                    )
                    .map_err(|e| ServerError::Tls(e.to_string()))?;
            }
            let routes = grpc::Grpc::new(service.clone()).routes();
            let stopping = stopping.clone();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            eprintln!("fungi server listening on {scheme}://{local} (gRPC fungi.v1)");
            Some(tokio::spawn(async move {
                builder
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(incoming, stopping.cancelled_owned())
                    .await
            }))
        }
        None => None,
    };
    tokio::spawn(service.clone().sample_history_until(stopping.clone()));
    let mut app = rest::router(service.clone());
    if let Some(Routes(routes)) = config.routes {
        app = app.merge(routes(service.clone()));
    }
    let app = app.into_make_service();
    let rest = match tls {
        Some((cert, key)) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                .await
                .map_err(|e| ServerError::Tls(e.to_string()))?;
            let listener = std::net::TcpListener::bind(config.listen)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
            let local = listener.local_addr().unwrap_or(config.listen);
            eprintln!("fungi server listening on https://{local} (REST /api/v1)");
            eprintln!("dashboard: https://{local}/");
            let handle = axum_server::Handle::new();
            {
                let (handle, stopping) = (handle.clone(), stopping.clone());
                tokio::spawn(async move {
                    stopping.cancelled().await;
                    handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                });
            }
            axum_server::from_tcp_rustls(listener, rustls)
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            let listener =
                tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|source| ServerError::Listen {
                        addr: config.listen,
                        source,
                    })?;
            let local = listener.local_addr().unwrap_or(config.listen);
            eprintln!("fungi server listening on http://{local} (REST /api/v1)");
            eprintln!("dashboard: http://{local}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(stopping.clone().cancelled_owned())
                .await
        }
    };
    rest.map_err(|source| ServerError::Listen {
        addr: config.listen,
        source,
    })?;
    stopping.cancel();
    if let Some(grpc) = grpc {
        match grpc.await {
            Ok(Err(e)) => return Err(ServerError::Grpc(e.to_string())),
            Err(e) => return Err(ServerError::Grpc(e.to_string())),
            Ok(Ok(())) => {}
        }
    }
    // Jobs end at their next batch; one that does not within the grace period is left
    // behind with its runtime, and ends with the process.
    let stopping_jobs = service.clone();
    tokio::task::spawn_blocking(move || stopping_jobs.shutdown(std::time::Duration::from_secs(5)))
        .await
        .map_err(|e| ServerError::Service(ServiceError::Internal(e.to_string())))?;
    Ok(())
}

/// Reads the certificate chain and key (PEM), and installs rustls' ring provider.
fn read_tls(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}
