//! Any bytes a plugin (or a peer host) may send: decoding them must return a result or an
//! error, never panic, never allocate past the limits.
#![no_main]

use fungi_common::untrusted_ipc::{IpcLimits, UntrustedIpcError, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = IpcLimits {
        max_bytes: 1 << 20,
        ..IpcLimits::default()
    };
    if let Err(UntrustedIpcError::Malformed(m)) = decode(data.to_vec(), &limits) {
        // The catch-all for a panic inside arrow-rs: a check is missing.
        assert_ne!(m, "the decoder refused the stream", "arrow-rs panicked");
    }
});
