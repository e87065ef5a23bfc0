//! Job files: a declarative pipeline `source -> [window] -> sink` in TOML.
//!
//! ```toml
//! name = "hot-auctions"
//! parallelism = 2
//!
//! [source]
//! connector = "nexmark"
//! options = { table = "bid", events = "1000000" }
//! watermark = { column = "dateTime", max-out-of-orderness = "4s", idle-timeout = "10s" }
//!
//! [window]
//! key-by = ["auction"]
//! kind = "tumbling"            # tumbling | sliding | session | cumulate
//! size = "10s"                 # sliding: size + slide; session: gap; cumulate: step + size
//! aggregates = ["count(*) AS bids", "max(price) AS top_price"]
//!
//! [sink]
//! connector = "stdout"
//!
//! [checkpoints]                # optional; `fungi run` resumes from the latest one
//! interval = "1s"
//! dir = "out/checkpoints/hot-auctions"
//! state-backend = "memory"     # or rocksdb
//! ```
//!
//! Sources that do not bring their own schema (datagen, filesystem) declare `columns =
//! [{ name = "id", type = "BIGINT" }, ...]`. Streaming SQL files do what most job files
//! do; this format is for simple pipelines without SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use arrow::datatypes::{Field, Schema};
use fungi_common::config::JobConfig;
use fungi_connector::datagen::parse_type;
use fungi_connector::options::{Options, parse_duration};
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operators::{LATE_TAG, WindowOperator};
use fungi_streaming::aggregate::{AggregateCall, builtin};
use fungi_streaming::watermark::WatermarkStrategy;
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::WindowAggregateSpec;
use serde::Deserialize;

/// A job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct JobFile {
    name: Option<String>,
    parallelism: Option<u32>,
    max_parallelism: Option<u32>,
    source: SourceSpec,
    window: Option<WindowSpec>,
    sink: SinkSpec,
    late_sink: Option<SinkSpec>,
    checkpoints: Option<CheckpointSpec>,
    /// `[restart-strategy]`: as Flink's (`type = "fixed-delay"`, `attempts`, `delay` in
    /// ms; `exponential-delay`; `failure-rate`); default none.
    restart_strategy: Option<fungi_common::config::RestartStrategy>,
    dead_letters: Option<DeadLetterSpec>,
}

/// `[dead-letters]`: durable targets of the job's dead letters (besides its ring).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DeadLetterSpec {
    /// A JSON-lines file.
    path: Option<std::path::PathBuf>,
    /// A Kafka topic, with `kafka-bootstrap-servers`.
    kafka_topic: Option<String>,
    kafka_bootstrap_servers: Option<String>,
}

