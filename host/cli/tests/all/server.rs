//! `fungi server` end to end: the REST API, roles, tenants, quotas, the audit log, a
//! restart, and the CLI as a client.

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
struct Server {
    child: Child,
    url: String,
    /// Every stderr line so far.
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let port = fungi_testkit::free_port();
        let mut child = fungi()
            .args(["server", "--data-dir", dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
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
            url: format!("http://127.0.0.1:{port}"),
            lines: rx,
            log: Vec::new(),
        };
        server.wait_for("listening on");
        server
    }

    /// Waits for a stderr line containing `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
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
    fn admin_key(&mut self) -> String {
        let line = self.wait_for("admin key");
        line.rsplit(' ').next().unwrap().to_string()
    }

    fn kill(mut self) {
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

/// Calls the API; returns the status and the JSON body (`Null` when empty).
fn call(
    server: &Server,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = Client::new().request(method, format!("{}/api/v1{path}", server.url));
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

fn ok(server: &Server, key: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, value) = call(server, Some(key), method.clone(), path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {value}"
    );
    value
}

fn new_key(server: &Server, admin: &str, tenant: &str, role: &str) -> String {
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
const ENDLESS: &str = "SET 'execution.checkpointing.interval' = '200ms';
    CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
    CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
    INSERT INTO out SELECT id FROM g;";

/// A bounded job.
const SHORT: &str =
    "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
    CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
    INSERT INTO out SELECT id FROM g;";

fn job_status(server: &Server, key: &str, id: &str) -> String {
    ok(server, key, Method::GET, &format!("/jobs/{id}"), None)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_status(server: &Server, key: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_status(server, key, id) != status {
        assert!(Instant::now() < deadline, "job {id} never {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_role_on_every_endpoint_is_allowed_or_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "a" })),
    );
    let keys = [
        ("admin", admin.clone()),
        (
            "tenant-admin",
            new_key(&server, &admin, "a", "tenant-admin"),
        ),
        ("developer", new_key(&server, &admin, "a", "developer")),
        ("viewer", new_key(&server, &admin, "a", "viewer")),
    ];
    let job = ok(
        &server,
        &keys[1].1,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let job = job["id"].as_str().unwrap().to_string();

    // (endpoint, roles allowed); each call gets fresh objects where it needs them.
    type Request = (Method, String, Option<Value>);
    type Endpoint<'a> = (&'a str, Box<dyn Fn(&str) -> Request + 'a>, &'a [&'a str]);
    let endpoints: Vec<Endpoint<'_>> = vec![
        (
            "submit",
            Box::new(|_| (Method::POST, "/jobs".into(), Some(json!({ "sql": SHORT })))),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "list jobs",
            Box::new(|_| (Method::GET, "/jobs".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "get job",
            Box::new(|_| (Method::GET, format!("/jobs/{job}"), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "cancel job",
            Box::new(|_| (Method::POST, format!("/jobs/{job}/cancel"), None)),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "create tenant",
            Box::new(|role| {
                (
                    Method::POST,
                    "/tenants".into(),
                    Some(json!({ "id": format!("t-{role}") })),
                )
            }),
            &["admin"],
        ),
        (
            "list tenants",
            Box::new(|_| (Method::GET, "/tenants".into(), None)),
            &["admin"],
        ),
        (
            "delete tenant",
            Box::new(|_| (Method::DELETE, "/tenants/a-gone".into(), None)),
            &["admin"],
        ),
        (
            "create key",
            Box::new(|_| {
                (
                    Method::POST,
                    "/keys".into(),
                    Some(json!({ "tenant": "a", "role": "viewer" })),
                )
            }),
            &["admin", "tenant-admin"],
        ),
        (
            "list keys",
            Box::new(|_| (Method::GET, "/keys".into(), None)),
            &["admin", "tenant-admin"],
        ),
        (
            "revoke key",
            Box::new(|_| {
                (
                    Method::DELETE,
                    "/keys/000000000000000000000000".into(),
                    None,
                )
            }),
            &["admin", "tenant-admin"],
        ),
        (
            "audit",
            Box::new(|_| (Method::GET, "/audit".into(), None)),
            &["admin", "tenant-admin"],
        ),
        // Authorisation comes before the body is looked at: allowed roles get 400 (not a
        // component) or 404 (no such plugin), refused ones 403.
        (
            "upload plugin",
            Box::new(|_| (Method::PUT, "/plugins/p".into(), Some(json!({})))),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "list plugins",
            Box::new(|_| (Method::GET, "/plugins".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "get plugin",
            Box::new(|_| (Method::GET, "/plugins/none".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "delete plugin",
            Box::new(|_| (Method::DELETE, "/plugins/none".into(), None)),
            &["admin", "tenant-admin", "developer"],
        ),
    ];
    let mut denied = 0;
    for (name, request, allowed) in &endpoints {
        for (role, key) in &keys {
            if *name == "delete tenant" {
                ok(
                    &server,
                    &admin,
                    Method::POST,
                    "/tenants",
                    Some(json!({ "id": "a-gone" })),
                );
            }
            let (method, path, body) = request(role);
            let (status, value) = call(&server, Some(key), method, &path, body);
            if allowed.contains(role) {
                // Allowed: never 401/403 (a cancelled job may answer 409, an unknown key 404).
                assert!(
                    ![401, 403].contains(&status),
                    "{role} {name}: {status} {value}"
                );
            } else {
                assert_eq!(status, 403, "{role} {name}: {value}");
                assert!(
                    value["error"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("role '{role}' may not")),
                    "{value}"
                );
                denied += 1;
            }
            if *name == "delete tenant" && !allowed.contains(role) {
                ok(&server, &admin, Method::DELETE, "/tenants/a-gone", None);
            }
        }
        let (method, path, body) = request("anonymous");
        let (status, value) = call(&server, None, method.clone(), &path, body.clone());
        assert_eq!(status, 401, "no key, {name}: {value}");
        let (status, _) = call(&server, Some("fgk_0123_4567"), method, &path, body);
        assert_eq!(status, 401, "unknown key, {name}");
    }
    assert_eq!(endpoints.len(), 15);
    let audit = ok(&server, &admin, Method::GET, "/audit?limit=10000", None);
    let records = audit.as_array().unwrap();
    let count = |prefix: &str| {
        records
            .iter()
            .filter(|r| r["result"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!(count("denied"), denied, "{audit}");
    assert_eq!(count("unauthenticated"), 2 * endpoints.len());
    // Every mutation is there with its target and who made it.
    assert!(records.iter().any(|r| r["action"] == "job.cancel"
        && r["target"] == job.as_str()
        && r["result"] == "ok"));
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "tenant.create" && r["target"] == "t-admin")
    );
    // A tenant admin reads only its tenant's records.
    let own = ok(&server, &keys[1].1, Method::GET, "/audit?limit=10000", None);
    assert!(
        own.as_array().unwrap().iter().all(|r| r["tenant"] == "a"),
        "{own}"
    );
    // The OpenAPI document is generated from the handlers.
    let doc: Value = Client::new()
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        doc["paths"]["/api/v1/jobs/{id}/cancel"]["post"].is_object(),
        "{doc}"
    );
}

#[test]
fn tenants_cannot_see_or_touch_each_other_and_quotas_refuse_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "a", "quotas": { "max_jobs": 1 } })),
    );
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "b", "quotas": { "max_total_parallelism": 2 } })),
    );
    let a = new_key(&server, &admin, "a", "tenant-admin");
    let b = new_key(&server, &admin, "b", "tenant-admin");
    let job = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let id = job["id"].as_str().unwrap();
    wait_status(&server, &a, id, "RUNNING");

    // b sees nothing of a's.
    assert_eq!(ok(&server, &b, Method::GET, "/jobs", None), json!([]));
    for (method, path) in [
        (Method::GET, format!("/jobs/{id}")),
        (Method::POST, format!("/jobs/{id}/cancel")),
    ] {
        let (status, value) = call(&server, Some(&b), method, &path, None);
        assert_eq!(status, 404, "{path}: {value}");
    }
    let (status, _) = call(
        &server,
        Some(&b),
        Method::POST,
        "/keys",
        Some(json!({ "tenant": "a", "role": "viewer" })),
    );
    assert_eq!(status, 403);
    let a_keys = ok(&server, &a, Method::GET, "/keys", None);
    let a_key_id = a_keys.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        &server,
        Some(&b),
        Method::DELETE,
        &format!("/keys/{a_key_id}"),
        None,
    );
    assert_eq!(status, 404);
    assert!(
        ok(&server, &b, Method::GET, "/keys", None)
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["tenant"] == "b")
    );
    // A tenant admin cannot mint an admin key.
    let (status, value) = call(
        &server,
        Some(&b),
        Method::POST,
        "/keys",
        Some(json!({ "role": "admin" })),
    );
    assert_eq!(status, 403, "{value}");

    // Quotas: a may run one job; b at most 2 slots.
    let (status, value) = call(
        &server,
        Some(&a),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    assert_eq!(status, 403, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("quota 'max_jobs' exceeded"),
        "{value}"
    );
    let (status, value) = call(
        &server,
        Some(&b),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS, "parallelism": 3 })),
    );
    assert_eq!(status, 403, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("max_total_parallelism"),
        "{value}"
    );
    // Once a's job is cancelled, it may start another.
    ok(
        &server,
        &a,
        Method::POST,
        &format!("/jobs/{id}/cancel"),
        None,
    );
    wait_status(&server, &a, id, "CANCELLED");
    let second = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": SHORT })),
    );
    wait_status(&server, &a, second["id"].as_str().unwrap(), "FINISHED");
    let audit = ok(&server, &admin, Method::GET, "/audit?limit=1000", None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["result"].as_str().unwrap().contains("quota 'max_jobs'")),
        "{audit}"
    );
}

