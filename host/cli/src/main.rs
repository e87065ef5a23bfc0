//! `fungi`: the command-line tool of the Fungi streaming platform.
//!
//! `fungi run --local JOB` runs a job in this process (embedded mode) with live progress;
//! `fungi bench nexmark` measures the Nexmark pipelines. Later commands (server, plugin,
//! savepoint) join as their crates land.

mod bench;
mod job;
mod progress;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use fungi_common::FungiError;
use fungi_execution::executor::LocalExecutor;
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
    /// The job is a TOML job file (source, optional window, sink; see
    /// examples/jobs/). Progress (records in/out per second, watermark) is shown on
    /// stderr; Ctrl-C stops the job cleanly.
    Run(RunArgs),
    /// Run benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run in this process (embedded mode). The only mode until the server lands.
    #[arg(long)]
    local: bool,
    /// Path of the job file.
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
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Nexmark pipelines on the built-in generator to a blackhole sink.
    ///
    /// Queries: gen (generator alone), q0 (pass-through), q1 (currency conversion),
    /// count (keyed tumbling count per auction). Each runs in its own process.
    Nexmark(NexmarkArgs),
}

#[derive(Debug, Args)]
struct NexmarkArgs {
    /// Query to run: gen, q0, q1, count, or all.
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
    /// Internal: run one query in this process and print its JSON result.
    #[arg(long, hide = true)]
    child: bool,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FUNGI_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Bench(BenchCommand::Nexmark(args)) => bench_nexmark(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: RunArgs) -> Result<()> {
    if !args.local {
        bail!("only embedded mode exists so far: pass --local");
    }
    let job = job::JobFile::load(&args.job)?;
    let graph = job.to_graph(args.parallelism)?;
    let plan = PhysicalPlan::new(graph)?;
    if args.explain {
        print!("{}", plan.explain());
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let handle = LocalExecutor::new().start(plan)?;
        let metrics = handle.metrics().clone();
        let dead_letters = handle.dead_letters().clone();
        let cancel = handle.cancel_token();
        let mut progress = progress::Progress::new(!args.no_progress);
        let mut wait = Box::pin(handle.wait());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut interrupted = false;
        let result = loop {
            tokio::select! {
                r = &mut wait => break r,
                _ = tick.tick() => progress.update(&metrics),
                _ = tokio::signal::ctrl_c(), if !interrupted => {
                    interrupted = true;
                    eprintln!("\nstopping the job (Ctrl-C)...");
                    cancel.cancel();
                }
            }
        };
        progress.finish();
        let ops = metrics.snapshot();
        let (read, written) = (
            ops.first().map_or(0, |o| o.records_out),
            ops.last().map_or(0, |o| o.records_in),
        );
        let dead = dead_letters.total();
        match result {
            Ok(summary) => {
                eprintln!(
                    "job finished in {:.2}s: {read} records read, {written} written, {} late, {dead} dead letters",
                    summary.elapsed.as_secs_f64(),
                    ops.iter().map(|o| o.late_records).sum::<u64>(),
                );
                for d in dead_letters.recent().iter().take(5) {
                    eprintln!("  dead letter at {}: {}", d.position, d.message);
                }
                Ok(())
            }
            Err(FungiError::Cancelled) if interrupted => {
                eprintln!("job stopped by the user: {read} records read, {written} written");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    })
}

fn bench_nexmark(args: NexmarkArgs) -> Result<()> {
    if args.child {
        let result = bench::run_one(&args.query, args.events, args.parallelism)?;
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
    let results = bench::run_all(&queries, args.events, args.parallelism)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", bench::table(&results));
    }
    Ok(())
}
