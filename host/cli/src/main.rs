//! `fungi`: the command-line tool of the Fungi streaming platform.
//!
//! `fungi run --local JOB` runs a job in this process (embedded mode) with live progress,
//! `fungi run --cluster ADDR JOB` on a cluster of `fungi jobmanager` and `fungi
//! taskmanager` processes; `fungi server` serves the API and its client commands talk to
//! it; `fungi bench` measures; `fungi plugin new | build | inspect | test | sign` is the
//! plugin author's loop.

mod bench;
mod bench_cluster;
mod bench_kafka;
mod client;
mod cluster;
mod job;
mod mcp;
mod nexmark;
mod plugin;
mod plugin_template;
mod progress;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use fungi_common::FungiError;
use fungi_execution::plan::PhysicalPlan;
use tracing_subscriber::EnvFilter;

/// Fungi: a streaming platform whose connectors, aggregates and UDFs are sandboxed
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "fungi", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job.
    ///
    /// The job is a streaming SQL file (`.sql`: CREATE TABLE, CREATE VIEW, INSERT INTO,
    /// SELECT; a SELECT prints its rows) or a TOML job file (source, optional window,
    /// sink; see examples/jobs/). Progress (records in/out per second, watermark) is shown on
    /// stderr; Ctrl-C stops the job cleanly.
    Run(RunArgs),
    /// Take a savepoint of a running job (and optionally stop it): a checkpoint kept
    /// apart from the job's rotation, restorable with `run --from-savepoint`.
    Savepoint(SavepointArgs),
    /// List the checkpoints in a job's checkpoint directory: complete ones with their
    /// time, duration and size, and why any other is unusable.
    Checkpoints(CheckpointsArgs),
    /// Run benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write, build, inspect and test Wasm plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Nexmark data: write the built-in generator's events to files.
    #[command(subcommand)]
    Nexmark(NexmarkCommand),
    /// Run the server: the REST API (/api/v1), the MCP endpoint (/mcp), SQLite metadata,
    /// jobs run in this process. The first start prints an admin key.
    Server(client::ServerArgs),
    /// MCP on standard input and output, for a desktop agent: every message goes to the
    /// server's /mcp with your key (FUNGI_API_KEY), within your tenant and role.
    Mcp(mcp::McpArgs),
    /// Jobs on a server (submit, list, get, cancel).
    Job {
        #[command(subcommand)]
        command: client::JobCommand,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Tenants on a server (admins).
    Tenant {
        #[command(subcommand)]
        command: client::TenantCommand,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Your tenant's files on a server (Python modules, input data for jobs).
    File {
        #[command(subcommand)]
        command: client::FileCommand,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Your tenant's function catalog on a server (functions every job can call).
    Function {
        #[command(subcommand)]
        command: client::FunctionCommand,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// API keys on a server.
    Key {
        #[command(subcommand)]
        command: client::KeyCommand,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// Run a JobManager: TaskManagers register with it, jobs are submitted to it
    /// (`fungi run --cluster ADDR`), and it places and coordinates them.
    Jobmanager(cluster::JobManagerArgs),
    /// Run a TaskManager: offers slots to a JobManager and runs the subtasks it is given.
    Taskmanager(cluster::TaskManagerArgs),
    /// A cluster's TaskManagers, slots and jobs.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The newest records of a server's audit log.
    Audit {
        /// How many records.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        connection: client::Connection,
    },
}

#[derive(Debug, Subcommand)]
enum NexmarkCommand {
    /// Write the deterministic Nexmark events (the same as `bench nexmark` generates) as
    /// JSON or CSV files, for Fungi's and other engines' filesystem sources.
    Generate(nexmark::GenerateArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run in this process (embedded mode); `fungi server` runs jobs submitted to it.
    #[arg(long, conflicts_with = "cluster")]
    local: bool,
    /// Run on a cluster: submit the job to the JobManager at this address (`host:port`).
    #[arg(long, value_name = "ADDR")]
    cluster: Option<String>,
    #[command(flatten)]
    cluster_tls: cluster::ClusterTlsArgs,
    /// Path of the SQL file or job file.
    job: PathBuf,
    /// Parallelism of every operator (overrides the job file).
    #[arg(long, short)]
    parallelism: Option<u32>,
    /// Print the execution plan and exit without running.
    #[arg(long)]
    explain: bool,
    /// Do not draw the progress line.
    #[arg(long)]
    no_progress: bool,
    /// Start from this savepoint (a directory written by `fungi savepoint`), possibly at
    /// another parallelism.
    #[arg(long, short = 's')]
    from_savepoint: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckpointsArgs {
    /// The job's checkpoint directory or s3:// URL ('execution.checkpointing.dir'; object
    /// storage is configured by the AWS_* environment variables).
    dir: PathBuf,
    /// Print JSON (the metadata of each complete checkpoint) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SavepointArgs {
    /// The checkpoint directory or s3:// URL of the running job
    /// ('execution.checkpointing.dir'), on this machine.
    dir: PathBuf,
    /// Stop the job once the savepoint is complete.
    #[arg(long)]
    stop: bool,
    /// How long to wait for the savepoint, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Nexmark pipelines on the built-in generator to a blackhole sink.
    ///
    /// Queries: the Nexmark SQL files (q0-q5, q7-q9, q11-q22; q10 writes files, q6 needs
    /// OVER aggregations over a changelog, which Flink cannot run either), the hand-built pipelines (ds-q0, ds-q1, ds-count), the
    /// generator alone (gen) and the runtime without it (q0-replay, count-replay). Each
    /// runs in its own process.
    Nexmark(NexmarkArgs),
    /// Kafka → filter → Kafka as a SQL job on a running broker, next to plain librdkafka
    /// producer, consumer and consume-filter-produce loops measured in the same run.
    Kafka(bench_kafka::KafkaBenchArgs),
}

#[derive(Debug, Args)]
struct NexmarkArgs {
    /// Queries to run, comma-separated, or all.
    #[arg(long, default_value = "all")]
    query: String,
    /// Nexmark events to generate (persons, auctions and bids together).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Parallelism (and tokio worker threads).
    #[arg(long, default_value_t = 1)]
    parallelism: u32,
    /// Print results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Checkpoint every this many milliseconds (into a temporary directory).
    #[arg(long)]
    checkpoint_interval_ms: Option<u64>,
    /// Where keyed state lives: memory (default) or rocksdb.
    #[arg(long, default_value = "memory", value_parser = ["memory", "rocksdb"])]
    state_backend: String,
    /// A setting for every SQL query, as `SET 'KEY' = 'VALUE'` ahead of its text (for
    /// example `table.optimizer.agg-phase-strategy=ONE_PHASE`); may be repeated.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Also run every SQL query on the cluster whose JobManager is at this address
    /// (`host:port`), right after it runs embedded, and compare the two.
    #[arg(long, value_name = "ADDR")]
    cluster: Option<String>,
    /// With --cluster: run each query this many times (embedded and cluster
    /// alternately) and compare the medians; run-to-run spread on a shared machine is
    /// often larger than the difference measured.
    #[arg(long, default_value_t = 1, requires = "cluster", value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Internal: run one query in this process and print its JSON result.
    #[arg(long, hide = true)]
    child: bool,
}

/// The stack of the thread that runs a command. SQL is planned on it (embedded mode
/// plans on the command's thread), and planning recurses over expressions: a roomy,
/// known stack (only the pages used are committed) rather than the main thread's.
const COMMAND_STACK: usize = 256 << 20;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FUNGI_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let command = std::thread::Builder::new()
        .name("fungi".into())
        .stack_size(COMMAND_STACK)
        .spawn(move || run_command(cli))
        .expect("a thread for the command");
    if command.join().is_err() {
        std::process::exit(101);
    }
}

/// Runs the parsed command; exits the process with 1 on an error.
fn run_command(cli: Cli) {
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Savepoint(args) => savepoint(args),
        Command::Checkpoints(args) => checkpoints(args),
        Command::Bench(BenchCommand::Nexmark(args)) => bench_nexmark(args),
        Command::Bench(BenchCommand::Kafka(args)) => bench_kafka::run(args),
        Command::Plugin(command) => plugin::run(command),
        Command::Nexmark(NexmarkCommand::Generate(args)) => nexmark::generate(args),
        Command::Server(args) => client::serve(args),
        Command::Mcp(args) => mcp::run(args),
        Command::Job {
            command,
            connection,
        } => client::job(command, connection),
        Command::Tenant {
            command,
            connection,
        } => client::tenant(command, connection),
        Command::File {
            command,
            connection,
        } => client::file(command, connection),
        Command::Function {
            command,
            connection,
        } => client::function(command, connection),
        Command::Key {
            command,
            connection,
        } => client::key(command, connection),
        Command::Audit { limit, connection } => client::audit(limit, connection),
        Command::Jobmanager(args) => cluster::job_manager(args),
        Command::Taskmanager(args) => cluster::task_manager(args),
        Command::Cluster(command) => cluster::command(command),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: RunArgs) -> Result<()> {
    if let Some(job_manager) = &args.cluster {
        return cluster::submit(&args, job_manager);
    }
    if !args.local {
        bail!(
            "say where the job runs: --local (in this process) or --cluster ADDR (on a JobManager)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    // Listening from the start: a Ctrl-C while the job is planned stops it as it starts.
    let stop = {
        let _runtime = runtime.enter();
        StopSignals::listen()?
    };
    let (plans, tenant) = if args.job.extension().is_some_and(|e| e == "sql") {
        runtime.block_on(sql_jobs(&args))?
    } else {
        let job = job::JobFile::load(&args.job)?;
        (
            vec![PhysicalPlan::new(job.to_graph(args.parallelism)?)?],
            None,
        )
    };
    if args.explain {
        for plan in &plans {
            print!("{}", plan.explain());
        }
        return Ok(());
    }
    if plans.is_empty() {
        eprintln!(
            "no INSERT or SELECT in {}: nothing to run",
            args.job.display()
        );
        return Ok(());
    }
    let result = runtime.block_on(run_jobs(
        plans,
        args.from_savepoint.clone(),
        !args.no_progress,
        stop,
    ));
    if let Some(tenant) = tenant {
        print_plugin_metrics(&tenant);
    }
    result
}

/// What the jobs' plugins reported through the host's metrics interface.
fn print_plugin_metrics(tenant: &fungi_plugin::PluginTenant) {
    let metrics = tenant.plugin_metrics();
    if metrics.is_empty() {
        return;
    }
    eprintln!("plugin metrics:");
    for (plugin, name, value) in metrics {
        match value {
            fungi_plugin::PluginMetric::Counter(n) => eprintln!("  {plugin}.{name} = {n}"),
            fungi_plugin::PluginMetric::Gauge(g) => eprintln!("  {plugin}.{name} = {g} (gauge)"),
        }
    }
}

/// Plans every statement of a SQL file; INSERTs and SELECTs become jobs (a SELECT prints
/// its rows as JSON lines on stdout). Also returns the tenant its plugins run as.
async fn sql_jobs(
    args: &RunArgs,
) -> Result<(Vec<PhysicalPlan>, Option<Arc<fungi_plugin::PluginTenant>>)> {
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("cannot read {}", args.job.display()))?;
    let planned = plan_sql(&text, args.parallelism)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.job.display()))?;
    for text in &planned.explains {
        print!("{text}");
    }
    Ok((planned.plans, planned.tenant))
}

/// What a SQL script plans into.
struct PlannedScript {
    /// One plan per INSERT or SELECT, in order.
    plans: Vec<PhysicalPlan>,
    /// What its EXPLAIN statements said.
    explains: Vec<String>,
    /// The tenant its plugins run as.
    tenant: Option<Arc<fungi_plugin::PluginTenant>>,
}

/// Plans every statement of a SQL script.
async fn plan_sql(text: &str, parallelism: Option<u32>) -> Result<PlannedScript> {
    let mut config = fungi_common::config::JobConfig::default();
    if let Some(p) = parallelism {
        config.parallelism = p;
    }
    let mut session = fungi_sql::SqlSession::new(config);
    let outcomes = session
        .execute_script(text)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut plans = Vec::new();
    let mut explains = Vec::new();
    for outcome in outcomes {
        match outcome {
            fungi_sql::Outcome::Done(_) => {}
            fungi_sql::Outcome::Explain(text) => explains.push(text),
            fungi_sql::Outcome::Insert(graph) => plans.push(PhysicalPlan::new(graph)?),
            fungi_sql::Outcome::Query(query) => {
                let sink = fungi_connector::registry::sink("stdout", &Default::default())?;
                plans.push(PhysicalPlan::new(query.with_sink(sink, "print"))?);
            }
        }
    }
    Ok(PlannedScript {
        plans,
        explains,
        tenant: session.plugin_tenant(),
    })
}

/// Ctrl-C and SIGTERM, listened to once for the whole run so that no signal is lost
/// between two polls (a listener created per poll misses what arrives in between).
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts listening; must be called within the runtime.
    fn listen() -> Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Runs jobs side by side with progress (of the first job) and a clean stop on Ctrl-C
/// or SIGTERM (a second one exits at once); each is supervised: resumed from its latest
/// checkpoint and restarted after failures as its configuration says.
async fn run_jobs(
    plans: Vec<PhysicalPlan>,
    savepoint: Option<PathBuf>,
    show_progress: bool,
    mut stop: StopSignals,
) -> Result<()> {
    if savepoint.is_some() && plans.len() > 1 {
        bail!(
            "--from-savepoint restores one job; the file starts {}",
            plans.len()
        );
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut jobs = tokio::task::JoinSet::new();
    let mut first_metrics = None;
    for (i, plan) in plans.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::watch::channel(Default::default());
        if i == 0 {
            first_metrics = Some(rx);
        }
        let cancel = cancel.clone();
        let savepoint = savepoint.clone();
        jobs.spawn(async move {
            (
                i,
                fungi_scheduler::supervise(plan, savepoint, cancel, tx).await,
            )
        });
    }
    let mut metrics = first_metrics.expect("at least one job");
    let mut progress = progress::Progress::new(show_progress);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut interrupted = false;
    let mut results = Vec::new();
    loop {
        tokio::select! {
            joined = jobs.join_next() => match joined {
                Some(Ok(r)) => results.push(r),
                Some(Err(e)) => bail!("a job supervisor panicked: {e}"),
                None => break,
            },
            _ = tick.tick() => progress.update(&metrics.borrow_and_update().metrics),
            _ = stop.next() => {
                if interrupted {
                    eprintln!("\nstopped at once (second Ctrl-C)");
                    std::process::exit(130);
                }
                interrupted = true;
                eprintln!("\nstopping (Ctrl-C again to stop at once)...");
                cancel.cancel();
            }
        }
    }
    progress.finish();
    results.sort_by_key(|(i, _)| *i);
    let mut failure = None;
    for (_, job) in results {
        if let Some(line) = job.checkpoint_line() {
            eprintln!("{line}");
        }
        let ops = job.metrics.snapshot();
        let (read, written) = (
            fungi_execution::metrics::records_read(&ops),
            ops.last().map_or(0, |o| o.records_in),
        );
        match job.result {
            Ok(summary) if summary.stopped_with_savepoint.is_some() => {
                let path = summary.stopped_with_savepoint.unwrap_or_default();
                eprintln!(
                    "job stopped with a savepoint in {}: {read} records read, {written} written",
                    path.display()
                );
            }
            Ok(summary) => {
                eprintln!(
                    "job finished in {:.2}s: {read} records read, {written} written, {} late, {} dead letters",
                    summary.elapsed.as_secs_f64(),
                    ops.iter().map(|o| o.late_records).sum::<u64>(),
                    job.dead_letters.total(),
                );
                for d in job.dead_letters.recent().iter().take(5) {
                    eprintln!("  dead letter at {}: {}", d.position, d.message);
                }
            }
            Err(FungiError::Cancelled) if interrupted => {
                eprintln!("job stopped by the user: {read} records read, {written} written");
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Lists the checkpoints of a checkpoint directory.
fn checkpoints(args: CheckpointsArgs) -> Result<()> {
    let storage = fungi_checkpoint::CheckpointStorage::open(&args.dir, &Default::default())?;
    let ids = storage.ids()?;
    if ids.is_empty() {
        bail!("no checkpoints in {}", storage.location());
    }
    let mut complete = Vec::new();
    let mut unusable = Vec::new();
    for id in ids {
        match storage.load(id) {
            Ok(c) => complete.push(c.metadata),
            Err(e) => unusable.push(e.to_string()),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&complete)?);
    } else {
        println!(
            "{:>6}  {:<24} {:>9} {:>11} {:>6}  final",
            "id", "triggered", "duration", "size", "tasks"
        );
        for m in &complete {
            println!(
                "{:>6}  {:<24} {:>7}ms {:>9.1}KiB {:>6}  {}",
                m.id,
                fungi_common::time::format_millis(m.timestamp_ms),
                m.duration_ms,
                m.size_bytes as f64 / 1024.0,
                m.tasks.len(),
                if m.finished { "yes" } else { "" }
            );
        }
    }
    for reason in unusable {
        eprintln!("unusable: {reason}");
    }
    Ok(())
}

/// Asks the job checkpointing into `args.dir` for a savepoint and waits for it.
fn savepoint(args: SavepointArgs) -> Result<()> {
    let storage = fungi_checkpoint::CheckpointStorage::open(&args.dir, &Default::default())?;
    storage.request_savepoint(&fungi_checkpoint::SavepointRequest { stop: args.stop })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        if let Some(response) = storage.savepoint_response() {
            return match response.result {
                Ok(path) => {
                    println!("{}", path.display());
                    eprintln!(
                        "savepoint {} complete{}",
                        response.id,
                        if args.stop { "; the job stops" } else { "" }
                    );
                    Ok(())
                }
                Err(reason) => bail!("the savepoint failed: {reason}"),
            };
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "no answer within {}s: is a job with checkpoints into {} running?",
                args.timeout,
                args.dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `KEY=VALUE` of `--set`.
fn parse_setting(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

fn bench_nexmark(args: NexmarkArgs) -> Result<()> {
    let state = bench::StateOptions {
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        rocksdb: args.state_backend == "rocksdb",
        settings: args.settings.clone(),
    };
    if args.child {
        let result = bench::run_one(&args.query, args.events, args.parallelism, &state)?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    let queries: Vec<String> = if args.query == "all" {
        bench::QUERIES.iter().map(|q| q.0.to_string()).collect()
    } else {
        args.query
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    for q in &queries {
        if !bench::QUERIES.iter().any(|(name, _)| name == q) {
            bail!(
                "unknown query '{q}'; available: {}",
                bench::QUERIES
                    .iter()
                    .map(|q| q.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let results = match &args.cluster {
        Some(address) => bench_cluster::run(
            &queries,
            args.events,
            args.parallelism,
            &state,
            address,
            args.runs,
        )?,
        None => bench::run_all(&queries, args.events, args.parallelism, &state)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", bench::table(&results));
        print!("{}", bench_cluster::comparison(&results));
    }
    Ok(())
}
