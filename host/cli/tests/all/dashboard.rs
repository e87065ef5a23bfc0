//! The web dashboard served by `fungi server`, in a real headless Chromium (Debian's
//! `chromium` and `chromedriver`, driven through Selenium's WebDriver client from
//! `~/.cache/fungi/browser-venv`): sign-in (a wrong key, a developer, a viewer), a job
//! explained, submitted, watched (rows increasing, graph, charts, checkpoint history,
//! dead letters), a savepoint taken and the job cancelled, a plugin uploaded with its
//! signature status; the page in a narrow window; no console errors. Also how the files
//! are served: client-side routes, gzip, revalidation, the security headers, and that
//! nothing in them names a remote host.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use fungi_testkit::process::CommandExt;
use serde_json::{Value, json};

use reqwest::Method;

use super::harness::{ENDLESS, Server, call, create_tenant, new_key, ok};

/// The Python environment with Selenium (`scripts/test.sh` makes it).
fn python() -> String {
    let home = std::env::var("HOME").unwrap();
    format!("{home}/.cache/fungi/browser-venv/bin/python")
}

/// Where the screenshots go: `FUNGI_SCREENSHOTS`, or the target directory.
fn screenshot_dir() -> std::path::PathBuf {
    std::env::var_os("FUNGI_SCREENSHOTS")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_BIN_EXE_fungi"))
                .parent()
                .unwrap()
                .join("dashboard-screenshots")
        })
}

fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut request = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap()
        .get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().unwrap()
}

#[test]
fn the_dashboard_is_served_from_the_binary_with_no_remote_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server.wait_for(&format!("dashboard: {}/", server.url));

    let page = get(&format!("{}/", server.url), &[]);
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().unwrap();
    assert!(html.contains("/boot.js"), "{html}");
    // A client-side route loads the page; the API's unknown paths stay JSON errors.
    let route = get(&format!("{}/jobs/some-job", server.url), &[]);
    assert_eq!(route.status(), 200);
    assert_eq!(route.text().unwrap(), html);
    let api = get(&format!("{}/api/v1/nothing-here", server.url), &[]);
    assert_eq!(api.status(), 404);
    assert!(
        api.text()
            .unwrap()
            .contains("no endpoint GET /api/v1/nothing-here")
    );

    // Every file: compressed when asked, revalidated by its ETag, and naming no remote
    // host (XML namespace names are identifiers, never fetched).
    let namespaces = [
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xhtml",
        "http://www.w3.org/1998/Math/MathML",
        "http://www.w3.org/1999/xlink",
        "http://www.w3.org/XML/1998/namespace",
    ];
    let mut wasm_gzip = 0;
    for file in ["/", "/boot.js", "/app.js", "/app_bg.wasm", "/style.css"] {
        let url = format!("{}{file}", server.url);
        let plain = get(&url, &[]);
        assert_eq!(plain.status(), 200, "{file}");
        let etag = plain.headers()["etag"].to_str().unwrap().to_string();
        let bytes = plain.bytes().unwrap();
        let zipped = get(&url, &[("accept-encoding", "gzip")]);
        assert_eq!(zipped.headers()["content-encoding"], "gzip", "{file}");
        let compressed = zipped.bytes().unwrap();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, bytes, "{file}");
        if file == "/app_bg.wasm" {
            wasm_gzip = compressed.len();
        }
        let again = get(&url, &[("if-none-match", &etag)]);
        assert_eq!(again.status(), 304, "{file}");
        let text = String::from_utf8_lossy(&bytes);
        for scheme in ["http://", "https://", "//fonts.", "//cdn"] {
            for (at, _) in text.match_indices(scheme) {
                let rest = &text[at..(at + 60).min(text.len())];
                assert!(
                    namespaces.iter().any(|n| rest.starts_with(n)),
                    "{file} names a remote host: {rest}"
                );
            }
        }
    }
    eprintln!("dashboard wasm: {wasm_gzip} bytes gzip");
    assert!(wasm_gzip > 0);
}

