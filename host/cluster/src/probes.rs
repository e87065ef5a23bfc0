//! Health and readiness probes, for supervisors such as Kubernetes: `/healthz` answers
//! while the process runs; `/readyz` only while it can do its job (a JobManager that
//! leads, a TaskManager registered with a leader), so that a Service routes to the
//! leader alone and a rollout waits for TaskManagers to join.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// A router with both probes; `ready` says whether the process is ready now.
pub(crate) fn router(ready: impl Fn() -> bool + Clone + Send + Sync + 'static) -> Router {
    Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// Serves `router` on `listener` until `shutdown`.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
}
