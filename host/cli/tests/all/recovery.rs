//! Exactly-once recovery: jobs killed with SIGKILL and started again commit the same
//! output as an uninterrupted run, record for record.

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT, wait_within};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::fungi;

/// Checkpoints every 200 ms into `ckpt`, at `parallelism`.
fn settings(ckpt: &Path, parallelism: u32) -> String {
    format!(
        "SET 'execution.checkpointing.interval' = '200ms';
         SET 'execution.checkpointing.dir' = '{}';
         SET 'parallelism.default' = '{parallelism}';",
        ckpt.display()
    )
}

/// Nexmark bids: 150 000 events at 60 000 a second of wall clock (the job runs ~2.5 s),
/// event time from 0, so every run produces the same rows.
const BID: &str = "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
        url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR,
        WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
    WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '150000',
          'rate-limit' = '60000', 'base-time' = '0');";

/// A windowed Nexmark job with a file sink, checkpointing every 200 ms into
/// `dir/checkpoints`, writing to `dir/out`.
fn job(dir: &Path, extra_settings: &str, extra_select: &str) -> String {
    job_at(
        &dir.join("checkpoints"),
        &dir.join("out"),
        2,
        extra_settings,
        extra_select,
    )
}

pub(super) fn job_at(
    ckpt: &Path,
    out: &Path,
    parallelism: u32,
    extra_settings: &str,
    extra_select: &str,
) -> String {
    format!(
        "{}
         {extra_settings}
         {BID}
         CREATE TABLE results (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT,
             top BIGINT{extra_column})
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         INSERT INTO results
         SELECT auction, window_start, COUNT(*) AS bids, MAX(price) AS top{extra_select}
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
         GROUP BY auction, window_start, window_end;",
        settings(ckpt, parallelism),
        out.display(),
        extra_column = if extra_select.is_empty() {
            ""
        } else {
            ", extra BIGINT"
        },
    )
}

/// The committed rows of the output directory (hidden in-progress files excluded),
/// sorted, with how often each occurs.
pub(super) fn committed(dir: &Path) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("out")) else {
        return rows;
    };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            *rows.entry(line.to_string()).or_insert(0) += 1;
        }
    }
    rows
}

pub(super) fn run_to_end(dir: &Path, sql: &str) -> std::process::Output {
    let file = dir.join("job.sql");
    std::fs::write(&file, sql).unwrap();
    fungi()
        .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
        .output_within(PROCESS_LIMIT)
}

/// Runs the job, killing it `kills` times at pseudo-random points, then lets it finish.
fn run_with_kills(dir: &Path, sql: &str, kills: usize, seed: u64) -> String {
    run_with_kills_on(dir, sql, kills, seed, &dir.join("checkpoints"), |_| {
        Vec::new()
    })
}

/// [`run_with_kills`] for checkpoints that appear in `checkpoints` (a local directory,
/// or the bucket directory of a test S3 server); attempt `n` runs with the environment
/// `env(n)`.
pub(super) fn run_with_kills_on(
    dir: &Path,
    sql: &str,
    kills: usize,
    seed: u64,
    checkpoints: &Path,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> String {
    let file = dir.join("job.sql");
    std::fs::write(&file, sql).unwrap();
    let mut state = seed;
    let mut log = String::new();
    for kill in 0..kills {
        // xorshift: 100..1300 ms into the run; from the second kill on, counted from the
        // first complete checkpoint (a slow start, such as compiling a plugin, must not
        // let every kill land before it).
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let wait = Duration::from_millis(100 + state % 1200);
        let mut child = fungi()
            .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
            .envs(env(kill))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if kill > 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !has_complete_checkpoint(checkpoints) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::thread::sleep(wait);
        // SIGKILL: no chance to clean up.
        let _ = child.kill();
        let out = wait_within(child, PROCESS_LIMIT);
        log.push_str(&format!("--- killed after {wait:?}\n"));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let out = fungi()
        .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
        .envs(env(kills))
        .output_within(PROCESS_LIMIT);
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    log
}

/// Whether `dir` holds a complete checkpoint.
pub(super) fn has_complete_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("_metadata").exists())
    })
}

pub(super) fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

