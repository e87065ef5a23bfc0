//! High availability: JobManagers elected through a real etcd on loopback, killed,
//! paused and cut off from etcd while the windowed Nexmark job runs; the committed
//! output always equals an uninterrupted run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fungi_testkit::EtcdServer;
use fungi_testkit::process::{CommandExt, PROCESS_LIMIT, wait_within};

use super::cluster::assert_committed;
use super::fungi;
use super::recovery::{committed, job_at};

/// etcd's lease time in these tests: a standby takes over within it.
const LEASE_TTL: &str = "3";

/// etcd, JobManagers standing for election and TaskManagers; all killed on drop.
pub(super) struct HaCluster {
    dir: PathBuf,
    pub(super) etcd: EtcdServer,
    /// JobManagers by name, with their addresses.
    job_managers: BTreeMap<String, (Child, String)>,
    /// Their probes (`http://.../`) by name.
    probes: BTreeMap<String, String>,
    task_managers: Vec<Child>,
    /// The TaskManagers' readiness probes.
    task_manager_probes: Vec<String>,
}

impl HaCluster {
    /// Two JobManagers and two TaskManagers of one slot each.
    pub(super) fn start(dir: &Path) -> HaCluster {
        let mut cluster = HaCluster {
            dir: dir.to_path_buf(),
            etcd: EtcdServer::start(),
            job_managers: BTreeMap::new(),
            probes: BTreeMap::new(),
            task_managers: Vec::new(),
            task_manager_probes: Vec::new(),
        };
        for name in ["jm1", "jm2"] {
            let address = format!("127.0.0.1:{}", fungi_testkit::free_port());
            cluster.start_job_manager(name, &address);
        }
        let addresses = cluster.addresses();
        for i in 1..=2 {
            let log = std::fs::File::create(dir.join(format!("tm{i}.log"))).unwrap();
            // As in a pod: listening on every interface, reached at the address it
            // advertises.
            let port = fungi_testkit::free_port();
            let mut child = fungi()
                .args(["taskmanager", "--jobmanager", &addresses, "--id"])
                .arg(format!("tm{i}"))
                .args(["--listen", &format!("0.0.0.0:{port}")])
                .args(["--advertise", &format!("127.0.0.1:{port}")])
                .args(["--probe-listen", "127.0.0.1:0"])
                .env("FUNGI_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let (mut first, mut probes) = (String::new(), String::new());
            stdout.read_line(&mut first).unwrap();
            stdout.read_line(&mut probes).unwrap();
            let probe = probes.trim().strip_prefix("probes on ");
            let probe = probe.unwrap_or_else(|| panic!("{probes}"));
            cluster.task_manager_probes.push(probe.to_string());
            cluster.task_managers.push(child);
        }
        cluster.wait_until(30, "two TaskManagers registered with a leader", |s| {
            s["task_managers"].as_array().is_some_and(|t| t.len() == 2)
        });
        cluster
    }

    /// Starts JobManager `name` listening on `address` (again, after a kill: as a
    /// supervisor such as Kubernetes would, at the same address).
    fn start_job_manager(&mut self, name: &str, address: &str) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let mut child = fungi()
            .args(["jobmanager", "--listen", address, "--id", name])
            .args(["--ha", "etcd", "--ha-endpoints", &self.etcd.endpoint])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args([
                "--ha-lease-ttl",
                LEASE_TTL,
                "--heartbeat-timeout-ms",
                "3000",
            ])
            .env("FUNGI_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let (listening, metrics) = super::cluster::job_manager_banner(&mut child);
        assert_eq!(listening, address);
        let probes = metrics
            .strip_suffix("metrics")
            .unwrap_or_else(|| panic!("{metrics}"));
        self.probes.insert(name.to_string(), probes.to_string());
        self.job_managers
            .insert(name.to_string(), (child, address.to_string()));
    }

    /// Every JobManager's address, comma-separated, as TaskManagers and clients get
    /// them.
    pub(super) fn addresses(&self) -> String {
        self.job_managers
            .values()
            .map(|(_, a)| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(super) fn status(&self) -> Option<serde_json::Value> {
        let out = fungi()
            .args([
                "cluster",
                "status",
                "--json",
                "--jobmanager",
                &self.addresses(),
            ])
            .output_within(PROCESS_LIMIT);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Waits up to `seconds` for a leader's status that satisfies `ok`.
    pub(super) fn wait_until(
        &self,
        seconds: u64,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.status().filter(|s| s["leadership"]["leading"] == true)
                && ok(&status)
            {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {seconds} s: {:?}\n{}",
                self.status(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The name of the JobManager that leads now.
    pub(super) fn leader(&self) -> (String, i64) {
        let status = self.wait_until(30, "a leader", |_| true);
        let address = status["leadership"]["leader"].as_str().unwrap().to_string();
        let name = self
            .job_managers
            .iter()
            .find(|(_, (_, a))| *a == address)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("leader {address} is none of ours"));
        (name, status["leadership"]["epoch"].as_i64().unwrap())
    }

    /// Waits until the job runs on a leader newer than `epoch`.
    fn wait_for_running_after(&self, epoch: i64) -> i64 {
        let status = self.wait_until(60, "the job running on a new leader", |s| {
            s["leadership"]["epoch"].as_i64() > Some(epoch)
                && s["jobs"][0]["status"].as_str() == Some("running")
        });
        status["leadership"]["epoch"].as_i64().unwrap()
    }

    /// SIGKILL; its address, for a restart.
    pub(super) fn kill_job_manager(&mut self, name: &str) -> String {
        let (mut child, address) = self.job_managers.remove(name).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        address
    }

    fn signal(&self, name: &str, signal: &str) {
        let pid = self.job_managers[name].0.id().to_string();
        let out = std::process::Command::new("kill")
            .args([signal, &pid])
            .output_within(PROCESS_LIMIT);
        assert!(out.status.success());
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub(super) fn logs(&self) -> String {
        super::cluster::log_tails(&self.dir, 15)
    }

    /// `fungi run --cluster` of `file`, following the job across leaders.
    fn submit(&self, file: &Path) -> Child {
        fungi()
            .args([
                "run",
                "--cluster",
                &self.addresses(),
                file.to_str().unwrap(),
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        for child in self
            .task_managers
            .iter_mut()
            .chain(self.job_managers.values_mut().map(|(c, _)| c))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The windowed Nexmark job at 20 000 bids a second for `seconds`, restarting quickly.
pub(super) fn windowed_job(dir: &Path, seconds: u32) -> String {
    let settings = "SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '20';
         SET 'restart-strategy.fixed-delay.delay' = '100ms';";
    job_at(&dir.join("checkpoints"), &dir.join("out"), 2, settings, "")
        .replace(
            "'events' = '150000'",
            &format!("'events' = '{}'", seconds * 20_000),
        )
        .replace("'rate-limit' = '60000'", "'rate-limit' = '20000'")
}

/// What the job commits when nothing goes wrong.
pub(super) fn uninterrupted(seconds: u32) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let out = super::recovery::run_to_end(dir.path(), &windowed_job(dir.path(), seconds));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    committed(dir.path())
}

fn job_file(dir: &Path, seconds: u32) -> PathBuf {
    let file = dir.join("job.sql");
    std::fs::write(&file, windowed_job(dir, seconds)).unwrap();
    file
}

/// A cluster running the windowed job for `seconds`, two seconds into it.
struct RunningJob {
    cluster: HaCluster,
    expected: BTreeMap<String, usize>,
    work: tempfile::TempDir,
    run: Child,
    leader: String,
    epoch: i64,
}

fn running_job(dir: &Path, seconds: u32) -> RunningJob {
    let cluster = HaCluster::start(dir);
    let expected = uninterrupted(seconds);
    let work = tempfile::tempdir().unwrap();
    let run = cluster.submit(&job_file(work.path(), seconds));
    let (leader, epoch) = cluster.leader();
    cluster.wait_until(30, "the job running", |s| {
        s["jobs"][0]["status"] == "running"
    });
    std::thread::sleep(Duration::from_secs(2));
    RunningJob {
        cluster,
        expected,
        work,
        run,
        leader,
        epoch,
    }
}

#[test]
fn a_standby_takes_over_from_a_killed_leader_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = HaCluster::start(dir.path());
    let seconds = 30;
    let expected = uninterrupted(seconds);
    let work = tempfile::tempdir().unwrap();
    let run = cluster.submit(&job_file(work.path(), seconds));
    let (_, mut epoch) = cluster.leader();
    cluster.wait_until(30, "the job running", |s| {
        s["jobs"][0]["status"] == "running"
    });
    let mut seed = super::recovery::seed();
    let mut kills = Vec::new();
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 1200));
        let (leader, _) = cluster.leader();
        if cluster
            .status()
            .is_some_and(|s| s["jobs"][0]["status"] != "running")
        {
            break;
        }
        let address = cluster.kill_job_manager(&leader);
        // The standby leads and resumes the job; the killed one comes back as standby.
        epoch = cluster.wait_for_running_after(epoch);
        cluster.start_job_manager(&leader, &address);
        kills.push(leader);
    }
    let out = wait_within(run, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kills {kills:?}\n{stderr}\n{}",
        cluster.logs()
    );
    assert!(kills.len() >= 3, "kills {kills:?}\n{stderr}");
    assert!(stderr.contains("resumed from checkpoint"), "{stderr}");
    assert_committed(
        &expected,
        work.path(),
        &format!("kills {kills:?}\n{stderr}"),
    );
}

#[test]
fn a_paused_leader_completes_no_checkpoint_and_commits_nothing_after_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let RunningJob {
        cluster,
        expected,
        work,
        run,
        leader,
        epoch,
    } = running_job(dir.path(), 15);
    cluster.signal(&leader, "-STOP");
    let new_epoch = cluster.wait_for_running_after(epoch);
    // The deposed leader wakes up with checkpoints it was in the middle of.
    let before = cluster.log(&leader).len();
    cluster.signal(&leader, "-CONT");
    let out = wait_within(run, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    let woke = cluster.log(&leader)[before..].to_string();
    assert!(woke.contains("leadership lost"), "{woke}");
    assert!(
        !woke.contains("checkpoint complete"),
        "the deposed leader completed a checkpoint after waking:\n{woke}"
    );
    assert!(new_epoch > epoch);
    assert_committed(&expected, work.path(), &stderr);
}

#[test]
fn without_etcd_the_leader_steps_down_and_the_job_resumes_when_etcd_returns() {
    let dir = tempfile::tempdir().unwrap();
    let RunningJob {
        mut cluster,
        expected,
        work,
        run,
        leader,
        epoch,
    } = running_job(dir.path(), 12);
    cluster.etcd.stop();
    // Within the lease time the leader stops acting: nobody leads.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster.log(&leader).contains("leadership lost") {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    cluster.etcd.resume();
    cluster.wait_for_running_after(epoch);
    let out = wait_within(run, PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", cluster.logs());
    assert_committed(&expected, work.path(), &stderr);
}

/// What a JobManager started with `--ha ARGS...` said when it failed (it must).
fn refused_job_manager(args: &[&str]) -> String {
    let out = fungi()
        .args(["jobmanager", "--listen", "127.0.0.1:0", "--ha"])
        .args(args)
        .output_within(PROCESS_LIMIT);
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_high_availability_setups_are_refused_with_what_to_do() {
    let etcd = EtcdServer::start();
    // An unknown mode.
    let stderr = refused_job_manager(&["zookeeper"]);
    assert!(
        stderr.contains("zookeeper") && stderr.contains("etcd"),
        "{stderr}"
    );
    // etcd mode without endpoints.
    let stderr = refused_job_manager(&["etcd"]);
    assert!(stderr.contains("--ha-endpoints"), "{stderr}");
    // etcd holding something else under the cluster's prefix.
    let put = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint,
            "put",
            "/fungi/shared/config",
            "x",
        ])
        .output_within(PROCESS_LIMIT);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let stderr = refused_job_manager(&[
        "etcd",
        "--ha-endpoints",
        &etcd.endpoint,
        "--ha-cluster-id",
        "shared",
    ]);
    assert!(
        stderr.contains("/fungi/shared/") && stderr.contains("--ha-cluster-id"),
        "{stderr}"
    );
    // etcd that does not answer.
    let nowhere = format!("http://127.0.0.1:{}", fungi_testkit::free_port());
    let stderr = refused_job_manager(&["etcd", "--ha-endpoints", &nowhere]);
    assert!(stderr.contains("etcd is unreachable"), "{stderr}");
}

#[test]
fn standbys_name_the_leader_and_jobs_without_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = HaCluster::start(dir.path());
    let (leader, epoch) = cluster.leader();
    let status = cluster.wait_until(30, "one standby", |s| {
        s["leadership"]["standbys"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    });
    let standbys = status["leadership"]["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1, "{status}");
    let standby = standbys[0].as_str().unwrap();
    let leader_address = &cluster.job_managers[&leader].1;
    // Only the leader is ready (a Kubernetes Service routes to it alone); every
    // registered TaskManager is ready; all are healthy.
    let code = |url: String| reqwest::blocking::get(url).unwrap().status().as_u16();
    for (name, probes) in &cluster.probes {
        assert_eq!(code(format!("{probes}healthz")), 200);
        let ready = if *name == leader { 200 } else { 503 };
        assert_eq!(code(format!("{probes}readyz")), ready, "{name}");
    }
    let addresses: Vec<&str> = status["task_managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["data_address"].as_str().unwrap())
        .collect();
    assert!(
        addresses.iter().all(|a| a.starts_with("127.0.0.1:")),
        "TaskManagers advertise where they are reached: {addresses:?}"
    );
    for probe in &cluster.task_manager_probes {
        assert_eq!(code(probe.clone()), 200, "{probe}");
    }
    // A client that reaches only the standby is told where the leader is.
    let work = tempfile::tempdir().unwrap();
    let file = job_file(work.path(), 1);
    let out = fungi()
        .args(["run", "--cluster", standby, file.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("stands by") && stderr.contains(leader_address.as_str()),
        "{stderr}"
    );
    // So is a TaskManager.
    let tm = fungi()
        .args(["taskmanager", "--jobmanager", standby, "--id", "lost"])
        .env("FUNGI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("lost.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(dir.path().join("lost.log")).unwrap();
        if log.contains("standby") {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tm = tm;
    let _ = tm.kill();
    let _ = tm.wait();
    assert!(
        log.contains(leader_address.as_str()) && log.contains(&format!("epoch {epoch}")),
        "{log}"
    );
    // A job without checkpoints cannot be resumed by a standby: refused, saying why.
    let file = work.path().join("plain.sql");
    std::fs::write(
        &file,
        windowed_job(work.path(), 1)
            .replace("SET 'execution.checkpointing.interval' = '200ms';", ""),
    )
    .unwrap();
    let out = fungi()
        .args([
            "run",
            "--cluster",
            &cluster.addresses(),
            file.to_str().unwrap(),
        ])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("every job needs checkpoints"), "{stderr}");
}

#[test]
fn job_managers_reach_etcd_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = super::test_certificates(dir.path(), "etcd");
    let etcd = EtcdServer::start_tls([ca.clone(), cert.clone(), key.clone()]);
    let address = format!("127.0.0.1:{}", fungi_testkit::free_port());
    let ha = ["--ha", "etcd", "--ha-endpoints", &etcd.endpoint];
    let mut leader = fungi()
        .args(["jobmanager", "--listen", &address])
        .args(ha)
        .args([
            "--ha-etcd-ca",
            &ca,
            "--ha-etcd-cert",
            &cert,
            "--ha-etcd-key",
            &key,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = fungi()
            .args(["cluster", "status", "--json", "--jobmanager", &address])
            .output_within(PROCESS_LIMIT);
        let status: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
        if status.is_some_and(|s| s["leadership"]["leading"] == true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = leader.kill();
    let _ = leader.wait();
    // Without a client certificate etcd refuses the connection, and the JobManager says
    // it cannot reach etcd.
    let endpoint = etcd.endpoint.as_str();
    let stderr = refused_job_manager(&["etcd", "--ha-endpoints", endpoint, "--ha-etcd-ca", &ca]);
    assert!(stderr.contains("etcd is unreachable"), "{stderr}");
    // A CA file that is not etcd's CA: etcd's certificate is refused, and said so.
    let stderr = refused_job_manager(&["etcd", "--ha-endpoints", endpoint, "--ha-etcd-ca", &key]);
    assert!(
        stderr.contains("etcd is unreachable") && stderr.contains("certificate"),
        "{stderr}"
    );
}
