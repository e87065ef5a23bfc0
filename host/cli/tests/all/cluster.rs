//! Distributed mode: a JobManager and TaskManagers as real processes on loopback,
//! compared with the same jobs in embedded mode.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT, wait_within};

use super::fungi;
use super::recovery::{committed, job_at};

/// A JobManager and its TaskManagers; every process is killed on drop.
struct Cluster {
    dir: PathBuf,
    /// The host every process listens on.
    host: String,
    /// The environment of every process (and client) of the cluster.
    env: Vec<(String, String)>,
    address: String,
    /// Where the JobManager serves Prometheus metrics.
    metrics_url: String,
    job_manager: Child,
    task_managers: BTreeMap<String, Child>,
}

impl Cluster {
    /// A JobManager and `task_managers` TaskManagers (`tm1`...) of `slots` slots each.
    fn start(dir: &Path, task_managers: usize, slots: u32) -> Cluster {
        Self::start_on(dir, "127.0.0.1", task_managers, slots)
    }

    /// [`Cluster::start`] with every process listening on `host`.
    fn start_on(dir: &Path, host: &str, task_managers: usize, slots: u32) -> Cluster {
        Self::start_with(dir, host, Vec::new(), task_managers, slots)
    }

    /// [`Cluster::start_on`] with `env` for every process and client.
    fn start_with(
        dir: &Path,
        host: &str,
        env: Vec<(String, String)>,
        task_managers: usize,
        slots: u32,
    ) -> Cluster {
        let mut job_manager = fungi()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["jobmanager", "--listen", &format!("{host}:0")])
            .args(["--heartbeat-timeout-ms", "3000"])
            .args(["--metrics-listen", &format!("{host}:0")])
            .env("FUNGI_LOG", "info,fungi_cluster=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("jobmanager.log")).unwrap())
            .spawn()
            .unwrap();
        let (address, metrics_url) = job_manager_banner(&mut job_manager);
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            host: host.to_string(),
            env,
            address,
            metrics_url,
            job_manager,
            task_managers: BTreeMap::new(),
        };
        for i in 1..=task_managers {
            cluster.add_task_manager(&format!("tm{i}"), slots);
        }
        cluster.wait_for_task_managers(task_managers);
        cluster
    }

    fn add_task_manager(&mut self, id: &str, slots: u32) {
        let host = self.host.clone();
        self.add_task_manager_in(None, &host, id, slots);
    }

    /// A TaskManager in network namespace `netns` (if any), listening on `host`.
    fn add_task_manager_in(&mut self, netns: Option<&str>, host: &str, id: &str, slots: u32) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{id}.log")))
            .unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_fungi")]);
                c
            }
            None => fungi(),
        };
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["taskmanager", "--jobmanager", &self.address, "--id", id])
            .args([
                "--slots",
                &slots.to_string(),
                "--listen",
                &format!("{host}:0"),
                // Several TaskManagers share this machine's cores.
                "--worker-threads",
                "2",
            ])
            .env("FUNGI_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.task_managers.insert(id.to_string(), child);
    }

    /// SIGKILL: no chance to say goodbye.
    fn kill(&mut self, id: &str) {
        let mut child = self.task_managers.remove(id).unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    fn status(&self) -> serde_json::Value {
        let out = fungi()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["cluster", "status", "--json", "--jobmanager", &self.address])
            .output_within(PROCESS_LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn wait_for_task_managers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            let registered = status["task_managers"].as_array().unwrap().len();
            if registered == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} TaskManagers expected: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `fungi run --cluster` of `sql` (written to `job.sql` in `dir`).
    fn run(&self, dir: &Path, sql: &str) -> std::process::Output {
        let file = dir.join("job.sql");
        std::fs::write(&file, sql).unwrap();
        fungi()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["run", "--cluster", &self.address, file.to_str().unwrap()])
            .output_within(PROCESS_LIMIT)
    }

    fn logs(&self) -> String {
        log_tails(&self.dir, 30)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self
            .task_managers
            .values_mut()
            .chain([&mut self.job_manager])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a JobManager started with `--metrics-listen` prints first: the address it
/// listens on and its metrics URL.
pub(super) fn job_manager_banner(job_manager: &mut Child) -> (String, String) {
    let mut stdout = BufReader::new(job_manager.stdout.take().unwrap());
    let (mut line, mut metrics) = (String::new(), String::new());
    stdout.read_line(&mut line).unwrap();
    stdout.read_line(&mut metrics).unwrap();
    let address = line.trim().strip_prefix("JobManager listening on ");
    let metrics_url = metrics.trim().strip_prefix("metrics on ");
    (
        address.unwrap_or_else(|| panic!("{line}")).to_string(),
        metrics_url
            .unwrap_or_else(|| panic!("{metrics}"))
            .to_string(),
    )
}

/// The last `lines` lines of every `.log` file in `dir`, each under its name.
pub(super) fn log_tails(dir: &Path, lines: usize) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            text.push_str(&format!("--- {}\n", entry.file_name().to_string_lossy()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// Waits (up to a minute) until `dir` holds a complete checkpoint; `what` says what was
/// going on when none came.
fn wait_for_checkpoint(dir: &Path, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !super::recovery::has_complete_checkpoint(dir) {
        assert!(
            Instant::now() < deadline,
            "no checkpoint in {}: {}",
            dir.display(),
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The output committed in `dir` is `expected`, every row once; `context` goes into the
/// failure message.
pub(super) fn assert_committed(expected: &BTreeMap<String, usize>, dir: &Path, context: &str) {
    let got = committed(dir);
    assert!(
        got == *expected,
        "{} rows expected, {} committed ({} twice)\n{context}",
        expected.len(),
        got.len(),
        got.values().filter(|n| **n > 1).count()
    );
}

/// Runs `sql(dir)` in embedded mode and returns its committed output.
fn embedded(sql: &dyn Fn(&Path) -> String) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let out = super::recovery::run_to_end(dir.path(), &sql(dir.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    committed(dir.path())
}

/// Runs `sql(dir)` on `cluster` and checks its committed output is `expected`.
fn same_on_the_cluster(
    cluster: &Cluster,
    expected: &BTreeMap<String, usize>,
    sql: &dyn Fn(&Path) -> String,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = cluster.run(dir.path(), &sql(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    assert!(stderr.contains("finished"), "{stderr}");
    assert_committed(expected, dir.path(), &stderr);
}

/// Nexmark persons joined with their auctions (q3's join) into files.
fn join_job(dir: &Path, parallelism: u32) -> String {
    format!(
        "SET 'parallelism.default' = '{parallelism}';
         CREATE TABLE person (id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
             city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR)
         WITH ('connector' = 'nexmark', 'table' = 'person', 'events' = '200000', 'base-time' = '0');
         CREATE TABLE auction (id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
             reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
             category BIGINT, extra VARCHAR)
         WITH ('connector' = 'nexmark', 'table' = 'auction', 'events' = '200000', 'base-time' = '0');
         CREATE TABLE results (name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         INSERT INTO results
         SELECT P.name, P.city, P.state, A.id
         FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
         WHERE A.category = 10;",
        dir.join("out").display()
    )
}

#[test]
fn a_cluster_runs_windows_joins_and_wasm_aggregates_as_embedded_mode_does() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 3, 1);
    let windowed = |d: &Path| job_at(&d.join("checkpoints"), &d.join("out"), 3, "", "");
    let join = |d: &Path| join_job(d, 3);
    let wasm = |d: &Path| {
        format!(
            "LOAD PLUGIN '{}';\n{}",
            fungi_plugin_artifacts::HLL,
            job_at(
                &d.join("checkpoints"),
                &d.join("out"),
                3,
                "",
                ", CAST(hll_distinct(bidder) AS BIGINT) AS extra"
            )
        )
    };
    for sql in [&windowed as &dyn Fn(&Path) -> String, &join, &wasm] {
        let expected = embedded(sql);
        assert!(expected.len() > 100, "{} rows", expected.len());
        same_on_the_cluster(&cluster, &expected, sql);
    }
    // Every slot is free again.
    let status = cluster.status();
    for tm in status["task_managers"].as_array().unwrap() {
        assert_eq!(tm["used"], 0, "{status}");
    }
}

#[test]
fn killed_task_managers_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Two slots in use, one spare: every kill is replaced by a fresh TaskManager.
    let mut cluster = Cluster::start(dir.path(), 3, 1);
    let settings = "SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '10';
         SET 'restart-strategy.fixed-delay.delay' = '100ms';";
    // About eight seconds of bids: every kill lands while the job runs.
    let sql = |d: &Path| {
        job_at(&d.join("checkpoints"), &d.join("out"), 2, settings, "")
            .replace("'events' = '150000'", "'events' = '480000'")
    };
    let expected = embedded(&sql);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("job.sql");
    std::fs::write(&file, sql(work.path())).unwrap();
    let run = fungi()
        .args(["run", "--cluster", &cluster.address, file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut seed = super::recovery::seed();
    let mut next = 4;
    let mut kills = Vec::new();
    let mut waited = false;
    for round in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 500));
        // A TaskManager that runs a part of the job.
        let status = cluster.status();
        let busy: Vec<String> = status["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|j| j["subtasks"].as_array().unwrap().iter())
            .map(|s| s["task_manager"].as_str().unwrap().to_string())
            .filter(|tm| cluster.task_managers.contains_key(tm))
            .collect();
        let Some(victim) = busy.get(seed as usize % busy.len().max(1)).cloned() else {
            continue;
        };
        cluster.kill(&victim);
        kills.push(victim);
        if round == 4 {
            // No spare this time: the idle TaskManagers go too, and the job waits for a
            // slot, saying so, until one joins.
            let idle: Vec<String> = cluster
                .task_managers
                .keys()
                .filter(|tm| !busy.contains(tm))
                .cloned()
                .collect();
            for tm in idle {
                cluster.kill(&tm);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = cluster.status();
                match status["jobs"][0]["status"].as_str() {
                    Some("waiting") => {
                        waited = true;
                        break;
                    }
                    // It finished before the kill could matter.
                    None => break,
                    Some(_) => {}
                }
                assert!(Instant::now() < deadline, "{status}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster.add_task_manager(&format!("tm{next}"), 1);
        next += 1;
    }
    let out = wait_within(run, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kills {kills:?}\n{stderr}\n{}",
        cluster.logs()
    );
    assert!(
        stderr.contains("resumed from checkpoint"),
        "kills {kills:?}\n{stderr}"
    );
    assert!(kills.len() >= 3, "kills {kills:?}\n{stderr}");
    assert!(
        !waited || stderr.contains("the job needs 2 slots; 1 free on 1 TaskManagers"),
        "{stderr}"
    );
    assert_committed(
        &expected,
        work.path(),
        &format!("kills {kills:?}\n{stderr}"),
    );
}

#[test]
fn bad_submissions_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 0, 1);
    let job = |d: &Path| job_at(&d.join("checkpoints"), &d.join("out"), 2, "", "");
    // No TaskManager at all.
    let out = cluster.run(dir.path(), &job(dir.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no TaskManager has registered"), "{stderr}");
    // A job that does not plan is refused before it travels.
    let out = cluster.run(dir.path(), "INSERT INTO nowhere SELECT 1;");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nowhere"), "{stderr}");
    // A TaskManager without threads.
    let out = fungi()
        .args([
            "taskmanager",
            "--jobmanager",
            &cluster.address,
            "--worker-threads",
            "0",
        ])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--worker-threads"), "{stderr}");
    // No JobManager there.
    let out = fungi()
        .args(["cluster", "status", "--jobmanager", "127.0.0.1:1"])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the JobManager at 127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn a_job_needing_more_slots_than_the_cluster_has_waits_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 1, 1);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("job.sql");
    std::fs::write(
        &file,
        job_at(
            &work.path().join("checkpoints"),
            &work.path().join("out"),
            2,
            "",
            "",
        ),
    )
    .unwrap();
    let mut run = fungi()
        .args(["run", "--cluster", &cluster.address, file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(run.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("waiting") && line.contains("needs 2 slots; 1 free on 1 TaskManagers"),
        "{line}"
    );
    let status = cluster.status();
    assert_eq!(status["jobs"][0]["status"], "waiting", "{status}");
    // A second TaskManager joins: the job runs.
    cluster.add_task_manager("tm2", 1);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = wait_within(run, PROCESS_LIMIT);
    assert!(out.status.success(), "{rest}\n{}", cluster.logs());
    assert!(rest.contains("finished"), "{rest}");
    assert!(!committed(work.path()).is_empty());
}

/// A network namespace joined to this one by a veth pair: `10.201.N.1` on this side,
/// `10.201.N.2` inside. Removed on drop.
struct NetNs {
    name: String,
    veth: String,
    host: String,
    inside: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output_within(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    fn new() -> NetNs {
        let n = std::process::id() % 250 + 1;
        let name = format!("fungi-test-{}", std::process::id());
        let (veth, peer) = (
            format!("fh{}", std::process::id()),
            format!("fn{}", std::process::id()),
        );
        let ns = NetNs {
            host: format!("10.201.{n}.1"),
            inside: format!("10.201.{n}.2"),
            name,
            veth,
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/24", ns.host), "dev", &ns.veth]);
        ip(&["link", "set", &ns.veth, "up"]);
        let inside = ["netns", "exec", ns.name.as_str(), "ip"];
        ip(&[
            &inside[..],
            &["addr", "add", &format!("{}/24", ns.inside), "dev", &peer],
        ]
        .concat());
        ip(&[&inside[..], &["link", "set", &peer, "up"]].concat());
        ip(&[&inside[..], &["link", "set", "lo", "up"]].concat());
        ns
    }

    /// Cuts (or restores) the link between the namespace and this side.
    fn link(&self, up: bool) {
        ip(&["link", "set", &self.veth, if up { "up" } else { "down" }]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.veth])
            .output_within(Duration::from_secs(30));
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output_within(Duration::from_secs(30));
    }
}

/// Whether this process may make network namespaces (CI runs as root).
fn can_make_namespaces() -> bool {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
        && std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
}

#[test]
fn a_task_manager_cut_off_by_a_partition_is_replaced_and_rejoins_as_a_new_session() {
    assert!(
        can_make_namespaces(),
        "this test cuts a TaskManager off in a network namespace: run it as root with iproute2"
    );
    let netns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start_on(dir.path(), &netns.host, 1, 1);
    cluster.add_task_manager_in(Some(&netns.name), &netns.inside, "cut", 1);
    cluster.wait_for_task_managers(2);
    // About eight seconds of Nexmark bids at 60 000 a second, checkpointed every 200 ms.
    let sql = |d: &Path| {
        job_at(
            &d.join("checkpoints"),
            &d.join("out"),
            2,
            "SET 'restart-strategy.type' = 'fixed-delay';
             SET 'restart-strategy.fixed-delay.attempts' = '10';
             SET 'restart-strategy.fixed-delay.delay' = '200ms';",
            "",
        )
        .replace("'events' = '150000'", "'events' = '480000'")
    };
    let expected = embedded(&sql);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("job.sql");
    std::fs::write(&file, sql(work.path())).unwrap();
    let run = fungi()
        .args(["run", "--cluster", &cluster.address, file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The spare joins once the job is placed on tm1 and the cut-off one.
    wait_for_checkpoint(&work.path().join("checkpoints"), || cluster.logs());
    cluster.add_task_manager("spare", 1);
    netns.link(false);
    // Lost within the heartbeat timeout; the job goes on without it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.status();
        let ids: Vec<&str> = status["task_managers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        if !ids.contains(&"cut") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off TaskManager is still there: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    netns.link(true);
    let out = wait_within(run, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    assert!(
        stderr.contains("TaskManager cut was lost") && stderr.contains("resumed from checkpoint"),
        "{stderr}"
    );
    assert_committed(&expected, work.path(), &stderr);
    // Back on the network, it registers again as a new session.
    cluster.wait_for_task_managers(3);
}

/// Starts `fungi run` of `sql` (in `mode`: `--local` or `--cluster ADDR`), lets it take
/// a checkpoint, stops it with a savepoint, and returns the savepoint's directory.
fn run_and_stop_with_savepoint(mode: &[&str], file: &Path, checkpoints: &Path) -> String {
    let child = fungi()
        .arg("run")
        .args(mode)
        .args(["--no-progress", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_checkpoint(checkpoints, || format!("fungi run {mode:?}"));
    std::thread::sleep(Duration::from_millis(300));
    let savepoint = fungi()
        .args(["savepoint", "--stop", checkpoints.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    let stopped = wait_within(child, PROCESS_LIMIT);
    let log = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        savepoint.status.success() && stopped.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&savepoint.stderr)
    );
    String::from_utf8_lossy(&savepoint.stdout)
        .trim()
        .to_string()
}

#[test]
fn savepoints_move_jobs_between_the_cluster_and_embedded_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, 1);
    // About five seconds of bids, so that the stop lands in the middle.
    let sql = |ckpt: &Path, out: &Path| {
        job_at(ckpt, out, 2, "", "").replace("'events' = '150000'", "'events' = '300000'")
    };
    let expected = embedded(&|d: &Path| sql(&d.join("checkpoints"), &d.join("out")));
    let cluster_mode = ["--cluster", cluster.address.as_str()];
    for (first, second) in [
        (&cluster_mode[..], &["--local"][..]),
        (&["--local"][..], &cluster_mode[..]),
    ] {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("out");
        let (a, b) = (work.path().join("ckpt-a"), work.path().join("ckpt-b"));
        let file = work.path().join("a.sql");
        std::fs::write(&file, sql(&a, &out)).unwrap();
        let savepoint = run_and_stop_with_savepoint(first, &file, &a);
        assert!(
            Path::new(&savepoint).join("_metadata").exists(),
            "{savepoint}"
        );
        assert!(committed(work.path()).len() < expected.len());
        let file = work.path().join("b.sql");
        std::fs::write(&file, sql(&b, &out)).unwrap();
        let resumed = fungi()
            .arg("run")
            .args(second)
            .args([
                "--no-progress",
                "--from-savepoint",
                &savepoint,
                file.to_str().unwrap(),
            ])
            .output_within(PROCESS_LIMIT);
        let log = String::from_utf8_lossy(&resumed.stderr);
        assert!(resumed.status.success(), "{log}\n{}", cluster.logs());
        assert!(
            log.contains("resuming from checkpoint") || log.contains("resumed from checkpoint"),
            "{log}"
        );
        assert_committed(
            &expected,
            work.path(),
            &format!("{first:?} then {second:?}\n{log}"),
        );
    }
}

#[test]
fn plugins_and_python_modules_travel_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, 1);
    // The client's directory holds the plugin and the module; the TaskManagers run
    // elsewhere and find them only because they travel with the job.
    let client = tempfile::tempdir().unwrap();
    std::fs::copy(fungi_plugin_artifacts::HLL, client.path().join("hll.wasm")).unwrap();
    std::fs::write(
        client.path().join("spread.py"),
        "import pyarrow as pa, pyarrow.compute as pc, fungi\n\
         @fungi.udf(returns=pa.int64())\n\
         def double(x):\n    return pc.multiply(x, 2)\n",
    )
    .unwrap();
    let sql = |d: &Path, plugin: &str, module: &str| {
        format!(
            "LOAD PLUGIN '{plugin}';\n\
             CREATE FUNCTION twice AS 'double' LANGUAGE PYTHON USING '{module}';\n{}",
            job_at(
                &d.join("checkpoints"),
                &d.join("out"),
                2,
                "",
                ", twice(CAST(hll_distinct(bidder) AS BIGINT)) AS extra"
            )
        )
    };
    let (plugin, module) = (
        client.path().join("hll.wasm"),
        client.path().join("spread.py"),
    );
    let expected = embedded(&|d: &Path| sql(d, plugin.to_str().unwrap(), module.to_str().unwrap()));
    let file = client.path().join("job.sql");
    std::fs::write(&file, sql(client.path(), "hll.wasm", "spread.py")).unwrap();
    let out = fungi()
        .args(["run", "--cluster", &cluster.address, "job.sql"])
        .current_dir(client.path())
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    assert_eq!(committed(client.path()), expected, "{stderr}");
}

/// The environment that gives a cluster process a TLS identity: a CA of its own and a
/// certificate it signed for 127.0.0.1.
fn tls_identity(dir: &Path, name: &str) -> Vec<(String, String)> {
    let [ca, cert, key] = super::test_certificates(dir, name);
    vec![
        ("FUNGI_CLUSTER_TLS_CA".into(), ca),
        ("FUNGI_CLUSTER_TLS_CERT".into(), cert),
        ("FUNGI_CLUSTER_TLS_KEY".into(), key),
    ]
}

#[test]
fn with_certificates_every_connection_is_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let env = tls_identity(dir.path(), "cluster");
    let cluster = Cluster::start_with(dir.path(), "127.0.0.1", env, 2, 1);
    let sql = |d: &Path| job_at(&d.join("checkpoints"), &d.join("out"), 2, "", "");
    let expected = embedded(&sql);
    same_on_the_cluster(&cluster, &expected, &sql);
    // Without a certificate, or with one another CA signed, nothing gets in.
    let stranger = tls_identity(dir.path(), "stranger");
    for env in [Vec::new(), stranger] {
        let out = fungi()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["cluster", "status", "--jobmanager", &cluster.address])
            .output_within(PROCESS_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
    }
    let status = cluster.status();
    assert_eq!(
        status["task_managers"].as_array().unwrap().len(),
        2,
        "{status}"
    );
}

#[test]
fn status_and_metrics_show_where_subtasks_run_and_what_crosses_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 2, 1);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("job.sql");
    // About five seconds of bids, hashed by auction between the two TaskManagers.
    let sql = job_at(
        &work.path().join("checkpoints"),
        &work.path().join("out"),
        2,
        "",
        "",
    )
    .replace("'events' = '150000'", "'events' = '300000'");
    std::fs::write(&file, sql).unwrap();
    let run = fungi()
        .args(["run", "--cluster", &cluster.address, file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = cluster.status();
        let crossing = status["jobs"][0]["parts"].as_array().is_some_and(|parts| {
            parts.len() == 2 && parts.iter().all(|p| p["bytes_sent"].as_u64() > Some(0))
        });
        if crossing {
            break status;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let job = &status["jobs"][0];
    assert_eq!(job["status"], "running", "{status}");
    let places: std::collections::BTreeSet<&str> = job["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["task_manager"].as_str().unwrap())
        .collect();
    assert_eq!(places, ["tm1", "tm2"].into(), "{status}");
    let text = reqwest::blocking::get(&cluster.metrics_url)
        .unwrap()
        .text()
        .unwrap();
    for name in [
        "fungi_cluster_task_manager_slots{task_manager=\"tm1\"} 1",
        "fungi_cluster_exchange_sent_bytes_total{",
        "fungi_cluster_exchange_backpressured_seconds_total{",
        "fungi_cluster_operator_records_out_total{",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let out = wait_within(run, PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
