//! `fungi plugin new | build | inspect | test`: the plugin author's loop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use fungi_plugin::{HostOptions, Plugin, PluginHost, PluginKind};

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a plugin crate from a template (a scalar function or an aggregate).
    New(NewArgs),
    /// Build a plugin crate to a wasm32-wasip2 component and print its manifest.
    Build(BuildArgs),
    /// Show a component's kind, manifest, functions with Arrow signatures, and what it
    /// imports.
    Inspect(FileArgs),
    /// Run the conformance kit (contract tests and test vectors) against a component.
    Test(TestArgs),
    /// Make a signing key pair as `cosign generate-key-pair` does (`<prefix>.key`,
    /// encrypted with COSIGN_PASSWORD, and `<prefix>.pub`).
    Keygen(KeygenArgs),
    /// Sign a component (cosign-compatible: `cosign verify-blob` accepts the signature).
    Sign(SignArgs),
    /// Verify a component's signature with a public key.
    Verify(VerifyArgs),
    /// Upload a component to a server as one of your tenant's plugins.
    Upload(UploadArgs),
    /// List your tenant's plugins on a server.
    List {
        #[command(flatten)]
        connection: crate::client::Connection,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Path prefix of the two files.
    #[arg(long, default_value = "cosign")]
    output_prefix: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The private key (cosign's encrypted PEM; the password comes from COSIGN_PASSWORD).
    #[arg(long)]
    key: PathBuf,
    /// Where to write the base64 signature (default: `<component>.sig`).
    #[arg(long)]
    output_signature: Option<PathBuf>,
    /// The component (`.wasm`).
    plugin: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The public key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The signature file (default: `<component>.sig`).
    #[arg(long)]
    signature: Option<PathBuf>,
    /// The component (`.wasm`).
    plugin: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// The component (`.wasm`).
    plugin: PathBuf,
    /// The name to upload it under (default: the file name without `.wasm`); SQL uses it
    /// in `USING 'name'` and `'plugin' = 'name'`.
    #[arg(long)]
    name: Option<String>,
    /// Its signature file, for a tenant whose trust policy checks signatures.
    #[arg(long)]
    signature: Option<PathBuf>,
    #[command(flatten)]
    connection: crate::client::Connection,
}

/// What a new plugin provides.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    /// Scalar functions.
    Scalar,
    /// Aggregate functions.
    Aggregate,
}

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// Directory (and crate name) of the new plugin.
    pub(crate) path: PathBuf,
    /// What the plugin provides.
    #[arg(long, value_enum, default_value_t = Kind::Scalar)]
    pub(crate) kind: Kind,
    /// Depend on this copy of the Fungi SDK (`sdk-rust/` of a Fungi checkout) instead of
    /// the one `fungi` writes into the crate's `vendor/`.
    #[arg(long)]
    pub(crate) sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The plugin crate's directory.
    #[arg(default_value = ".", conflicts_with = "python")]
    path: PathBuf,
    /// Cargo target directory (default: CARGO_TARGET_DIR, else the crate's `target/`).
    #[arg(long, conflicts_with = "python")]
    target_dir: Option<PathBuf>,
    /// Build a sandboxed plugin from this Python file instead (its `@fungi.udf` or
    /// `@fungi.udaf` functions, with componentize-py and the `fungi` Python SDK from the
    /// virtual environment in FUNGI_PYTHON_VENV or VIRTUAL_ENV).
    #[arg(long, value_name = "APP_PY")]
    python: Option<PathBuf>,
    /// Where to write the Python plugin's component (default: `<APP_PY>` with `.wasm`).
    #[arg(short, long, requires = "python")]
    output: Option<PathBuf>,
    /// The Python plugin's name (default: the file's name).
    #[arg(long, requires = "python")]
    name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct FileArgs {
    /// The component (`.wasm`).
    plugin: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The component (`.wasm`).
    plugin: PathBuf,
    /// Directory of test vectors (`<plugin name>.json`; default: the Fungi repository's
    /// `conformance/vectors` when this binary was built from one that is still there).
    #[arg(long)]
    vectors: Option<PathBuf>,
}

