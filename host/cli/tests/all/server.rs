//! `fungi server` end to end: the REST API, roles, tenants, quotas, the audit log, a
//! restart, and the CLI as a client.

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::fungi;
use super::harness::*;

#[test]
fn every_role_on_every_endpoint_is_allowed_or_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    create_tenant(&server, &admin, json!({ "id": "a" }));
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
            "savepoint",
            Box::new(|_| {
                (
                    Method::POST,
                    format!("/jobs/{job}/savepoint"),
                    Some(json!({ "stop": false })),
                )
            }),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "cancel job",
            Box::new(|_| (Method::POST, format!("/jobs/{job}/cancel"), None)),
            &["admin", "tenant-admin", "developer"],
        ),
        // The job runs: allowed roles get 409 (not SUSPENDED), refused ones 403.
        (
            "resume job",
            Box::new(|_| (Method::POST, format!("/jobs/{job}/resume"), None)),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "metrics",
            Box::new(|_| (Method::GET, "/metrics".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
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
            "set trust",
            Box::new(|_| {
                (
                    Method::PUT,
                    "/tenants/a/trust".into(),
                    Some(json!({ "mode": "warn" })),
                )
            }),
            &["admin", "tenant-admin"],
        ),
        (
            "list tenants",
            Box::new(|_| (Method::GET, "/tenants".into(), None)),
            &["admin"],
        ),
        (
            "delete tenant",
            // Ids of deleted tenants are not reused: one tenant per role.
            Box::new(|role| (Method::DELETE, format!("/tenants/gone-{role}"), None)),
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
        (
            "upload file",
            Box::new(|_| (Method::PUT, "/files/in/data.json".into(), Some(json!({})))),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "list files",
            Box::new(|_| (Method::GET, "/files".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "delete file",
            Box::new(|_| (Method::DELETE, "/files/none".into(), None)),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "register function",
            Box::new(|_| {
                (
                    Method::POST,
                    "/functions".into(),
                    Some(json!({ "sql": "CREATE FUNCTION f LANGUAGE WASM USING 'none'" })),
                )
            }),
            &["admin", "tenant-admin", "developer"],
        ),
        (
            "list functions",
            Box::new(|_| (Method::GET, "/functions".into(), None)),
            &["admin", "tenant-admin", "developer", "viewer"],
        ),
        (
            "delete function",
            Box::new(|_| (Method::DELETE, "/functions/none".into(), None)),
            &["admin", "tenant-admin", "developer"],
        ),
    ];
    let mut denied = 0;
    for (name, request, allowed) in &endpoints {
        for (role, key) in &keys {
            if *name == "delete tenant" {
                create_tenant(&server, &admin, json!({ "id": format!("gone-{role}") }));
            }
            let (method, path, body) = request(role);
            let (status, value) = call(&server, Some(key), method, &path, body);
            if allowed.contains(role) && *name == "savepoint" {
                assert_eq!(status, 200, "{role} {name}: {value}");
                assert!(
                    value["id"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("{job}/sp-"))
                );
            }
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
                ok(
                    &server,
                    &admin,
                    Method::DELETE,
                    &format!("/tenants/gone-{role}"),
                    None,
                );
            }
        }
        let (method, path, body) = request("anonymous");
        let (status, value) = call(&server, None, method.clone(), &path, body.clone());
        assert_eq!(status, 401, "no key, {name}: {value}");
        let (status, _) = call(&server, Some("fgk_0123_4567"), method, &path, body);
        assert_eq!(status, 401, "unknown key, {name}");
    }
    assert_eq!(endpoints.len(), 25);
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
    create_tenant(
        &server,
        &admin,
        json!({ "id": "a", "quotas": { "max_jobs": 1 } }),
    );
    create_tenant(
        &server,
        &admin,
        json!({ "id": "b", "quotas": { "max_total_parallelism": 2 } }),
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
    create_tenant(&server, &admin, json!({ "id": "a" }));
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
            .output_within(PROCESS_LIMIT);
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
    create_tenant(
        &server,
        &admin,
        json!({ "id": "a", "quotas": { "max_plugins": 1 } }),
    );
    create_tenant(&server, &admin, json!({ "id": "b" }));
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
        got["details"]["limits"]["memory_per_instance"],
        64 << 20,
        "{got}"
    );
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

#[test]
fn jobs_use_their_tenants_uploaded_plugins_under_its_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    for (id, quotas) in [
        ("a", json!({})),
        ("b", json!({})),
        ("c", json!({ "plugin_memory_per_instance": 32 << 20 })),
    ] {
        create_tenant(&server, &admin, json!({ "id": id, "quotas": quotas }));
    }
    let a = new_key(&server, &admin, "a", "developer");
    let b = new_key(&server, &admin, "b", "developer");
    let c = new_key(&server, &admin, "c", "developer");
    let geo = std::fs::read(fungi_plugin_artifacts::STRINGS_GEO).unwrap();
    assert_eq!(upload(&server, &a, "geo", geo, None).0, 201);
    let evil = std::fs::read(fungi_plugin_artifacts::HOSTILE_EVIL).unwrap();
    assert_eq!(upload(&server, &c, "evil", evil, None).0, 201);

    // a's job calls a's plugin by its upload name, and writes into a's files directory.
    let out = dir.path().join("files/a/slugs");
    let sql = |using: &str, extra: &str| {
        format!(
            "{extra}
            CREATE FUNCTION slugify LANGUAGE WASM USING '{using}';
            CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '20',
                'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '19');
            CREATE TABLE out (s STRING) WITH ('connector' = 'filesystem', 'path' = 'slugs', 'format' = 'csv');
            INSERT INTO out SELECT slugify(CONCAT('Hello World ', CAST(id AS STRING))) FROM g;"
        )
    };
    let job = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql("geo", "") })),
    );
    let done = wait_for_end(&server, &a, job["id"].as_str().unwrap());
    assert_eq!(done["status"], "FINISHED", "{done}");
    let written: String = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(written.contains("hello-world-7"), "{written}");
    assert_eq!(
        written
            .lines()
            .filter(|l| l.starts_with("hello-world-"))
            .count(),
        20,
        "{written}"
    );

    // b cannot reach a's plugin, nobody names a file, nobody raises the limits in SQL.
    let (status, value) = call(
        &server,
        Some(&b),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql("geo", "") })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("tenant 'b' has no plugin 'geo'"),
        "{value}"
    );
    let path = fungi_plugin_artifacts::STRINGS_GEO;
    let (status, value) = call(
        &server,
        Some(&b),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql(path, "") })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("not by a path"),
        "{value}"
    );
    // Files stay in the tenant's directory; brokers must be allowed egress hosts.
    for (table, why) in [
        (
            format!("CREATE TABLE t (s STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');", out.display()),
            "relative to the tenant's files directory",
        ),
        (
            "CREATE TABLE t (s STRING) WITH ('connector' = 'filesystem', 'path' = '../b/x', 'format' = 'csv');".to_string(),
            "without '..'",
        ),
        (
            "CREATE TABLE t (s STRING) WITH ('connector' = 'kafka', 'topic' = 'x', 'format' = 'json', \
             'properties.bootstrap.servers' = '10.0.0.1:9092');".to_string(),
            "broker '10.0.0.1:9092' is not among the tenant's allowed egress hosts (none)",
        ),
    ] {
        let script = format!("{table} CREATE TABLE g (s STRING) WITH ('connector' = 'datagen'); INSERT INTO t SELECT s FROM g;");
        let (status, value) = call(&server, Some(&a), Method::POST, "/jobs", Some(json!({ "sql": script })));
        assert_eq!(status, 400, "{value}");
        assert!(value["error"].as_str().unwrap().contains(why), "{why}: {value}");
    }
    // Native Python only where the tenant allows unsandboxed code.
    let python = "CREATE FUNCTION twice AS 'twice' LANGUAGE PYTHON USING 'udfs.py';
        CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10',
            'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '10');
        CREATE TABLE out (id BIGINT) WITH ('connector' = 'filesystem', 'path' = 'twice', 'format' = 'csv');
        INSERT INTO out SELECT twice(id) FROM g;";
    let (status, value) = call(
        &server,
        Some(&a),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": python })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("allow_unsandboxed_python is off"),
        "{value}"
    );
    create_tenant(
        &server,
        &admin,
        json!({ "id": "py", "quotas": { "allow_unsandboxed_python": true } }),
    );
    let py = new_key(&server, &admin, "py", "developer");
    // The module goes up through the files API; paths that leave the directory do not.
    let module = "import pyarrow as pa, pyarrow.compute as pc, fungi\n\
         @fungi.udf(returns=pa.int64())\n\
         def twice(x):\n    return pc.multiply(x, 2)\n";
    let put = |path: &str| {
        let r = Client::new()
            .put(format!("{}/api/v1/files/{path}", server.url))
            .bearer_auth(&py)
            .body(module)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let (status, entry) = put("udfs.py");
    assert_eq!(
        (status, entry["bytes"].as_u64()),
        (201, Some(module.len() as u64)),
        "{entry}"
    );
    let (status, body) = put("..%2Fa%2Fslugs");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        ok(&server, &py, Method::GET, "/files", None),
        json!([{ "path": "udfs.py", "bytes": module.len() }])
    );
    let job = ok(
        &server,
        &py,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": python })),
    );
    let done = wait_for_end(&server, &py, job["id"].as_str().unwrap());
    assert_eq!(done["status"], "FINISHED", "{done}");
    let mut doubled: Vec<i64> = std::fs::read_dir(dir.path().join("files/py/twice"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(|l| l.parse::<i64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    doubled.sort();
    assert_eq!(doubled, (1..=10).map(|i| 2 * i).collect::<Vec<_>>());
    // The function catalog: a function registered once (here an inline body) is there
    // for every later job, without its CREATE FUNCTION.
    let registered = ok(
        &server,
        &py,
        Method::POST,
        "/functions",
        Some(
            json!({ "sql": "CREATE FUNCTION thrice(x BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef thrice(x):\n    return 3 * x\n$$;" }),
        ),
    );
    assert_eq!(
        (&registered["name"], &registered["language"]),
        (&json!("thrice"), &json!("python")),
        "{registered}"
    );
    let thrice = python
        .replace(
            "CREATE FUNCTION twice AS 'twice' LANGUAGE PYTHON USING 'udfs.py';",
            "",
        )
        .replace("twice(id)", "thrice(id)")
        .replace("'path' = 'twice'", "'path' = 'thrice'");
    let job = ok(
        &server,
        &py,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": thrice })),
    );
    let done = wait_for_end(&server, &py, job["id"].as_str().unwrap());
    assert_eq!(done["status"], "FINISHED", "{done}");
    let total: i64 = std::fs::read_dir(dir.path().join("files/py/thrice"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .map(|l| l.parse::<i64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(total, 3 * 55);
    // What cannot be registered says why; other tenants do not see the function.
    for (sql, why) in [
        ("SELECT 1", "expected CREATE FUNCTION"),
        (
            "CREATE FUNCTION a LANGUAGE PYTHON AS $$x$$; CREATE FUNCTION b LANGUAGE PYTHON AS $$y$$",
            "expected one CREATE FUNCTION statement, got 2",
        ),
        (
            "CREATE FUNCTION nope AS 'missing.py' LANGUAGE WASM USING 'none'",
            "tenant 'py' has no plugin 'none'",
        ),
    ] {
        let (status, value) = call(
            &server,
            Some(&py),
            Method::POST,
            "/functions",
            Some(json!({ "sql": sql })),
        );
        assert_eq!(status, 400, "{sql}: {value}");
        assert!(
            value["error"].as_str().unwrap().contains(why),
            "{sql}: {value}"
        );
    }
    let (status, value) = call(
        &server,
        Some(&a),
        Method::POST,
        "/functions",
        Some(
            json!({ "sql": "CREATE FUNCTION thrice RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef thrice(x):\n    return x\n$$" }),
        ),
    );
    assert!(
        status == 400
            && value["error"]
                .as_str()
                .unwrap()
                .contains("allow_unsandboxed_python is off"),
        "{value}"
    );
    assert_eq!(ok(&server, &a, Method::GET, "/functions", None), json!([]));
    // The CLI lists and deletes them.
    let out = fungi()
        .args(["function", "list", "--server", &server.url])
        .env("FUNGI_API_KEY", &py)
        .output_within(PROCESS_LIMIT);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("thrice"),
        "{out:?}"
    );
    let out = fungi()
        .args(["function", "delete", "thrice", "--server", &server.url])
        .env("FUNGI_API_KEY", &py)
        .output_within(PROCESS_LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ok(&server, &py, Method::GET, "/functions", None), json!([]));
    let raise = "SET 'plugin.memory-per-instance' = '1 gb';";
    let (status, value) = call(
        &server,
        Some(&a),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql("geo", raise) })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("come from the tenant's quotas"),
        "{value}"
    );

    // c's memory quota stops its plugin's memory bomb: the job fails naming the limit.
    let bomb = "CREATE FUNCTION bomb LANGUAGE WASM USING 'evil';
        CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '5');
        CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
        INSERT INTO out SELECT bomb(id) FROM g;";
    let job = ok(
        &server,
        &c,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": bomb })),
    );
    let failed = wait_for_end(&server, &c, job["id"].as_str().unwrap());
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("memory limit of 32 MiB per instance exceeded"),
        "{failed}"
    );

    // Metrics: per tenant plugin CPU and traps by reason; each tenant sees its own only.
    let metrics = |key: &str| {
        Client::new()
            .get(format!("{}/metrics", server.url))
            .bearer_auth(key)
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let all = metrics(&admin);
    assert!(
        all.contains("fungi_tenant_plugin_traps_total{tenant=\"c\",reason=\"memory\"} "),
        "{all}"
    );
    assert!(
        all.contains("fungi_tenant_plugin_cpu_seconds{tenant=\"a\"}"),
        "{all}"
    );
    let own = metrics(&c);
    assert!(
        own.contains("tenant=\"c\"") && !own.contains("tenant=\"a\""),
        "{own}"
    );
}

#[test]
fn savepoints_stop_and_start_jobs_and_state_quotas_fail_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    create_tenant(&server, &admin, json!({ "id": "a" }));
    create_tenant(&server, &admin, json!({ "id": "b" }));
    create_tenant(
        &server,
        &admin,
        json!({ "id": "small", "quotas": { "max_state_bytes": 1 } }),
    );
    let a = new_key(&server, &admin, "a", "developer");
    let b = new_key(&server, &admin, "b", "developer");
    let small = new_key(&server, &admin, "small", "developer");

    let job = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    // Wait for a checkpoint, then stop with a savepoint.
    wait_for_first_checkpoint(&server, &a, &id);
    let details = ok(&server, &a, Method::GET, &format!("/jobs/{id}"), None);
    let nodes = details["graph"]["nodes"].as_array().unwrap();
    assert!(
        nodes.len() >= 2 && !details["graph"]["edges"].as_array().unwrap().is_empty(),
        "{details}"
    );
    let sp = ok(
        &server,
        &a,
        Method::POST,
        &format!("/jobs/{id}/savepoint"),
        Some(json!({ "stop": true })),
    );
    assert_eq!(sp["stopped"], true);
    let sp_id = sp["id"].as_str().unwrap().to_string();
    let stopped = wait_for_end(&server, &a, &id);
    assert_eq!(stopped["status"], "STOPPED", "{stopped}");
    assert_eq!(stopped["savepoints"], json!([sp_id]), "{stopped}");
    // A savepoint of a job that no longer runs is a conflict.
    let (status, _) = call(
        &server,
        Some(&a),
        Method::POST,
        &format!("/jobs/{id}/savepoint"),
        Some(json!({})),
    );
    assert_eq!(status, 409);

    // A new job starts from it; another tenant cannot.
    let (status, value) = call(
        &server,
        Some(&b),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS, "from_savepoint": sp_id })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("not a savepoint of this tenant"),
        "{value}"
    );
    let resumed = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS, "from_savepoint": sp_id })),
    );
    assert_eq!(resumed["from_savepoint"], sp_id.as_str());
    let new_id = resumed["id"].as_str().unwrap().to_string();
    server.wait_for(&format!(
        "job '{new_id}': resuming from checkpoint {}",
        sp["checkpoint_id"]
    ));
    ok(
        &server,
        &a,
        Method::POST,
        &format!("/jobs/{new_id}/cancel"),
        None,
    );

    // A job whose checkpoint holds more state than the tenant's quota fails, naming it.
    let job = ok(
        &server,
        &small,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let failed = wait_for_end(&server, &small, job["id"].as_str().unwrap());
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("quota 'max_state_bytes' exceeded"),
        "{failed}"
    );
}

