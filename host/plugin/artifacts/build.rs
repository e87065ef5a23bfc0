//! Builds every guest in `plugins/` and `conformance/hostile/` to wasm32-wasip2 (release)
//! in this crate's own target directory, and writes a constant with the path of each
//! component, as wasmtime's test-programs do. Nothing is committed as a binary.
//!
//! The Python plugins (`plugins/python/*.py`, `conformance/hostile/python/*.py`) are built
//! with the repository's SDK (`python -m fungi.build`, componentize-py) from the virtual
//! environment `scripts/test.sh` makes. Without it their constants name a path that
//! says why they are missing, so loading them fails with the reason while everything
//! else still builds.

use std::path::{Path, PathBuf};
use std::process::Command;

mod nested_cargo;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .join("../../..")
        .canonicalize()
        .expect("repository root");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let target = nested_cargo::target_dir("wasm-guests");
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
    for (dir, prefix) in [
        ("plugins/python", "PYTHON_"),
        ("conformance/hostile/python", "HOSTILE_PYTHON_"),
    ] {
        constants.push_str(&python_plugins(&root, &root.join(dir), &target, prefix));
    }
    std::fs::write(out.join("artifacts.rs"), constants).expect("write artifacts.rs");
    for watched in [
        "plugins",
        "conformance/hostile",
        "sdk-rust",
        "wit",
        "sdk-python/fungi",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for var in ["FUNGI_PYTHON_VENV", "VIRTUAL_ENV"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

/// The Python of the virtual environment the tests use (as `fungi-python` finds it:
/// `FUNGI_PYTHON_VENV`, `VIRTUAL_ENV`, `~/.cache/fungi/pyvenv`).
fn venv_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fungi/pyvenv"));
    std::env::var_os("FUNGI_PYTHON_VENV")
        .or_else(|| std::env::var_os("VIRTUAL_ENV"))
        .map(PathBuf::from)
        .or(home)
        .map(|venv| venv.join("bin/python"))
        .filter(|p| p.exists())
}

/// Builds each `*.py` of `dir` into `<target>/python/<name>.wasm`; returns the constants.
fn python_plugins(root: &Path, dir: &Path, target: &Path, prefix: &str) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "py"));
    files.sort();
    let out_dir = target.join("python");
    std::fs::create_dir_all(&out_dir).expect("create the Python plugins' directory");
    let python = venv_python();
    let mut constants = String::new();
    for file in files {
        let stem = file
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .to_string();
        let wasm = out_dir.join(format!("{stem}.wasm"));
        let built = match &python {
            None => Err("no virtual environment (run scripts/test.sh once)".to_string()),
            Some(python) => Command::new(python)
                .args(["-m", "fungi.build"])
                .arg(&file)
                .arg("-o")
                .arg(&wasm)
                .arg("--wit")
                .arg(root.join("wit"))
                .env("PYTHONPATH", root.join("sdk-python"))
                .output()
                .map_err(|e| format!("{} cannot run: {e}", python.display()))
                .and_then(|o| {
                    if o.status.success() {
                        Ok(())
                    } else {
                        Err(String::from_utf8_lossy(&o.stderr).trim().replace('\n', " "))
                    }
                }),
        };
        let path = match built {
            Ok(()) => wasm.display().to_string(),
            Err(why) => {
                println!(
                    "cargo:warning=Python plugin {} not built: {why}",
                    file.display()
                );
                format!("/python-plugin-not-built/{stem}.wasm ({why})")
            }
        };
        constants.push_str(&format!(
            "/// The Python plugin `{}` built into a component.\npub const {prefix}{}: &str = {path:?};\n",
            file.strip_prefix(root).unwrap_or(&file).display(),
            stem.to_uppercase()
        ));
    }
    constants
}

/// `cargo build --release --target wasm32-wasip2` in the guest workspace `dir`.
fn build(dir: &Path, target: &Path) {
    assert!(
        nested_cargo::build_release(dir, "wasm32-wasip2", target, &[]),
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