pub(crate) fn run(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New(args) => crate::plugin_template::new(&args),
        PluginCommand::Build(args) => match &args.python {
            Some(app) => build_python(app, args.output.as_deref(), args.name.as_deref()),
            None => build(&args.path, args.target_dir.as_deref()),
        },
        PluginCommand::Inspect(args) => {
            let plugin = load(&args.plugin)?;
            print!("{}", describe(&plugin));
            Ok(())
        }
        PluginCommand::Test(args) => {
            let plugin = load(&args.plugin)?;
            let vectors = args.vectors.clone().or_else(|| {
                let checkout =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/vectors");
                checkout.is_dir().then_some(checkout)
            });
            let report = fungi_plugin::conformance::run(&plugin, vectors.as_deref());
            println!("{report}");
            if !report.passed() {
                bail!("{} does not conform", args.plugin.display());
            }
            Ok(())
        }
        PluginCommand::Keygen(args) => keygen(&args),
        PluginCommand::Sign(args) => sign(&args),
        PluginCommand::Verify(args) => verify(&args),
        PluginCommand::Upload(args) => upload(args),
        PluginCommand::List { connection } => {
            let client = crate::client::Client::new(&connection)?;
            crate::client::print(
                connection.output,
                &client.plugins()?,
                &["name", "kind", "bytes", "digest"],
            );
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The signature file next to a component.
fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn password() -> Vec<u8> {
    std::env::var("COSIGN_PASSWORD")
        .unwrap_or_default()
        .into_bytes()
}

fn keygen(args: &KeygenArgs) -> Result<()> {
    let (private, public) = fungi_security::signing::generate_key_pair(&password())?;
    let with = |ext: &str| {
        let mut p = args.output_prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (key, public_path) = (with(".key"), with(".pub"));
    for path in [&key, &public_path] {
        if path.exists() {
            bail!("{} exists; not overwriting it", path.display());
        }
    }
    std::fs::write(&key, private).with_context(|| format!("cannot write {}", key.display()))?;
    std::fs::write(&public_path, public)
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    eprintln!(
        "private key written to {} (encrypted with COSIGN_PASSWORD), public key to {}",
        key.display(),
        public_path.display()
    );
    Ok(())
}

fn sign(args: &SignArgs) -> Result<()> {
    let bytes = read(&args.plugin)?;
    let signature = fungi_security::signing::sign(&read(&args.key)?, &password(), &bytes)?;
    let out = args
        .output_signature
        .clone()
        .unwrap_or_else(|| signature_path(&args.plugin));
    std::fs::write(&out, &signature).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{signature}");
    eprintln!("signature written to {}", out.display());
    Ok(())
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let sig_path = args
        .signature
        .clone()
        .unwrap_or_else(|| signature_path(&args.plugin));
    let signature = String::from_utf8(read(&sig_path)?)
        .with_context(|| format!("{} is not a base64 signature", sig_path.display()))?;
    fungi_security::signing::verify(&read(&args.key)?, &read(&args.plugin)?, &signature)
        .with_context(|| format!("{} does not verify", args.plugin.display()))?;
    println!("Verified OK");
    Ok(())
}

fn upload(args: UploadArgs) -> Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => args
            .plugin
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.replace('.', "-"))
            .context("name the plugin with --name")?,
    };
    let signature = match &args.signature {
        Some(path) => Some(
            String::from_utf8(read(path)?)
                .with_context(|| format!("{} is not a base64 signature", path.display()))?,
        ),
        None => None,
    };
    let client = crate::client::Client::new(&args.connection)?;
    let record = client.upload(&name, read(&args.plugin)?, signature.as_deref())?;
    crate::client::print(
        args.connection.output,
        &record,
        &["name", "kind", "bytes", "digest"],
    );
    if let Some(reason) = record["details"]["signature"]["reason"].as_str() {
        eprintln!("warning: {reason}");
    }
    Ok(())
}

fn load(path: &Path) -> Result<std::sync::Arc<Plugin>> {
    let host = PluginHost::new(HostOptions {
        cache_dir: std::env::var_os("FUNGI_PLUGIN_CACHE").map(Into::into),
        ..HostOptions::default()
    })?;
    Ok(host.load_file(path)?)
}

