//! Where a server's jobs and their planning run: never on the runtime that answers the
//! API.
//!
//! - Each tenant's jobs run on a Tokio runtime of the tenant's own ([`JobRuntimes`]),
//!   with as many worker threads as the machine has cores. The operating system shares
//!   the cores between the API's threads and every tenant's threads, so a tenant whose
//!   job spins at its full quota slows its own jobs, while the API (and with it cancel
//!   and shutdown) keeps answering, and other tenants keep their share.
//! - A script is planned on a thread of its own ([`plan_apart`]) with a large, known
//!   stack and a time limit, one planning at a time per tenant: a script whose
//!   expressions nest deeply is refused or planned there, and never overflows the
//!   stack of a thread the API needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// The stack of a planning thread. DataFusion's passes and Fungi's planner recurse over
/// expressions; pages are only committed as a plan uses them.
pub(crate) const PLANNING_STACK: usize = 256 << 20;

/// The stack of a job runtime's worker threads (Tokio's default is 2 MiB): operators
/// evaluate expressions recursively.
const JOB_THREAD_STACK: usize = 16 << 20;

/// How long one planning may take before the call gives up on it.
pub(crate) const PLANNING_TIMEOUT: Duration = Duration::from_secs(60);

/// One Tokio runtime per tenant for its jobs.
pub(crate) struct JobRuntimes {
    runtimes: Mutex<HashMap<String, Runtime>>,
    /// One planning at a time per tenant.
    planning: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    threads: usize,
}

impl JobRuntimes {
    /// Runtimes of `threads` worker threads each.
    pub(crate) fn new(threads: usize) -> Self {
        JobRuntimes {
            runtimes: Mutex::new(HashMap::new()),
            planning: Mutex::new(HashMap::new()),
            threads: threads.max(1),
        }
    }

    /// The runtime of `tenant`'s jobs (started on first use).
    pub(crate) fn handle(&self, tenant: &str) -> std::io::Result<Handle> {
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = runtimes.get(tenant) {
            return Ok(r.handle().clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .thread_name(format!("fungi-job-{tenant}"))
            .thread_stack_size(JOB_THREAD_STACK)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        runtimes.insert(tenant.to_string(), runtime);
        Ok(handle)
    }

    /// Stops `tenant`'s runtime (its jobs are gone), without waiting for it.
    pub(crate) fn remove(&self, tenant: &str) {
        let runtime = self
            .runtimes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
        if let Some(r) = runtime {
            r.shutdown_background();
        }
        self.planning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }

    /// Stops every runtime without waiting for what it still runs (the caller gave the
    /// jobs their grace period already).
    pub(crate) fn shutdown(&self) {
        let runtimes: Vec<Runtime> = self
            .runtimes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in runtimes {
            r.shutdown_background();
        }
    }

    /// The planning permit of `tenant`.
    fn planning_permit(&self, tenant: &str) -> Arc<tokio::sync::Semaphore> {
        self.planning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
            .clone()
    }
}

/// Why planning apart did not produce a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanningError {
    /// It took longer than [`PLANNING_TIMEOUT`].
    #[error("planning the script took longer than {}s", PLANNING_TIMEOUT.as_secs())]
    TimedOut,
    /// The planning thread could not start or did not return.
    #[error("the planning thread failed: {0}")]
    Thread(String),
}

/// Runs `plan` (an async planning) on a thread of its own with a [`PLANNING_STACK`]
/// stack and a current-thread runtime, one at a time per tenant, and waits for it at
/// most [`PLANNING_TIMEOUT`]. A planning that runs over keeps its thread (and the
/// tenant's permit) until it ends; the caller gets [`PlanningError::TimedOut`].
pub(crate) async fn plan_apart<T, F, Fut>(
    runtimes: &JobRuntimes,
    tenant: &str,
    plan: F,
) -> Result<T, PlanningError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let semaphore = runtimes.planning_permit(tenant);
    let work = async move {
        let permit = semaphore
            .acquire_owned()
            .await
            .map_err(|e| PlanningError::Thread(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("fungi-plan".into())
            .stack_size(PLANNING_STACK)
            .spawn(move || {
                let _permit = permit;
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(plan()));
                let _ = tx.send(result);
            })
            .map_err(|e| PlanningError::Thread(e.to_string()))?;
        rx.await
            .map_err(|_| PlanningError::Thread("it ended without a result".into()))?
            .map_err(|e| PlanningError::Thread(e.to_string()))
    };
    tokio::time::timeout(PLANNING_TIMEOUT, work)
        .await
        .map_err(|_| PlanningError::TimedOut)?
}
