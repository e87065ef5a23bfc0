//! The `fungi` binary end to end.

mod cluster;
mod dashboard;
mod ha;
mod harness;
mod kafka;
mod mcp;
mod recovery;
mod security;
mod server;
mod server_on_cluster;

use fungi_testkit::process::{CommandExt, PROCESS_LIMIT, wait_within};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fungi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fungi"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    c
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost, written to `dir` as
/// `<name>-ca.pem`, `<name>-cert.pem` and `<name>-key.pem`: their paths, in that order.
fn test_certificates(dir: &Path, name: &str) -> [String; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let cert = params
        .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    [
        write("ca.pem", ca.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    ]
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_documents_every_command() {
    let out = fungi().arg("--help").output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for cmd in ["run", "bench", "plugin"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = fungi().args(["run", "--help"]).output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--local") && text.contains("--explain"),
        "{text}"
    );
}

#[test]
fn runs_the_sensor_example_with_a_dead_letter() {
    let out = fungi()
        .args([
            "run",
            "--local",
            &repo("examples/jobs/sensor-sessions.toml"),
        ])
        .current_dir(repo(""))
        .output_within(PROCESS_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("| s1     | 2026-11-26T10:00:00 | 2026-11-26T10:00:40 | 3 "),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 dead letters") && stderr.contains("sensors.csv:8"),
        "{stderr}"
    );
}

#[test]
fn a_job_file_writes_its_dead_letters_to_a_file_and_takes_a_restart_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo("examples/jobs/sensor-sessions.toml")).unwrap();
    let letters = dir.path().join("letters.jsonl");
    let job = format!(
        "{example}\n[dead-letters]\npath = {:?}\n\n[restart-strategy]\ntype = \"fixed-delay\"\nattempts = 2\ndelay = 100\n",
        letters.display().to_string()
    );
    let file = dir.path().join("job.toml");
    std::fs::write(&file, job).unwrap();
    let out = fungi()
        .args(["run", "--local", file.to_str().unwrap()])
        .current_dir(repo(""))
        .output_within(PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&letters).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    let letter: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(letter["reason"], "decode");
    assert!(
        letter["position"]
            .as_str()
            .unwrap()
            .ends_with("sensors.csv:8"),
        "{letter}"
    );
}

