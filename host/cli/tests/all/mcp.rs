//! The MCP server through the official Python MCP client (`mcp` from PyPI, in
//! `~/.cache/fungi/mcp-venv`), over streamable HTTP (`/mcp`) and stdio (`fungi mcp`):
//! tools, resources and prompts; a job explained, submitted, watched, its dead letters
//! read, a savepoint taken and the job cancelled; refusals with REST's messages; tenant
//! scoping; the audit log naming the agent's key; bad input as MCP errors.

use std::process::Command;
use std::time::Duration;

use fungi_testkit::process::CommandExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::harness::{Server, call, create_tenant, new_key, ok};

/// The Python environment with `mcp` (`scripts/install-test-services.sh`).
fn python() -> String {
    let home = std::env::var("HOME").unwrap();
    format!("{home}/.cache/fungi/mcp-venv/bin/python")
}

/// Runs the agent's `scenario` over `transport` with `key`; what it saw.
fn agent(
    server: &Server,
    transport: &str,
    key: &str,
    scenario: &str,
    arg: &str,
    env: &[(&str, &str)],
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_agent.py");
    let out = Command::new(python())
        .args([script, transport, &server.url, key, scenario, arg])
        .env("FUNGI_BIN", env!("CARGO_BIN_EXE_fungi"))
        .envs(env.iter().copied())
        .output_within(Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the {transport} agent failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn tools(seen: &Value) -> Vec<String> {
    seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn agents_inspect_and_operate_jobs_within_their_key_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    let service = super::server::refusing_service();
    create_tenant(
        &server,
        &admin,
        json!({ "id": "a", "quotas": { "allowed_egress_hosts": [service] } }),
    );
    create_tenant(&server, &admin, json!({ "id": "b" }));
    let dev = new_key(&server, &admin, "a", "developer");
    let viewer = new_key(&server, &admin, "a", "viewer");
    let other = new_key(&server, &admin, "b", "developer");

    // Without a valid key nothing MCP is reachable, not even the tool list.
    for key in [None, Some("fgk_nope")] {
        let mut request = reqwest::blocking::Client::new()
            .post(format!("{}/mcp", server.url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        if let Some(k) = key {
            request = request.bearer_auth(k);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    // Both transports: the tools a developer may call, with honest annotations;
    // explain with the planner's hint; bad input as MCP errors; resources and prompts.
    for transport in ["http", "stdio"] {
        let seen = agent(&server, transport, &dev, "explore", "", &[]);
        assert_eq!(seen["server"], "fungi");
        let names = tools(&seen);
        assert!(names.contains(&"submit_job".to_string()), "{names:?}");
        assert!(
            !names.contains(&"audit_log".to_string()),
            "developers read no audit log: {names:?}"
        );
        assert_eq!(seen["annotations"]["cancel_job"]["destructive"], true);
        assert_eq!(seen["annotations"]["job_details"]["read_only"], true);
        assert_eq!(seen["explain_bad"]["error"], true, "{seen}");
        assert!(
            seen["explain_bad"]["text"]
                .as_str()
                .unwrap()
                .contains("nowhere"),
            "{seen}"
        );
        assert_eq!(seen["validate_bad"]["data"]["valid"], false, "{seen}");
        assert!(
            seen["unknown_tool"]["protocol_error"]
                .as_str()
                .unwrap()
                .contains("no tool 'drop_everything'"),
            "{seen}"
        );
        assert!(
            seen["wrong_types"]["protocol_error"]
                .as_str()
                .unwrap()
                .contains("job_details"),
            "{seen}"
        );
        assert!(
            seen["oversized"]["text"]
                .as_str()
                .unwrap_or_default()
                .contains("limit"),
            "{seen}"
        );
        assert!(
            seen["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "fungi://docs/sql")
        );
        assert!(seen["sql_doc_chars"].as_u64().unwrap() > 1000);
        assert_eq!(
            seen["prompts"],
            json!(["diagnose_slow_job", "write_windowed_aggregation"])
        );
        assert!(
            seen["prompt_text"]
                .as_str()
                .unwrap()
                .contains("job_details")
        );
    }

    // A developer's agent runs a job through its whole life.
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '200ms';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20');
         CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = 'http://{service}/in',
             'sink.max-batch-rows' = '1', 'sink.on-error' = 'dead-letter');
         INSERT INTO hook SELECT id FROM g;"
    );
    let seen = agent(&server, "http", &dev, "run", &sql, &[]);
    assert!(
        seen["explain"]["data"]["plan"]
            .as_str()
            .unwrap()
            .contains("hook"),
        "{seen}"
    );
    let job = seen["job"].as_str().unwrap().to_string();
    assert_eq!(seen["details"]["data"]["status"], "RUNNING", "{seen}");
    let letters = &seen["dead_letters"]["data"];
    assert!(
        letters["counts"]["sink rejected"].as_u64().unwrap() >= 1,
        "{seen}"
    );
    assert!(letters["recent"].as_array().unwrap().len() <= 3, "{seen}");
    assert!(
        seen["graph"]["nodes"].as_array().unwrap().len() >= 2,
        "{seen}"
    );
    let savepoint = seen["savepoint"]["data"]["id"].as_str().unwrap();
    assert!(savepoint.starts_with(&format!("{job}/sp-")), "{seen}");
    assert_eq!(
        seen["list"]["data"]["jobs"][0]["id"],
        job.as_str(),
        "{seen}"
    );
    assert_eq!(seen["cancel"]["data"]["status"], "CANCELLED", "{seen}");

    // A viewer's agent sees no mutating tool; calling one anyway is refused with REST's
    // message; another tenant's job does not exist for an agent.
    let refused = agent(
        &server,
        "stdio",
        &viewer,
        "refused",
        &sql,
        &[("OTHER_JOB", job.as_str())],
    );
    let names = tools(&refused);
    for mutating in ["submit_job", "cancel_job", "take_savepoint"] {
        assert!(!names.contains(&mutating.to_string()), "{names:?}");
    }
    let (_, rest) = call(
        &server,
        Some(&viewer),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql })),
    );
    assert_eq!(refused["submit"]["text"], rest["error"], "{refused}");
    let stranger = agent(
        &server,
        "http",
        &other,
        "refused",
        &sql,
        &[("OTHER_JOB", job.as_str())],
    );
    assert!(
        stranger["other_job"]["text"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{stranger}"
    );
    // A tool the role may not call is not listed, and refused with REST's message.
    assert!(!tools(&stranger).contains(&"audit_log".to_string()));
    assert!(
        stranger["audit"]["text"]
            .as_str()
            .unwrap()
            .contains("may not audit.read"),
        "{stranger}"
    );

    // Every call is in the audit log under the agent's key: the mutations as the
    // service records them, the reads as MCP calls.
    let audit = ok(&server, &admin, Method::GET, "/audit?limit=10000", None);
    let by = |key: &str, action: &str| {
        let id = key.split('_').nth(1).unwrap();
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["who"].as_str().unwrap().contains(id) && r["action"] == action)
    };
    for action in [
        "job.submit",
        "job.savepoint",
        "job.cancel",
        "mcp.job_details",
        "mcp.explain_sql",
    ] {
        assert!(
            by(&dev, action),
            "no {action} by the developer's agent: {audit}"
        );
    }
    assert!(
        by(&viewer, "job.submit"),
        "the viewer's refused submit is audited: {audit}"
    );
}

#[test]
fn a_read_only_server_registers_no_mutating_tool_and_hosts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["--mcp-read-only"]);
    let admin = server.admin_key();
    let seen = agent(&server, "http", &admin, "explore", "", &[]);
    let names = tools(&seen);
    assert!(names.contains(&"audit_log".to_string()), "{names:?}");
    for mutating in ["submit_job", "cancel_job", "take_savepoint"] {
        assert!(!names.contains(&mutating.to_string()), "{names:?}");
    }
    // A Host the server does not answer to (DNS rebinding) is refused.
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(&admin)
        .header("host", "evil.example:80")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    // Over its rate a key is refused with 429 and when to come back.
    let dir = tempfile::tempdir().unwrap();
    let mut limited = Server::start_with(dir.path(), &["--rate-limit-per-key", "1"]);
    let admin = limited.admin_key();
    let statuses: Vec<u16> = (0..8)
        .map(|_| call(&limited, Some(&admin), Method::GET, "/jobs", None).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/jobs", limited.url))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    if response.status().as_u16() == 429 {
        assert!(response.headers().contains_key("retry-after"));
    }
}