fn check_exactly_once(extra_settings: &str, extra_select: &str, sql_prefix: &str) {
    check_sql_exactly_once(1000, |dir| {
        format!("{sql_prefix}{}", job(dir, extra_settings, extra_select))
    });
}

/// Runs the job `sql(dir)` once uninterrupted and once killed five times; the committed
/// rows must be the same (at least `min_rows` of them, none twice).
fn check_sql_exactly_once(min_rows: usize, sql: impl Fn(&Path) -> String) {
    let expected = reference_output(min_rows, &sql);
    let killed = tempfile::tempdir().unwrap();
    let sql = sql(killed.path());
    let seed = seed();
    let log = run_with_kills(killed.path(), &sql, 5, seed);
    assert_same_output(&expected, killed.path(), seed, &log);
}

/// The committed rows of an uninterrupted run of `sql(dir)` (at least `min_rows`).
pub(super) fn reference_output(
    min_rows: usize,
    sql: impl Fn(&Path) -> String,
) -> BTreeMap<String, usize> {
    let reference = tempfile::tempdir().unwrap();
    let out = run_to_end(reference.path(), &sql(reference.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = committed(reference.path());
    assert!(expected.len() >= min_rows, "{} rows", expected.len());
    assert!(expected.values().all(|&n| n == 1));
    expected
}

/// The output committed in `dir` is `expected`, every row once, and the job resumed
/// from a checkpoint at least once.
pub(super) fn assert_same_output(
    expected: &BTreeMap<String, usize>,
    dir: &Path,
    seed: u64,
    log: &str,
) {
    let got = committed(dir);
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        got == *expected,
        "seed {seed}: {} rows expected, {} committed; missing {missing:?}, twice {twice:?}, unexpected {extra:?}\n{log}",
        expected.len(),
        got.len()
    );
    assert!(
        log.contains("resuming from checkpoint"),
        "no kill hit after a checkpoint:\n{log}"
    );
}

#[test]
fn a_windowed_job_killed_five_times_commits_exactly_the_uninterrupted_output() {
    check_exactly_once("", "", "");
}

#[test]
fn the_same_with_the_rocksdb_backend() {
    check_exactly_once("SET 'state.backend.type' = 'rocksdb';", "", "");
}

#[test]
fn the_same_with_rocksdb_and_checkpoints_in_s3_restored_on_a_fresh_machine_each_time() {
    let server = fungi_testkit::S3Server::start(&["ckpt"]);
    let s3 = |dir: &Path| {
        let settings: String = server
            .options()
            .iter()
            .map(|(k, v)| format!("SET '{k}' = '{v}';\n"))
            .collect();
        job_at(
            Path::new("s3://ckpt/job"),
            &dir.join("out"),
            2,
            &format!("{settings}SET 'state.backend.type' = 'rocksdb';"),
            "",
        )
    };
    let expected = reference_output(1000, |dir| {
        job(dir, "SET 'state.backend.type' = 'rocksdb';", "")
    });
    let killed = tempfile::tempdir().unwrap();
    let seed = seed();
    // Each attempt assembles checkpoints in a directory of its own, so what it resumes
    // from can only come from the object storage.
    let local = killed.path().to_path_buf();
    let log = run_with_kills_on(
        killed.path(),
        &s3(killed.path()),
        5,
        seed,
        &server.root().join("ckpt/job"),
        |attempt| {
            vec![(
                "FUNGI_LOCAL_STATE_DIR",
                local.join(format!("local-{attempt}")).display().to_string(),
            )]
        },
    );
    assert_same_output(&expected, killed.path(), seed, &log);
    assert!(log.contains("s3://ckpt/job"), "{log}");
    // The CLI lists them from the bucket (object storage configured by AWS_* variables).
    let out = fungi()
        .args(["checkpoints", "s3://ckpt/job", "--json"])
        .envs(server.env())
        .env("FUNGI_LOCAL_STATE_DIR", killed.path().join("listing"))
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.iter().any(|m| m["finished"] == true), "{listed:?}");
}

#[test]
fn the_same_with_a_wasm_aggregate_in_the_query() {
    check_exactly_once(
        "",
        ", CAST(hll_distinct(bidder) AS BIGINT) AS extra",
        &format!("LOAD PLUGIN '{}';\n", fungi_plugin_artifacts::HLL),
    );
}

