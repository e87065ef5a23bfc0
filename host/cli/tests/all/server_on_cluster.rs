//! `fungi server --cluster`: two servers in front of a highly available cluster (two
//! JobManagers elected through etcd, two TaskManagers), sharing their metadata in the
//! same etcd and one data directory. A tenant's job runs on the TaskManagers confined
//! to the tenant; the leading JobManager and the server that took the job are killed
//! together; the other server answers for everything (the job, keys, tenants, the audit
//! log without a gap), and the job's committed output equals an uninterrupted run.

use std::path::Path;
use std::time::{Duration, Instant};

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT};
use reqwest::Method;
use serde_json::{Value, json};

use super::fungi;
use super::ha::{HaCluster, uninterrupted, windowed_job};
use super::harness::{ENDLESS, Server, call, create_tenant, new_key, ok, upload, wait_status};

/// A server in front of `cluster`, its metadata in the cluster's etcd, its data in
/// `data` (shared by every server and, being local, by every TaskManager).
fn server(cluster: &HaCluster, data: &Path) -> Server {
    Server::start_with(
        data,
        &[
            "--cluster",
            &cluster.addresses(),
            "--metadata",
            "etcd",
            "--metadata-endpoints",
            &cluster.etcd.endpoint,
        ],
    )
}

/// The windowed Nexmark job of the HA tests as a tenant writes it: its output in its
/// own files (`out`), its checkpoints where the server puts them, restarting after a
/// second.
fn tenant_job(seconds: u32) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let sql = windowed_job(scratch.path(), seconds);
    let checkpoint_dir = format!(
        "SET 'execution.checkpointing.dir' = '{}';",
        scratch.path().join("checkpoints").display()
    );
    assert!(sql.contains(&checkpoint_dir), "{sql}");
    // Quotas ask a restart to wait at least a second by default.
    sql.replace(&checkpoint_dir, "")
        .replace(
            &format!("'path' = '{}'", scratch.path().join("out").display()),
            "'path' = 'out'",
        )
        .replace("'100ms'", "'1s'")
}

/// Waits up to `seconds` for `job`'s details to satisfy `done`; returns them.
fn wait_for_job(
    server: &Server,
    key: &str,
    id: &str,
    seconds: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let (status, job) = call(server, Some(key), Method::GET, &format!("/jobs/{id}"), None);
        if status == 200 && done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id}: {status} {job}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Submits `sql` and waits (up to a minute) for the job to end; its details.
fn run_to_end(server: &Server, key: &str, sql: &str) -> Value {
    let job = ok(
        server,
        key,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": sql })),
    );
    wait_for_job(server, key, job["id"].as_str().unwrap(), 60, |j| {
        j["status"] != "RUNNING"
    })
}

/// Every audit record's sequence number, oldest first.
fn audit_seqs(server: &Server, admin: &str) -> Vec<i64> {
    ok(server, admin, Method::GET, "/audit?limit=10000", None)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect()
}

