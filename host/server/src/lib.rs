//! Fungi's server mode (`fungi server`): one process serving the REST API (`/api/v1`,
//! with an OpenAPI document generated from the code) over one service layer that
//! authenticates callers, checks their role and tenant, enforces quotas, writes the
//! audit log, and runs jobs in process under supervision (resumed from their latest
//! checkpoint, also after the server restarts). Metadata lives in SQLite.

pub mod rest;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use service::{Service, ServiceError};
pub use store::{MetadataStore, SqliteStore};

/// Where the server keeps its state and where it listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Metadata (`metadata.db`) and job checkpoints (`jobs/<id>/checkpoints`).
    pub data_dir: PathBuf,
    /// The REST listener.
    pub listen: SocketAddr,
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
    let store = SqliteStore::open(&config.data_dir.join("metadata.db"))?;
    let service = Service::new(Arc::new(store), config.data_dir.clone());
    if let Some(key) = service.bootstrap()? {
        eprintln!(
            "created the first admin key (shown once; keep it): {key}\n\
             use it as FUNGI_API_KEY or 'Authorization: Bearer <key>'"
        );
    }
    let resumed = service.resume_jobs().await?;
    if resumed > 0 {
        eprintln!("resumed {resumed} running job(s)");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(config.listen);
    eprintln!("fungi server listening on http://{local} (REST /api/v1)");
    let app = rest::router(service.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
    service.shutdown();
    Ok(())
}
