//! A `cargo` run from a build script for another target in a workspace of its own
//! (the Wasm guests, the dashboard), shared by the build scripts that need one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo build --release --target <target> --target-dir <target_dir> [extra]` in `dir`,
/// without the outer build's flags (they are for the host target); whether it succeeded.
pub(crate) fn build_release(dir: &Path, target: &str, target_dir: &Path, extra: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", target])
        .args(extra)
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// A target directory of the nested build's own, `<target>/<name>`, shared by all
/// profiles (building in the outer build's directory would wait on its lock forever).
pub(crate) fn target_dir(name: &str) -> PathBuf {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    out.ancestors()
        .nth(4)
        .map(|t| t.join(name))
        .unwrap_or_else(|| out.join(name))
}
