//! `fungi server` and the CLI as a client of it: `fungi job`, `fungi tenant`, `fungi key`
//! and `fungi audit` call the REST API of a server (`--server` or `FUNGI_SERVER`, default
//! `http://127.0.0.1:8081`) with the key in `FUNGI_API_KEY` (or `--api-key-file`).
//! Results print as tables, or as the server's JSON with `--output json`. An `https://`
//! server is checked against the system's roots, or the CA in `--ca-cert`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// `fungi server`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Where metadata (SQLite) and job checkpoints live.
    #[arg(long, env = "FUNGI_DATA_DIR", default_value = "fungi-data")]
    data_dir: PathBuf,
    /// The REST listener.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// The gRPC listener (off unless given).
    #[arg(long)]
    grpc_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain (PEM) for both listeners; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept HS256 JWT bearer tokens signed with the secret in this file.
    #[arg(long, conflicts_with = "jwt_rs256_public_key")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// Accept RS256 JWT bearer tokens verified with this RSA public key (PEM).
    #[arg(long)]
    jwt_rs256_public_key: Option<PathBuf>,
    /// The issuer (`iss`) JWTs must name.
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// Start without resuming any job: jobs that were running become SUSPENDED, to be
    /// resumed (`fungi job resume ID`) or cancelled one by one. For a server that a job
    /// keeps taking down; a job that does so three starts in a row is suspended anyway.
    #[arg(long, conflicts_with = "cluster")]
    safe_mode: bool,
    /// Calls a second each API key (or token subject) may make, over REST, gRPC and
    /// MCP alike, with bursts of five times that; a caller over it gets 429 and
    /// Retry-After. 0: unlimited.
    #[arg(long, default_value_t = 100)]
    rate_limit_per_key: u32,
    /// Serve no MCP tool that changes anything (submit, cancel, savepoint): agents may
    /// only look.
    #[arg(long)]
    mcp_read_only: bool,
    /// Hosts (`host` or `host:port`) the MCP endpoint answers to, comma-separated: a
    /// request naming another in its Host header is refused (a DNS-rebinding guard).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    mcp_allowed_hosts: Vec<String>,
    /// Run jobs on this cluster instead of in this process: its JobManagers' addresses,
    /// comma-separated (the leader is asked). Every process of the cluster must reach
    /// the data directory at the same path (a shared filesystem); start one server next
    /// to each JobManager, all with the same --data-dir and --metadata etcd.
    #[arg(long, env = "FUNGI_CLUSTER")]
    cluster: Option<String>,
    #[command(flatten)]
    cluster_tls: crate::cluster::ClusterTlsArgs,
    /// Where metadata (tenants, keys, jobs, the audit log) lives: `sqlite` (in the data
    /// directory, one server) or `etcd` (shared by several servers).
    #[arg(long, value_enum, default_value = "sqlite")]
    metadata: MetadataKind,
    /// etcd's client URLs for --metadata etcd, comma-separated.
    #[arg(long, value_delimiter = ',', required_if_eq("metadata", "etcd"))]
    metadata_endpoints: Vec<String>,
    /// Names the metadata in etcd (its keys live under /fungi-server/ID/).
    #[arg(long, default_value = "default")]
    metadata_cluster_id: String,
    /// TLS to etcd: the CA certificate (PEM) that signed etcd's.
    #[arg(long, value_name = "PEM")]
    metadata_etcd_ca: Option<PathBuf>,
    /// A client certificate for etcd (PEM), when etcd checks clients.
    #[arg(long, value_name = "PEM", requires_all = ["metadata_etcd_ca", "metadata_etcd_key"])]
    metadata_etcd_cert: Option<PathBuf>,
    /// The key of --metadata-etcd-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "metadata_etcd_cert")]
    metadata_etcd_key: Option<PathBuf>,
}

/// Where a server keeps its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MetadataKind {
    /// SQLite in the data directory.
    Sqlite,
    /// etcd.
    Etcd,
}

impl ServerArgs {
    /// The metadata store the arguments ask for.
    fn metadata(&self) -> fungi_server::Metadata {
        match self.metadata {
            MetadataKind::Sqlite => fungi_server::Metadata::Sqlite,
            MetadataKind::Etcd => fungi_server::Metadata::Etcd {
                endpoints: self.metadata_endpoints.clone(),
                cluster_id: self.metadata_cluster_id.clone(),
                tls: self
                    .metadata_etcd_ca
                    .clone()
                    .map(|ca| fungi_cluster::ha::EtcdTls {
                        ca,
                        identity: self
                            .metadata_etcd_cert
                            .clone()
                            .zip(self.metadata_etcd_key.clone()),
                    }),
            },
        }
    }