#[test]
fn the_same_with_a_python_aggregate_in_the_query() {
    // Its per-window states are pickled into the checkpoints and unpickled on restore.
    let py = tempfile::tempdir().unwrap();
    let file = py.path().join("aggs.py");
    std::fs::write(
        &file,
        "import pyarrow as pa, pyarrow.compute as pc, fungi\n\
         @fungi.udaf(returns=pa.int64())\n\
         class SpreadOfPrices:\n\
         \x20   def create(self):\n        return None\n\
         \x20   def accumulate(self, state, prices):\n\
         \x20       lo, hi = pc.min(prices).as_py(), pc.max(prices).as_py()\n\
         \x20       return (lo, hi) if state is None else (min(state[0], lo), max(state[1], hi))\n\
         \x20   def merge(self, a, b):\n\
         \x20       return b if a is None else a if b is None else (min(a[0], b[0]), max(a[1], b[1]))\n\
         \x20   def finish(self, state):\n        return None if state is None else state[1] - state[0]\n",
    )
    .unwrap();
    check_exactly_once(
        "",
        ", spread(price) AS extra",
        &format!(
            "CREATE FUNCTION spread AS 'SpreadOfPrices' LANGUAGE PYTHON USING '{}';\n",
            file.display()
        ),
    );
}

#[test]
fn a_damaged_checkpoint_is_reported_and_the_one_before_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let sql = job(dir.path(), "", "");
    let file = dir.path().join("job.sql");
    std::fs::write(&file, &sql).unwrap();
    // Run long enough for a few checkpoints, then kill.
    let mut child = fungi()
        .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until at least two checkpoints are complete.
    let ckpt = dir.path().join("checkpoints");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline
        && std::fs::read_dir(&ckpt).map_or(0, |r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().join("_metadata").exists())
                .count()
        }) < 2
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut ids: Vec<u64> = std::fs::read_dir(&ckpt)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("chk-")?.parse().ok()
        })
        .filter(|id| ckpt.join(format!("chk-{id}/_metadata")).exists())
        .collect();
    ids.sort();
    assert!(ids.len() >= 2, "checkpoints: {ids:?}");
    let newest = ckpt.join(format!("chk-{}", ids[ids.len() - 1]));
    let victim = std::fs::read_dir(&newest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "state"))
        .unwrap();
    std::fs::write(&victim, b"garbage").unwrap();
    let out = run_to_end(dir.path(), &sql);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("checkpoint {} in", ids[ids.len() - 1]))
            && stderr.contains("does not match its checksum")
            && stderr.contains(&format!("resuming from checkpoint {}", ids[ids.len() - 2])),
        "{stderr}"
    );
    // And the output is still exactly once.
    assert!(committed(dir.path()).values().all(|&n| n == 1));
}