#[test]
fn people_use_the_dashboard_in_a_real_browser_within_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    let service = super::server::refusing_service();
    create_tenant(
        &server,
        &admin,
        json!({ "id": "a", "quotas": {
            "allowed_egress_hosts": [service], "max_job_parallelism": 4 } }),
    );
    let dev = new_key(&server, &admin, "a", "developer");
    let viewer = new_key(&server, &admin, "a", "viewer");
    // Checkpoints every 300 ms; every row the sink sends is refused by the service and
    // goes to the dead-letter output.
    let sql = format!(
        "SET 'execution.checkpointing.interval' = '300ms';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '50');
         CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = 'http://{service}/in',
             'sink.max-batch-rows' = '1', 'sink.on-error' = 'dead-letter');
         INSERT INTO hook SELECT id FROM g WHERE id % 2 = 0;"
    );
    let shots = screenshot_dir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard_browser.py");
    let out = Command::new(python())
        .args([
            script,
            &server.url,
            &dev,
            &viewer,
            &admin,
            &sql,
            fungi_plugin_artifacts::STRINGS_GEO,
            shots.to_str().unwrap(),
        ])
        .output_within(Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("{}", serde_json::to_string_pretty(&seen).unwrap());
    assert_eq!(seen["ok"], true, "{seen}");

    // A wrong key: the reason, and nothing kept in the session.
    let wrong = seen["wrong_key_error"].as_str().unwrap();
    assert!(wrong.starts_with("Sign-in failed"), "{wrong}");
    assert!(wrong.contains("key"), "{wrong}");
    assert!(seen["wrong_key_kept"].is_null(), "{seen}");

    // The developer: explained before running, the job graph, live rows, charts,
    // checkpoint history, dead letters, a savepoint, a cancel.
    assert!(
        seen["dev_who"].as_str().unwrap().contains("developer"),
        "{seen}"
    );
    assert_eq!(seen["dev_nav"], json!(["Jobs", "Plugins"]), "{seen}");
    assert_eq!(seen["run_enabled_before_explain"], false);
    assert!(seen["explained_vertices"].as_u64().unwrap() >= 2, "{seen}");
    let over = seen["over_quota"].as_str().unwrap();
    assert!(over.contains("parallelism") && over.contains('4'), "{over}");
    assert_eq!(seen["run_enabled_over_quota"], false);
    let rows = seen["rows_read"].as_array().unwrap();
    assert!(
        rows[1].as_u64().unwrap() > rows[0].as_u64().unwrap(),
        "rows increase while the page is open: {seen}"
    );
    let vertices = seen["graph_vertices"].as_array().unwrap();
    assert!(
        vertices
            .iter()
            .any(|v| v.as_str().unwrap().contains("backpressure")),
        "{seen}"
    );
    assert!(seen["checkpoint_rows"].as_u64().unwrap() >= 1, "{seen}");
    for chart in [
        "Throughput",
        "Backpressure",
        "Latency",
        "Checkpoint duration",
    ] {
        assert!(
            seen["charts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c.as_str().unwrap().starts_with(chart)),
            "{chart}: {seen}"
        );
    }
    assert!(
        seen["dead_letter_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "sink rejected"),
        "{seen}"
    );
    assert!(
        seen["dead_letter_row"]
            .as_str()
            .unwrap()
            .contains("sink rejected"),
        "{seen}"
    );
    // At most one call a second per view (the job, its history, its dead letters).
    let rate = seen["job_page_calls_per_s"].as_f64().unwrap();
    assert!(rate > 0.5 && rate <= 3.0, "{seen}");
    let job = seen["job"].as_str().unwrap();
    assert!(
        seen["savepoints"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{job}/sp-")),
        "{seen}"
    );
    assert_eq!(seen["actions_after_stop"], json!([]), "{seen}");
    assert!(
        seen["stopped_with"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{job}/sp-")),
        "{seen}"
    );
    assert_ne!(seen["restarted_job"], seen["job"], "{seen}");
    assert_eq!(seen["cancelled"], true);
    assert_eq!(seen["actions_after_cancel"], json!([]), "{seen}");

    // The upload names the signature status under the tenant's (default) policy, and
    // the plugin is listed with its functions' Arrow signatures.
    let upload = seen["upload_notice"].as_str().unwrap();
    assert!(
        upload.contains("Uploaded uploaded (scalar), signature: "),
        "{upload}"
    );
    assert!(
        seen["plugins_table"].as_str().unwrap().contains("→"),
        "{seen}"
    );
    assert!(seen["usage_charts"].as_u64().unwrap() >= 4, "{seen}");

    // A narrow window scrolls nothing sideways; no console error on the way (the
    // refused sign-in's 401 aside).
    assert!(seen["narrow_overflow_px"].as_i64().unwrap() <= 1, "{seen}");
    assert_eq!(seen["console_errors"], json!([]), "{seen}");

    // An admin manages tenants, keys and reads the audit log.
    assert_eq!(
        seen["admin_nav"],
        json!(["Jobs", "Plugins", "Tenants", "Keys", "Audit"]),
        "{seen}"
    );
    assert!(
        seen["tenants"].as_array().unwrap().iter().any(|t| t == "a"),
        "{seen}"
    );
    assert!(
        seen["new_key"].as_str().unwrap().starts_with("fgk_"),
        "{seen}"
    );
    assert!(
        seen["revoked_row"].as_str().unwrap().contains("revoked"),
        "{seen}"
    );
    let actions = seen["audit_actions"].as_array().unwrap();
    for action in ["key.create", "key.revoke"] {
        assert!(actions.iter().any(|a| a == action), "{seen}");
    }
    assert_eq!(seen["remote_requests"], json!([]), "{seen}");

    // The viewer sees no editor and no button it could not use; calling anyway is
    // refused with the API's reason.
    assert_eq!(seen["viewer_nav"], json!(["Jobs", "Plugins"]), "{seen}");
    assert_eq!(seen["viewer_sql_editor"], 0, "{seen}");
    assert_eq!(seen["viewer_buttons"], json!([]), "{seen}");
    assert_eq!(seen["viewer_direct_submit"]["status"], 403, "{seen}");
    assert!(
        seen["viewer_direct_submit"]["error"]
            .as_str()
            .unwrap()
            .contains("viewer"),
        "{seen}"
    );
    eprintln!(
        "first render {} ms after navigation start; screenshots in {}",
        seen["timing"]["first_render_ms"],
        shots.display()
    );
    for page in [
        "sign-in",
        "submit-explained",
        "job",
        "job-checkpoints",
        "plugins",
        "jobs",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}");
    }
}

#[test]
fn what_the_dashboard_reads_follows_the_callers_role_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let admin = server.admin_key();
    create_tenant(
        &server,
        &admin,
        json!({ "id": "a", "quotas": { "plugin_cpu_ms_per_second": 250 } }),
    );
    create_tenant(&server, &admin, json!({ "id": "b" }));
    let dev = new_key(&server, &admin, "a", "developer");
    let viewer = new_key(&server, &admin, "a", "viewer");
    let other = new_key(&server, &admin, "b", "tenant-admin");

    // whoami: the role's permissions, nothing more.
    let me = ok(&server, &viewer, Method::GET, "/whoami", None);
    assert_eq!(me["tenant"], "a");
    assert_eq!(me["role"], "viewer");
    let allowed: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        allowed.contains(&"job.get") && allowed.contains(&"sql.explain"),
        "{me}"
    );
    assert!(
        !allowed.contains(&"job.submit") && !allowed.contains(&"key.create"),
        "{me}"
    );
    let all = ok(&server, &admin, Method::GET, "/whoami", None);
    assert_eq!(all["permissions"].as_array().unwrap().len(), 27, "{all}");
    let (status, body) = call(&server, Some("fgk_00_00"), Method::GET, "/whoami", None);
    assert_eq!(status, 401, "{body}");

    // A running job's history fills in once a second, with rates and checkpoints.
    let job = ok(
        &server,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let id = job["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let history = loop {
        let h = ok(
            &server,
            &viewer,
            Method::GET,
            &format!("/jobs/{id}/history"),
            None,
        );
        if h["points"].as_array().unwrap().len() >= 3
            && !h["checkpoints"].as_array().unwrap().is_empty()
        {
            break h;
        }
        assert!(std::time::Instant::now() < deadline, "no history: {h}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(history["interval_ms"], 1000);
    let last = history["points"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(last["read_per_s"].as_f64().unwrap() > 100.0, "{history}");
    assert!(last["written_per_s"].as_f64().unwrap() > 100.0, "{history}");
    let backpressure = last["backpressure"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&backpressure), "{history}");
    let ops = history["operators"].as_array().unwrap();
    assert!(
        ops.iter()
            .any(|o| o["name"] == "g" && o["out_per_s"].as_f64().unwrap() > 100.0),
        "{history}"
    );
    let stats = ok(&server, &viewer, Method::GET, "/job-stats", None);
    assert_eq!(stats[0]["id"], id, "{stats}");
    assert!(stats[0]["read_per_s"].as_f64().unwrap() > 100.0, "{stats}");

    // Another tenant sees neither the job's history nor its rates.
    let (status, body) = call(
        &server,
        Some(&other),
        Method::GET,
        &format!("/jobs/{id}/history"),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        ok(&server, &other, Method::GET, "/job-stats", None),
        json!([])
    );

    // Plugin usage: one's own tenant with the limits it runs under; an admin sees all.
    let usage = ok(&server, &viewer, Method::GET, "/usage", None);
    assert_eq!(usage.as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage[0]["tenant"], "a");
    assert_eq!(usage[0]["limits"]["cpu_ms_per_second"], 250, "{usage}");
    assert_eq!(usage[0]["running_jobs"], 1, "{usage}");
    assert_eq!(usage[0]["slots"], 1, "{usage}");
    let everyone = ok(&server, &admin, Method::GET, "/usage", None);
    assert!(everyone.as_array().unwrap().len() >= 3, "{everyone}");
    ok(
        &server,
        &dev,
        Method::POST,
        &format!("/jobs/{id}/cancel"),
        None,
    );
}
