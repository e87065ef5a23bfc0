//! Blocking calls from operators that run on a Tokio runtime.

/// Runs `call`, which may block (sleep between retries, wait for a socket, drive a
/// blocking HTTP client), where blocking is allowed: on a multi-threaded runtime inside
/// `block_in_place`; on a current-thread runtime on a scoped thread of its own; outside
/// any runtime, right here.
pub fn outside_async_runtime<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current() {
        Err(_) => call(),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(call)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}
