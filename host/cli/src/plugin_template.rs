//! `fungi plugin new`: a plugin crate from a template, with a copy of the Rust SDK and
//! the contract in `vendor/`, so the crate builds anywhere (moved, copied to another
//! machine) without the Fungi repository. The copy is the SDK this binary was built
//! with, so the plugin speaks the host's contract.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::plugin::{Kind, NewArgs};

/// The SDK's sources and the contract, by path in the Fungi repository (which is also
/// their path under a new plugin's `vendor/`).
const SDK: [(&str, &str); 22] = [
    (
        "sdk-rust/Cargo.lock",
        include_str!("../../../sdk-rust/Cargo.lock"),
    ),
    (
        "sdk-rust/Cargo.toml",
        include_str!("../../../sdk-rust/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/aggregate/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/aggregate/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/aggregate/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/aggregate/src/lib.rs"),
    ),
    (
        "sdk-rust/bindings/host/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/host/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/host/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/host/src/lib.rs"),
    ),
    (
        "sdk-rust/bindings/scalar/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/scalar/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/scalar/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/scalar/src/lib.rs"),
    ),
    (
        "sdk-rust/bindings/sink/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/sink/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/sink/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/sink/src/lib.rs"),
    ),
    (
        "sdk-rust/bindings/source/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/source/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/source/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/source/src/lib.rs"),
    ),
    (
        "sdk-rust/bindings/table/Cargo.toml",
        include_str!("../../../sdk-rust/bindings/table/Cargo.toml"),
    ),
    (
        "sdk-rust/bindings/table/src/lib.rs",
        include_str!("../../../sdk-rust/bindings/table/src/lib.rs"),
    ),
    (
        "sdk-rust/macros/Cargo.toml",
        include_str!("../../../sdk-rust/macros/Cargo.toml"),
    ),
    (
        "sdk-rust/macros/src/lib.rs",
        include_str!("../../../sdk-rust/macros/src/lib.rs"),
    ),
    (
        "sdk-rust/src/adapters.rs",
        include_str!("../../../sdk-rust/src/adapters.rs"),
    ),
    (
        "sdk-rust/src/connectors.rs",
        include_str!("../../../sdk-rust/src/connectors.rs"),
    ),
    (
        "sdk-rust/src/host.rs",
        include_str!("../../../sdk-rust/src/host.rs"),
    ),
    (
        "sdk-rust/src/lib.rs",
        include_str!("../../../sdk-rust/src/lib.rs"),
    ),
    (
        "sdk-rust/src/udf.rs",
        include_str!("../../../sdk-rust/src/udf.rs"),
    ),
    ("wit/plugin.wit", include_str!("../../../wit/plugin.wit")),
];