#[test]
fn the_api_answers_through_a_failover_and_the_job_commits_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = HaCluster::start(dir.path());
    let data = dir.path().join("data");
    let mut first = server(&cluster, &data);
    let admin = first.admin_key();
    let second = server(&cluster, &data);
    create_tenant(&first, &admin, json!({ "id": "acme" }));
    let dev = new_key(&first, &admin, "acme", "developer");

    // A job submitted through the first server runs on the TaskManagers, confined to
    // the tenant; the second server follows it too.
    let seconds = 8;
    let expected = uninterrupted(seconds);
    let job = ok(
        &first,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": tenant_job(seconds) })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let running = wait_for_job(&second, &dev, &id, 60, |j| {
        j["cluster"]["status"] == "running"
            && j["cluster"]["subtasks"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
    });
    assert_eq!(running["status"], "RUNNING", "{running}");
    let on = |j: &Value| {
        j["cluster"]["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["task_manager"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        on(&running).len(),
        2,
        "spread over both TaskManagers: {running}"
    );
    // A tenant's script cannot reach outside its files, on the cluster as on a server.
    let (status, refused) = call(
        &second,
        Some(&dev),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": windowed_job(dir.path(), 1) })),
    );
    assert_eq!(status, 400, "{refused}");
    std::thread::sleep(Duration::from_secs(2));

    // The leading JobManager and the server that took the job go together.
    let (leader, _) = cluster.leader();
    cluster.kill_job_manager(&leader);
    first.kill();
    let before = audit_seqs(&second, &admin);

    // The other server answers: the job is listed, keys and tenants are valid.
    let listed = ok(&second, &dev, Method::GET, "/jobs", None);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()),
        "{listed}"
    );
    let tenants = ok(&second, &admin, Method::GET, "/tenants", None);
    assert!(
        tenants
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "acme")
    );
    let ops = new_key(&second, &admin, "acme", "developer");
    let finished = wait_for_job(&second, &ops, &id, 120, |j| j["status"] != "RUNNING");
    assert_eq!(
        finished["status"],
        "FINISHED",
        "{finished}\n{}",
        cluster.logs()
    );
    super::cluster::assert_committed(&expected, &data.join("files").join("acme"), &cluster.logs());

    // The audit log goes on without a gap across servers.
    let after = audit_seqs(&second, &admin);
    assert!(
        after.len() > before.len(),
        "nothing audited after the failover"
    );
    assert_eq!(
        after,
        (after[0]..after[0] + after.len() as i64).collect::<Vec<_>>(),
        "the audit log has a gap"
    );

    // A server started again answers the same, and jobs stop with a savepoint, start
    // from it and are cancelled through any server.
    let first = server(&cluster, &data);
    assert_eq!(
        ok(&first, &dev, Method::GET, &format!("/jobs/{id}"), None)["status"],
        "FINISHED"
    );
    let endless = ok(
        &first,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS })),
    );
    let endless = endless["id"].as_str().unwrap().to_string();
    wait_for_job(&second, &dev, &endless, 60, |j| {
        j["cluster"]["status"] == "running"
    });
    let checkpoints = data.join("jobs").join(&endless).join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&checkpoints).map_or(0, |d| d.count()) < 2 {
        assert!(
            Instant::now() < deadline,
            "no checkpoints in {}",
            checkpoints.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let savepoint = ok(
        &second,
        &dev,
        Method::POST,
        &format!("/jobs/{endless}/savepoint"),
        Some(json!({ "stop": true })),
    );
    wait_status(&first, &dev, &endless, "STOPPED");
    let restarted = ok(
        &first,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": ENDLESS, "from_savepoint": savepoint["id"] })),
    );
    let restarted = restarted["id"].as_str().unwrap().to_string();
    wait_for_job(&first, &dev, &restarted, 60, |j| {
        j["cluster"]["status"] == "running"
    });
    let cancelled = ok(
        &second,
        &dev,
        Method::POST,
        &format!("/jobs/{restarted}/cancel"),
        None,
    );
    assert_eq!(cancelled["status"], "CANCELLED");
    cluster.wait_until(30, "the cancelled job gone from the cluster", |s| {
        s["jobs"]
            .as_array()
            .is_none_or(|jobs| jobs.iter().all(|j| j["job"] != restarted.as_str()))
    });
    wait_status(&first, &dev, &restarted, "CANCELLED");

    // Probes: alive, and ready while the metadata store answers.
    let probe = |server: &Server, path: &str| {
        let response = reqwest::blocking::get(format!("{}{path}", server.url)).unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(probe(&second, "/healthz").0, 200);
    assert_eq!(probe(&second, "/readyz").0, 200);
    cluster.etcd.stop();
    let (status, why) = probe(&second, "/readyz");
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("etcd is unreachable"), "{why}");
    assert_eq!(probe(&second, "/healthz").0, 200);
}

#[test]
fn bad_server_setups_for_a_cluster_are_refused_with_what_to_do() {
    let refused = |args: &[&str]| {
        let out = fungi()
            .arg("server")
            .args(args)
            .output_within(PROCESS_LIMIT);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&["--cluster", "127.0.0.1:1", "--safe-mode"]);
    assert!(
        err.contains("--safe-mode") && err.contains("--cluster"),
        "{err}"
    );
    let err = refused(&["--metadata", "etcd"]);
    assert!(err.contains("--metadata-endpoints"), "{err}");
    let err = refused(&["--metadata", "zookeeper"]);
    assert!(err.contains("sqlite") && err.contains("etcd"), "{err}");
    // etcd that does not answer: the server says so and does not start.
    let dir = tempfile::tempdir().unwrap();
    let port = fungi_testkit::free_port();
    let err = refused(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--metadata",
        "etcd",
        "--metadata-endpoints",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(err.contains("etcd is unreachable"), "{err}");
}

/// A keyed count over generated rows, checkpointing every 200 ms; `filter` goes before
/// its GROUP BY, `extra` after its COUNT.
fn counting(filter: &str, extra: &str) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '200ms';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '2000');
         CREATE TABLE out (k BIGINT, n BIGINT{columns}) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT id % 10, COUNT(*){extra} FROM g {filter} GROUP BY id % 10;",
        columns = if extra.is_empty() { "" } else { ", m BIGINT" },
    )
}

