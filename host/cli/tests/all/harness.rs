//! A real `fungi server` process for tests, and calls to its REST API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::fungi;

/// A server process on a free loopback port.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Every stderr line so far.
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) log: Vec<String>,
}

impl Server {
    pub(crate) fn start(dir: &Path) -> Server {
        Self::start_with(dir, &[])
    }

    /// A server started with extra arguments (`--tls-cert` makes its URL https).
    pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let port = fungi_testkit::free_port();
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut child = fungi()
            .args(["server", "--data-dir", dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            lines: rx,
            log: Vec::new(),
        };
        server.wait_for("(REST /api/v1)");
        server
    }

    /// Waits for a stderr line containing `text`; returns it.
    pub(crate) fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        if let Some(l) = self.log.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
        }
        panic!(
            "no '{text}' from the server; it said:\n{}",
            self.log.join("\n")
        );
    }

    /// The admin key printed on the first start.
    pub(crate) fn admin_key(&mut self) -> String {
        let line = self.wait_for("admin key");
        line.rsplit(' ').next().unwrap().to_string()
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs blocking HTTP calls also from within the gRPC tests' runtime.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Calls the API; returns the status and the JSON body (`Null` when empty).
pub(crate) fn call(
    server: &Server,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    blocking(|| call_now(server, key, method, path, body))
}

pub(crate) fn call_now(
    server: &Server,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = if path.starts_with("/metrics") {
        format!("{}{path}", server.url)
    } else {
        format!("{}/api/v1{path}", server.url)
    };
    let mut request = Client::new().request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) fn ok(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, value) = call(server, Some(key), method.clone(), path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {value}"
    );
    value
}

pub(crate) fn create_tenant(server: &Server, admin: &str, body: Value) {
    ok(server, admin, Method::POST, "/tenants", Some(body));
}

pub(crate) fn new_key(server: &Server, admin: &str, tenant: &str, role: &str) -> String {
    let created = ok(
        server,
        admin,
        Method::POST,
        "/keys",
        Some(json!({ "tenant": tenant, "role": role, "name": role })),
    );
    created["key"].as_str().unwrap().to_string()
}

/// An unbounded job: generated rows to a blackhole, checkpointing every 200 ms.
pub(crate) const ENDLESS: &str = "SET 'execution.checkpointing.interval' = '200ms';
    CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
    CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
    INSERT INTO out SELECT id FROM g;";

/// A bounded job.
pub(crate) const SHORT: &str =
    "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
    CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
    INSERT INTO out SELECT id FROM g;";

pub(crate) fn job_status(server: &Server, key: &str, id: &str) -> String {
    ok(server, key, Method::GET, &format!("/jobs/{id}"), None)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn wait_status(server: &Server, key: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_status(server, key, id) != status {
        assert!(Instant::now() < deadline, "job {id} never {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Uploads a component over REST; returns the status and body.
pub(crate) fn upload(
    server: &Server,
    key: &str,
    name: &str,
    bytes: Vec<u8>,
    sig: Option<&str>,
) -> (u16, Value) {
    blocking(|| upload_now(server, key, name, bytes, sig))
}

pub(crate) fn upload_now(
    server: &Server,
    key: &str,
    name: &str,
    bytes: Vec<u8>,
    sig: Option<&str>,
) -> (u16, Value) {
    let mut request = Client::new()
        .put(format!("{}/api/v1/plugins/{name}", server.url))
        .bearer_auth(key)
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(sig) = sig {
        request = request.header("x-fungi-signature", sig);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json::<Value>().unwrap_or(Value::Null))
}

pub(crate) fn wait_for_end(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = ok(server, key, Method::GET, &format!("/jobs/{id}"), None);
        if job["status"] != "RUNNING" {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} still running: {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
