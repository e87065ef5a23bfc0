//! Reliability end to end: an HTTP sink in front of a real local service that fails for
//! a while (retries, the circuit breaker opening and closing, nothing lost), and every
//! class of failure in the dead-letter output with its reason, so that for every job
//! records in = records out + dead letters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use fungi_sql::SqlSession;

use crate::run;

/// A local HTTP service that stores the JSON lines it is sent. From its `fail_after`th
/// request on it answers 500 for `outage`, then recovers; a request with a line holding
/// `"reject"` is refused with 400.
#[derive(Clone)]
struct Service {
    inner: Arc<Mutex<Seen>>,
    fail_after: usize,
    outage: Duration,
}

#[derive(Default)]
struct Seen {
    requests: usize,
    failed: usize,
    outage_started: Option<Instant>,
    lines: Vec<String>,
}

async fn receive(State(s): State<Service>, body: String) -> (StatusCode, String) {
    let mut seen = s.inner.lock().unwrap();
    seen.requests += 1;
    if seen.requests > s.fail_after {
        let started = *seen.outage_started.get_or_insert_with(Instant::now);
        if started.elapsed() < s.outage {
            seen.failed += 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "down for maintenance".into(),
            );
        }
    }
    if body.contains("reject") {
        return (
            StatusCode::BAD_REQUEST,
            "a field named 'reject' is not accepted".into(),
        );
    }
    seen.lines.extend(body.lines().map(str::to_string));
    (StatusCode::OK, String::new())
}

/// Starts the service on a free port; returns its URL.
async fn start(service: Service) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(receive))
        .with_state(service);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Runs the script's INSERT INTO; returns its summary, operator counters and recent