/// Waits until the cluster no longer runs `job`.
fn wait_gone_from_cluster(cluster: &HaCluster, job: &str) {
    cluster.wait_until(30, &format!("job {job} gone from the cluster"), |s| {
        s["jobs"]
            .as_array()
            .is_none_or(|jobs| jobs.iter().all(|j| j["job"] != job))
    });
}

#[test]
fn quotas_upgrades_and_tenant_deletion_reach_jobs_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = HaCluster::start(dir.path());
    let data = dir.path().join("data");
    let mut server = server(&cluster, &data);
    let admin = server.admin_key();

    // A job whose checkpoints hold more state than its tenant may keep fails with the
    // quota, and stops on the cluster.
    create_tenant(
        &server,
        &admin,
        json!({ "id": "tiny", "quotas": { "max_state_bytes": 1 } }),
    );
    let tiny = new_key(&server, &admin, "tiny", "developer");
    let job = ok(
        &server,
        &tiny,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": counting("", "") })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let failed = wait_for_job(&server, &tiny, &id, 60, |j| j["status"] != "RUNNING");
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("max_state_bytes"),
        "{failed}"
    );
    wait_gone_from_cluster(&cluster, &id);

    // An upgrade stops the job with a savepoint and starts the new version from it on
    // the cluster; a version that cannot read the state is refused.
    create_tenant(&server, &admin, json!({ "id": "acme" }));
    let dev = new_key(&server, &admin, "acme", "developer");
    let job = ok(
        &server,
        &dev,
        Method::POST,
        "/jobs",
        Some(json!({ "sql": counting("", "") })),
    );
    let id = job["id"].as_str().unwrap().to_string();
    let checkpoints = data.join("jobs").join(&id).join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&checkpoints).map_or(0, |d| d.count()) < 2 {
        assert!(
            Instant::now() < deadline,
            "no checkpoints in {}",
            checkpoints.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let upgrade = |id: &str, sql: String| {
        call(
            &server,
            Some(&dev),
            Method::POST,
            &format!("/jobs/{id}/upgrade"),
            Some(json!({ "sql": sql })),
        )
    };
    let (status, refused) = upgrade(&id, counting("", ", MAX(id)"));
    assert_eq!(status, 409, "{refused}");
    let (status, new) = upgrade(&id, counting("WHERE id >= 0", ""));
    assert_eq!(status, 200, "{new}");
    let new_id = new["id"].as_str().unwrap().to_string();
    wait_status(&server, &dev, &id, "STOPPED");
    wait_for_job(&server, &dev, &new_id, 60, |j| {
        j["cluster"]["status"] == "running"
    });
    wait_gone_from_cluster(&cluster, &id);
    // The dashboard's charts of a job on the cluster come from its TaskManagers'
    // counters, sampled through the leading JobManager.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = ok(
            &server,
            &dev,
            Method::GET,
            &format!("/jobs/{new_id}/history"),
            None,
        );
        let reading = h["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["read_per_s"].as_f64().unwrap() > 100.0);
        if reading {
            assert!(
                h["operators"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|o| o["name"] == "g" && o["records_out"].as_u64().unwrap() > 0),
                "{h}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no history of a cluster job: {h}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A tenant's uploaded plugins run on the TaskManagers, through its catalog
    // functions, within its plugin limits.
    create_tenant(
        &server,
        &admin,
        json!({ "id": "plugs", "quotas": { "plugin_memory_per_instance": 32 << 20 } }),
    );
    let plugs = new_key(&server, &admin, "plugs", "developer");
    for (name, file) in [
        ("geo", fungi_plugin_artifacts::STRINGS_GEO),
        ("evil", fungi_plugin_artifacts::HOSTILE_EVIL),
    ] {
        let (status, body) = upload(&server, &plugs, name, std::fs::read(file).unwrap(), None);
        assert_eq!(status, 201, "{body}");
    }
    ok(
        &server,
        &plugs,
        Method::POST,
        "/functions",
        Some(json!({ "sql": "CREATE FUNCTION slugify LANGUAGE WASM USING 'geo'" })),
    );
    let slugs = "SET 'execution.checkpointing.interval' = '200ms';
        CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '20',
            'fields.id.kind' = 'sequence', 'fields.id.start' = '0', 'fields.id.end' = '19');
        CREATE TABLE out (s STRING) WITH ('connector' = 'filesystem', 'path' = 'slugs', 'format' = 'csv');
        INSERT INTO out SELECT slugify(CONCAT('Hello World ', CAST(id AS STRING))) FROM g;";
    // Without checkpoints a standby could not resume it: refused up front.
    let unsafe_job = slugs.replace("SET 'execution.checkpointing.interval' = '200ms';", "");
    let (status, refused) = call(
        &server,
        Some(&plugs),
        Method::POST,
        "/jobs",
        Some(json!({ "sql": unsafe_job })),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("execution.checkpointing.interval"),
        "{refused}"
    );
    let done = run_to_end(&server, &plugs, slugs);
    assert_eq!(done["status"], "FINISHED", "{done}");
    let out = data.join("files/plugs/slugs");
    let written: String = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(
        written
            .lines()
            .filter(|l| l.starts_with("hello-world-"))
            .count(),
        20,
        "{written}"
    );
    let bomb = "SET 'execution.checkpointing.interval' = '200ms';
        SET 'restart-strategy.type' = 'none';
        CREATE FUNCTION bomb LANGUAGE WASM USING 'evil';
        CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '5');
        CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
        INSERT INTO out SELECT bomb(id) FROM g;";
    let failed = run_to_end(&server, &plugs, bomb);
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("memory limit of 32 MiB per instance exceeded"),
        "{error}"
    );
    // Messages name the tenant's files as it does, never the server's paths.
    assert!(!error.contains(data.to_str().unwrap()), "{error}");

    // Deleting the tenant with force cancels its jobs on the cluster.
    let (status, body) = call(
        &server,
        Some(&admin),
        Method::DELETE,
        "/tenants/acme?force=true",
        None,
    );
    assert!((200..300).contains(&status), "{status} {body}");
    wait_gone_from_cluster(&cluster, &new_id);
    assert!(!data.join("jobs").join(&new_id).exists());
}