#[test]
fn bad_job_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[source]\nconnector = \"nexmark\"\noptions = { events = \"100\" }\n[window]\nkind = \"tumbling\"\nsize = \"1s\"\naggregates = [\"count(*)\"]\n[sink]\nconnector = \"blackhole\"\n",
    )
    .unwrap();
    let out = fungi()
        .args(["run", "--local", job.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a window needs event time"), "{stderr}");
    std::fs::write(
        &job,
        "[source]\nconnector = \"nexmark\"\n[sink]\nconnector = \"blackhole\"\ncolour = 1\n",
    )
    .unwrap();
    let out = fungi()
        .args(["run", "--local", job.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
}

#[test]
fn ctrl_c_and_sigterm_stop_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[source]\nconnector = \"nexmark\"\noptions = { \"rate-limit\" = \"10000\" }\n[sink]\nconnector = \"blackhole\"\n",
    )
    .unwrap();
    interrupt_and_check(&job, &["-INT"]);
    // A job whose every subtask is busy computing (a source that always has rows,
    // chained to an expensive projection, two subtasks per core) stops just as well,
    // on SIGTERM as on Ctrl-C.
    let spin = dir.path().join("spin.sql");
    std::fs::write(
        &spin,
        "SET 'parallelism.default' = '4';
         CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '100000000');
         CREATE TABLE out (h VARCHAR) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT md5(md5(repeat(CAST(id AS VARCHAR), 64))) FROM g;",
    )
    .unwrap();
    interrupt_and_check(&spin, &["-TERM"]);
    // A job stuck in a function call does not stop on Ctrl-C; a second one stops the
    // process at once.
    std::fs::write(
        dir.path().join("slow.py"),
        "import time, fungi, pyarrow as pa\n\
         @fungi.udf(returns=pa.int64())\n\
         def slow(x):\n    time.sleep(60)\n    return x\n",
    )
    .unwrap();
    let stuck = dir.path().join("stuck.sql");
    std::fs::write(
        &stuck,
        format!(
            "CREATE FUNCTION slow LANGUAGE PYTHON USING '{}';
             CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '10');
             CREATE TABLE out (id BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT slow(id) FROM g;",
            dir.path().join("slow.py").display()
        ),
    )
    .unwrap();
    let mut child = fungi()
        .args(["run", "--local", stuck.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    let signal = |child: &std::process::Child| {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal(&child);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stuck job stopped on one Ctrl-C"
    );
    signal(&child);
    let start = Instant::now();
    let out = wait_within(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(start.elapsed() < Duration::from_secs(5), "{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped at once (second Ctrl-C)"),
        "{stderr}"
    );
}

/// Runs `job`, sends it `signals` (with `kill`) after a while, and checks that it
/// stops promptly and cleanly.
fn interrupt_and_check(job: &std::path::Path, signals: &[&str]) {
    let out = interrupt(job, signals);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("job stopped by the user"), "{stderr}");
}

/// Runs `job`, sends it `signals` one after the other once it runs, and returns what
/// it printed; it must stop within 5 s of the first.
fn interrupt(job: &std::path::Path, signals: &[&str]) -> std::process::Output {
    let child = fungi()
        .args(["run", "--local", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    for signal in signals {
        let status = Command::new("kill")
            .args([*signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = wait_within(child, Duration::from_secs(60));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stops promptly: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn bench_runs_a_small_query() {
    let out = fungi()
        .args([
            "bench",
            "nexmark",
            "--query",
            "q1,ds-count",
            "--events",
            "200000",
            "--json",
        ])
        .output_within(PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 2);
    assert_eq!(results[0]["rows"], 184_000);
    assert!(results[1]["peak_rss_mib"].as_f64().unwrap() > 0.0);
}

#[test]
fn every_nexmark_file_runs_or_says_why_not() {
    let dir = repo("examples/nexmark");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 23, "q0..q22");
    let work = tempfile::tempdir().unwrap();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Small runs: 100 000 events instead of the files' million.
        let small = work.path().join(file.file_name().unwrap());
        std::fs::write(
            &small,
            text.replace("'events' = '1000000'", "'events' = '100000'")
                // Side inputs are named relative to the repository root.
                .replace(
                    "'examples/data/",
                    &format!("'{}/../../examples/data/", env!("CARGO_MANIFEST_DIR")),
                ),
        )
        .unwrap();
        let out = fungi()
            .args(["run", "--local", small.to_str().unwrap(), "--no-progress"])
            .current_dir(work.path())
            .output_within(PROCESS_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if text.contains("NOT RUNNABLE YET") {
            assert!(
                !out.status.success(),
                "{} says it cannot run, but it ran",
                file.display()
            );
            assert!(
                stderr.contains("unsupported"),
                "{}: {stderr}",
                file.display()
            );
        } else {
            assert!(out.status.success(), "{}: {stderr}", file.display());
            assert!(
                stderr.contains("job finished"),
                "{}: {stderr}",
                file.display()
            );
        }
    }
}

#[test]
fn plugin_inspect_and_test_describe_and_check_a_component() {
    let out = fungi()
        .args(["plugin", "inspect", fungi_plugin_artifacts::STRINGS_GEO])
        .output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "strings-geo 0.1.0",
        "a scalar function library",
        "fungi:plugin@0.1.0",
        "haversine(Float64, Float64, Float64, Float64) -> Float64",
        "fungi:plugin/types@0.1.0",
        "wasi:cli/stdout",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    let out = fungi()
        .args(["plugin", "test", fungi_plugin_artifacts::HLL])
        .output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("merge is associative") && text.contains("0 failed"),
        "{text}"
    );
    let out = fungi()
        .args(["plugin", "test", fungi_plugin_artifacts::HOSTILE_EVIL])
        .output_within(PROCESS_LIMIT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not conform"));
}

#[test]
fn a_job_with_a_plugin_source_reports_the_plugins_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE counter (split BIGINT, seq BIGINT, label VARCHAR)
             WITH ('connector' = 'wasm', 'plugin' = '{}', 'splits' = '2', 'rows' = '300');
             CREATE TABLE sink (seq BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT seq FROM counter;",
            fungi_plugin_artifacts::COUNTER_SOURCE
        ),
    )
    .unwrap();
    let out = fungi()
        .args(["run", "--local", "--no-progress"])
        .arg(&job)
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("600 records read"), "{stderr}");
    assert!(
        stderr.contains("plugin metrics:")
            && stderr.contains("counter_source.rows_emitted = 600")
            && stderr.contains("counter_source.last_offset = 300 (gauge)"),
        "{stderr}"
    );
}

/// The code blocks of a book chapter, as (language, text).
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((lang.to_string(), body.join("\n")));
        }
    }
    blocks
}

/// The code blocks a chapter introduces as files (a line ending in `` `name`: `` just
/// before the block): (file name, contents).
fn named_files(markdown: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut name: Option<String> = None;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            if let Some(name) = name.take() {
                files.push((name, body.join("\n") + "\n"));
            }
        } else if let Some(head) = line.trim_end().strip_suffix("`:") {
            name = head.rsplit_once('`').map(|(_, n)| n.to_string());
        } else if !line.trim().is_empty() {
            name = None;
        }
    }
    files
}