#[test]
fn a_savepoint_taken_at_parallelism_2_restores_at_parallelism_3_with_identical_results() {
    let reference = tempfile::tempdir().unwrap();
    let out = run_to_end(reference.path(), &job(reference.path(), "", ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = committed(reference.path());

    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("ckpt-p2"), dir.path().join("ckpt-p3"));
    let out_dir = dir.path().join("out");
    let file = dir.path().join("p2.sql");
    std::fs::write(&file, job_at(&first, &out_dir, 2, "", "")).unwrap();
    let child = fungi()
        .args(["run", "--local", "--no-progress", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the job runs and checkpoints, and before it is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !has_complete_checkpoint(&first) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let sp = fungi()
        .args(["savepoint", "--stop", first.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    let stopped = wait_within(child, PROCESS_LIMIT);
    let stopped_log = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        sp.status.success(),
        "{}\n{stopped_log}",
        String::from_utf8_lossy(&sp.stderr)
    );
    assert!(stopped.status.success(), "{stopped_log}");
    assert!(
        stopped_log.contains("stopped with a savepoint"),
        "{stopped_log}"
    );
    let savepoint = String::from_utf8_lossy(&sp.stdout).trim().to_string();
    assert!(
        Path::new(&savepoint).join("_metadata").exists(),
        "{savepoint}"
    );
    // Not everything was read before the stop.
    assert!(committed(dir.path()).len() < expected.len());

    let file = dir.path().join("p3.sql");
    std::fs::write(&file, job_at(&second, &out_dir, 3, "", "")).unwrap();
    let out = fungi()
        .args([
            "run",
            "--local",
            "--no-progress",
            "--from-savepoint",
            &savepoint,
            file.to_str().unwrap(),
        ])
        .output_within(PROCESS_LIMIT);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from checkpoint"), "{log}");
    let got = committed(dir.path());
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(3).collect();
    assert!(
        got == expected,
        "{} rows expected, {} committed; missing {missing:?}, twice {twice:?}\n{stopped_log}\n{log}",
        expected.len(),
        got.len()
    );
}

#[test]
fn a_window_join_aligns_barriers_on_both_inputs_and_recovers_exactly_once() {
    check_sql_exactly_once(100, |dir| {
        format!(
            "{}
             CREATE TABLE person (id BIGINT, name VARCHAR, emailAddress VARCHAR,
                 creditCard VARCHAR, city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3),
                 extra VARCHAR, WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
             WITH ('connector' = 'nexmark', 'table' = 'person', 'events' = '150000',
                   'rate-limit' = '60000', 'base-time' = '0');
             CREATE TABLE auction (id BIGINT, itemName VARCHAR, description VARCHAR,
                 initialBid BIGINT, reserve BIGINT, dateTime TIMESTAMP(3),
                 expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
                 WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
             WITH ('connector' = 'nexmark', 'table' = 'auction', 'events' = '150000',
                   'rate-limit' = '60000', 'base-time' = '0');
             CREATE TABLE results (id BIGINT, name VARCHAR, stime TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT P.id, P.name, P.starttime
             FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
                   FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
                   GROUP BY id, name, window_start, window_end) P
             JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
                   FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
                   GROUP BY seller, window_start, window_end) A
             ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn a_failing_job_is_restarted_by_its_strategy_then_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    std::fs::write(&data, "1,a\n2,b\nthree,c\n").unwrap();
    let sql = format!(
        "SET 'restart-strategy.type' = 'fixed-delay';
         SET 'restart-strategy.fixed-delay.attempts' = '2';
         SET 'restart-strategy.fixed-delay.delay' = '100ms';
         CREATE TABLE t (n BIGINT, s VARCHAR)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
         CREATE TABLE sink (n BIGINT, s VARCHAR) WITH ('connector' = 'blackhole');
         INSERT INTO sink SELECT n, s FROM t;",
        data.display()
    );
    let out = run_to_end(dir.path(), &sql);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("restarting in 0.1s (restart 1)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("restarting in 0.1s (restart 2)"),
        "{stderr}"
    );
    assert!(!stderr.contains("restart 3"), "{stderr}");
    assert!(
        stderr.contains("data.csv:3"),
        "the error names the bad line: {stderr}"
    );
}

#[test]
fn a_window_top_n_recovers_exactly_once() {
    check_sql_exactly_once(100, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (window_start TIMESTAMP(3), channel VARCHAR, price BIGINT,
                 rownum BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT window_start, channel, price, rownum FROM (
                 SELECT window_start, channel, price,
                        ROW_NUMBER() OVER (PARTITION BY window_start, window_end, channel
                                           ORDER BY price DESC) AS rownum
                 FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)))
             WHERE rownum <= 3;",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn a_window_without_keys_pre_aggregated_per_subtask_recovers_exactly_once() {
    // Two phases: each source subtask sends partial rows ahead of every barrier, so the
    // partial operator keeps nothing; the one window subtask checkpoints the merged state.
    check_sql_exactly_once(20, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (window_start TIMESTAMP(3), bids BIGINT, total BIGINT,
                 low BIGINT, high BIGINT, mean BIGINT, bidders BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT window_start, COUNT(*), SUM(price), MIN(price), MAX(price), AVG(price),
                    COUNT(DISTINCT bidder)
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '100' MILLISECOND,
                            INTERVAL '1' SECOND))
             GROUP BY window_start, window_end;",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn an_over_aggregation_recovers_exactly_once() {
    // Each auction's bids with the sum and count of its bids in the second before:
    // rows waiting for the watermark, each partition's recent rows and last time are
    // state.
    check_sql_exactly_once(1000, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (auction BIGINT, bidder BIGINT, price BIGINT, url VARCHAR,
                 dateTime TIMESTAMP(3), total BIGINT, bids BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT auction, bidder, price, url, dateTime, SUM(price) OVER w, COUNT(*) OVER w
             FROM bid
             WINDOW w AS (PARTITION BY auction ORDER BY dateTime
                          RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND CURRENT ROW);",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn running_over_aggregates_recover_exactly_once() {
    // An unbounded frame keeps no rows: each partition carries its running aggregates.
    check_sql_exactly_once(1000, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (auction BIGINT, bidder BIGINT, price BIGINT, url VARCHAR,
                 dateTime TIMESTAMP(3), total BIGINT, bids BIGINT, mean BIGINT, top BIGINT)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT auction, bidder, price, url, dateTime, SUM(price) OVER w, COUNT(*) OVER w,
                    AVG(price) OVER w, MAX(price) OVER w
             FROM bid
             WINDOW w AS (PARTITION BY auction ORDER BY dateTime);",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn a_left_interval_join_recovers_exactly_once() {
    // Which buffered rows met a partner is state: a row padded after a restore must not
    // have met one before it.
    check_sql_exactly_once(1000, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (auction BIGINT, bidder BIGINT, price BIGINT, url VARCHAR,
                 dateTime TIMESTAMP(3), other_bidder BIGINT, other_price BIGINT,
                 other_url VARCHAR, other_time TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT B1.auction, B1.bidder, B1.price, B1.url, B1.dateTime,
                    B2.bidder, B2.price, B2.url, B2.dateTime
             FROM bid B1 LEFT JOIN bid B2
             ON B1.auction = B2.auction AND B2.channel = 'Google'
                AND B2.dateTime BETWEEN B1.dateTime - INTERVAL '1' SECOND AND B1.dateTime;",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn an_interval_join_recovers_exactly_once() {
    check_sql_exactly_once(10, |dir| {
        format!(
            "{}{BID}
             CREATE TABLE results (auction BIGINT, price BIGINT, bidder BIGINT,
                 dateTime TIMESTAMP(3))
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             INSERT INTO results
             SELECT B.auction, B.price, B.bidder, B.dateTime
             FROM bid B
             JOIN (SELECT MAX(price) AS maxprice, window_end AS dateTime
                   FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
                   GROUP BY window_start, window_end) B1
             ON B.price = B1.maxprice
             WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '1' SECOND AND B1.dateTime;",
            settings(&dir.join("checkpoints"), 2),
            dir.join("out").display()
        )
    });
}

#[test]
fn a_job_file_checkpoints_and_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"bids\"\nparallelism = 2\n\
             [source]\nconnector = \"nexmark\"\n\
             options = {{ table = \"bid\", events = \"150000\", \"rate-limit\" = \"60000\", \"base-time\" = \"0\" }}\n\
             watermark = {{ column = \"dateTime\", max-out-of-orderness = \"1s\" }}\n\
             [window]\nkey-by = [\"auction\"]\nkind = \"tumbling\"\nsize = \"2s\"\n\
             aggregates = [\"count(*) AS bids\"]\n\
             [sink]\nconnector = \"filesystem\"\noptions = {{ path = \"{}\", format = \"csv\" }}\n\
             [checkpoints]\ninterval = \"200ms\"\ndir = \"{}\"\nstate-backend = \"rocksdb\"\n",
            dir.path().join("out").display(),
            dir.path().join("checkpoints").display()
        ),
    )
    .unwrap();
    let run = || {
        fungi()
            .args(["run", "--local", "--no-progress", job.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !has_complete_checkpoint(&dir.path().join("checkpoints"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = wait_within(run(), PROCESS_LIMIT);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("resuming from checkpoint"), "{log}");
    let rows = committed(dir.path());
    assert!(rows.len() > 1000, "{} rows", rows.len());
    assert!(rows.values().all(|&n| n == 1), "a row written twice");
    // `fungi checkpoints` lists them, the final one last.
    let listed = fungi()
        .args([
            "checkpoints",
            dir.path().join("checkpoints").to_str().unwrap(),
        ])
        .output_within(PROCESS_LIMIT);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let last = table.lines().last().unwrap_or_default();
    assert!(
        table.starts_with("    id  triggered") && last.ends_with("yes"),
        "{table}"
    );
}