/// `[checkpoints]`: periodic checkpoints; `fungi run` resumes from the latest one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckpointSpec {
    interval: String,
    dir: std::path::PathBuf,
    /// `memory` (default) or `rocksdb`.
    state_backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SourceSpec {
    connector: String,
    #[serde(default)]
    options: BTreeMap<String, toml::Value>,
    #[serde(default)]
    columns: Vec<Column>,
    watermark: Option<WatermarkSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Column {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WatermarkSpec {
    column: String,
    max_out_of_orderness: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WindowSpec {
    #[serde(default)]
    key_by: Vec<String>,
    kind: String,
    size: Option<String>,
    slide: Option<String>,
    gap: Option<String>,
    step: Option<String>,
    allowed_lateness: Option<String>,
    aggregates: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkSpec {
    connector: String,
    #[serde(default)]
    options: BTreeMap<String, toml::Value>,
}

fn options(connector: &str, values: &BTreeMap<String, toml::Value>) -> Options {
    Options::new(
        connector,
        values.iter().map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        }),
    )
}

fn millis(what: &str, v: &Option<String>) -> Result<i64> {
    let v = v.as_ref().ok_or_else(|| anyhow!("window needs '{what}'"))?;
    Ok(parse_duration(v)
        .map_err(|e| anyhow!("window '{what}': {e}"))?
        .as_millis() as i64)
}

/// Parses `fn(col) [AS alias]` or `count(*)`.
fn parse_aggregate(text: &str) -> Result<AggregateCall> {
    let (call, alias) = match text.to_ascii_lowercase().find(" as ") {
        Some(i) => (text[..i].trim(), Some(text[i + 4..].trim().to_string())),
        None => (text.trim(), None),
    };
    let open = call
        .find('(')
        .ok_or_else(|| anyhow!("aggregate '{text}' is not of the form fn(column)"))?;
    if !call.ends_with(')') {
        bail!("aggregate '{text}' is not of the form fn(column)");
    }
    let name = call[..open].trim();
    let arg = call[open + 1..call.len() - 1].trim();
    let function = builtin(name).ok_or_else(|| {
        anyhow!("unknown aggregate '{name}' in '{text}'; available: count, sum, min, max, avg")
    })?;
    let inputs: Vec<String> = if arg == "*" || arg.is_empty() {
        vec![]
    } else {
        vec![arg.to_string()]
    };
    let alias =
        alias.unwrap_or_else(|| format!("{name}_{}", if inputs.is_empty() { "star" } else { arg }));
    Ok(AggregateCall {
        function,
        inputs,
        alias,
    })
}

impl JobFile {
    /// Reads and parses a job file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads a job file's text; `name` names it in errors.
    pub(crate) fn parse(text: &str, name: &str) -> Result<Self> {
        toml::from_str(text).with_context(|| format!("invalid job file {name}"))
    }

    /// Builds the job graph; `parallelism` overrides the file's.
    pub(crate) fn to_graph(&self, parallelism: Option<u32>) -> Result<JobGraph> {
        let mut config = JobConfig::default();
        if let Some(p) = parallelism.or(self.parallelism) {
            config.parallelism = p;
        }
        if let Some(m) = self.max_parallelism {
            config.max_parallelism = m;
        }
        if let Some(c) = &self.checkpoints {
            config.checkpointing.interval = Some(
                parse_duration(&c.interval).map_err(|e| anyhow!("[checkpoints] interval: {e}"))?,
            );
            config.checkpointing.dir = Some(c.dir.clone());
            config.state_backend = match c.state_backend.as_deref() {
                None | Some("memory") => fungi_common::config::StateBackendKind::Memory,
                Some("rocksdb") => fungi_common::config::StateBackendKind::Rocksdb,
                Some(other) => {
                    bail!("[checkpoints] state-backend: '{other}' is neither memory nor rocksdb")
                }
            };
        }
        if let Some(r) = &self.restart_strategy {
            config.restart_strategy = r.clone();
        }
        let p = config.parallelism;
        let mut graph = JobGraph::new(self.name.clone().unwrap_or_else(|| "job".into()));
        graph.config = config;
        if let Some(d) = &self.dead_letters {
            graph.dead_letter_targets = fungi_connector::registry::dead_letter_targets(
                d.path.as_deref(),
                d.kafka_bootstrap_servers.as_deref(),
                d.kafka_topic.as_deref(),
                None,
            )
            .map_err(|e| anyhow!("[dead-letters]: {e} (kafka-bootstrap-servers, kafka-topic)"))?;
        }

        let declared = if self.source.columns.is_empty() {
            None
        } else {
            let fields = self
                .source
                .columns
                .iter()
                .map(|c| Ok(Field::new(&c.name, parse_type(&c.data_type)?, true)))
                .collect::<fungi_common::Result<Vec<_>>>()?;
            Some(Arc::new(Schema::new(fields)))
        };
        let src_opts = options(&self.source.connector, &self.source.options);
        let (factory, schema) = registry::source(&self.source.connector, declared, &src_opts)?;
        let watermarks = match &self.source.watermark {
            None => None,
            Some(w) => {
                schema
                    .index_of(&w.column)
                    .map_err(|_| fungi_streaming::unknown_column(&w.column, &schema))?;
                let delay = w
                    .max_out_of_orderness
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| anyhow!("watermark: {e}"))?;
                let mut s = match delay {
                    Some(d) => WatermarkStrategy::bounded_out_of_orderness(&w.column, d),
                    None => WatermarkStrategy::monotonous(&w.column),
                };
                if let Some(idle) = &w.idle_timeout {
                    s = s.with_idleness(
                        parse_duration(idle).map_err(|e| anyhow!("watermark idle-timeout: {e}"))?,
                    );
                }
                Some(s)
            }
        };
        let time_column = watermarks.as_ref().map(|w| w.timestamp_column.clone());
        let source = graph.add_source(&self.source.connector, p, factory, watermarks);

        let mut last = source;
        let mut last_edge = Partitioning::Forward;
        if let Some(w) = &self.window {
            let assigner = match w.kind.as_str() {
                "tumbling" | "tumble" => WindowAssigner::tumbling(millis("size", &w.size)?)?,
                "sliding" | "hop" => {
                    WindowAssigner::sliding(millis("size", &w.size)?, millis("slide", &w.slide)?)?
                }
                "session" => WindowAssigner::session(millis("gap", &w.gap)?)?,
                "cumulate" => {
                    WindowAssigner::cumulate(millis("step", &w.step)?, millis("size", &w.size)?)?
                }
                other => bail!(
                    "unknown window kind '{other}'; use tumbling, sliding, session or cumulate"
                ),
            };
            let time_column = time_column.clone().ok_or_else(|| {
                anyhow!(
                    "a window needs event time: add `watermark = {{ column = ... }}` to [source]"
                )
            })?;
            let spec = WindowAggregateSpec {
                keys: w.key_by.clone(),
                time_column,
                assigner,
                allowed_lateness: w
                    .allowed_lateness
                    .as_ref()
                    .map(|_| millis("allowed-lateness", &w.allowed_lateness))
                    .transpose()?
                    .unwrap_or(0),
                aggregates: w
                    .aggregates
                    .iter()
                    .map(|a| parse_aggregate(a))
                    .collect::<Result<_>>()?,
            };
            let (factory, _) = WindowOperator::factory(spec, &schema)?;
            let window = graph.add_stateful_operator("window", p, factory);
            let edge = if w.key_by.is_empty() {
                Partitioning::Rebalance
            } else {
                Partitioning::Hash(w.key_by.clone())
            };
            graph.connect(source, window, edge);
            if let Some(late) = &self.late_sink {
                let sink =
                    registry::sink(&late.connector, &options(&late.connector, &late.options))?;
                let late_node = graph.add_operator("late-sink", 1, sink);
                graph.connect_side(window, LATE_TAG, late_node, Partitioning::Rebalance);
            }
            last = window;
        } else if self.late_sink.is_some() {
            bail!("late-sink needs a [window]");
        }
        let sink_factory = registry::sink(
            &self.sink.connector,
            &options(&self.sink.connector, &self.sink.options),
        )?;
        // Printing is serial; files get one part per subtask.
        let sink_parallelism = if matches!(self.sink.connector.as_str(), "stdout" | "print") {
            1
        } else {
            p
        };
        if sink_parallelism != p {
            last_edge = Partitioning::Rebalance;
        }
        let sink = graph.add_operator(
            &format!("{}-sink", self.sink.connector),
            sink_parallelism,
            sink_factory,
        );
        graph.connect(last, sink, last_edge);
        Ok(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse() {
        let a = parse_aggregate("count(*) AS n").unwrap();
        assert_eq!(
            (a.function.name(), a.inputs.len(), a.alias.as_str()),
            ("count", 0, "n")
        );
        let a = parse_aggregate("max(price)").unwrap();
        assert_eq!(a.alias, "max_price");
        let err = parse_aggregate("median(price)").unwrap_err().to_string();
        assert!(err.contains("unknown aggregate 'median'"), "{err}");
    }
}