    /// The cluster the arguments name, if any.
    fn cluster(&self) -> Result<Option<fungi_server::ClusterBackend>> {
        let Some(addresses) = &self.cluster else {
            return Ok(None);
        };
        Ok(Some(fungi_server::ClusterBackend {
            addresses: addresses.clone(),
            tls: self.cluster_tls.load()?,
        }))
    }
}

/// The JWT verifier the server arguments ask for.
fn jwt_verifier(args: &ServerArgs) -> Result<Option<fungi_security::jwt::JwtVerifier>> {
    use fungi_security::jwt::JwtVerifier;
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let issuer = args.jwt_issuer.as_deref();
    Ok(
        match (&args.jwt_hs256_secret_file, &args.jwt_rs256_public_key) {
            (Some(f), _) => {
                let secret = read(f)?;
                Some(JwtVerifier::hs256(secret.trim_ascii(), issuer)?)
            }
            (None, Some(f)) => Some(JwtVerifier::rs256(&read(f)?, issuer)?),
            (None, None) => None,
        },
    )
}

/// Runs the server until Ctrl-C or SIGTERM.
pub(crate) fn serve(args: ServerArgs) -> Result<()> {
    let jwt = jwt_verifier(&args)?;
    let (metadata, cluster) = (args.metadata(), args.cluster()?);
    let mcp = fungi_mcp::McpConfig {
        read_only: args.mcp_read_only,
        allowed_hosts: args.mcp_allowed_hosts.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fungi-api")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping; running jobs resume when the server starts again");
        };
        fungi_server::serve(
            fungi_server::ServerConfig {
                data_dir: args.data_dir,
                listen: args.listen,
                grpc_listen: args.grpc_listen,
                tls: args
                    .tls_cert
                    .zip(args.tls_key)
                    .map(|(cert, key)| fungi_server::TlsFiles { cert, key }),
                auth: fungi_server::AuthConfig {
                    jwt,
                    rate_per_key: std::num::NonZeroU32::new(args.rate_limit_per_key),
                },
                safe_mode: args.safe_mode,
                metadata,
                cluster,
                routes: Some(fungi_server::Routes(Box::new(move |service| {
                    fungi_mcp::routes(service, mcp)
                }))),
            },
            stop,
        )
        .await
    })?;
    Ok(())
}

/// How results print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Output {
    /// Human-readable tables.
    Table,
    /// The server's JSON.
    Json,
}

/// Options shared by the client commands.
#[derive(Debug, Args)]
pub(crate) struct Connection {
    /// The server's URL.
    #[arg(
        long,
        global = true,
        env = "FUNGI_SERVER",
        default_value = "http://127.0.0.1:8081"
    )]
    server: String,
    /// A file holding the API key (otherwise `FUNGI_API_KEY`).
    #[arg(long, global = true)]
    api_key_file: Option<PathBuf>,
    /// table or json.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub(crate) output: Output,
    /// A CA certificate (PEM) to trust for an https:// server.
    #[arg(long, global = true, env = "FUNGI_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

impl Connection {
    /// The server's URL.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The API key: from `--api-key-file`, or `FUNGI_API_KEY`.
    pub(crate) fn api_key(&self) -> Result<String> {
        match &self.api_key_file {
            Some(path) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the API key from {}", path.display()))?
                .trim()
                .to_string()),
            None => std::env::var("FUNGI_API_KEY")
                .context("no API key: set FUNGI_API_KEY or pass --api-key-file"),
        }
    }

    /// The CA certificate of `--ca-cert`, if given.
    pub(crate) fn ca_certificate(&self) -> Result<Option<reqwest::Certificate>> {
        let Some(ca) = &self.ca_cert else {
            return Ok(None);
        };
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        Ok(Some(reqwest::Certificate::from_pem(&pem).with_context(
            || format!("{} is not a PEM certificate", ca.display()),
        )?))
    }
}