/// The text `fungi plugin inspect` prints.
pub(crate) fn describe(plugin: &Plugin) -> String {
    let m = plugin.manifest();
    let mut out = format!(
        "plugin:       {} {} ({})\nkind:         {}\ncontract:     fungi:plugin@{}\ndigest:       blake3:{}\n",
        m.name,
        m.version,
        m.description,
        plugin.kind(),
        fungi_plugin::CONTRACT_VERSION,
        plugin.digest()
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    out.push_str(&format!(
        "capabilities: network: {}; directories: {}\n",
        list(&m.network),
        list(&m.directories)
    ));
    out.push_str("functions:\n");
    for f in plugin.functions() {
        let args: Vec<String> = f
            .arguments
            .iter()
            .map(|a| a.data_type().to_string())
            .collect();
        let extra = match plugin.kind() {
            PluginKind::Aggregate if f.retractable => " (retractable)",
            _ => "",
        };
        out.push_str(&format!(
            "  {}({}) -> {} [{:?}]{extra}\n",
            f.name,
            args.join(", "),
            f.returns.data_type(),
            f.volatility
        ));
    }
    out.push_str("imports:\n");
    for import in plugin.imports() {
        out.push_str(&format!("  {import}\n"));
    }
    out
}

/// The manifest `fungi plugin build` writes next to the component.
fn manifest_json(plugin: &Plugin) -> serde_json::Value {
    let m = plugin.manifest();
    serde_json::json!({
        "name": m.name,
        "version": m.version,
        "description": m.description,
        "kind": format!("{:?}", plugin.kind()).to_lowercase(),
        "contract": format!("fungi:plugin@{}", fungi_plugin::CONTRACT_VERSION),
        "digest": format!("blake3:{}", plugin.digest()),
        "capabilities": { "network": m.network, "directories": m.directories },
        "functions": plugin.functions().iter().map(|f| serde_json::json!({
            "name": f.name,
            "arguments": f.arguments.iter().map(|a| a.data_type().to_string()).collect::<Vec<_>>(),
            "returns": f.returns.data_type().to_string(),
            "volatility": format!("{:?}", f.volatility).to_lowercase(),
            "retractable": f.retractable,
        })).collect::<Vec<_>>(),
        "imports": plugin.imports(),
    })
}

/// The contract the host was built with, for componentize-py.
const PLUGIN_WIT: &str = include_str!("../../../wit/plugin.wit");

/// `fungi plugin build --python app.py`: the SDK's `python -m fungi.build` against the
/// contract this binary speaks, then the component's description.
fn build_python(app: &Path, output: Option<&Path>, name: Option<&str>) -> Result<()> {
    let python = fungi_python::venv()
        .map(|v| v.join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let wit = tempfile::tempdir()?;
    std::fs::write(wit.path().join("plugin.wit"), PLUGIN_WIT)?;
    let out = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app.with_extension("wasm"));
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "fungi.build"])
        .arg(app)
        .arg("-o")
        .arg(&out)
        .arg("--wit")
        .arg(wit.path());
    if let Some(name) = name {
        cmd.args(["--name", name]);
    }
    let done = cmd
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !done.status.success() {
        let stderr = String::from_utf8_lossy(&done.stderr);
        if stderr.contains("No module named fungi") {
            bail!(
                "the Python SDK is not installed for {}: pip install sdk-python (and \
                 componentize-py), or name a virtual environment in FUNGI_PYTHON_VENV",
                python.display()
            );
        }
        bail!("{}", stderr.trim().trim_start_matches("error: "));
    }
    let plugin = load(&out)?;
    println!(
        "built {} ({} bytes)\n{}",
        out.display(),
        std::fs::metadata(&out)?.len(),
        describe(&plugin)
    );
    Ok(())
}

fn build(path: &Path, target_dir: Option<&Path>) -> Result<()> {
    let manifest = path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("no plugin crate at {} (Cargo.toml missing)", path.display()))?;
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"').replace('-', "_"))
        .context("Cargo.toml has no package name")?;
    // Cargo runs in the crate's directory: a relative target directory would be read
    // from there, so every path is made absolute first.
    let absolute = path
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let target = match target_dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
    {
        Some(t) => std::path::absolute(t)?,
        None => absolute.join("target"),
    };
    let status = Command::new("cargo")
        .current_dir(&absolute)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    let plugin = load(&built)?;
    let out = path.join(format!("{name}.wasm"));
    std::fs::copy(&built, &out)?;
    let manifest = path.join(format!("{name}.manifest.json"));
    std::fs::write(
        &manifest,
        serde_json::to_string_pretty(&manifest_json(&plugin))?,
    )?;
    println!(
        "built {} ({} bytes); manifest in {}\n{}",
        out.display(),
        std::fs::metadata(&out)?.len(),
        manifest.display(),
        describe(&plugin)
    );
    let first = plugin.functions().first().map_or("f", |f| f.name.as_str());
    println!(
        "test it with: fungi plugin test {out}\nuse it in SQL: CREATE FUNCTION {first} LANGUAGE WASM USING '{out}';",
        out = out.display()
    );
    Ok(())
}