#[test]
fn malformed_requests_get_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    let raw = |body: &str, content_type: &str| {
        let response = Client::new()
            .post(format!("{}/api/v1/jobs", server.url))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    let cases = [
        (raw("{not json", "application/json"), "key must be a string"),
        (
            raw(r#"{"sql": "x"}"#, "text/plain"),
            "Content-Type: application/json",
        ),
        (
            raw(r#"{"parallelism": 1}"#, "application/json"),
            "missing field `sql`",
        ),
        (
            raw(r#"{"sql": "x", "paralelism": 1}"#, "application/json"),
            "unknown field `paralelism`",
        ),
        (
            raw(r#"{"sql": "x", "parallelism": "two"}"#, "application/json"),
            "invalid type",
        ),
        (
            raw(r#"{"sql": "SELEC 1"}"#, "application/json"),
            "the SQL does not plan",
        ),
        (
            raw(
                &json!({ "sql": "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen');" })
                    .to_string(),
                "application/json",
            ),
            "exactly one INSERT INTO",
        ),
        (
            raw(
                &json!({ "sql": SHORT, "parallelism": 0 }).to_string(),
                "application/json",
            ),
            "parallelism must be 1 to 1024",
        ),
    ];
    for ((status, value), expected) in cases {
        assert_eq!(status, 400, "{value}");
        assert!(
            value["error"].as_str().unwrap().contains(expected),
            "{expected}: {value}"
        );
    }
    for (body, expected) in [
        (json!({ "id": "Bad Name" }), "lower-case letters"),
        (
            json!({ "id": "x", "quotas": { "max_jobz": 1 } }),
            "unknown field `max_jobz`",
        ),
    ] {
        let (status, value) = call(&server, Some(&admin), Method::POST, "/tenants", Some(body));
        assert_eq!(status, 400, "{value}");
        assert!(
            value["error"].as_str().unwrap().contains(expected),
            "{value}"
        );
    }
    let (status, value) = call(
        &server,
        Some(&admin),
        Method::POST,
        "/keys",
        Some(json!({ "role": "root" })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant `root`"),
        "{value}"
    );
    let (status, value) = call(&server, Some(&admin), Method::GET, "/nothing", None);
    assert_eq!(status, 404, "{value}");
    let (status, value) = call(&server, Some("not-a-key"), Method::GET, "/jobs", None);
    assert_eq!(status, 401, "{value}");
    assert!(value["error"].as_str().unwrap().contains("fgk_"), "{value}");
}

#[test]
fn a_restart_keeps_metadata_and_resumes_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "a" })),
    );
    let dev = new_key(&server, &admin, "a", "developer");
    let running = ok(
        &server,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let running = running["id"].as_str().unwrap().to_string();
    let done = ok(
        &server,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": SHORT })),
    );
    let done = done["id"].as_str().unwrap().to_string();
    wait_status(&server, &dev, &done, "FINISHED");
    // Let the endless job complete a few checkpoints, then kill the server outright.
    let checkpoints = dir.path().join("jobs").join(&running).join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&checkpoints).map_or(0, |d| d.count()) < 2 {
        assert!(
            Instant::now() < deadline,
            "no checkpoints in {}",
            checkpoints.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill();

    let mut server = Server::start(dir.path());
    server.wait_for("resumed 1 running job");
    server.wait_for(&format!("job '{running}': resuming from checkpoint"));
    // Keys, tenants and jobs are still there; the job runs again.
    assert_eq!(job_status(&server, &dev, &done), "FINISHED");
    assert_eq!(job_status(&server, &dev, &running), "RUNNING");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = ok(
            &server,
            &dev,
            Method::GET,
            &format!("/jobs/{running}"),
            None,
        );
        let out = job["operators"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["records_out"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if out > 0 && job["checkpoints"]["completed"].as_u64().unwrap_or(0) > 0 {
            // The resumed attempt continues the ids of the checkpoints before the kill.
            assert!(job["checkpoints"]["last_id"].as_u64().unwrap() > 1, "{job}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed job does not run: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        ok(&server, &admin, Method::GET, "/tenants", None)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // No new admin key was printed on the second start.
    assert!(!server.log.iter().any(|l| l.contains("admin key")));
}

#[test]
fn the_cli_is_a_client_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    let cli = |key: &str, args: &[&str]| {
        let out = fungi()
            .args(args)
            .env("FUNGI_SERVER", &server.url)
            .env("FUNGI_API_KEY", key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (okay, stdout, stderr) = cli(&admin, &["tenant", "create", "team", "--max-jobs", "3"]);
    assert!(okay, "{stderr}");
    assert!(stdout.contains("team"), "{stdout}");
    let (okay, stdout, stderr) = cli(
        &admin,
        &[
            "key",
            "create",
            "--tenant",
            "team",
            "--role",
            "developer",
            "-o",
            "json",
        ],
    );
    assert!(okay, "{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let dev = created["key"].as_str().unwrap().to_string();
    let sql = dir.path().join("job.sql");
    std::fs::write(&sql, SHORT).unwrap();
    let (okay, stdout, stderr) = cli(
        &dev,
        &["job", "submit", sql.to_str().unwrap(), "--output", "json"],
    );
    assert!(okay, "{stderr}");
    let job: Value = serde_json::from_str(&stdout).unwrap();
    let id = job["id"].as_str().unwrap();
    wait_status(&server, &dev, id, "FINISHED");
    let (okay, stdout, _) = cli(&dev, &["job", "list"]);
    assert!(okay);
    assert!(stdout.starts_with("ID"), "{stdout}");
    assert!(
        stdout.contains(id) && stdout.contains("FINISHED"),
        "{stdout}"
    );
    let (okay, stdout, _) = cli(&dev, &["job", "get", id]);
    assert!(okay && stdout.contains("RECORDS_IN"), "{stdout}");
    // Refusals are reported with the server's reason.
    let (okay, _, stderr) = cli(&dev, &["tenant", "list"]);
    assert!(!okay);
    assert!(
        stderr.contains("403") && stderr.contains("role 'developer' may not tenant.list"),
        "{stderr}"
    );
    let (okay, _, stderr) = cli(&dev, &["job", "cancel", id]);
    assert!(!okay && stderr.contains("409"), "{stderr}");
    let (okay, stdout, _) = cli(&admin, &["audit", "--limit", "5"]);
    assert!(okay && stdout.contains("job.cancel"), "{stdout}");
}

#[test]
fn plugins_are_uploaded_inspected_listed_and_deleted_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "a", "quotas": { "max_plugins": 1 } })),
    );
    ok(
        &server,
        &admin,
        Method::POST,
        "/tenants",
        Some(json!({ "id": "b" })),
    );
    let a = new_key(&server, &admin, "a", "developer");
    let viewer = new_key(&server, &admin, "a", "viewer");
    let b = new_key(&server, &admin, "b", "developer");
    let upload = |key: &str, name: &str, bytes: Vec<u8>| {
        let response = Client::new()
            .put(format!("{}/api/v1/plugins/{name}", server.url))
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    let component = std::fs::read(fungi_plugin_artifacts::STRINGS_GEO).unwrap();
    let (status, record) = upload(&a, "geo", component.clone());
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["kind"], "scalar", "{record}");
    assert_eq!(record["bytes"], component.len() as u64);
    assert!(record["digest"].as_str().unwrap().starts_with("blake3:"));
    let functions = record["details"]["functions"].as_array().unwrap();
    assert!(functions.iter().any(|f| f["name"] == "slugify"), "{record}");

    // Inspect and list; b sees none of it, a viewer reads but cannot upload.
    let got = ok(&server, &viewer, Method::GET, "/plugins/geo", None);
    assert_eq!(got["digest"], record["digest"]);
    assert_eq!(
        ok(&server, &viewer, Method::GET, "/plugins", None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(ok(&server, &b, Method::GET, "/plugins", None), json!([]));
    let (status, _) = call(&server, Some(&b), Method::GET, "/plugins/geo", None);
    assert_eq!(status, 404);
    let (status, _) = upload(&viewer, "other", component.clone());
    assert_eq!(status, 403);

    // Refusals: a second plugin breaks a's quota; bytes that are not a component; a bad name.
    let (status, value) = upload(&a, "second", component.clone());
    assert_eq!(status, 403, "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("max_plugins"),
        "{value}"
    );
    let (status, value) = upload(&b, "junk", b"not wasm".to_vec());
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("the plugin does not load"),
        "{value}"
    );
    let (status, value) = upload(&b, "Bad Name", component.clone());
    assert_eq!(status, 400, "{value}");
    // Replacing a plugin under the same name is not a second plugin.
    let (status, _) = upload(&a, "geo", component);
    assert_eq!(status, 201);

    let (status, _) = call(&server, Some(&b), Method::DELETE, "/plugins/geo", None);
    assert_eq!(status, 404);
    ok(&server, &a, Method::DELETE, "/plugins/geo", None);
    assert_eq!(ok(&server, &a, Method::GET, "/plugins", None), json!([]));
    let audit = ok(&server, &admin, Method::GET, "/audit?limit=1000", None);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("plugin."))
        .map(|r| r["result"].as_str().unwrap())
        .collect();
    assert!(
        actions.iter().filter(|r| **r == "ok").count() >= 3,
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|r| r.contains("max_plugins")),
        "{actions:?}"
    );
}
