//! The stdio transport (`fungi mcp --server URL`): a desktop agent starts the binary and
//! speaks MCP on its standard input and output; each message goes on to the server's
//! `/mcp` with the key, and each answer comes back a line. The server does everything
//! (authentication, permissions, audit), so stdio and HTTP serve exactly the same.
//!
//! A relay of lines rather than rmcp's own HTTP client: that client is built on another
//! major version of reqwest than the rest of Fungi, and the relay needs only to post a
//! line and read back JSON or server-sent events.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Standard input or output failed.
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
}

/// A JSON-RPC error answering the request `line` (if it is one), naming `why`.
fn error_for(line: &str, code: i64, why: &str) -> Option<Value> {
    let id = serde_json::from_str::<Value>(line)
        .ok()?
        .get("id")
        .cloned()?;
    Some(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": why } }))
}

/// The messages of a server-sent-events body: each event's `data`.
fn sse_messages(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        } else if line.is_empty() && !data.is_empty() {
            out.push(std::mem::take(&mut data));
        }
    }
    out
}

/// Relays MCP messages between standard input/output and `server`'s `/mcp` with `key`,
/// until standard input ends.
pub async fn run(http: reqwest::Client, server: &str, key: &str) -> Result<(), ProxyError> {
    let url = format!("{}/mcp", server.trim_end_matches('/'));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut protocol: Option<String> = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let mut request = http
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(line.clone());
        if let Some(version) = &protocol {
            request = request.header("mcp-protocol-version", version);
        }
        let answers: Vec<String> = match request.send().await {
            Err(e) => error_for(&line, -32000, &format!("cannot reach {url}: {e}"))
                .map(|v| v.to_string())
                .into_iter()
                .collect(),
            Ok(response) => {
                let status = response.status();
                let is_sse = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    if is_sse {
                        sse_messages(&body)
                    } else if body.trim().is_empty() {
                        Vec::new()
                    } else {
                        vec![body.trim().replace('\n', " ")]
                    }
                } else {
                    // The server's refusal (401, 403, 429, ...) in its own words.
                    let why = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or(body);
                    error_for(&line, -32000, &format!("{status}: {why}"))
                        .map(|v| v.to_string())
                        .into_iter()
                        .collect()
                }
            }
        };
        for answer in answers {
            // One line each, whatever the server's formatting.
            let answer = serde_json::from_str::<Value>(&answer).map_or(answer, |v| v.to_string());
            // The negotiated version goes on every later request, as the HTTP
            // transport asks.
            if let Ok(v) = serde_json::from_str::<Value>(&answer)
                && let Some(version) = v["result"]["protocolVersion"].as_str()
            {
                protocol = Some(version.to_string());
            }
            stdout.write_all(answer.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_errors_become_lines() {
        let body = "event: message\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\n\n";
        assert_eq!(sse_messages(body), ["{\"a\":1}", "{\"b\":\n2}"]);
        let e = error_for(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
            -32000,
            "401: no key",
        )
        .unwrap();
        assert_eq!(e["id"], 7);
        assert_eq!(e["error"]["message"], "401: no key");
        assert!(
            error_for(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                1,
                "x"
            )
            .is_none()
        );
    }
}
