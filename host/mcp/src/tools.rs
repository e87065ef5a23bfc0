//! The tools an agent may call: each a JSON schema, a description an agent can act on,
//! annotations (read-only, destructive, idempotent), the permission it needs, and a call
//! into the service layer with the caller's principal. Outputs are structured JSON and
//! bounded: lists take a `limit`, long texts are cut, and a result over
//! [`MAX_OUTPUT_BYTES`] is refused with what to narrow.

use std::sync::Arc;

use fungi_security::{Action, Principal};
use fungi_server::service::{ExplainSql, SubmitJob, TakeSavepoint};
use fungi_server::{Service, ServiceError};
use rmcp::model::{Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest tool result, in bytes of JSON.
pub const MAX_OUTPUT_BYTES: usize = 256 << 10;

/// The longest text field of a result (a script, a plan, a payload), in characters.
const MAX_TEXT: usize = 16 << 10;

/// The most items a list returns.
const MAX_LIMIT: usize = 500;

/// How a tool behaves, for its annotations and the read-only mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Reads only.
    Reads,
    /// Changes something; calling it twice does it twice.
    Changes,
    /// May end something (a job).
    Ends,
}

/// One tool.
pub(crate) struct ToolDef {
    pub(crate) name: &'static str,
    description: &'static str,
    schema: fn() -> Value,
    /// The permission a caller needs (the service checks it again on the call).
    pub(crate) action: Action,
    effect: Effect,
}

impl ToolDef {
    /// Whether the tool changes anything.
    pub(crate) fn mutates(&self) -> bool {
        self.effect != Effect::Reads
    }

    /// The tool as `tools/list` shows it.
    pub(crate) fn tool(&self) -> Tool {
        let schema = match (self.schema)() {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        let annotations = ToolAnnotations::new()
            .read_only(self.effect == Effect::Reads)
            .destructive(self.effect == Effect::Ends)
            .idempotent(matches!(self.effect, Effect::Reads | Effect::Ends))
            .open_world(false);
        Tool::new(self.name, self.description, Arc::new(schema)).with_annotations(annotations)
    }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn job_id() -> Value {
    json!({ "type": "string", "description": "The job's id (job-...), as list_jobs shows it." })
}

fn limit(what: &str) -> Value {
    json!({
        "type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
        "description": format!("At most this many {what} (default 50)."),
    })
}

fn sql() -> Value {
    json!({
        "type": "string",
        "description": "A Flink SQL script: CREATE TABLE statements, SET statements, and \
                        exactly one INSERT INTO. The tenant's catalog functions are \
                        available. Paths are relative to the tenant's files.",
    })
}

/// Every tool, in the order `tools/list` shows them.
pub(crate) const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "list_jobs",
        description: "List the jobs of your tenant (every tenant's for admins): id, status, \
                      parallelism, when created and updated, and the error of failed jobs. \
                      Start here, then call job_details for one job.",
        schema: || object(json!({ "limit": limit("jobs") }), &[]),
        action: Action::JobList,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "job_details",
        description: "One job in detail: status, its dataflow graph (operators with \
                      parallelism, edges with partitioning), per-operator rows in/out and \
                      watermarks, checkpoints, exceptions its restart strategy recovered \
                      from, restarts, savepoints, dead-letter counts per reason, and where \
                      it runs on a cluster. Use it to see whether a job runs, is slow or \
                      fails.",
        schema: || object(json!({ "job_id": job_id() }), &["job_id"]),
        action: Action::JobGet,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "explain_sql",
        description: "Plan a SQL script without running it: the physical plan as text, the \
                      dataflow graph, the settings it would run with, and whether your \
                      quotas would admit it. A script that does not plan comes back as an \
                      error naming the problem, with the planner's hint on what to write \
                      instead.",
        schema: || {
            object(
                json!({ "sql": sql(), "parallelism": { "type": "integer", "minimum": 1, "maximum": 1024 } }),
                &["sql"],
            )
        },
        action: Action::SqlExplain,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "validate_sql",
        description: "Check that a SQL script plans: {\"valid\": true} or {\"valid\": false, \
                      \"error\": ...} with the planner's hint; nothing runs.",
        schema: || object(json!({ "sql": sql() }), &["sql"]),
        action: Action::SqlExplain,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "submit_job",
        description: "Submit a SQL script as a job of your tenant; it runs until it ends or \
                      is cancelled. Returns the job's record (its id for the other tools). \
                      Call explain_sql first to see what it will run.",
        schema: || {
            object(
                json!({
                    "sql": sql(),
                    "parallelism": { "type": "integer", "minimum": 1, "maximum": 1024 },
                    "from_savepoint": { "type": "string", "description": "Start from this savepoint of one of your jobs (<job id>/sp-<n>, as take_savepoint returns)." },
                }),
                &["sql"],
            )
        },
        action: Action::JobSubmit,
        effect: Effect::Changes,
    },
    ToolDef {
        name: "cancel_job",
        description: "Cancel a running job. Its output up to its last checkpoint stays; it \
                      does not resume.",
        schema: || object(json!({ "job_id": job_id() }), &["job_id"]),
        action: Action::JobCancel,
        effect: Effect::Ends,
    },
    ToolDef {
        name: "take_savepoint",
        description: "Take a savepoint of a running job (it must checkpoint); with \
                      \"stop\": true the job stops once it is taken (stop-with-savepoint). \
                      Returns the savepoint's id, to pass to submit_job as from_savepoint.",
        schema: || {
            object(
                json!({
                    "job_id": job_id(),
                    "stop": { "type": "boolean", "description": "Stop the job after the savepoint." },
                    "timeout_secs": { "type": "integer", "minimum": 1, "maximum": 3600 },
                }),
                &["job_id"],
            )
        },
        action: Action::JobSavepoint,
        effect: Effect::Ends,
    },
    ToolDef {
        name: "job_dead_letters",
        description: "A running job's dead letters: counts per reason and the most recent \
                      records (operator, reason, message, position, the original record \
                      quoted as data), optionally of one reason.",
        schema: || {
            object(
                json!({
                    "job_id": job_id(),
                    "reason": { "type": "string", "description": "Only records of this reason (as the counts name it)." },
                    "limit": limit("records"),
                }),
                &["job_id"],
            )
        },
        action: Action::JobGet,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "metrics",
        description: "Prometheus metrics of your tenant's jobs and plugins (plugin CPU, \
                      memory, traps by reason), as text; with job_id only that job's \
                      series.",
        schema: || object(json!({ "job_id": job_id() }), &[]),
        action: Action::MetricsRead,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "list_plugins",
        description: "Your tenant's uploaded Wasm plugins: name, kind, digest, size.",
        schema: || object(json!({}), &[]),
        action: Action::PluginList,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "inspect_plugin",
        description: "One plugin of your tenant: its manifest, exports and imports, its \
                      signature status, and the limits it runs under.",
        schema: || {
            object(
                json!({ "name": { "type": "string", "description": "The plugin's name, as list_plugins shows it." } }),
                &["name"],
            )
        },
        action: Action::PluginGet,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "list_functions",
        description: "Your tenant's catalog: the functions registered for every job \
                      (CREATE FUNCTION statements). Tables are declared in each script.",
        schema: || object(json!({}), &[]),
        action: Action::FunctionList,
        effect: Effect::Reads,
    },
    ToolDef {
        name: "audit_log",
        description: "The newest audit records (who did what to which object, and how it \
                      ended), oldest first. Admins and tenant admins only.",
        schema: || object(json!({ "limit": limit("records") }), &[]),
        action: Action::AuditRead,
        effect: Effect::Reads,
    },
];