/// Runs `f` on a fresh tokio runtime (for the gRPC client).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A gRPC request with the bearer credential.
fn authed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

#[test]
fn rest_and_grpc_answer_the_same_calls_the_same_way() {
    use fungi_server::grpc::pb;
    let dir = tempfile::tempdir().unwrap();
    let grpc_port = fungi_testkit::free_port();
    let grpc_addr = format!("127.0.0.1:{grpc_port}");
    let mut server = Server::start_with(dir.path(), &["--grpc-listen", &grpc_addr]);
    server.wait_for("(gRPC fungi.v1)");
    let admin = server.admin_key();
    let url = format!("http://{grpc_addr}");
    block_on(async {
        let mut tenants = pb::tenants_client::TenantsClient::connect(url.clone())
            .await
            .unwrap();
        let mut jobs = pb::jobs_client::JobsClient::connect(url.clone())
            .await
            .unwrap();
        let mut keys = pb::keys_client::KeysClient::connect(url.clone())
            .await
            .unwrap();
        let mut plugins = pb::plugins_client::PluginsClient::connect(url.clone())
            .await
            .unwrap();
        let mut audit = pb::audit_client::AuditClient::connect(url.clone())
            .await
            .unwrap();

        // A tenant made over gRPC reads the same over REST.
        let t = tenants
            .create(authed(
                &admin,
                pb::CreateTenantRequest {
                    id: "a".into(),
                    quotas_json: r#"{"max_jobs": 5}"#.into(),
                    trust: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        // Malformed requests are INVALID_ARGUMENT naming the field, never INTERNAL.
        let bad = tenants
            .create(authed(
                &admin,
                pb::CreateTenantRequest {
                    id: "x".into(),
                    quotas_json: r#"{"max_jobs": "many"}"#.into(),
                    trust: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().contains("quotas_json"), "{bad:?}");
        let bad = tenants
            .set_trust(authed(
                &admin,
                pb::SetTrustRequest {
                    tenant: "a".into(),
                    trust: Some(pb::TrustPolicy {
                        mode: "maybe".into(),
                        keys: vec![],
                    }),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().contains("'maybe'"), "{bad:?}");
        let rest_tenants = ok(&server, &admin, Method::GET, "/tenants", None);
        let rest_a = rest_tenants
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "a")
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&t.quotas_json).unwrap(),
            rest_a["quotas"]
        );
        assert_eq!(
            t.trust.unwrap().mode,
            rest_a["trust"]["mode"].as_str().unwrap()
        );

        let created = keys
            .create(authed(
                &admin,
                pb::CreateKeyRequest {
                    tenant: Some("a".into()),
                    role: "developer".into(),
                    name: "dev".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let dev = created.key.clone();
        let viewer = new_key(&server, &admin, "a", "viewer");
        let grpc_keys = keys
            .list(authed(&admin, pb::ListKeysRequest {}))
            .await
            .unwrap()
            .into_inner()
            .keys;
        let rest_keys = ok(&server, &admin, Method::GET, "/keys", None);
        assert_eq!(grpc_keys.len(), rest_keys.as_array().unwrap().len());
        for (g, r) in grpc_keys.iter().zip(rest_keys.as_array().unwrap()) {
            assert_eq!(
                (g.id.as_str(), g.role.as_str(), g.tenant.as_str()),
                (
                    r["id"].as_str().unwrap(),
                    r["role"].as_str().unwrap(),
                    r["tenant"].as_str().unwrap()
                )
            );
        }

        // Jobs: submit over gRPC, read both ways.
        let job = jobs
            .submit(authed(
                &dev,
                pb::SubmitJobRequest {
                    sql: ENDLESS.into(),
                    parallelism: Some(1),
                    from_savepoint: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let rest_job = ok(
            &server,
            &dev,
            Method::GET,
            &format!("/jobs/{}", job.id),
            None,
        );
        let grpc_job = jobs
            .get(authed(&dev, pb::JobId { id: job.id.clone() }))
            .await
            .unwrap()
            .into_inner();
        let g = grpc_job.job.clone().unwrap();
        assert_eq!(
            (
                g.id.as_str(),
                g.tenant.as_str(),
                g.sql.as_str(),
                g.status.as_str(),
                g.parallelism
            ),
            (
                rest_job["id"].as_str().unwrap(),
                rest_job["tenant"].as_str().unwrap(),
                rest_job["sql"].as_str().unwrap(),
                rest_job["status"].as_str().unwrap(),
                rest_job["parallelism"].as_u64().unwrap() as u32
            )
        );
        assert_eq!(
            serde_json::from_str::<Value>(&grpc_job.graph_json).unwrap(),
            rest_job["graph"]
        );
        let listed = jobs
            .list(authed(&dev, pb::ListJobsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .jobs;
        let rest_listed = ok(&server, &dev, Method::GET, "/jobs", None);
        assert_eq!(
            listed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
            rest_listed
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        );

        // The same refusals, with the same messages: 401/UNAUTHENTICATED,
        // 403/PERMISSION_DENIED, 400/INVALID_ARGUMENT, 404/NOT_FOUND, 409/FAILED_PRECONDITION.
        let bad_sql = "INSERT INTO nowhere SELECT 1";
        let cases: Vec<(tonic::Status, (u16, Value))> = vec![
            (
                jobs.list(tonic::Request::new(pb::ListJobsRequest {}))
                    .await
                    .unwrap_err(),
                call(&server, None, Method::GET, "/jobs", None),
            ),
            (
                jobs.submit(authed(
                    &viewer,
                    pb::SubmitJobRequest {
                        sql: ENDLESS.into(),
                        parallelism: None,
                        from_savepoint: None,
                    },
                ))
                .await
                .unwrap_err(),
                call(
                    &server,
                    Some(&viewer),
                    Method::POST,
                    "/jobs",
                    Some(json!({ "sql": ENDLESS })),
                ),
            ),
            (
                jobs.submit(authed(
                    &dev,
                    pb::SubmitJobRequest {
                        sql: bad_sql.into(),
                        parallelism: None,
                        from_savepoint: None,
                    },
                ))
                .await
                .unwrap_err(),
                call(
                    &server,
                    Some(&dev),
                    Method::POST,
                    "/jobs",
                    Some(json!({ "sql": bad_sql })),
                ),
            ),
            (
                jobs.get(authed(
                    &dev,
                    pb::JobId {
                        id: "job-none".into(),
                    },
                ))
                .await
                .unwrap_err(),
                call(&server, Some(&dev), Method::GET, "/jobs/job-none", None),
            ),
            (
                plugins
                    .upload(authed(
                        &dev,
                        pb::UploadPluginRequest {
                            name: "junk".into(),
                            component: b"not wasm".to_vec(),
                            signature: None,
                        },
                    ))
                    .await
                    .unwrap_err(),
                upload(&server, &dev, "junk", b"not wasm".to_vec(), None),
            ),
        ];
        for (status, (http, body)) in &cases {
            let code = match http {
                401 => tonic::Code::Unauthenticated,
                403 => tonic::Code::PermissionDenied,
                400 => tonic::Code::InvalidArgument,
                404 => tonic::Code::NotFound,
                409 => tonic::Code::FailedPrecondition,
                other => panic!("unexpected {other}: {body}"),
            };
            assert_eq!(status.code(), code, "{status:?} vs {http} {body}");
            assert_eq!(status.message(), body["error"].as_str().unwrap());
        }
        jobs.cancel(authed(&dev, pb::JobId { id: job.id.clone() }))
            .await
            .unwrap();
        let again = jobs
            .cancel(authed(&dev, pb::JobId { id: job.id.clone() }))
            .await
            .unwrap_err();
        let (http, body) = call(
            &server,
            Some(&dev),
            Method::POST,
            &format!("/jobs/{}/cancel", job.id),
            None,
        );
        assert_eq!((again.code(), http), (tonic::Code::FailedPrecondition, 409));
        assert_eq!(again.message(), body["error"].as_str().unwrap());

        // Plugins: upload over gRPC, inspect over REST.
        let geo = std::fs::read(fungi_plugin_artifacts::STRINGS_GEO).unwrap();
        let p = plugins
            .upload(authed(
                &dev,
                pb::UploadPluginRequest {
                    name: "geo".into(),
                    component: geo,
                    signature: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let rest_p = ok(&server, &dev, Method::GET, "/plugins/geo", None);
        assert_eq!(p.digest, rest_p["digest"].as_str().unwrap());
        let got = plugins
            .get(authed(&dev, pb::PluginName { name: "geo".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            serde_json::from_str::<Value>(&got.details_json).unwrap(),
            rest_p["details"]
        );

        // Both transports write the same audit log.
        let records = audit
            .read(authed(&admin, pb::AuditRequest { limit: Some(1000) }))
            .await
            .unwrap()
            .into_inner()
            .records;
        let rest_records = ok(&server, &admin, Method::GET, "/audit?limit=1000", None);
        assert_eq!(records.len(), rest_records.as_array().unwrap().len());
        assert!(
            records
                .iter()
                .any(|r| r.action == "grpc Jobs/List" && r.result.starts_with("unauthenticated"))
        );
        assert!(
            records
                .iter()
                .any(|r| r.action == "GET /api/v1/jobs" && r.result.starts_with("unauthenticated"))
        );
        assert!(
            records
                .iter()
                .any(|r| r.action == "job.submit" && r.result.starts_with("denied"))
        );
        assert_eq!(
            records.iter().filter(|r| r.action == "job.cancel").count(),
            3,
            "one ok and two refused cancels"
        );
    });
}

#[test]
fn tls_and_jwt_bearer_tokens() {
    use fungi_server::grpc::pb;
    let dir = tempfile::tempdir().unwrap();
    // A CA and a server certificate for 127.0.0.1.
    let [ca_pem, cert_pem, key_pem] = super::test_certificates(dir.path(), "server");
    let ca_text = std::fs::read_to_string(&ca_pem).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let secret = "an HS256 secret of at least 32 bytes!";
    let secret_file = write("jwt.secret", secret.into());
    let grpc_addr = format!("127.0.0.1:{}", fungi_testkit::free_port());
    let data = dir.path().join("data");
    let mut server = Server::start_with(
        &data,
        &[
            "--tls-cert",
            &cert_pem,
            "--tls-key",
            &key_pem,
            "--grpc-listen",
            &grpc_addr,
            "--jwt-hs256-secret-file",
            &secret_file,
            "--jwt-issuer",
            "idp",
        ],
    );
    assert!(server.url.starts_with("https://"));
    let admin = server.admin_key();
    let ca_cert = reqwest::Certificate::from_pem(ca_text.as_bytes()).unwrap();
    let https = Client::builder()
        .add_root_certificate(ca_cert)
        .build()
        .unwrap();
    let get = |token: &str, path: &str| {
        let r = https
            .get(format!("{}/api/v1{path}", server.url))
            .bearer_auth(token)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    let (status, _) = get(&admin, "/tenants");
    assert_eq!(status, 200);
    let created = https
        .post(format!("{}/api/v1/tenants", server.url))
        .bearer_auth(&admin)
        .json(&json!({ "id": "a" }))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    // Plain HTTP to the TLS listener fails; so does a client without the CA.
    let plain = server.url.replace("https://", "http://");
    assert!(
        !Client::new()
            .get(format!("{plain}/api/v1/jobs"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    );
    assert!(
        Client::new()
            .get(format!("{}/api/v1/jobs", server.url))
            .send()
            .is_err()
    );

    // JWTs: a valid token of tenant a acts as a developer of a; expired, wrongly signed,
    // wrong issuer and unknown tenant tokens are refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |tenant: &str, exp: u64, iss: &str| fungi_security::jwt::Claims {
        sub: "alice".into(),
        tenant: tenant.into(),
        role: fungi_security::Role::Developer,
        exp,
        iss: Some(iss.into()),
    };
    let mint = |c, k: &[u8]| fungi_security::jwt::mint(&c, "HS256", k).unwrap();
    let token = mint(claims("a", now + 300, "idp"), secret.as_bytes());
    let (status, jobs) = get(&token, "/jobs");
    assert_eq!((status, jobs), (200, json!([])));
    // What the dashboard asks when a person signs in with a token.
    let (status, me) = get(&token, "/whoami");
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (&me["key_id"], &me["tenant"], &me["role"]),
        (&json!("jwt:alice"), &json!("a"), &json!("developer")),
        "{me}"
    );
    let (status, body) = get(&token, "/tenants");
    assert_eq!(status, 403, "{body}");
    for (bad, why) in [
        (
            mint(claims("a", now - 600, "idp"), secret.as_bytes()),
            "Expired",
        ),
        (
            mint(
                claims("a", now + 300, "idp"),
                b"another secret that is long enough!!",
            ),
            "Invalid",
        ),
        (
            mint(claims("a", now + 300, "other"), secret.as_bytes()),
            "Issuer",
        ),
        (
            mint(claims("nobody", now + 300, "idp"), secret.as_bytes()),
            "does not exist",
        ),
    ] {
        let (status, body) = get(&bad, "/jobs");
        assert_eq!(status, 401, "{why}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    let audit = get(&admin, "/audit?limit=1000").1;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["who"] == "jwt:alice" && r["action"] == "tenant.list"),
        "{audit}"
    );

    // gRPC over TLS with the same CA, and a JWT.
    block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca_text))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://{grpc_addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut jobs = pb::jobs_client::JobsClient::new(channel);
        let listed = jobs
            .list(authed(&token, pb::ListJobsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.jobs.is_empty());
    });

    // The CLI trusts the CA given with --ca-cert.
    let out = fungi()
        .args(["job", "list", "--server", &server.url, "--ca-cert", &ca_pem])
        .env("FUNGI_API_KEY", &admin)
        .output_within(PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn signed_plugins_under_trust_policies() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let admin = server.admin_key();
    for id in ["a", "b"] {
        create_tenant(&server, &admin, json!({ "id": id }));
    }
    let a = new_key(&server, &admin, "a", "developer");
    let b = new_key(&server, &admin, "b", "developer");
    let a_admin = new_key(&server, &admin, "a", "tenant-admin");
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let run = |args: &[&str], key: &str| {
        let out = fungi()
            .args(args)
            .env("COSIGN_PASSWORD", "s3cret")
            .env("FUNGI_API_KEY", key)
            .env("FUNGI_SERVER", &server.url)
            .output_within(PROCESS_LIMIT);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Keys, a signature, and its check (the component is copied so it can be tampered).
    let component = d("geo.wasm");
    std::fs::copy(fungi_plugin_artifacts::STRINGS_GEO, &component).unwrap();
    let (okay, said) = run(&["plugin", "keygen", "--output-prefix", &d("cosign")], "");
    assert!(okay, "{said}");
    assert!(
        std::fs::read_to_string(d("cosign.key"))
            .unwrap()
            .contains("ENCRYPTED SIGSTORE PRIVATE KEY")
    );
    let (okay, said) = run(
        &["plugin", "sign", "--key", &d("cosign.key"), &component],
        "",
    );
    assert!(okay, "{said}");
    let (okay, said) = run(
        &["plugin", "verify", "--key", &d("cosign.pub"), &component],
        "",
    );
    assert!(okay && said.contains("Verified OK"), "{said}");
    let signature = std::fs::read_to_string(d("geo.wasm.sig")).unwrap();
    // cosign's keyed blob signature is ECDSA/SHA-256 in ASN.1 DER: openssl checks it too.
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["version"])
        .output()
        && out.status.success()
    {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .unwrap();
        std::fs::write(d("geo.sig.der"), der).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "dgst",
                "-sha256",
                "-verify",
                &d("cosign.pub"),
                "-signature",
                &d("geo.sig.der"),
                &component,
            ])
            .output_within(PROCESS_LIMIT);
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tampered = d("tampered.wasm");
    let mut bytes = std::fs::read(&component).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&tampered, &bytes).unwrap();
    let (okay, said) = run(
        &[
            "plugin",
            "verify",
            "--key",
            &d("cosign.pub"),
            "--signature",
            &d("geo.wasm.sig"),
            &tampered,
        ],
        "",
    );
    assert!(!okay && said.contains("changed after signing"), "{said}");

    // a requires signatures by its key; b only warns.
    let (okay, said) = run(
        &[
            "tenant",
            "trust",
            "a",
            "--mode",
            "require",
            "--key",
            &d("cosign.pub"),
        ],
        &a_admin,
    );
    assert!(okay, "{said}");
    ok(
        &server,
        &admin,
        Method::PUT,
        "/tenants/b/trust",
        Some(
            json!({ "mode": "warn", "keys": [std::fs::read_to_string(d("cosign.pub")).unwrap()] }),
        ),
    );
    let (status, body) = call(
        &server,
        Some(&admin),
        Method::PUT,
        "/tenants/b/trust",
        Some(json!({ "mode": "require", "keys": ["not a key"] })),
    );
    assert_eq!(status, 400, "{body}");

    let geo = std::fs::read(&component).unwrap();
    let (status, body) = upload(&server, &a, "geo", geo.clone(), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("(signature-present)"),
        "{body}"
    );
    let (status, body) = upload(&server, &a, "geo", bytes.clone(), Some(signature.trim()));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("(signature-valid)"),
        "{body}"
    );
    // The CLI uploads with the signature; the record says which key verified it.
    let (okay, said) = run(
        &[
            "plugin",
            "upload",
            &component,
            "--signature",
            &d("geo.wasm.sig"),
            "-o",
            "json",
        ],
        &a,
    );
    assert!(okay, "{said}");
    let record = ok(&server, &a, Method::GET, "/plugins/geo", None);
    assert_eq!(
        record["details"]["signature"]["status"], "verified",
        "{record}"
    );
    let (okay, said) = run(&["plugin", "list"], &a);
    assert!(okay && said.contains("geo"), "{said}");

    // Under warn, unsigned and tampered plugins are stored with the failed check named.
    let (status, body) = upload(&server, &b, "geo", geo, None);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["details"]["signature"]["status"], "warning");
    assert!(
        body["details"]["signature"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature-present"),
        "{body}"
    );
    let (status, body) = upload(&server, &b, "tampered", bytes, Some(signature.trim()));
    assert_eq!(status, 201, "{body}");
    assert!(
        body["details"]["signature"]["reason"]
            .as_str()
            .unwrap()
            .contains("signature-valid"),
        "{body}"
    );
    let audit = ok(&server, &admin, Method::GET, "/audit?limit=1000", None);
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["action"] == "plugin.upload"
                && r["result"]
                    .as_str()
                    .unwrap()
                    .contains("signature check failed")
        })
        .count();
    assert_eq!(refused, 2, "{audit}");
}

/// A local HTTP service that refuses everything with 400 (closing each connection).
pub(super) fn refusing_service() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown schema",
            );
        }
    });
    addr
}

#[test]
fn a_running_jobs_dead_letters_are_shown_by_the_api_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    let service = refusing_service();
    create_tenant(
        &server,
        &admin,
        json!({ "id": "dl", "quotas": { "allowed_egress_hosts": [service] } }),
    );
    let key = new_key(&server, &admin, "dl", "developer");
    let sql = |url: &str| {
        format!(
            "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '20');
             CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = '{url}',
                 'sink.max-batch-rows' = '1', 'sink.on-error' = 'dead-letter');
             INSERT INTO hook SELECT id FROM g;"
        )
    };
    // A service outside the tenant's egress hosts is refused.
    let (status, value) = call(
        &server,
        Some(&key),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql("http://10.1.2.3:80/in") })),
    );
    assert_eq!(status, 400, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("'10.1.2.3:80' is not among the tenant's allowed egress hosts"),
        "{value}"
    );
    let job = ok(
        &server,
        &key,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql(&format!("http://{service}/in")) })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let path = format!("/jobs/{id}/dead-letters");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = ok(&server, &key, Method::GET, &path, None);
        if letters["counts"]["sink rejected"].as_u64().unwrap_or(0) >= 3 {
            break letters;
        }
        assert!(Instant::now() < deadline, "{letters}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let first = &letters["recent"][0];
    assert_eq!(first["reason"], "sink rejected", "{letters}");
    assert!(
        first["message"].as_str().unwrap().contains("HTTP 400")
            && first["raw"].as_str().unwrap().contains("\"id\""),
        "{letters}"
    );
    let details = ok(&server, &key, Method::GET, &format!("/jobs/{id}"), None);
    assert!(
        details["dead_letters"]["sink rejected"].as_u64().unwrap() >= 3,
        "{details}"
    );
    let out = fungi()
        .args(["job", "dead-letters", &id, "--server", &server.url])
        .env("FUNGI_API_KEY", &key)
        .output_within(PROCESS_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sink rejected: "),
        "{stdout}{out:?}"
    );
    ok(
        &server,
        &key,
        Method::POST,
        &format!("/jobs/{id}/cancel"),
        None,
    );
    wait_status(&server, &key, &id, "CANCELLED");
    let (status, value) = call(&server, Some(&key), Method::GET, &path, None);
    assert_eq!(status, 409, "{value}");
}

/// Counts per key, updated as rows come (keyed state), at `extra` more aggregates.
fn counting(extra: &str) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '200ms';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
         CREATE TABLE out (k BIGINT, n BIGINT{columns}) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT id % 10, COUNT(*){extra} FROM g GROUP BY id % 10;",
        columns = if extra.is_empty() { "" } else { ", m BIGINT" },
    )
}

