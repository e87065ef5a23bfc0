//! Builds every guest in `plugins/` and `conformance/hostile/` to wasm32-wasip2 (release)
//! in this crate's own target directory, and writes a constant with the path of each
//! component, as wasmtime's test-programs do. Nothing is committed as a binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .join("../../..")
        .canonicalize()
        .expect("repository root");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    // A target directory of our own (building in the outer build's directory would wait
    // on its lock forever), shared by all profiles: `<target>/wasm-guests`.
    let target = out
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-guests"))
        .unwrap_or_else(|| out.join("wasm-guests"));
    let mut constants = String::new();
    for (workspace, prefix) in [("plugins", ""), ("conformance/hostile", "HOSTILE_")] {
        let dir = root.join(workspace);
        build(&dir, &target);
        for member in members(&dir) {
            let file = member.replace('-', "_");
            let wasm = target
                .join("wasm32-wasip2/release")
                .join(format!("{file}.wasm"));
            assert!(wasm.exists(), "{} was not built", wasm.display());
            constants.push_str(&format!(
                "/// The `{member}` component (`{workspace}/{member}`).\npub const {prefix}{}: &str = {:?};\n",
                file.to_uppercase(),
                wasm.display().to_string()
            ));
        }
    }
    std::fs::write(out.join("artifacts.rs"), constants).expect("write artifacts.rs");
    for watched in ["plugins", "conformance/hostile", "sdk-rust", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
}

/// `cargo build --release --target wasm32-wasip2` in the guest workspace `dir`.
fn build(dir: &Path, target: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target);
    // The outer build's flags are for the host target, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the guests");
    assert!(
        status.success(),
        "building the guests in {} failed",
        dir.display()
    );
}

/// The members of a guest workspace (from its `members = [...]`).
fn members(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).expect("guest workspace manifest");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("members = [...]");
    let list = &line[line.find('[').expect("[") + 1..line.rfind(']').expect("]")];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}