/// Creates the plugin crate `args.path`.
pub(crate) fn new(args: &NewArgs) -> Result<()> {
    if args.path.exists() {
        bail!("{} already exists", args.path.display());
    }
    let name = args
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the plugin path needs a directory name")?
        .to_string();
    let sdk = match &args.sdk {
        Some(sdk) => sdk
            .canonicalize()
            .with_context(|| format!("the Fungi SDK is not at {}", sdk.display()))?
            .display()
            .to_string(),
        None => {
            vendor(&args.path)?;
            "vendor/sdk-rust".to_string()
        }
    };
    std::fs::create_dir_all(args.path.join("src"))?;
    std::fs::write(args.path.join("Cargo.toml"), manifest(&name, &sdk))?;
    let lib = match args.kind {
        Kind::Scalar => format!(
            r#"//! {name}: scalar functions for Fungi.

/// Adds one. NULL in, NULL out (the macro handles it).
#[fungi_sdk::udf]
fn plus_one(x: i64) -> i64 {{
    x + 1
}}

fungi_sdk::scalar_plugin! {{
    name: "{name}",
    description: "my scalar functions",
    functions: [plus_one],
}}
"#
        ),
        Kind::Aggregate => format!(
            r#"//! {name}: an aggregate for Fungi.

use std::sync::Arc;

use fungi_sdk::arrow_array::cast::AsArray;
use fungi_sdk::arrow_array::types::Int64Type;
use fungi_sdk::arrow_array::{{Array, ArrayRef, Int64Array}};
use fungi_sdk::arrow_schema::DataType;
use fungi_sdk::{{Accumulator, AggregateFunction, Error}};

/// The sum of BIGINT values, per group.
struct MySum;

impl AggregateFunction for MySum {{
    fn name(&self) -> &str {{
        "my_sum"
    }}
    fn arguments(&self) -> Vec<DataType> {{
        vec![DataType::Int64]
    }}
    fn returns(&self) -> DataType {{
        DataType::Int64
    }}
    fn retractable(&self) -> bool {{
        true
    }}
    fn accumulator(&self, _config: &[(String, String)]) -> Result<Box<dyn Accumulator>, Error> {{
        Ok(Box::new(Sums(Vec::new())))
    }}
}}

struct Sums(Vec<i64>);

impl Sums {{
    fn add(&mut self, args: &[ArrayRef], groups: &[u32], total: usize, sign: i64) -> Result<(), Error> {{
        self.0.resize(self.0.len().max(total), 0);
        let v = args[0]
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::InvalidInput("expected BIGINT".into()))?;
        for (i, &g) in groups.iter().enumerate() {{
            if v.is_valid(i) {{
                self.0[g as usize] += sign * v.value(i);
            }}
        }}
        Ok(())
    }}
}}

impl Accumulator for Sums {{
    fn update(&mut self, args: &[ArrayRef], groups: &[u32], total: usize) -> Result<(), Error> {{
        self.add(args, groups, total, 1)
    }}
    fn retract(&mut self, args: &[ArrayRef], groups: &[u32], total: usize) -> Result<(), Error> {{
        self.add(args, groups, total, -1)
    }}
    fn merge(&mut self, dst_src: &[(u32, u32)], total: usize) -> Result<(), Error> {{
        self.0.resize(self.0.len().max(total), 0);
        for &(d, s) in dst_src {{
            self.0[d as usize] += self.0[s as usize];
        }}
        Ok(())
    }}
    fn evaluate(&mut self, groups: &[u32]) -> Result<ArrayRef, Error> {{
        Ok(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|&g| self.0.get(g as usize).copied().unwrap_or(0)),
        )))
    }}
    fn reset(&mut self, groups: &[u32]) {{
        for &g in groups {{
            if let Some(v) = self.0.get_mut(g as usize) {{
                *v = 0;
            }}
        }}
    }}
    fn snapshot(&self, groups: &[u32]) -> Result<Vec<Vec<u8>>, Error> {{
        Ok(groups
            .iter()
            .map(|&g| self.0.get(g as usize).copied().unwrap_or(0).to_le_bytes().to_vec())
            .collect())
    }}
    fn restore(&mut self, groups: &[u32], states: &[Vec<u8>]) -> Result<(), Error> {{
        for (&g, s) in groups.iter().zip(states) {{
            let bytes: [u8; 8] = s.as_slice().try_into().map_err(|_| Error::InvalidInput("bad state".into()))?;
            self.0.resize(self.0.len().max(g as usize + 1), 0);
            self.0[g as usize] = i64::from_le_bytes(bytes);
        }}
        Ok(())
    }}
}}

fungi_sdk::aggregate_plugin! {{
    name: "{name}",
    description: "my aggregate",
    functions: [MySum],
}}
"#
        ),
    };
    std::fs::write(args.path.join("src/lib.rs"), lib)?;
    std::fs::write(args.path.join(".gitignore"), "/target\n*.wasm\n")?;
    println!(
        "created {} ({:?} plugin); build it with: fungi plugin build {}",
        args.path.display(),
        args.kind,
        args.path.display()
    );
    Ok(())
}

/// Writes the SDK and the contract under `crate_dir/vendor/`, and the SDK's lock file
/// as the crate's (the versions the SDK was tested with).
fn vendor(crate_dir: &Path) -> Result<()> {
    for (path, text) in SDK {
        let to = crate_dir.join("vendor").join(path);
        std::fs::create_dir_all(to.parent().expect("a file in a directory"))?;
        std::fs::write(&to, text).with_context(|| format!("cannot write {}", to.display()))?;
        if path == "sdk-rust/Cargo.lock" {
            std::fs::write(crate_dir.join("Cargo.lock"), text)?;
        }
    }
    Ok(())
}

fn manifest(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
fungi-sdk = {{ path = "{sdk}" }}

[profile.release]
opt-level = 3
codegen-units = 1
lto = true
panic = "abort"
strip = true

# A plugin is its own workspace.
[workspace]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `sdk-rust/` (but its README) is in the copy a new plugin gets.
    #[test]
    fn the_vendored_sdk_is_complete() {
        let root = fungi_testkit::repo_root();
        let mut missing = Vec::new();
        let mut stack = vec![root.join("sdk-rust")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let relative = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if path.is_dir() {
                    if !relative.ends_with("target") {
                        stack.push(path);
                    }
                } else if !relative.ends_with("README.md")
                    && !SDK.iter().any(|(p, _)| *p == relative)
                {
                    missing.push(relative);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "add to SDK in plugin_template.rs: {missing:?}"
        );
    }
}
