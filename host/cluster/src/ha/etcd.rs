//! A small client of etcd's v3 API through its JSON gateway (`/v3/...` on the client
//! port): key ranges, transactions and leases are all a leader election with fencing
//! needs. The gateway speaks plain HTTP/JSON, so the client needs no generated gRPC
//! code and no new build dependency (reqwest is already in the tree).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

/// Why etcd did not answer as hoped.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd is unreachable at {endpoints}: {reason}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last endpoint's error.
        reason: String,
    },
    /// The TLS files cannot be used.
    #[error("etcd's TLS settings: {0}")]
    Tls(String),
    /// etcd answered with an error.
    #[error("etcd refused {call}: {message}")]
    Refused {
        /// The API call.
        call: &'static str,
        /// etcd's message.
        message: String,
    },
}

/// A key and its value, with the revision that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision that created the key (it changes when the key is deleted and
    /// created again).
    pub create_revision: i64,
    /// The revision of the key's last change.
    pub mod_revision: i64,
}

/// One comparison of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key was created at this revision (0: the key does not exist).
    Created(String, i64),
    /// The key last changed at this revision (0: the key does not exist).
    Modified(String, i64),
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Sets a key, attached to a lease (0: none).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease the key lives and dies with.
        lease: i64,
    },
    /// Deletes a key.
    Delete(String),
    /// Deletes every key starting with a prefix.
    DeletePrefix(String),
}

/// What a transaction did.
#[derive(Debug, Clone)]
pub struct TxnResult {
    /// Whether every comparison held (and the success operations ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// TLS to etcd: the CA that signed its certificate and, when etcd checks clients
/// (`--client-cert-auth`), this client's certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA certificate.
    pub ca: std::path::PathBuf,
    /// This client's certificate and key.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// A client of one etcd cluster (any of its endpoints answers).
#[derive(Debug, Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct RawKv {
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    create_revision: String,
    #[serde(default)]
    mod_revision: String,
}