/// `fungi job ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a SQL file (one INSERT INTO) as a job of your tenant.
    Submit {
        /// The SQL file.
        file: PathBuf,
        /// Parallelism of every operator.
        #[arg(long, short)]
        parallelism: Option<u32>,
        /// Start from a savepoint of one of your jobs (`<job id>/sp-<n>`).
        #[arg(long, short = 's')]
        from_savepoint: Option<String>,
    },
    /// List your tenant's jobs (every tenant's for an admin).
    List,
    /// Show a job with its operators' counters.
    Get {
        /// The job id.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Resume a SUSPENDED job from its latest checkpoint.
    Resume {
        /// The job id.
        id: String,
    },
    /// Take a savepoint of a running job that checkpoints (and stop it with --stop).
    Savepoint {
        /// The job id.
        id: String,
        /// Stop the job once the savepoint is complete.
        #[arg(long)]
        stop: bool,
    },
    /// Replace a running job with a new version of its SQL: stopped with a savepoint,
    /// the new version starts from it; a new version that cannot read the job's state
    /// is refused and the job keeps running.
    Upgrade {
        /// The job id.
        id: String,
        /// The new version's SQL file.
        #[arg(long)]
        sql: PathBuf,
        /// The new version's parallelism (default: the job's).
        #[arg(long, short)]
        parallelism: Option<u32>,
    },
    /// Show a running job's dead letters: counts per reason and the recent records.
    DeadLetters {
        /// The job id.
        id: String,
    },
}

/// `fungi tenant ...` (admins).
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its id.
        id: String,
        /// Jobs running at once.
        #[arg(long)]
        max_jobs: Option<u32>,
        /// Sum of the parallelism of running jobs.
        #[arg(long)]
        max_total_parallelism: Option<u32>,
        /// Further quotas as JSON (`{"plugin_memory_per_instance": 16777216, ...}`).
        #[arg(long)]
        quotas: Option<String>,
    },
    /// Set a tenant's plugin trust policy.
    Trust {
        /// The tenant.
        id: String,
        /// off, warn or require.
        #[arg(long)]
        mode: String,
        /// A trusted public key (PEM file); repeat for more.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
    },
    /// List tenants.
    List,
    /// Delete a tenant and everything it owns (keys, functions, plugins, files, jobs
    /// and their checkpoints); its audit records stay, and its id is not reused.
    Delete {
        /// Its id.
        id: String,
        /// Cancel its running jobs first (otherwise a tenant with running jobs stays).
        #[arg(long)]
        force: bool,
    },
}

/// `fungi file ...`: the tenant's files (Python modules, input data) on a server.
#[derive(Debug, Subcommand)]
pub(crate) enum FileCommand {
    /// Upload a file into your tenant's files directory.
    Upload {
        /// The local file.
        file: PathBuf,
        /// Its path on the server (default: the file name), as jobs name it
        /// (`USING 'udfs.py'`, `'path' = 'data/in'`).
        #[arg(long = "as")]
        path: Option<String>,
    },
    /// List your tenant's files.
    List,
    /// Delete one of your tenant's files.
    Delete {
        /// Its path on the server.
        path: String,
    },
}

/// Runs a `fungi file` command.
pub(crate) fn file(command: FileCommand, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    let columns = &["path", "bytes"];
    match command {
        FileCommand::Upload { file, path } => {
            let path = match path {
                Some(p) => p,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                    .context("name the file on the server with --as")?,
            };
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let request = client
                .http
                .put(client.url(&format!("/files/{path}")))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes);
            let entry = client.send(reqwest::Method::PUT, &format!("/files/{path}"), request)?;
            print(c.output, &entry, columns);
        }
        FileCommand::List => print(
            c.output,
            &client.call(reqwest::Method::GET, "/files", None)?,
            columns,
        ),
        FileCommand::Delete { path } => {
            client.call(reqwest::Method::DELETE, &format!("/files/{path}"), None)?;
            eprintln!("file {path} deleted");
        }
    }
    Ok(())
}