/// Arguments that fail to parse.
#[derive(Debug, thiserror::Error)]
#[error("tool '{tool}': bad arguments: {reason}")]
pub(crate) struct BadArguments {
    tool: &'static str,
    reason: String,
}

fn args<T: for<'de> Deserialize<'de>>(
    tool: &'static str,
    arguments: Option<serde_json::Map<String, Value>>,
) -> Result<T, BadArguments> {
    serde_json::from_value(Value::Object(arguments.unwrap_or_default())).map_err(|e| BadArguments {
        tool,
        reason: e.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobId {
    job_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaybeJob {
    #[serde(default)]
    job_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sql {
    sql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Savepoint {
    job_id: String,
    #[serde(default)]
    stop: bool,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterArgs {
    job_id: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginName {
    name: String,
}

/// How a call ended: a result, or a refusal or failure the agent reads (the same
/// message as REST).
pub(crate) enum Outcome {
    Done(Value),
    Refused(ServiceError),
}

fn limited(limit: Option<usize>) -> usize {
    limit.unwrap_or(50).clamp(1, MAX_LIMIT)
}

/// `text` cut to [`MAX_TEXT`] characters, saying so.
fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at),
        None => text.to_string(),
    }
}

/// Cuts every long string of `value` (in place).
fn cut_strings(value: &mut Value) {
    match value {
        Value::String(s) if s.len() > MAX_TEXT => *s = cut(s),
        Value::Array(items) => items.iter_mut().for_each(cut_strings),
        Value::Object(map) => map.values_mut().for_each(cut_strings),
        _ => {}
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Runs tool `def` for `p`.
pub(crate) async fn call(
    service: &Arc<Service>,
    p: &Principal,
    def: &ToolDef,
    arguments: Option<serde_json::Map<String, Value>>,
) -> Result<Outcome, BadArguments> {
    let name = def.name;
    let result: Result<Value, ServiceError> = match name {
        "list_jobs" => {
            let Limit { limit } = args(name, arguments)?;
            service.list_jobs(p).map(|jobs| {
                let n = jobs.len();
                let shown: Vec<Value> = jobs
                    .into_iter()
                    .rev()
                    .take(limited(limit))
                    .map(|j| {
                        json!({
                            "id": j.id, "tenant": j.tenant, "status": j.status,
                            "parallelism": j.parallelism, "error": j.error,
                            "created_ms": j.created_ms, "updated_ms": j.updated_ms,
                        })
                    })
                    .collect();
                json!({ "jobs": shown, "total": n, "newest_first": true })
            })
        }
        "job_details" => {
            let JobId { job_id } = args(name, arguments)?;
            service.get_job(p, &job_id).await.map(to_value)
        }
        "explain_sql" => {
            let req: ExplainSql = args(name, arguments)?;
            service.explain_sql(p, req).await.map(to_value)
        }
        "validate_sql" => {
            let Sql { sql } = args(name, arguments)?;
            let req = ExplainSql {
                sql,
                parallelism: None,
            };
            match service.explain_sql(p, req).await {
                Ok(e) => Ok(json!({ "valid": true, "refused_by_quota": e.refused_by_quota })),
                Err(ServiceError::BadRequest(error)) => {
                    Ok(json!({ "valid": false, "error": error }))
                }
                Err(e) => Err(e),
            }
        }
        "submit_job" => {
            let req: SubmitJob = args(name, arguments)?;
            service.submit_job(p, req).await.map(to_value)
        }
        "cancel_job" => {
            let JobId { job_id } = args(name, arguments)?;
            service.cancel_job(p, &job_id).await.map(to_value)
        }
        "take_savepoint" => {
            let Savepoint {
                job_id,
                stop,
                timeout_secs,
            } = args(name, arguments)?;
            let req = TakeSavepoint { stop, timeout_secs };
            service.savepoint_job(p, &job_id, req).await.map(to_value)
        }
        "job_dead_letters" => {
            let DeadLetterArgs {
                job_id,
                reason,
                limit,
            } = args(name, arguments)?;
            service.dead_letters(p, &job_id).map(|letters| {
                let recent: Vec<Value> = letters
                    .recent
                    .into_iter()
                    .rev()
                    .filter(|l| reason.as_deref().is_none_or(|r| l["reason"] == r))
                    .take(limited(limit))
                    .collect();
                json!({ "counts": letters.counts, "recent": recent, "newest_first": true })
            })
        }
        "metrics" => {
            let MaybeJob { job_id } = args(name, arguments)?;
            service.metrics(p).map(|text| {
                let lines: String = match &job_id {
                    Some(job) => {
                        let label = format!("job=\"{job}\"");
                        text.lines()
                            .filter(|l| l.contains(&label))
                            .map(|l| format!("{l}\n"))
                            .collect()
                    }
                    None => text,
                };
                json!({ "prometheus": lines })
            })
        }
        "list_plugins" => {
            let Limit { .. } = args(name, arguments)?;
            service.list_plugins(p).map(|plugins| {
                let shown: Vec<Value> = plugins
                    .into_iter()
                    .map(|r| json!({ "name": r.name, "kind": r.kind, "digest": r.digest, "bytes": r.bytes, "created_ms": r.created_ms }))
                    .collect();
                json!({ "plugins": shown })
            })
        }
        "inspect_plugin" => {
            let PluginName { name: plugin } = args(name, arguments)?;
            service.get_plugin(p, &plugin).map(to_value)
        }
        "list_functions" => {
            let Limit { .. } = args(name, arguments)?;
            service.list_functions(p).map(|f| json!({ "functions": f }))
        }
        "audit_log" => {
            let Limit { limit } = args(name, arguments)?;
            service
                .audit_log(p, Some(limited(limit) as u32))
                .map(|records| json!({ "records": records }))
        }
        other => {
            return Err(BadArguments {
                tool: def.name,
                reason: format!("no implementation for '{other}'"),
            });
        }
    };
    Ok(match result {
        Ok(mut value) => {
            cut_strings(&mut value);
            let size = value.to_string().len();
            if size > MAX_OUTPUT_BYTES {
                Outcome::Refused(ServiceError::BadRequest(format!(
                    "the result of '{name}' has {size} bytes, over the {MAX_OUTPUT_BYTES} an \
                     agent gets; narrow it (a smaller 'limit', one job)"
                )))
            } else {
                Outcome::Done(value)
            }
        }
        Err(e) => Outcome::Refused(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_honest_annotations() {
        for def in TOOLS {
            let tool = def.tool();
            assert_eq!(tool.input_schema["type"], "object", "{}", def.name);
            let annotations = tool.annotations.unwrap();
            assert_eq!(
                annotations.read_only_hint,
                Some(!def.mutates()),
                "{}",
                def.name
            );
            assert_eq!(def.mutates(), def.action.is_mutation(), "{}", def.name);
        }
        let names: std::collections::BTreeSet<_> = TOOLS.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), TOOLS.len(), "tool names are unique");
    }

    #[test]
    fn long_texts_are_cut() {
        let mut v = json!({ "a": ["x".repeat(MAX_TEXT + 10)], "b": "short" });
        cut_strings(&mut v);
        let a = v["a"][0].as_str().unwrap();
        assert!(a.ends_with("(10 more bytes)"), "{}", &a[a.len() - 30..]);
        assert_eq!(v["b"], "short");
    }
}
