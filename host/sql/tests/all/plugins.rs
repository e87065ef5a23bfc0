//! Plugin functions in SQL: in windows, against the equivalent native functions.

use fungi_plugin_artifacts::{HLL, STRINGS_GEO};
use fungi_sql::SqlSession;

use crate::{run, select};

const BID: &str =
    "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '200000');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_functions_in_a_window_match_native_ones() {
    let mut session = SqlSession::default();
    session
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let script = format!(
        "{BID}
         CREATE FUNCTION wasm_gcd AS 'gcd' LANGUAGE WASM USING '{STRINGS_GEO}';
         LOAD PLUGIN '{HLL}';
         SELECT window_start, sum(wasm_gcd(auction, bidder)), sum(gcd(auction, bidder)),
                hll_distinct(bidder), count(DISTINCT bidder), count(*)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end"
    );
    let rows = select(&mut session, &script).await;
    assert!(rows.len() > 10, "{} windows", rows.len());
    for row in &rows {
        let cols: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cols[1], cols[2], "plugin gcd = native gcd: {row}");
        let (hll, exact): (f64, f64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
        assert!(
            (hll - exact).abs() <= (exact * 0.05).max(2.0),
            "hll {hll} vs count distinct {exact}: {row}"
        );
    }
}

#[tokio::test]
async fn plugin_statements_name_what_is_wrong() {
    let mut session = SqlSession::default();
    let e = session
        .execute("CREATE FUNCTION f LANGUAGE WASM USING '/no/such/plugin.wasm'")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/no/such/plugin.wasm") && e.contains("cannot be loaded"),
        "{e}"
    );
    let e = session
        .execute(&format!(
            "CREATE FUNCTION f AS 'haversin' LANGUAGE WASM USING '{STRINGS_GEO}'"
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no function 'haversin'") && e.contains("haversine"),
        "{e}"
    );
    // A plugin aggregate that cannot retract is refused over a changelog.
    let e = session
        .execute_script(&format!(
            "{BID} LOAD PLUGIN '{HLL}';
             SELECT hll_distinct(n) FROM (SELECT auction, count(*) AS n FROM bid GROUP BY auction)"
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hll_distinct cannot aggregate an updating result"),
        "{e}"
    );
    // Table function plugins are for the DataStream API so far.
    let e = session
        .execute(&format!(
            "LOAD PLUGIN '{}'",
            fungi_plugin_artifacts::TEXT_SPLIT
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("table function plugin 'text_split'") && e.contains("with_plugin_table"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_plugin_fails_the_query_with_its_limit() {
    let mut session = SqlSession::default();
    let script = format!(
        "{BID}
         SET 'plugin.call-timeout' = '100 ms';
         CREATE FUNCTION spin LANGUAGE WASM USING '{}';
         SELECT spin(auction) FROM bid",
        fungi_plugin_artifacts::HOSTILE_EVIL
    );
    let err = run(&mut session, &script).await.error();
    assert!(
        err.contains("plugin 'evil', function 'spin'") && err.contains("call time limit of 100 ms"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_plugin_batches_can_go_to_the_dead_letter_output() {
    let mut session = SqlSession::default();
    let script = format!(
        "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '2000');
         SET 'plugin.on-error' = 'dead-letter';
         CREATE FUNCTION boom LANGUAGE WASM USING '{}';
         SELECT auction, boom(auction) FROM bid",
        fungi_plugin_artifacts::HOSTILE_EVIL
    );
    let ran = run(&mut session, &script).await;
    // Every bid trapped the plugin: no rows out, every bid dead-lettered with the reason.
    assert!(ran.rows.is_empty());
    let counts = ran.dead_letter_counts();
    assert_eq!(counts.values().sum::<u64>(), 1840, "{counts:?}");
    assert!(counts.contains_key("plugin trap"));
}

#[tokio::test]
async fn plugin_calls_get_coalesced_batches() {
    let mut session = SqlSession::default();
    let outcomes = session
        .execute_script(&format!(
            "{BID}
             SET 'plugin.batch-rows' = '4096';
             CREATE FUNCTION slug AS 'slugify' LANGUAGE WASM USING '{STRINGS_GEO}';
             EXPLAIN SELECT slug(channel) FROM bid WHERE price > 10;
             EXPLAIN SELECT channel FROM bid WHERE price > 10"
        ))
        .await
        .unwrap();
    let text = |i: usize| match &outcomes[i] {
        fungi_sql::Outcome::Explain(t) => t.clone(),
        _ => panic!("an explain"),
    };
    assert!(text(3).contains("coalesce"), "{}", text(3));
    assert!(!text(4).contains("coalesce"), "{}", text(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_source_to_plugin_sink_in_sql() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = SqlSession::default();
    session
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let script = format!(
        "SET 'plugin.grant-directory' = '{}=/out';
         CREATE TABLE counter (split BIGINT, seq BIGINT, label VARCHAR)
         WITH ('connector' = 'wasm', 'plugin' = '{}', 'splits' = '3', 'rows' = '5000');
         CREATE TABLE files (split BIGINT, seq BIGINT)
         WITH ('connector' = 'wasm', 'plugin' = '{}', 'dir' = '/out');
         INSERT INTO files SELECT split, seq FROM counter WHERE seq % 2 = 0",
        dir.path().display(),
        fungi_plugin_artifacts::COUNTER_SOURCE,
        fungi_plugin_artifacts::DIR_SINK
    );
    let mut outcomes = session.execute_script(&script).await.unwrap();
    let Some(fungi_sql::Outcome::Insert(graph)) = outcomes.pop() else {
        panic!("an insert")
    };
    fungi_execution::executor::LocalExecutor::new()
        .execute(graph)
        .unwrap()
        .wait()
        .await
        .unwrap();
    // Every even row of every split, committed into part files; nothing left pending.
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    let mut want: Vec<String> = (0..3)
        .flat_map(|s| (0..5000).step_by(2).map(move |q| format!("{s},{q}")))
        .collect();
    want.sort();
    assert_eq!(lines.len(), want.len());
    assert_eq!(lines, want);
    assert_eq!(
        std::fs::read_dir(dir.path().join(".pending"))
            .unwrap()
            .count(),
        0
    );
}
