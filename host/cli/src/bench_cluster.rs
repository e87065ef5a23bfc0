//! `fungi bench nexmark --cluster ADDR`: each Nexmark SQL query on a running cluster and
//! in embedded mode at the same parallelism, alternately in one run.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use fungi_cluster::{ClusterClient, JobSpec};

use crate::bench::{self, BenchResult, StateOptions};

/// The settings a cluster job needs to match the embedded measurement.
fn settings(p: u32, state: &StateOptions, checkpoints: &std::path::Path) -> String {
    let mut text = format!("SET 'parallelism.default' = '{p}';\n");
    if let Some(ms) = state.checkpoint_interval_ms {
        text.push_str(&format!(
            "SET 'execution.checkpointing.interval' = '{ms}ms';\n\
             SET 'execution.checkpointing.dir' = '{}';\n",
            checkpoints.display()
        ));
    }
    if state.rocksdb {
        text.push_str("SET 'state.backend.type' = 'rocksdb';\n");
    }
    text.push_str(&state.sql_settings());
    text
}

/// Runs `query` on the cluster at `address` and measures it from submission to its end.
async fn run_on_cluster(
    client: &mut ClusterClient,
    query: &str,
    events: u64,
    p: u32,
    state: &StateOptions,
) -> Result<BenchResult> {
    let checkpoints = tempfile::tempdir()?;
    let spec = JobSpec {
        file_name: format!("{query}.sql"),
        text: format!(
            "{}{}",
            settings(p, state, checkpoints.path()),
            bench::sql_text(query, events)?
        ),
        parallelism: Some(p),
        statement: 0,
        savepoint: None,
        ..Default::default()
    };
    let start = Instant::now();
    let mut stream = client.submit(&spec, Vec::new()).await?;
    let finished = loop {
        let Some(event) = stream
            .message()
            .await
            .context("the JobManager's stream broke")?
        else {
            bail!("{query}: the JobManager ended the job's stream without an outcome");
        };
        match event.status.as_str() {
            "finished" => break event,
            "failed" => bail!("{query} failed on the cluster: {}", event.message),
            _ => {}
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let rows: u64 = finished
        .operators
        .iter()
        .filter(|o| o.source)
        .map(|o| o.records_out)
        .sum();
    Ok(BenchResult {
        query: format!("{query}@cluster"),
        parallelism: p,
        events,
        rows,
        seconds,
        events_per_second: events as f64 / seconds,
        rows_per_second: rows as f64 / seconds,
        // Measured across other processes: not known here.
        cores_used: 0.0,
        rows_per_second_per_core: 0.0,
        peak_rss_mib: 0.0,
        latency_p50_ms: None,
        latency_p99_ms: None,
        checkpoint_interval_ms: state.checkpoint_interval_ms,
        state_backend: if state.rocksdb { "rocksdb" } else { "memory" }.into(),
        checkpoints: None,
        exchange_mb_per_s: Some(finished.bytes_exchanged as f64 / 1e6 / seconds),
    })
}

/// Each query embedded (in a child process) and then on the cluster, `runs` times over.
pub(crate) fn run(
    queries: &[String],
    events: u64,
    p: u32,
    state: &StateOptions,
    address: &str,
    runs: u32,
) -> Result<Vec<BenchResult>> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let mut client = runtime.block_on(ClusterClient::leader(address, None))?;
    let mut results = Vec::new();
    for _ in 0..runs {
        for q in queries {
            results.extend(bench::run_all(std::slice::from_ref(q), events, p, state)?);
            eprintln!(
                "running {q} on the cluster at {address} ({events} events, parallelism {p})..."
            );
            results.push(runtime.block_on(run_on_cluster(&mut client, q, events, p, state))?);
        }
    }
    Ok(results)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// How each query on the cluster compares with embedded mode: the median times of its
/// runs in each mode.
pub(crate) fn comparison(results: &[BenchResult]) -> String {
    let mut text = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in results {
        let Some(base) = r.query.strip_suffix("@cluster") else {
            continue;
        };
        if !seen.insert(base) {
            continue;
        }
        let seconds = |name: &str| -> Vec<f64> {
            results
                .iter()
                .filter(|e| e.query == name)
                .map(|e| e.seconds)
                .collect()
        };
        let (embedded, cluster) = (seconds(base), seconds(&r.query));
        if embedded.is_empty() {
            continue;
        }
        let runs = cluster.len();
        let (embedded, cluster) = (median(embedded), median(cluster));
        let exchange = median(
            results
                .iter()
                .filter(|e| e.query == r.query)
                .filter_map(|e| e.exchange_mb_per_s)
                .collect(),
        );
        let over = if runs > 1 {
            format!(" (medians of {runs} runs: embedded {embedded:.3} s, cluster {cluster:.3} s)")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{base}: cluster {:.2} of embedded throughput; {exchange:.1} MB/s between TaskManagers{over}\n",
            embedded / cluster,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![7.0]), 7.0);
    }
}
