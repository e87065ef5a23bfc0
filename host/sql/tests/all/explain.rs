//! EXPLAIN shows the streaming job graph.

use fungi_sql::{Outcome, SqlSession};

#[tokio::test]
async fn explain_shows_operators_parallelism_edges_and_state() {
    let mut session = SqlSession::default();
    let out = session
        .execute_script(
            "SET 'parallelism.default' = '2';
             CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid');
             CREATE TABLE sink (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
             EXPLAIN INSERT INTO sink
             SELECT auction, count(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
             WHERE price > 10 GROUP BY auction, window_start, window_end;",
        )
        .await
        .unwrap();
    let Some(Outcome::Explain(text)) = out.last() else {
        panic!("{out:?}")
    };
    let expected = "\
Job 'insert-into-sink' (max parallelism 128, channel capacity 8 batches)
Task 0 x2:
  bid [op0] (source)
  project [op1] (operator)
  filter [op2] (operator)
  window-input [op3] (operator)
Task 1 x2:
  window [op4] (operator, keyed state)
  window-output [op5] (operator)
  project-2 [op6] (operator)
  project-3 [op7] (operator)
  sink-sink [op8] (operator)
  bid -> project: CHAINED
  project -> filter: CHAINED
  filter -> window-input: CHAINED
  window-input -> window: HASH[__k0]
  window -> window-output: CHAINED
  window-output -> project-2: CHAINED
  project-2 -> project-3: CHAINED
  project-3 -> sink-sink: CHAINED
";
    assert_eq!(text, expected);
}

/// The edges into an interval join of `bids` with `maxima` (a window aggregate).
async fn interval_join_edges(maxima: &str) -> Vec<String> {
    let mut session = SqlSession::default();
    let out = session
        .execute_script(&format!(
            "SET 'parallelism.default' = '2';
             CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid');
             CREATE TABLE sink (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
             EXPLAIN INSERT INTO sink
             SELECT B.auction, B.price FROM bid B
             JOIN ({maxima}) B1 ON B.price = B1.maxprice
             WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime;"
        ))
        .await
        .unwrap();
    let Some(Outcome::Explain(text)) = out.last() else {
        panic!("{out:?}")
    };
    text.lines()
        .filter(|l| l.contains("-> interval-join"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test]
async fn a_window_aggregate_without_keys_is_broadcast_to_an_interval_join() {
    // One row per window: sent to every join subtask, the bids stay where they are.
    let edges = interval_join_edges(
        "SELECT MAX(price) AS maxprice, window_end AS dateTime
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end",
    )
    .await;
    assert_eq!(
        edges,
        [
            "bid -> interval-join: FORWARD",
            "project-2 -> interval-join: BROADCAST"
        ],
        "{edges:?}"
    );
    // With a group key there are many rows per window: both sides by key.
    let edges = interval_join_edges(
        "SELECT MAX(price) AS maxprice, window_end AS dateTime
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end",
    )
    .await;
    assert!(edges.iter().all(|e| e.contains("HASH[")), "{edges:?}");
}

/// The edges of a window aggregation `select` over bids at `parallelism`.
async fn window_edges(parallelism: u32, select: &str) -> Vec<String> {
    window_edges_with("", parallelism, select).await
}

/// [`window_edges`] after the `SET` statements `settings`.
async fn window_edges_with(settings: &str, parallelism: u32, select: &str) -> Vec<String> {
    let mut session = SqlSession::default();
    let out = session
        .execute_script(&format!(
            "{settings}SET 'parallelism.default' = '{parallelism}';
             CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid');
             CREATE TABLE sink (v DOUBLE) WITH ('connector' = 'blackhole');
             EXPLAIN INSERT INTO sink SELECT CAST(v AS DOUBLE) FROM ({select});"
        ))
        .await
        .unwrap();
    let Some(Outcome::Explain(text)) = out.last() else {
        panic!("{out:?}")
    };
    text.lines()
        .filter(|l| l.contains("-> window:") || l.contains("-> window-partial:"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test]
async fn a_window_aggregate_without_keys_is_pre_aggregated_on_every_subtask() {
    let tumble = "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))";
    let edges = window_edges(
        2,
        &format!("SELECT MAX(price) + COUNT(*) + AVG(price) AS v {tumble} GROUP BY window_start, window_end"),
    )
    .await;
    assert_eq!(
        edges,
        [
            "window-input -> window-partial: CHAINED",
            "window-partial -> window: REBALANCE"
        ]
    );
    let hop = "FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))";
    let edges = window_edges(
        2,
        &format!("SELECT MIN(price) AS v {hop} GROUP BY window_start, window_end"),
    )
    .await;
    assert!(
        edges.iter().any(|e| e.contains("window-partial")),
        "{edges:?}"
    );
    // One subtask: nothing to save. Group keys spread rows already. An aggregate whose
    // states are not known to merge (DataFusion's) and session windows: one phase.
    for (parallelism, select) in [
        (1, format!("SELECT MAX(price) AS v {tumble} GROUP BY window_start, window_end")),
        (
            2,
            format!("SELECT MAX(price) AS v {tumble} GROUP BY auction, window_start, window_end"),
        ),
        (
            2,
            format!("SELECT STDDEV(price) AS v {tumble} GROUP BY window_start, window_end"),
        ),
        (
            2,
            "SELECT MAX(price) AS v FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) GROUP BY window_start, window_end".to_string(),
        ),
    ] {
        let edges = window_edges(parallelism, &select).await;
        assert!(
            !edges.is_empty() && edges.iter().all(|e| !e.contains("window-partial")),
            "{select}: {edges:?}"
        );
    }
}

#[tokio::test]
async fn the_agg_phase_strategy_setting_chooses_one_or_two_phases() {
    let select = "SELECT COUNT(*) AS v FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) GROUP BY window_start, window_end";
    let one = "SET 'table.optimizer.agg-phase-strategy' = 'ONE_PHASE';";
    let edges = window_edges_with(one, 2, select).await;
    assert_eq!(edges, ["window-input -> window: REBALANCE"]);
    let two = "SET 'table.optimizer.agg-phase-strategy' = 'two_phase';";
    let edges = window_edges_with(two, 1, select).await;
    assert_eq!(
        edges,
        [
            "window-input -> window-partial: CHAINED",
            "window-partial -> window: REBALANCE"
        ]
    );
    let err = SqlSession::default()
        .execute_script("SET 'table.optimizer.agg-phase-strategy' = 'THREE_PHASE';")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'THREE_PHASE' is not AUTO, ONE_PHASE or TWO_PHASE"),
        "{err}"
    );
}

#[tokio::test]
async fn an_over_aggregation_is_keyed_by_its_partition_and_an_outer_join_by_its_keys() {
    let explain = |sql: &str| {
        let sql = sql.to_string();
        async move {
            let mut session = SqlSession::default();
            let out = session
                .execute_script(&format!(
                    "SET 'parallelism.default' = '2';
                     CREATE TABLE bid (auction BIGINT, price BIGINT, dateTime TIMESTAMP(3),
                       WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
                     WITH ('connector' = 'nexmark', 'table' = 'bid');
                     CREATE TABLE auction WITH ('connector' = 'nexmark', 'table' = 'auction');
                     EXPLAIN {sql};"
                ))
                .await
                .unwrap();
            let Some(Outcome::Explain(text)) = out.last() else {
                panic!("{out:?}")
            };
            text.clone()
        }
    };
    let text = explain(
        "SELECT auction, SUM(price) OVER (PARTITION BY auction ORDER BY dateTime
           ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) FROM bid",
    )
    .await;
    assert!(
        text.contains("over-aggregate [") && text.contains("-> over-aggregate: HASH[auction]"),
        "{text}"
    );
    let text = explain(
        "SELECT COUNT(*) OVER (ORDER BY dateTime RANGE BETWEEN INTERVAL '1' SECOND PRECEDING
           AND CURRENT ROW) FROM bid",
    )
    .await;
    assert!(text.contains("Task 1 x1:\n  over-aggregate"), "{text}");
    let text =
        explain("SELECT A.id, B.price FROM auction A LEFT JOIN bid B ON A.id = B.auction").await;
    assert!(
        text.contains("join [") && text.contains("-> join: HASH[id]"),
        "{text}"
    );
}