impl Etcd {
    /// A client of the etcd cluster at `endpoints` (`http://host:port`, or `https://`
    /// with `tls`; a bare `host:port` takes the scheme `tls` implies). Each call waits at
    /// most `timeout`.
    pub fn new(
        endpoints: &[String],
        timeout: Duration,
        tls: Option<&EtcdTls>,
    ) -> Result<Etcd, EtcdError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(tls) = tls {
            let read = |path: &std::path::Path| {
                std::fs::read(path)
                    .map_err(|e| EtcdError::Tls(format!("cannot read {}: {e}", path.display())))
            };
            let ca = reqwest::Certificate::from_pem(&read(&tls.ca)?).map_err(|e| {
                EtcdError::Tls(format!(
                    "{} is not a PEM certificate: {e}",
                    tls.ca.display()
                ))
            })?;
            builder = builder.add_root_certificate(ca);
            if let Some((cert, key)) = &tls.identity {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    EtcdError::Tls(format!(
                        "{} and {} are not a PEM certificate and key: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                builder = builder.identity(identity);
            }
        }
        let http = builder.build().map_err(|e| EtcdError::Tls(e.to_string()))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let e = e.trim().trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        Ok(Etcd { endpoints, http })
    }

    /// POSTs `body` to `path` on the first endpoint that answers.
    async fn call(&self, call: &'static str, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut last = String::from("no endpoint given");
        for endpoint in &self.endpoints {
            let response = match self
                .http
                .post(format!("{endpoint}{path}"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    // The cause (a refused certificate, a refused connection) is deep in
                    // the chain.
                    let mut reason = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        reason = format!("{reason}: {cause}");
                        source = cause.source();
                    }
                    last = format!("{endpoint}: {reason}");
                    continue;
                }
            };
            let status = response.status();
            let value: Value = response.json().await.map_err(|e| EtcdError::Refused {
                call,
                message: format!("not JSON ({status}): {e}"),
            })?;
            if let Some(message) = value.get("error").or_else(|| value.get("message")) {
                if status.is_server_error() {
                    last = format!("{endpoint}: {message}");
                    continue;
                }
                return Err(EtcdError::Refused {
                    call,
                    message: message.as_str().unwrap_or_default().to_string(),
                });
            }
            return Ok(value);
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints.join(","),
            reason: last,
        })
    }

    /// The keys starting with `prefix` (at most `limit`, 0 for all).
    pub async fn range_prefix(&self, prefix: &str, limit: i64) -> Result<Vec<KeyValue>, EtcdError> {
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "limit": limit.to_string(),
        });
        kvs(&self.call("range", "/v3/kv/range", body).await?)
    }

    /// The keys starting with `prefix` that sort before `before` (every one, when
    /// `None`), last first, at most `limit` (0 for all): a log's newest entries, page by
    /// page.
    pub async fn range_prefix_back(
        &self,
        prefix: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let end = match before {
            Some(key) => key.as_bytes().to_vec(),
            None => prefix_end(prefix.as_bytes()),
        };
        let body = json!({
            "key": B64.encode(prefix),
            "range_end": B64.encode(end),
            "limit": limit.to_string(),
            "sort_order": "DESCEND",
            "sort_target": "KEY",
        });
        kvs(&self.call("range", "/v3/kv/range", body).await?)
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let body = json!({ "key": B64.encode(key) });
        Ok(kvs(&self.call("range", "/v3/kv/range", body).await?)?
            .into_iter()
            .next())
    }

    /// Runs `success` if every comparison holds, else nothing.
    pub async fn txn(&self, compare: &[Compare], success: &[Op]) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Created(key, revision) => json!({
                    "key": B64.encode(key),
                    "target": "CREATE",
                    "result": "EQUAL",
                    "create_revision": revision.to_string(),
                }),
                Compare::Modified(key, revision) => json!({
                    "key": B64.encode(key),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": revision.to_string(),
                }),
            })
            .collect();
        let success: Vec<Value> = success
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => json!({ "request_put": {
                    "key": B64.encode(key),
                    "value": B64.encode(value),
                    "lease": lease.to_string(),
                }}),
                Op::Delete(key) => json!({ "request_delete_range": { "key": B64.encode(key) }}),
                Op::DeletePrefix(prefix) => json!({ "request_delete_range": {
                    "key": B64.encode(prefix),
                    "range_end": B64.encode(prefix_end(prefix.as_bytes())),
                }}),
            })
            .collect();
        let body = json!({ "compare": compare, "success": success, "failure": [] });
        let value = self.call("txn", "/v3/kv/txn", body).await?;
        Ok(TxnResult {
            succeeded: value
                .get("succeeded")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            revision: revision(&value),
        })
    }

    /// A new lease that lives `ttl` unless kept alive; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let body = json!({ "TTL": ttl.as_secs().max(1).to_string() });
        let value = self.call("lease grant", "/v3/lease/grant", body).await?;
        int(value.get("ID")).ok_or_else(|| EtcdError::Refused {
            call: "lease grant",
            message: format!("no lease id in {value}"),
        })
    }

    /// Keeps lease `id` alive; its remaining time to live (0 when it has expired).
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let body = json!({ "ID": id.to_string() });
        let value = self
            .call("lease keepalive", "/v3/lease/keepalive", body)
            .await?;
        Ok(int(value.get("result").and_then(|r| r.get("TTL"))).unwrap_or(0))
    }

    /// Ends lease `id` (its keys go with it).
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        let body = json!({ "ID": id.to_string() });
        self.call("lease revoke", "/v3/lease/revoke", body)
            .await
            .map(|_| ())
    }
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An int64 the gateway sends as a string.
fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

fn revision(value: &Value) -> i64 {
    int(value.get("header").and_then(|h| h.get("revision"))).unwrap_or(0)
}

fn kvs(value: &Value) -> Result<Vec<KeyValue>, EtcdError> {
    let Some(list) = value.get("kvs") else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawKv> = serde_json::from_value(list.clone()).map_err(|e| EtcdError::Refused {
        call: "range",
        message: format!("unexpected answer: {e}"),
    })?;
    raw.into_iter()
        .map(|kv| {
            let decode = |s: &str| {
                B64.decode(s).map_err(|e| EtcdError::Refused {
                    call: "range",
                    message: format!("a value is not base64: {e}"),
                })
            };
            Ok(KeyValue {
                key: String::from_utf8_lossy(&decode(&kv.key)?).into_owned(),
                value: decode(&kv.value)?,
                create_revision: kv.create_revision.parse().unwrap_or(0),
                mod_revision: kv.mod_revision.parse().unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/fungi/a/"), b"/fungi/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }
}
