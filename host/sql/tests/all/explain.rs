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