/// Runs the `sh` blocks of a book chapter in `dir`, each line a `fungi` command after
/// optional `NAME=value` environment settings (`~` is the home directory); the files
/// the chapter introduces are written first, and a `run` of a file it does not
/// introduce gets the chapter's `sql` block. Returns what the commands printed.
fn run_chapter(
    chapter: &str,
    dir: &Path,
    envs: &[(&str, &Path)],
) -> (String, Vec<(String, String)>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(chapter),
    )
    .unwrap();
    let blocks = code_blocks(&text);
    for (name, contents) in named_files(&text) {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let sql = blocks
        .iter()
        .find(|(lang, _)| lang == "sql")
        .map(|b| b.1.clone());
    let mut outputs = String::new();
    for command in blocks
        .iter()
        .filter(|(lang, _)| lang == "sh")
        .flat_map(|(_, text)| text.lines())
    {
        let mut words: Vec<&str> = command.split_whitespace().collect();
        let mut settings = Vec::new();
        while let Some((name, value)) = words.first().and_then(|w| w.split_once('=')) {
            let home = std::env::var("HOME").unwrap();
            settings.push((name.to_string(), value.replacen('~', &home, 1)));
            words.remove(0);
        }
        assert_eq!(words[0], "fungi", "{command}");
        let target = dir.join(words.last().unwrap());
        if words[1] == "run" && !target.exists() {
            std::fs::write(target, sql.as_ref().unwrap()).unwrap();
        }
        let mut cmd = fungi();
        cmd.args(&words[1..]).current_dir(dir);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.envs(settings);
        let out = cmd.output_within(PROCESS_LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push_str(&stdout);
    }
    (outputs, blocks)
}

#[test]
fn the_first_python_udf_chapter_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (outputs, _) = run_chapter("getting-started/first-python-udf.md", dir.path(), &[]);
    // Native: ten bids, each price doubled.
    let rows: Vec<serde_json::Value> = outputs
        .lines()
        .filter(|l| l.contains("\"doubled\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty(), "{outputs}");
    for row in &rows {
        assert_eq!(row["doubled"], row["price"].as_i64().unwrap() * 2, "{row}");
    }
    // Sandboxed: the component passes its self-test, and SQL calls it as the chapter
    // says.
    assert!(outputs.contains("to_fahrenheit"), "{outputs}");
    std::fs::write(
        dir.path().join("wasm.sql"),
        "CREATE FUNCTION to_fahrenheit LANGUAGE WASM USING 'temps.wasm';
         CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '10');
         SELECT price, to_fahrenheit(price) AS f FROM bid;",
    )
    .unwrap();
    let out = fungi()
        .args(["run", "--local", "wasm.sql"])
        .current_dir(dir.path())
        .output_within(PROCESS_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !rows.is_empty(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in &rows {
        let celsius = row["price"].as_f64().unwrap();
        assert!(
            (row["f"].as_f64().unwrap() - (celsius * 1.8 + 32.0)).abs() < 1e-6,
            "{row}"
        );
    }
}

#[test]
fn the_first_sql_job_chapter_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (outputs, _) = run_chapter("getting-started/first-sql-job.md", dir.path(), &[]);
    let windows = outputs.lines().filter(|l| l.contains("\"bids\":")).count();
    assert_eq!(windows, 10, "{outputs}");
}

#[test]
fn the_first_wasm_udf_chapter_works_as_written() {
    // The chapter's commands, typed in a directory outside the repository with the
    // relative paths it prints. CARGO_TARGET_DIR points at the guests' shared target
    // directory so the SDK's dependencies are reused (the chapter's first build takes
    // about two minutes without it).
    let guests = Path::new(fungi_plugin_artifacts::HLL)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (outputs, blocks) = run_chapter(
        "getting-started/first-wasm-udf.md",
        dir.path(),
        &[("CARGO_TARGET_DIR", &guests)],
    );
    let expected = &blocks.iter().find(|(lang, _)| lang == "text").unwrap().1;
    assert!(
        outputs.contains("plus_one(Int64) -> Int64") && outputs.contains("5 passed, 0 failed"),
        "{outputs}"
    );
    assert!(outputs.contains(expected.as_str()), "{outputs}");
    // Every command fungi suggested works as printed, from where the user stands.
    for line in outputs.lines() {
        if let Some(suggested) = line.split_once(": fungi ").map(|(_, c)| c) {
            assert!(
                ["plugin build myudf", "plugin test myudf/myudf.wasm"].contains(&suggested),
                "an untested suggestion: {line}"
            );
        }
    }
    // The crate does not depend on where it was made.
    let moved = dir.path().join("elsewhere");
    std::fs::create_dir(&moved).unwrap();
    std::fs::rename(dir.path().join("myudf"), moved.join("myudf")).unwrap();
    let manifest = std::fs::read_to_string(moved.join("myudf/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"path = "vendor/sdk-rust""#),
        "{manifest}"
    );
    let out = fungi()
        .args(["plugin", "build", "elsewhere/myudf"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", &guests)
        .output_within(PROCESS_LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plugin_new_makes_an_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let guests = Path::new(fungi_plugin_artifacts::HLL)
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf();
    let run = |args: &[&str]| {
        let out = fungi()
            .args(args)
            .current_dir(dir.path())
            .env("CARGO_TARGET_DIR", &guests)
            .output_within(PROCESS_LIMIT);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    run(&["plugin", "new", "my-udf", "--kind", "aggregate"]);
    let text = run(&["plugin", "build", "my-udf"]);
    assert!(
        text.contains("my_sum(Int64) -> Int64") && text.contains("(retractable)"),
        "{text}"
    );
    let manifest = std::fs::read_to_string(dir.path().join("my-udf/my_udf.manifest.json")).unwrap();
    assert!(manifest.contains("\"kind\": \"aggregate\""), "{manifest}");
    let text = run(&["plugin", "test", "my-udf/my_udf.wasm"]);
    assert!(
        text.contains("retracting everything empties a group"),
        "{text}"
    );
}

#[test]
fn plugin_build_python_makes_a_sandboxed_component() {
    // The SDK and componentize-py come from the virtual environment scripts/test.sh makes.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("stats.py");
    std::fs::write(
        &app,
        r#""""Statistics in the sandbox."""
import fungi

@fungi.udaf(returns="DOUBLE", args=["DOUBLE"], name="py_range")
class Range:
    def create(self):
        return None
    def accumulate(self, state, xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return state
        lo, hi = min(xs), max(xs)
        return (lo, hi) if state is None else (min(state[0], lo), max(state[1], hi))
    def merge(self, a, b):
        return b if a is None else a if b is None else (min(a[0], b[0]), max(a[1], b[1]))
    def finish(self, state):
        return None if state is None else state[1] - state[0]
"#,
    )
    .unwrap();
    let out = fungi()
        .args(["plugin", "build", "--python", app.to_str().unwrap()])
        .output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("stats 0.1.0 (Statistics in the sandbox.)")
            && text.contains("py_range(Float64) -> Float64"),
        "{text}"
    );
    // The conformance kit's contract tests pass on it as on a Rust plugin.
    let out = fungi()
        .args([
            "plugin",
            "test",
            dir.path().join("stats.wasm").to_str().unwrap(),
        ])
        .output_within(PROCESS_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What cannot become a plugin is named.
    for (source, why) in [
        (
            "import fungi\n@fungi.udf(returns='DOUBLE')\ndef f(x):\n    return x\n",
            "'f' does not declare its argument types",
        ),
        ("x = 1\n", "has no function marked with @fungi.udf"),
        (
            "import pyarrow_but_misspelled\n",
            "does not import: ModuleNotFoundError",
        ),
    ] {
        std::fs::write(&app, source).unwrap();
        let out = fungi()
            .args(["plugin", "build", "--python", app.to_str().unwrap()])
            .output_within(PROCESS_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{stderr}");
    }
}

#[test]
fn nexmark_generate_writes_files_that_fungi_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = fungi()
        .args(["nexmark", "generate", "--events", "5000", "--out"])
        .arg(dir.path())
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // 1:3:46 persons, auctions and bids.
    let lines = |f: &str| {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(
        (
            lines("person.json"),
            lines("auction.json"),
            lines("bid.json")
        ),
        (100, 300, 4600)
    );
    // The same events every time.
    let again = dir.path().join("bid-again.json");
    let out = fungi()
        .args(["nexmark", "generate", "--events", "5000", "--table", "bid"])
        .arg("--out")
        .arg(&again)
        .output_within(PROCESS_LIMIT);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(dir.path().join("bid.json")).unwrap()
    );
    // Fungi reads the file back.
    let job = dir.path().join("count.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
               url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE sink (auction BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO sink SELECT auction FROM bid WHERE price > 0;",
            again.display()
        ),
    )
    .unwrap();
    let out = fungi()
        .args(["run", "--local", "--no-progress"])
        .arg(&job)
        .output_within(PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4600 records read"), "{stderr}");
    let out = fungi()
        .args(["nexmark", "generate", "--table", "bids-x", "--out"])
        .arg(dir.path().join("x.json"))
        .output_within(PROCESS_LIMIT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown Nexmark table 'bids-x'"));
}