/// dead letters.
async fn run_insert(
    session: &mut SqlSession,
    script: &str,
) -> (
    fungi_execution::executor::JobSummary,
    Vec<fungi_execution::metrics::OperatorSnapshot>,
    Vec<fungi_execution::dead_letter::DeadLetter>,
) {
    let ran = run(session, script).await;
    (ran.result.unwrap(), ran.metrics, ran.dead_letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sink_rides_out_an_outage_without_losing_a_record() {
    let service = Service {
        inner: Arc::default(),
        fail_after: 3,
        outage: Duration::from_millis(1500),
    };
    let url = start(service.clone()).await;
    let mut session = SqlSession::default();
    let script = format!(
        "CREATE TABLE ids (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '3000',
             'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '3000');
         CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = '{url}',
             'sink.max-batch-rows' = '100',
             'sink.retry.max-retries' = '30', 'sink.retry.initial-delay' = '20 ms',
             'sink.retry.max-delay' = '200 ms',
             'sink.breaker.failure-threshold' = '3', 'sink.breaker.open-for' = '300 ms');
         INSERT INTO hook SELECT id FROM ids"
    );
    let (summary, ops, _) = run_insert(&mut session, &script).await;
    let seen = service.inner.lock().unwrap();
    // Every record arrived exactly once (a 500 stores nothing), in spite of the outage.
    let mut ids: Vec<i64> = seen
        .lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>());
    assert!(
        seen.failed >= 3,
        "the outage was met: {} failures",
        seen.failed
    );
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    let sink = ops
        .iter()
        .find(|o| o.circuit.is_some())
        .expect("the http sink");
    assert!(sink.retries >= 1, "{sink:?}");
    assert!(sink.circuit_opened >= 1, "the breaker opened: {sink:?}");
    assert_eq!(sink.circuit, Some("closed"), "and closed again: {sink:?}");
    // The breaker held requests back: far fewer requests failed than an unguarded
    // retry loop would have sent in 1.5 s of 20-200 ms retries.
    assert!(seen.failed < 40, "{} failed requests", seen.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_class_lands_in_the_dead_letter_output_with_its_reason() {
    let service = Service {
        inner: Arc::default(),
        fail_after: usize::MAX,
        outage: Duration::ZERO,
    };
    let url = start(service.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // 40 lines: 3 malformed (decode), 2 the service rejects (sink), the rest fine.
    let mut lines = Vec::new();
    for i in 1..=40 {
        lines.push(match i {
            7 | 19 | 33 => format!("{{\"id\": {i}, \"text\": "),
            11 | 29 => format!("{{\"id\": {i}, \"text\": \"reject\"}}"),
            _ => format!("{{\"id\": {i}, \"text\": \"row {i}\"}}"),
        });
    }
    std::fs::write(dir.path().join("in.json"), lines.join("\n") + "\n").unwrap();
    let dlq_file = dir.path().join("dlq/letters.jsonl");
    let script = format!(
        "SET 'dead-letter.path' = '{}';
         CREATE TABLE src (id BIGINT, text STRING) WITH ('connector' = 'filesystem',
             'path' = '{}', 'format' = 'json', 'on-error' = 'dead-letter');
         CREATE TABLE hook (id BIGINT, text STRING) WITH ('connector' = 'http', 'url' = '{url}',
             'sink.max-batch-rows' = '1', 'sink.on-error' = 'dead-letter');
         INSERT INTO hook SELECT id, text FROM src",
        dlq_file.display(),
        dir.path().join("in.json").display()
    );
    let mut session = SqlSession::default();
    let (summary, _, recent) = run_insert(&mut session, &script).await;
    let delivered = service.inner.lock().unwrap().lines.len() as u64;
    let dead: u64 = summary.dead_letters.values().sum();
    // Records in = records out + dead letters.
    assert_eq!((delivered, dead), (35, 5), "{:?}", summary.dead_letters);
    assert_eq!(
        summary.dead_letters,
        BTreeMap::from([("decode".to_string(), 3), ("sink rejected".to_string(), 2)])
    );
    let rejected = recent.iter().find(|l| l.reason == "sink rejected").unwrap();
    assert!(
        rejected.message.contains("HTTP 400") && rejected.raw.contains("\"id\":11"),
        "{rejected:?}"
    );
    // The file target holds the same records, as JSON lines.
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&dlq_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written.len(), 5);
    assert!(
        written
            .iter()
            .any(|l| l["reason"] == "decode"
                && l["position"].as_str().unwrap().ends_with("in.json:7"))
    );

    // Plugin failures: a trap, and a broken time limit, each under its reason; records
    // in = out + dead letters for each job.
    for (function, limit, reason) in [
        ("boom", "", "plugin trap"),
        (
            "spin",
            "SET 'plugin.call-timeout' = '50 ms';",
            "plugin limit",
        ),
    ] {
        let script = format!(
            "SET 'plugin.on-error' = 'dead-letter';
             {limit}
             CREATE FUNCTION {function} LANGUAGE WASM USING '{}';
             CREATE TABLE nums (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '20',
                 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '20');
             CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = '{url}');
             INSERT INTO hook SELECT {function}(id) FROM nums",
            fungi_plugin_artifacts::HOSTILE_EVIL
        );
        let before = service.inner.lock().unwrap().lines.len() as u64;
        let (summary, _, recent) = run_insert(&mut SqlSession::default(), &script).await;
        let delivered = service.inner.lock().unwrap().lines.len() as u64 - before;
        assert_eq!(
            (delivered, summary.dead_letters.get(reason).copied()),
            (0, Some(20)),
            "{function}: {:?}",
            summary.dead_letters
        );
        assert!(recent.iter().all(|l| l.reason == reason), "{function}");
    }
    // A service that stays down: retries spent, the rows are dead-lettered as
    // unavailable (here: nothing listens on the port).
    let script =
        "CREATE TABLE nums (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '5',
             'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '5');
         CREATE TABLE hook (id BIGINT) WITH ('connector' = 'http', 'url' = 'http://127.0.0.1:9/x',
             'sink.retry.max-retries' = '2', 'sink.retry.initial-delay' = '5 ms',
             'sink.breaker.failure-threshold' = '100', 'sink.on-error' = 'dead-letter');
         INSERT INTO hook SELECT id FROM nums";
    let (summary, _, recent) = run_insert(&mut SqlSession::default(), script).await;
    assert_eq!(
        summary.dead_letters.get("sink unavailable"),
        Some(&5),
        "{:?}",
        summary.dead_letters
    );
    assert!(
        recent[0].message.contains("after 3 attempts"),
        "{:?}",
        recent[0]
    );
    // Without the dead-letter policy the same failure fails the job, naming the service.
    let e = run(
        &mut SqlSession::default(),
        &script.replace(", 'sink.on-error' = 'dead-letter'", ""),
    )
    .await
    .error();
    assert!(
        e.contains("http sink http://127.0.0.1:9/x") && e.contains("after 3 attempts"),
        "{e}"
    );
}
