//! Builds the dashboard (`dashboard/`, its own workspace) for wasm32-unknown-unknown in
//! release mode, runs wasm-bindgen on it (the library the `wasm-bindgen` CLI is made
//! of, pinned to the app's version), and embeds the page, its two scripts, its module
//! and its style sheet, each also gzip-compressed, as `ASSETS`. Nothing built is committed.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "../plugin/artifacts/nested_cargo.rs"]
mod nested_cargo;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let app = manifest
        .join("../../dashboard")
        .canonicalize()
        .expect("dashboard/");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let target = nested_cargo::target_dir("dashboard");
    build(&app, &target);
    let wasm = target.join("wasm32-unknown-unknown/release/fungi-dashboard-app.wasm");
    let site = out.join("site");
    std::fs::create_dir_all(&site).expect("create the site directory");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .expect("wasm-bindgen's web target")
        .typescript(false)
        .out_name("app")
        .generate(&site)
        .unwrap_or_else(|e| panic!("wasm-bindgen on {}: {e:#}", wasm.display()));
    // The glue's whole-line comments go: they are for its authors, and one links to a
    // remote page, which nothing served may name.
    let glue = site.join("app.js");
    let text = std::fs::read_to_string(&glue).expect("read app.js");
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    std::fs::write(&glue, kept.join("\n") + "\n").expect("write app.js");
    for file in ["index.html", "style.css", "boot.js"] {
        std::fs::copy(app.join(file), site.join(file))
            .unwrap_or_else(|e| panic!("copy dashboard/{file}: {e}"));
    }

    let mut assets =
        String::from("/// Every file of the dashboard.\npub static ASSETS: &[Asset] = &[\n");
    for (file, content_type) in [
        ("index.html", "text/html; charset=utf-8"),
        ("boot.js", "text/javascript; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("app_bg.wasm", "application/wasm"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let path = site.join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let gz = site.join(format!("{file}.gz"));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&bytes).expect("gzip");
        std::fs::write(&gz, encoder.finish().expect("gzip")).expect("write the gzip file");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        assets.push_str(&format!(
            "    Asset {{ path: \"/{file}\", content_type: {content_type:?}, etag: \"\\\"{:016x}\\\"\", \
             bytes: include_bytes!({:?}), gzip: include_bytes!({:?}) }},\n",
            hasher.finish(),
            path.display().to_string(),
            gz.display().to_string(),
        ));
    }
    assets.push_str("];\n");
    std::fs::write(out.join("assets.rs"), assets).expect("write assets.rs");
    for watched in [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "index.html",
        "style.css",
        "boot.js",
    ] {
        println!("cargo:rerun-if-changed={}", app.join(watched).display());
    }
}

/// `cargo build --release --target wasm32-unknown-unknown` in the dashboard's workspace.
fn build(app: &Path, target: &Path) {
    assert!(
        nested_cargo::build_release(app, "wasm32-unknown-unknown", target, &["--locked"]),
        "building the dashboard in {} for wasm32-unknown-unknown failed; if the target is \
         missing, install it with `rustup target add wasm32-unknown-unknown` (scripts/setup.sh \
         does)",
        app.display()
    );
}