/// `fungi function ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum FunctionCommand {
    /// Register a function in your tenant's catalog: its CREATE FUNCTION statement
    /// (LANGUAGE WASM or PYTHON, from an uploaded plugin or file, or an inline body) is
    /// checked now and runs before each of your jobs.
    Register {
        /// The statement (`CREATE FUNCTION name ... LANGUAGE ...`).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        sql: Option<String>,
        /// A file holding the statement.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// List your tenant's catalog functions.
    List,
    /// Remove a function from your tenant's catalog.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs a `fungi function` command.
pub(crate) fn function(command: FunctionCommand, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    let columns = &["name", "language", "statement"];
    match command {
        FunctionCommand::Register { sql, file } => {
            let sql = match (sql, file) {
                (Some(sql), _) => sql,
                (None, Some(file)) => std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
                (None, None) => unreachable!("clap requires one"),
            };
            let record = client.call(
                reqwest::Method::POST,
                "/functions",
                Some(serde_json::json!({ "sql": sql })),
            )?;
            print(c.output, &record, columns);
        }
        FunctionCommand::List => print(
            c.output,
            &client.call(reqwest::Method::GET, "/functions", None)?,
            columns,
        ),
        FunctionCommand::Delete { name } => {
            client.call(reqwest::Method::DELETE, &format!("/functions/{name}"), None)?;
            eprintln!("function {name} deleted");
        }
    }
    Ok(())
}

/// `fungi key ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create an API key; its secret is shown once.
    Create {
        /// admin, tenant-admin, developer or viewer.
        #[arg(long)]
        role: String,
        /// The key's tenant (default: yours).
        #[arg(long)]
        tenant: Option<String>,
        /// A name to recognise it by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys.
    List,
    /// Revoke a key.
    Revoke {
        /// The key id.
        id: String,
    },
}

/// A client of one server.
pub(crate) struct Client {
    base: String,
    key: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub(crate) fn new(c: &Connection) -> Result<Client> {
        let key = c.api_key()?;
        let mut http = reqwest::blocking::Client::builder();
        if let Some(ca) = c.ca_certificate()? {
            http = http.add_root_certificate(ca);
        }
        Ok(Client {
            base: c.server.trim_end_matches('/').to_string(),
            key,
            http: http.build().context("cannot set up the HTTP client")?,
        })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let request = self.http.request(method.clone(), self.url(path));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        self.send(method, path, request)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Uploads a plugin component (with its base64 signature, if any).
    pub(crate) fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        signature: Option<&str>,
    ) -> Result<Value> {
        let path = format!("/plugins/{name}");
        let mut request = self
            .http
            .put(self.url(&path))
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(bytes);
        if let Some(sig) = signature {
            request = request.header("x-fungi-signature", sig.trim());
        }
        self.send(reqwest::Method::PUT, &path, request)
    }

    /// The caller's plugins.
    pub(crate) fn plugins(&self) -> Result<Value> {
        self.call(reqwest::Method::GET, "/plugins", None)
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<Value> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{method} {path}: the server answered {status}: {message}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).context("the server's answer is not JSON")?
        })
    }
}

/// Prints `value` as JSON, or as a table of `columns` (one row per array element).
pub(crate) fn print(output: Output, value: &Value, columns: &[&str]) {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => return,
        other => vec![other],
    };
    let cell = |v: &Value, c: &str| match &v[c] {
        Value::String(s) => s.replace('\n', " "),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).chars().count().min(60))
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:<w$}", c.chars().take(60).collect::<String>()))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_ascii_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(columns.iter().map(|c| cell(r, c)).collect()));
    }
}

const JOB_COLUMNS: &[&str] = &["id", "tenant", "status", "parallelism", "error"];

/// Runs a `fungi job` command.
pub(crate) fn job(command: JobCommand, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    use reqwest::Method;
    match command {
        JobCommand::Submit {
            file,
            parallelism,
            from_savepoint,
        } => {
            let sql = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let job = client.call(
                Method::POST,
                "/jobs",
                Some(json!({
                    "sql": sql, "parallelism": parallelism, "from_savepoint": from_savepoint,
                })),
            )?;
            print(c.output, &job, JOB_COLUMNS);
        }
        JobCommand::Upgrade {
            id,
            sql,
            parallelism,
        } => {
            let text = std::fs::read_to_string(&sql)
                .with_context(|| format!("cannot read {}", sql.display()))?;
            let job = client.call(
                Method::POST,
                &format!("/jobs/{id}/upgrade"),
                Some(json!({ "sql": text, "parallelism": parallelism, "timeout_secs": 120 })),
            )?;
            print(c.output, &job, JOB_COLUMNS);
        }
        JobCommand::List => print(
            c.output,
            &client.call(Method::GET, "/jobs", None)?,
            JOB_COLUMNS,
        ),
        JobCommand::Get { id } => {
            let job = client.call(Method::GET, &format!("/jobs/{id}"), None)?;
            print(c.output, &job, JOB_COLUMNS);
            if c.output == Output::Table {
                println!();
                print(
                    c.output,
                    &job["operators"],
                    &[
                        "name",
                        "records_in",
                        "records_out",
                        "late_records",
                        "watermark",
                    ],
                );
            }
        }
        JobCommand::DeadLetters { id } => {
            let letters = client.call(Method::GET, &format!("/jobs/{id}/dead-letters"), None)?;
            if c.output == Output::Table {
                for (reason, n) in letters["counts"].as_object().into_iter().flatten() {
                    println!("{reason}: {n}");
                }
                println!();
            }
            print(
                c.output,
                &letters["recent"],
                &["operator", "reason", "position", "message", "raw"],
            );
        }
        JobCommand::Cancel { id } => print(
            c.output,
            &client.call(Method::POST, &format!("/jobs/{id}/cancel"), None)?,
            JOB_COLUMNS,
        ),
        JobCommand::Resume { id } => print(
            c.output,
            &client.call(Method::POST, &format!("/jobs/{id}/resume"), None)?,
            JOB_COLUMNS,
        ),
        JobCommand::Savepoint { id, stop } => print(
            c.output,
            &client.call(
                Method::POST,
                &format!("/jobs/{id}/savepoint"),
                Some(json!({ "stop": stop })),
            )?,
            &["id", "checkpoint_id", "stopped"],
        ),
    }
    Ok(())
}

