//! `fungi mcp`: the MCP server on standard input and output for desktop agents, relayed
//! to a Fungi server's `/mcp` with the key in `FUNGI_API_KEY` (or `--api-key-file`).

use anyhow::{Context, Result};
use clap::Args;

/// `fungi mcp`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    #[command(flatten)]
    connection: crate::client::Connection,
}

/// Relays MCP on stdio to the server until standard input ends.
pub(crate) fn run(args: McpArgs) -> Result<()> {
    let c = &args.connection;
    let key = c.api_key()?;
    let mut http = reqwest::Client::builder();
    if let Some(ca) = c.ca_certificate()? {
        http = http.add_root_certificate(ca);
    }
    let http = http.build().context("cannot set up the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(fungi_mcp::proxy::run(http, c.server(), &key))
        .map_err(anyhow::Error::from)
}
