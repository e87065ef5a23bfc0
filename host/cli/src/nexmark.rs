//! `fungi nexmark generate`: the built-in Nexmark generator's events as files, so that
//! Fungi and other engines (Flink's filesystem source) read exactly the same data.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use fungi_connector::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};

/// File formats of `generate`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// JSON lines (timestamps as ISO-8601, e.g. `2015-07-15T00:00:00.001`).
    Json,
    /// CSV with a header row.
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Nexmark events (persons, auctions and bids together, in the generator's
    /// proportions 1:3:46); each table gets its share.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// `bid`, `auction`, `person`, or `all` (one file per table in the `--out`
    /// directory: bid.json, auction.json, person.json).
    #[arg(long, default_value = "all")]
    table: String,
    /// File format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Output file (one table) or directory (`all`).
    #[arg(long)]
    out: PathBuf,
}

/// Writes the files; prints what it wrote.
pub(crate) fn generate(args: GenerateArgs) -> Result<()> {
    if args.table == "all" {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        for (name, table) in [
            ("person", NexmarkTable::Person),
            ("auction", NexmarkTable::Auction),
            ("bid", NexmarkTable::Bid),
        ] {
            let path = args.out.join(format!("{name}.{}", args.format.extension()));
            write_table(table, args.events, args.format, &path)?;
        }
        return Ok(());
    }
    let table = NexmarkTable::parse(&args.table)?;
    if args.out.is_dir() {
        bail!(
            "{} is a directory: give a file for one table, or --table all",
            args.out.display()
        );
    }
    write_table(table, args.events, args.format, &args.out)
}

fn write_table(table: NexmarkTable, events: u64, format: Format, path: &Path) -> Result<()> {
    let config = NexmarkConfig {
        max_events: Some(events),
        ..Default::default()
    };
    let mut generator = NexmarkGenerator::new(table, config, 0, 1)?;
    let file = BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut rows = 0usize;
    match format {
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(file);
            while let Some(b) = generator.next_batch(8192)? {
                rows += b.num_rows();
                w.write(&b)?;
            }
            w.finish()?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
                .build(file);
            while let Some(b) = generator.next_batch(8192)? {
                rows += b.num_rows();
                w.write(&b)?;
            }
        }
    }
    eprintln!("wrote {rows} rows to {}", path.display());
    Ok(())
}