/// Runs a `fungi tenant` command.
pub(crate) fn tenant(command: TenantCommand, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    use reqwest::Method;
    let columns = &["id", "quotas"];
    match command {
        TenantCommand::Create {
            id,
            max_jobs,
            max_total_parallelism,
            quotas,
        } => {
            let mut q = match quotas {
                Some(text) => {
                    serde_json::from_str::<Value>(&text).context("--quotas is not a JSON object")?
                }
                None => json!({}),
            };
            if max_jobs.is_some() {
                q["max_jobs"] = json!(max_jobs);
            }
            if max_total_parallelism.is_some() {
                q["max_total_parallelism"] = json!(max_total_parallelism);
            }
            let body = json!({ "id": id, "quotas": q });
            print(
                c.output,
                &client.call(Method::POST, "/tenants", Some(body))?,
                columns,
            );
        }
        TenantCommand::List => print(
            c.output,
            &client.call(Method::GET, "/tenants", None)?,
            columns,
        ),
        TenantCommand::Delete { id, force } => {
            client.call(
                Method::DELETE,
                &format!("/tenants/{id}{}", if force { "?force=true" } else { "" }),
                None,
            )?;
            eprintln!("tenant {id} deleted");
        }
        TenantCommand::Trust { id, mode, keys } => {
            let keys = keys
                .iter()
                .map(|k| {
                    std::fs::read_to_string(k)
                        .with_context(|| format!("cannot read {}", k.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let tenant = client.call(
                Method::PUT,
                &format!("/tenants/{id}/trust"),
                Some(json!({ "mode": mode, "keys": keys })),
            )?;
            print(c.output, &tenant, &["id", "trust"]);
        }
    }
    Ok(())
}

/// Runs a `fungi key` command.
pub(crate) fn key(command: KeyCommand, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    use reqwest::Method;
    let columns = &["id", "tenant", "role", "name", "revoked"];
    match command {
        KeyCommand::Create { role, tenant, name } => {
            let created = client.call(
                Method::POST,
                "/keys",
                Some(json!({ "role": role, "tenant": tenant, "name": name })),
            )?;
            if c.output == Output::Json {
                print(c.output, &created, &[]);
            } else {
                print(c.output, &created["record"], columns);
                println!(
                    "\nkey (shown once): {}",
                    created["key"].as_str().unwrap_or_default()
                );
            }
        }
        KeyCommand::List => print(c.output, &client.call(Method::GET, "/keys", None)?, columns),
        KeyCommand::Revoke { id } => {
            client.call(Method::DELETE, &format!("/keys/{id}"), None)?;
            eprintln!("key {id} revoked");
        }
    }
    Ok(())
}

/// `fungi audit`: the newest audit records.
pub(crate) fn audit(limit: u32, c: Connection) -> Result<()> {
    let client = Client::new(&c)?;
    let records = client.call(reqwest::Method::GET, &format!("/audit?limit={limit}"), None)?;
    print(
        c.output,
        &records,
        &[
            "seq", "time_ms", "who", "tenant", "action", "target", "result",
        ],
    );
    Ok(())
}