#[test]
fn a_job_is_upgraded_through_a_savepoint_and_a_new_state_schema_is_refused() {
    use fungi_server::grpc::pb;
    let dir = tempfile::tempdir().unwrap();
    let grpc_addr = format!("127.0.0.1:{}", fungi_testkit::free_port());
    let mut server = Server::start_with(dir.path(), &["--grpc-listen", &grpc_addr]);
    server.wait_for("(gRPC fungi.v1)");
    let admin = server.admin_key();
    create_tenant(&server, &admin, json!({ "id": "a" }));
    let a = new_key(&server, &admin, "a", "developer");
    let viewer = new_key(&server, &admin, "a", "viewer");
    let job = ok(
        &server,
        &a,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": counting("") })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    wait_for_first_checkpoint(&server, &a, &id);
    let upgrade = |key: &str, sql: String| {
        call(
            &server,
            Some(key),
            Method::POST,
            &format!("/jobs/{id}/upgrade"),
            Some(json!({ "sql": sql })),
        )
    };
    // A viewer may not; SQL that does not plan is a bad request.
    assert_eq!(upgrade(&viewer, counting("")).0, 403);
    let (status, value) = upgrade(&a, "INSERT INTO nowhere SELECT 1;".into());
    assert_eq!(status, 400, "{value}");
    // One more aggregate changes the state's layout: refused, naming the operator, and
    // the job keeps running.
    let (status, value) = upgrade(&a, counting(", MAX(id)"));
    assert_eq!(status, 409, "{value}");
    let error = value["error"].as_str().unwrap();
    assert!(
        error.contains("cannot read the state") && error.contains("keeps running"),
        "{error}"
    );
    // The same over gRPC, refused the same way.
    let refused = block_on(async {
        let mut jobs = pb::jobs_client::JobsClient::connect(format!("http://{grpc_addr}"))
            .await
            .unwrap();
        let request = pb::UpgradeJobRequest {
            id: id.clone(),
            sql: counting(", MAX(id)"),
            parallelism: None,
            timeout_secs: None,
        };
        jobs.upgrade(authed(&a, request)).await.unwrap_err()
    });
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("cannot read the state"),
        "{refused:?}"
    );
    // A version without the aggregate would lose its state: refused too.
    let stateless = "SET 'execution.checkpointing.interval' = '200ms';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
         CREATE TABLE out (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT id % 10, id FROM g;";
    let (status, value) = upgrade(&a, stateless.into());
    assert_eq!(status, 409, "{value}");
    assert!(
        value["error"]
            .as_str()
            .unwrap()
            .contains("its state would be lost"),
        "{value}"
    );
    assert_eq!(job_status(&server, &a, &id), "RUNNING");
    // A compatible version (another filter, same state) takes over from a savepoint.
    let (status, new) = upgrade(
        &a,
        counting("").replace("FROM g GROUP BY", "FROM g WHERE id >= 0 GROUP BY"),
    );
    assert_eq!(status, 200, "{new}");
    let new_id = new["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert!(
        new["from_savepoint"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}/sp-")),
        "{new}"
    );
    assert_eq!(job_status(&server, &a, &id), "STOPPED");
    server.wait_for(&format!("job '{new_id}': resuming from checkpoint"));
    assert_eq!(job_status(&server, &a, &new_id), "RUNNING");
    // The audit log names the upgrade.
    let audit = ok(&server, &admin, Method::GET, "/audit", None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "job.upgrade"
                && r["target"] == id.as_str()
                && r["result"] == "ok"),
        "{audit}"
    );
}

/// Waits (up to 30 s) until job `id` completed a checkpoint.
fn wait_for_first_checkpoint(server: &Server, key: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok(server, key, Method::GET, &format!("/jobs/{id}"), None)["checkpoints"]["completed"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "job {id} completed no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
