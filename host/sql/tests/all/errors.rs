//! Planner errors name the problem and say what to write instead.

use fungi_sql::SqlSession;

const BID: &str = "CREATE TABLE bid (auction BIGINT, price BIGINT, dateTime TIMESTAMP(3), WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '100');";

async fn error(sql: &str) -> String {
    let mut session = SqlSession::default();
    match session.execute_script(&format!("{BID}\n{sql}")).await {
        Ok(_) => panic!("expected an error for {sql}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn typos_get_suggestions() {
    let e = error("SELECT auctoin FROM bid").await;
    assert!(e.contains("auctoin") && e.contains("auction"), "{e}");
    let e = error("SELECT auction FROM bids").await;
    assert!(
        e.contains("bids") && e.contains("Did you mean 'bid'"),
        "{e}"
    );
    let e = error("SELECT cuont(*) FROM bid").await;
    assert!(e.contains("cuont") && e.contains("count"), "{e}");
    let e = error("CREATE TABLE t (a INT) WITH ('connector' = 'blakhole')").await;
    assert!(
        e.contains("unknown connector 'blakhole'") && e.contains("Did you mean 'blackhole'"),
        "{e}"
    );
    let e =
        error("CREATE TABLE t (a INT, WATERMARK FOR ts AS ts) WITH ('connector' = 'blackhole')")
            .await;
    assert!(e.contains("WATERMARK FOR 'ts'"), "{e}");
}

#[tokio::test]
async fn unsupported_sql_says_what_to_write() {
    let e =
        error("SELECT max(n) FROM (SELECT auction, count(*) AS n FROM bid GROUP BY auction)").await;
    assert!(
        e.contains("max cannot aggregate an updating result")
            && e.contains("use count, sum or avg"),
        "{e}"
    );
    let e = error("SELECT * FROM bid ORDER BY price").await;
    assert!(e.contains("ORDER BY on an unbounded stream"), "{e}");
    let e = error(
        "SELECT a.auction FROM bid a LEFT JOIN bid b ON a.auction = b.auction AND a.price < b.price",
    )
    .await;
    assert!(
        e.contains("a LEFT join whose ON clause compares its two sides other than by equality")
            && e.contains("a.price < b.price")
            && e.contains("filter the joined rows in a WHERE clause"),
        "{e}"
    );
    let e = error(
        "SELECT a.auction FROM bid a LEFT JOIN bid b ON a.auction = b.auction \
         AND a.dateTime BETWEEN b.dateTime AND b.dateTime + INTERVAL '1' SECOND AND a.price < b.price",
    )
    .await;
    assert!(
        e.contains("a condition across both sides of a LEFT interval join besides its time bounds")
            && e.contains("WHERE clause"),
        "{e}"
    );
    let e = error("SELECT a.auction FROM bid a FULL JOIN bid b ON a.price > 10").await;
    assert!(
        e.contains("a FULL join without an equality between its two sides")
            && e.contains("ON a.k = b.k"),
        "{e}"
    );
    for subquery in [
        "SELECT auction FROM bid WHERE auction IN (SELECT price FROM bid)",
        "SELECT auction FROM bid b WHERE NOT EXISTS (SELECT 1 FROM bid c WHERE c.price = b.auction)",
        "SELECT auction, (SELECT max(price) FROM bid) FROM bid",
    ] {
        let e = error(subquery).await;
        assert!(
            e.contains("a subquery inside an expression") && e.contains("LEFT join"),
            "{subquery}: {e}"
        );
    }
    for (over, message, hint) in [
        (
            "stddev(price) OVER (PARTITION BY auction ORDER BY dateTime)",
            "stddev over an OVER frame starting UNBOUNDED PRECEDING",
            "ROWS BETWEEN n PRECEDING AND CURRENT ROW",
        ),
        (
            "SUM(price) OVER (PARTITION BY auction ORDER BY price ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
            "not ordered by a time attribute ascending",
            "WATERMARK FOR column",
        ),
        (
            "SUM(price) OVER (PARTITION BY auction ORDER BY dateTime DESC ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
            "not ordered by a time attribute ascending",
            "WATERMARK FOR column",
        ),
        (
            "SUM(price) OVER (ORDER BY dateTime ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)",
            "does not end at the current row",
            "AND CURRENT ROW",
        ),
        (
            "SUM(price) OVER (ORDER BY dateTime ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), \
             MAX(price) OVER (ORDER BY dateTime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
            "OVER aggregations over different windows",
            "the same OVER",
        ),
        (
            "approx_distinct(price) OVER (ORDER BY dateTime ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)",
            "approx_distinct as an OVER aggregation",
            "count, sum, min, max, avg",
        ),
    ] {
        let e = error(&format!("SELECT auction, {over} FROM bid")).await;
        assert!(e.contains(message) && e.contains(hint), "{over}: {e}");
    }
    let e = error(
        "SELECT n, SUM(n) OVER (ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM \
         (SELECT auction, count(*) AS n, max(dateTime) AS t FROM bid GROUP BY auction)",
    )
    .await;
    assert!(e.contains("unsupported"), "{e}");
    let e = error(
        "SELECT auction, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price) AS rn FROM bid",
    )
    .await;
    assert!(
        e.contains("without a filter on the row number") && e.contains("WHERE rownum <= N"),
        "{e}"
    );
    let e = error("SELECT * FROM (SELECT auction, n, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY n) AS rn FROM (SELECT auction, count(*) AS n FROM bid GROUP BY auction)) WHERE rn <= 3").await;
    assert!(e.contains("ranking an updating result"), "{e}");
    let e = error("SELECT a.auction FROM bid a JOIN bid FOR SYSTEM_TIME AS OF a.dateTime AS b ON a.auction = b.auction").await;
    assert!(
        e.contains("lookup join") && e.contains("connector 'nexmark', which is unbounded"),
        "{e}"
    );
    let e = error("SELECT window_start FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '2' SECOND))").await;
    assert!(e.contains("HOP window without aggregating"), "{e}");
    let e = error("UPDATE bid SET price = 1").await;
    assert!(
        e.contains("'UPDATE bid' is not allowed") && e.contains("use INSERT INTO"),
        "{e}"
    );
}

#[tokio::test]
async fn checkpoint_and_restart_settings_are_checked() {
    let e = error("SET 'restart-strategy.fixed-delay.atempts' = '3'").await;
    assert!(
        e.contains("unknown setting 'restart-strategy.fixed-delay.atempts'"),
        "{e}"
    );
    let e = error("SET 'restart-strategy.type' = 'sometimes'").await;
    assert!(
        e.contains("none, fixed-delay, exponential-delay or failure-rate"),
        "{e}"
    );
    let e = error("SET 'state.backend.type' = 'leveldb'").await;
    assert!(
        e.contains("neither 'hashmap' (memory) nor 'rocksdb'"),
        "{e}"
    );
    let e = error("SET 'execution.checkpointing.interval' = 'often'").await;
    assert!(e.contains("execution.checkpointing.interval"), "{e}");

    // Settings land in the job configuration, in any order.
    let mut session = SqlSession::default();
    session
        .execute_script(
            "SET 'execution.checkpointing.interval' = '2s';
             SET 'restart-strategy.exponential-delay.max-backoff' = '60s';
             SET 'state.backend.type' = 'rocksdb';",
        )
        .await
        .unwrap();
    let config = session.config().clone();
    assert_eq!(
        config.checkpointing.interval,
        Some(std::time::Duration::from_secs(2))
    );
    assert!(matches!(
        config.restart_strategy,
        fungi_common::config::RestartStrategy::ExponentialDelay { max, .. }
            if max == std::time::Duration::from_secs(60)
    ));
    // A job with checkpoints but no directory is refused when planned, saying what to set.
    let outcomes = session
        .execute_script(&format!(
            "{BID} CREATE TABLE out (auction BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT auction FROM bid;"
        ))
        .await
        .unwrap();
    let graph = outcomes
        .into_iter()
        .find_map(|o| match o {
            fungi_sql::Outcome::Insert(g) => Some(g),
            _ => None,
        })
        .unwrap();
    let e = fungi_execution::plan::PhysicalPlan::new(graph)
        .unwrap_err()
        .to_string();
    assert!(e.contains("set 'execution.checkpointing.dir'"), "{e}");
}
