//! Flink's answers on NULLs, late rows, types and functions (docs/sql-semantics.md), on
//! small hand-made inputs. The differential suite (conformance/flink) checks the same
//! against Flink itself; these run without it.

use fungi_sql::SqlSession;

use crate::{run, select, select_final};

/// A script header declaring `events` over `rows` (JSON lines) in a temporary directory.
fn events(dir: &tempfile::TempDir, rows: &[&str]) -> String {
    let path = dir.path().join("events.json");
    std::fs::write(&path, rows.join("\n")).unwrap();
    format!(
        "CREATE TABLE events (k INT, id BIGINT, v BIGINT, price DOUBLE, name VARCHAR, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        path.display()
    )
}

fn row(k: Option<i32>, v: Option<i64>, secs: f64) -> String {
    let k = k.map_or("null".to_string(), |k| k.to_string());
    let v = v.map_or("null".to_string(), |v| v.to_string());
    let ms = (secs * 1000.0).round() as i64;
    format!(
        r#"{{"k": {k}, "v": {v}, "ts": "2024-01-01T00:{:02}:{:02}.{:03}"}}"#,
        ms / 60_000,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_row_inside_an_open_session_joins_it() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [
        (1, 1, 0.0),
        (1, 2, 4.0),
        (1, 3, 8.0),
        (1, 4, 12.0),
        // Behind the watermark (10 s), inside k=1's open session [0, 17): kept.
        (1, 5, 1.0),
        (2, 6, 13.0),
        // Behind the watermark, touching no session of k=2: late.
        (2, 7, 3.0),
        (1, 8, 40.0),
    ]
    .iter()
    .map(|&(k, v, t)| row(Some(k), Some(v), t))
    .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT k, window_start, window_end, COUNT(*), SUM(v)
         FROM TABLE(SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND))
         GROUP BY k, window_start, window_end",
        events(&dir, &refs)
    );
    let ran = run(&mut session, &script).await;
    ran.result.as_ref().unwrap();
    assert_eq!(
        crate::rows(&ran.rows),
        vec![
            "1 | 2024-01-01T00:00:00 | 2024-01-01T00:00:17 | 5 | 15",
            "1 | 2024-01-01T00:00:40 | 2024-01-01T00:00:45 | 1 | 8",
            "2 | 2024-01-01T00:00:13 | 2024-01-01T00:00:18 | 1 | 6",
        ]
    );
    let late: u64 = ran.metrics.iter().map(|m| m.late_records).sum();
    assert_eq!(late, 1, "only k=2's row at 3 s is late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lateness_follows_every_row_not_the_batch() {
    // One file, one batch: the row at 2 s comes after the watermark reached 23 s.
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [(1, 1.0), (2, 25.0), (4, 2.0), (8, 26.0), (16, 23.5)]
        .iter()
        .map(|&(v, t)| row(Some(1), Some(v), t))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT window_start, COUNT(*), SUM(v)
         FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end",
        events(&dir, &refs)
    );
    assert_eq!(
        select(&mut session, &script).await,
        vec![
            "2024-01-01T00:00:00 | 1 | 1",
            "2024-01-01T00:00:20 | 3 | 26"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_n_puts_nulls_last_when_descending() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"k": 1, "id": 1, "price": null, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": 1, "id": 2, "price": 5.0, "ts": "2024-01-01T00:00:02"}"#,
        r#"{"k": 1, "id": 3, "price": null, "ts": "2024-01-01T00:00:03"}"#,
        r#"{"k": 1, "id": 4, "price": 7.0, "ts": "2024-01-01T00:00:04"}"#,
    ];
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT id, rn FROM (
           SELECT id, ROW_NUMBER() OVER (PARTITION BY k ORDER BY price DESC, id) AS rn FROM events
         ) WHERE rn <= 3",
        events(&dir, &rows)
    );
    assert_eq!(
        select_final(&mut session, &script).await,
        vec!["1 | 3", "2 | 2", "4 | 1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_keys_never_match_in_time_joins() {
    let dir = tempfile::tempdir().unwrap();
    let left = [row(None, Some(1), 1.0), row(Some(1), Some(2), 2.0)];
    let right_path = dir.path().join("other.json");
    std::fs::write(
        &right_path,
        [row(None, Some(10), 1.0), row(Some(1), Some(20), 3.0)].join("\n"),
    )
    .unwrap();
    let refs: Vec<&str> = left.iter().map(String::as_str).collect();
    let header = format!(
        "{} CREATE TABLE other (k INT, v BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        events(&dir, &refs),
        right_path.display()
    );
    let mut session = SqlSession::default();
    let interval = format!(
        "{header} SELECT e.v, o.v FROM events e JOIN other o
         ON e.k = o.k AND e.ts BETWEEN o.ts - INTERVAL '5' SECOND AND o.ts + INTERVAL '5' SECOND"
    );
    assert_eq!(select(&mut session, &interval).await, vec!["2 | 20"]);
    let mut session = SqlSession::default();
    let window = format!(
        "{header} SELECT L.v, R.v FROM
           (SELECT * FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))) L
           JOIN (SELECT * FROM TABLE(TUMBLE(TABLE other, DESCRIPTOR(ts), INTERVAL '10' SECOND))) R
           ON L.k = R.k AND L.window_start = R.window_start AND L.window_end = R.window_end"
    );
    assert_eq!(select(&mut session, &window).await, vec!["2 | 20"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_answer_as_in_flink() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"k": 1, "v": 7, "name": "ab", "ts": "2024-01-31T00:00:01"}"#,
        r#"{"k": null, "v": null, "name": null, "ts": "2024-01-31T00:00:02.5"}"#,
    ];
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT CONCAT(name, '-', CAST(k AS STRING)), CONCAT_WS('/', name, 'z'),
           CAST(ts AS STRING), COALESCE(v, -1), IFNULL(name, '?'), IF(v > 5, 'big', 'small'),
           TIMESTAMPADD(MONTH, 1, ts), TIMESTAMPDIFF(SECOND, TIMESTAMP '2024-01-31 00:00:00', ts)
         FROM events",
        events(&dir, &rows)
    );
    assert_eq!(
        select(&mut session, &script).await,
        vec![
            "NULL | z | 2024-01-31 00:00:02.500 | -1 | ? | small | 2024-02-29T00:00:02.500 | 2",
            "ab-1 | ab/z | 2024-01-31 00:00:01.000 | 7 | ab | big | 2024-02-29T00:00:01 | 1",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avg_keeps_its_argument_type() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [(1, 1.0), (2, 2.0), (-7, 3.0)]
        .iter()
        .map(|&(v, t)| row(Some(1), Some(v), t))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let mut session = SqlSession::default();
    // (1 + 2 - 7) / 3 = -1.33: -1 as a BIGINT; as a DOUBLE with the cast.
    let script = format!(
        "{} SELECT AVG(v), AVG(CAST(v AS DOUBLE)), SUM(v), SUM(CAST(v AS DOUBLE))
         FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end",
        events(&dir, &refs)
    );
    assert_eq!(
        select(&mut session, &script).await,
        vec!["-1 | -1.3333333333333333 | -4 | -4.0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subquery_may_drop_the_time_column_before_the_window_aggregation() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [
        (1, 1, 1.0),
        (1, -1, 2.0),
        (2, 3, 4.0),
        (1, 5, 12.0),
        (1, 6, 30.0),
    ]
    .iter()
    .map(|&(k, v, t)| row(Some(k), Some(v), t))
    .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let header = events(&dir, &refs);
    let tumble = format!(
        "{header} SELECT window_start, k, COUNT(*) AS c FROM (
           SELECT window_start, window_end, k FROM TABLE(
             TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND)) WHERE v > 0
         ) AS w GROUP BY window_start, window_end, k"
    );
    let mut session = SqlSession::default();
    assert_eq!(
        select_final(&mut session, &tumble).await,
        vec![
            "2024-01-01T00:00:00 | 1 | 1",
            "2024-01-01T00:00:00 | 2 | 1",
            "2024-01-01T00:00:10 | 1 | 1",
            "2024-01-01T00:00:30 | 1 | 1",
        ]
    );
    let sessions = format!(
        "{header} SELECT k, window_start, window_end, SUM(v) FROM (
           SELECT k, v, window_start, window_end FROM TABLE(
             SESSION(TABLE events PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND))
         ) GROUP BY k, window_start, window_end"
    );
    let mut session = SqlSession::default();
    assert_eq!(
        select_final(&mut session, &sessions).await,
        vec![
            "1 | 2024-01-01T00:00:01 | 2024-01-01T00:00:07 | 0",
            "1 | 2024-01-01T00:00:12 | 2024-01-01T00:00:17 | 5",
            "1 | 2024-01-01T00:00:30 | 2024-01-01T00:00:35 | 6",
            "2 | 2024-01-01T00:00:04 | 2024-01-01T00:00:09 | 3",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplication_by_event_time_drops_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    // The watermark lags 2 s: after the row at 10 s it is at 8 s.
    let rows: Vec<String> = [
        (1, 1, 5.0),
        (1, 2, 10.0),
        (1, 3, 1.0),
        (2, 4, 0.0),
        (2, 5, 9.0),
    ]
    .iter()
    .map(|&(k, v, t)| row(Some(k), Some(v), t))
    .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let header = events(&dir, &refs);
    let first = format!(
        "{header} SELECT k, v FROM (
           SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) AS rn FROM events
         ) WHERE rn = 1"
    );
    let mut session = SqlSession::default();
    let ran = run(&mut session, &first).await;
    ran.result.as_ref().unwrap();
    // The rows at 1 s and 0 s are behind the watermark: k=1 keeps 5 s, k=2 keeps 9 s.
    let changes = crate::rows_in_order(&ran.rows);
    assert_eq!(crate::apply_changelog(changes), vec!["1 | 1", "2 | 5"]);
    let late: u64 = ran.metrics.iter().map(|m| m.late_records).sum();
    assert_eq!(late, 2);
    // Keeping the last row needs no lateness: a late row is never the newest.
    let last = first.replace("ts ASC", "ts DESC");
    let mut session = SqlSession::default();
    assert_eq!(
        select_final(&mut session, &last).await,
        vec!["1 | 2", "2 | 5"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_renamed_functions_answer_as_in_flink() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"k": 1, "v": 17, "name": "{\"a\": {\"z\": 1, \"b\": [5, \"x\"]}}", "price": 2.75, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": 2, "v": -7, "name": "not json", "price": -1.5, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": 3, "v": null, "name": null, "price": null, "ts": "2024-01-01T00:00:01"}"#,
    ];
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT k, JSON_VALUE(name, '$.a.b[1]'), JSON_QUERY(name, 'lax $.a'),
           JSON_EXISTS(name, '$.a.z'), TRUNCATE(v, -1), TRUNCATE(price, 1),
           LOCATE('o', name), STARTSWITH(name, '{{'), TO_BASE64(JSON_VALUE(name, '$.a.b[1]'))
         FROM events",
        events(&dir, &rows)
    );
    assert_eq!(
        select(&mut session, &script).await,
        vec![
            r#"1 | x | {"z":1,"b":[5,"x"]} | true | 10 | 2.7 | 0 | true | eA=="#,
            "2 | NULL | NULL | false | 0 | -1.5 | 2 | false | NULL",
            "3 | NULL | NULL | NULL | NULL | NULL | NULL | NULL | NULL",
        ]
    );
    let bad = format!(
        "{} SELECT JSON_VALUE(name, 'a.b') FROM events",
        events(&dir, &rows)
    );
    let err = session.execute_script(&bad).await.err();
    let ran = match err {
        Some(e) => e.to_string(),
        None => {
            let ran = run(&mut SqlSession::default(), &bad).await;
            ran.result.unwrap_err().to_string()
        }
    };
    assert!(ran.contains("must start with $"), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_url_time_and_array_functions_answer_as_in_flink() {
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        r#"{"k": 1, "v": 100, "name": "apple", "price": 12.5, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": 2, "v": -7, "name": "Banana split", "price": 0.25, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": null, "v": null, "name": null, "price": null, "ts": "2024-01-01T00:00:01"}"#,
        r#"{"k": 3, "v": 900, "name": "", "price": 99.0, "ts": "2024-01-01T00:00:01"}"#,
    ];
    let mut session = SqlSession::default();
    let script = format!(
        "{} SELECT k, HEX(v), BIN(v), SPLIT_INDEX(name, 'a', 0), CARDINALITY(SPLIT(name, 'a')),
           URL_ENCODE(name), PARSE_URL(CONCAT('http://h/p?x=', name), 'QUERY', 'x'),
           IS_ALPHA(name), IS_DECIMAL(CAST(price AS STRING)), INITCAP(name),
           OVERLAY(name PLACING 'XY' FROM 2 FOR 1), name SIMILAR TO 'a.*',
           FROM_UNIXTIME(1704067200 + v), ELT(k, 'a', 'b'), ARRAY_CONTAINS(ARRAY[1, 2], k),
           ARRAY_POSITION(ARRAY[1, 2, 3], k), JSON_ARRAY(v, name), LOG(1), TYPEOF(k)
         FROM events",
        events(&dir, &rows)
    );
    assert_eq!(
        select(&mut session, &script).await,
        vec![
            r#"1 | 64 | 1100100 |  | 2 | apple | apple | true | true | Apple | aXYple | true | 2024-01-01 00:01:40 | a | true | 1 | [100,"apple"] | 0.0 | INT"#,
            r#"2 | FFFFFFFFFFFFFFF9 | 1111111111111111111111111111111111111111111111111111111111111001 | B | 4 | Banana+split | Banana split | false | true | Banana Split | BXYnana split | false | 2023-12-31 23:59:53 | b | true | 2 | [-7,"Banana split"] | 0.0 | INT"#,
            r#"3 | 384 | 1110000100 | NULL | 0 |  |  | false | true |  |  | false | 2024-01-01 00:15:00 | NULL | false | 3 | [900,""] | 0.0 | INT"#,
            "NULL | NULL | NULL | NULL | NULL | NULL | NULL | false | false | NULL | NULL | NULL | NULL | NULL | false | NULL | [] | 0.0 | INT",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn union_distinct_and_floor_answer_as_in_flink() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = [(1, 1, 1.0), (2, 2, 61.5), (1, 3, 62.0), (1, 1, 125.0)]
        .iter()
        .map(|&(k, v, t)| row(Some(k), Some(v), t))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let header = events(&dir, &refs);
    let cases = [
        (
            "SELECT k, v FROM events WHERE v > 1 UNION ALL SELECT k, v FROM events WHERE k = 1",
            vec!["1 | 1", "1 | 1", "1 | 3", "1 | 3", "2 | 2"],
        ),
        // An updating input makes the union an updating result.
        (
            "SELECT k, COUNT(*) FROM events GROUP BY k UNION ALL SELECT k, v FROM events WHERE k = 2",
            vec!["1 | 3", "2 | 1", "2 | 2"],
        ),
        (
            "SELECT DISTINCT k, v FROM events",
            vec!["1 | 1", "1 | 3", "2 | 2"],
        ),
        (
            "SELECT k FROM events UNION SELECT v AS k FROM events",
            vec!["1", "2", "3"],
        ),
        (
            "SELECT FLOOR(ts TO MINUTE), COUNT(*) FROM events GROUP BY FLOOR(ts TO MINUTE)",
            vec![
                "2024-01-01T00:00:00 | 1",
                "2024-01-01T00:01:00 | 2",
                "2024-01-01T00:02:00 | 1",
            ],
        ),
        (
            "SELECT v, CEIL(ts TO MINUTE) FROM events WHERE k = 1",
            vec![
                "1 | 2024-01-01T00:01:00",
                "1 | 2024-01-01T00:03:00",
                "3 | 2024-01-01T00:02:00",
            ],
        ),
    ];
    for (query, expected) in cases {
        let mut session = SqlSession::default();
        let got = select_final(&mut session, &format!("{header} {query}")).await;
        assert_eq!(got, expected, "{query}");
    }
}

/// `events` and `other` over the given rows, in a temporary directory.
fn two_tables(dir: &tempfile::TempDir, left: &[String], right: &[String]) -> String {
    let right_path = dir.path().join("other.json");
    std::fs::write(&right_path, right.join("\n")).unwrap();
    let refs: Vec<&str> = left.iter().map(String::as_str).collect();
    format!(
        "{} CREATE TABLE other (k INT, v BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        events(dir, &refs),
        right_path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_joins_pad_the_rows_without_a_partner() {
    let dir = tempfile::tempdir().unwrap();
    let left = [
        row(Some(1), Some(1), 1.0),
        row(Some(2), Some(2), 2.0),
        row(None, Some(3), 3.0),
        row(Some(1), Some(4), 4.0),
    ];
    let right = [
        row(Some(1), Some(10), 1.5),
        row(Some(3), Some(30), 2.5),
        row(None, Some(40), 3.5),
    ];
    let header = two_tables(&dir, &left, &right);
    let cases: [(&str, &[&str]); 7] = [
        (
            "LEFT JOIN other o ON e.k = o.k",
            &["1 | 10", "2 | NULL", "3 | NULL", "4 | 10"],
        ),
        (
            "RIGHT JOIN other o ON e.k = o.k",
            &["1 | 10", "4 | 10", "NULL | 30", "NULL | 40"],
        ),
        (
            "FULL OUTER JOIN other o ON e.k = o.k",
            &[
                "1 | 10",
                "2 | NULL",
                "3 | NULL",
                "4 | 10",
                "NULL | 30",
                "NULL | 40",
            ],
        ),
        // A condition on the kept side: a row failing it has no partner, but stays.
        (
            "LEFT JOIN other o ON e.k = o.k AND e.v > 1",
            &["1 | NULL", "2 | NULL", "3 | NULL", "4 | 10"],
        ),
        // A condition on the other side: its rows failing it are no partners.
        (
            "LEFT JOIN other o ON e.k = o.k AND o.v > 10",
            &["1 | NULL", "2 | NULL", "3 | NULL", "4 | NULL"],
        ),
        // WHERE filters the joined rows, padded ones too (an anti-join).
        (
            "LEFT JOIN other o ON e.k = o.k WHERE o.v IS NULL",
            &["2 | NULL", "3 | NULL"],
        ),
        (
            "FULL JOIN other o ON e.k = o.k AND o.v < 40 AND e.v < 4",
            &[
                "1 | 10",
                "2 | NULL",
                "3 | NULL",
                "4 | NULL",
                "NULL | 30",
                "NULL | 40",
            ],
        ),
    ];
    for parallelism in [1, 2] {
        for (join, want) in cases {
            let mut session = SqlSession::default();
            let sql = format!(
                "{header} SET 'parallelism.default' = '{parallelism}';
                 SELECT e.v, o.v FROM events e {join}"
            );
            assert_eq!(
                select_final(&mut session, &sql).await,
                want,
                "{join} at parallelism {parallelism}"
            );
        }
    }
    // Interval joins: a row without a partner within the bounds is padded once it can
    // no longer match (append-only).
    for (join, want) in [
        (
            "LEFT JOIN other o ON e.k = o.k AND o.ts BETWEEN e.ts AND e.ts + INTERVAL '1' SECOND",
            &["1 | 10", "2 | NULL", "3 | NULL", "4 | NULL"][..],
        ),
        (
            "FULL JOIN other o ON e.k = o.k AND o.ts BETWEEN e.ts AND e.ts + INTERVAL '1' SECOND",
            &[
                "1 | 10",
                "2 | NULL",
                "3 | NULL",
                "4 | NULL",
                "NULL | 30",
                "NULL | 40",
            ][..],
        ),
    ] {
        let mut session = SqlSession::default();
        let sql = format!("{header} SELECT e.v, o.v FROM events e {join}");
        assert_eq!(select(&mut session, &sql).await, want, "{join}");
    }
    // Over an updating input: a count per key, left-joined; the count's updates move
    // the pairs and the padded rows with them.
    let mut session = SqlSession::default();
    let sql = format!(
        "{header} SELECT c.k, c.n, o.v FROM
           (SELECT k, count(*) AS n FROM events GROUP BY k) c
           FULL JOIN other o ON c.k = o.k"
    );
    assert_eq!(
        select_final(&mut session, &sql).await,
        vec![
            "1 | 2 | 10",
            "2 | 1 | NULL",
            "NULL | 1 | NULL",
            "NULL | NULL | 30",
            "NULL | NULL | 40"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_aggregations_run_in_event_time_order_and_drop_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Key 1 out of order within the bound; key 2 with a NULL value and two rows at one
    // time; the last row of key 1 is late (behind the last time key 1 emitted).
    let rows = [
        row(Some(1), Some(10), 1.0),
        row(Some(1), Some(30), 3.0),
        row(Some(1), Some(20), 2.0),
        row(Some(2), None, 2.5),
        row(Some(2), Some(5), 4.0),
        row(Some(2), Some(7), 4.0),
        row(None, Some(100), 5.0),
        row(Some(1), Some(40), 9.0),
        row(Some(1), Some(1), 2.5),
    ];
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let with_late = events(&dir, &refs);
    // Above parallelism 1 which rows are late depends on when the idle source subtask
    // says so: those runs read the rows without the late one.
    let other_dir = tempfile::tempdir().unwrap();
    let on_time = events(&other_dir, &refs[..refs.len() - 1]);
    let cases: [(&str, &[&str]); 5] = [
        (
            "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
            &[
                "1 | 10 | 10 | 1 | 10",
                "1 | 20 | 30 | 2 | 15",
                "1 | 30 | 60 | 3 | 20",
                "1 | 40 | 100 | 4 | 25",
                "2 | 5 | 5 | 1 | 5",
                "2 | 7 | 12 | 2 | 6",
                "2 | NULL | NULL | 0 | NULL",
                "NULL | 100 | 100 | 1 | 100",
            ],
        ),
        // The frame of ORDER BY without one: peers see each other.
        (
            "",
            &[
                "1 | 10 | 10 | 1 | 10",
                "1 | 20 | 30 | 2 | 15",
                "1 | 30 | 60 | 3 | 20",
                "1 | 40 | 100 | 4 | 25",
                "2 | 5 | 12 | 2 | 6",
                "2 | 7 | 12 | 2 | 6",
                "2 | NULL | NULL | 0 | NULL",
                "NULL | 100 | 100 | 1 | 100",
            ],
        ),
        (
            "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW",
            &[
                "1 | 10 | 10 | 1 | 10",
                "1 | 20 | 30 | 2 | 15",
                "1 | 30 | 50 | 2 | 25",
                "1 | 40 | 70 | 2 | 35",
                "2 | 5 | 5 | 1 | 5",
                "2 | 7 | 12 | 2 | 6",
                "2 | NULL | NULL | 0 | NULL",
                "NULL | 100 | 100 | 1 | 100",
            ],
        ),
        // Rows of one time are peers in a RANGE frame: both rows at 4 s see each other.
        (
            "RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW",
            &[
                "1 | 10 | 10 | 1 | 10",
                "1 | 20 | 30 | 2 | 15",
                "1 | 30 | 60 | 3 | 20",
                "1 | 40 | 40 | 1 | 40",
                "2 | 5 | 12 | 2 | 6",
                "2 | 7 | 12 | 2 | 6",
                "2 | NULL | NULL | 0 | NULL",
                "NULL | 100 | 100 | 1 | 100",
            ],
        ),
        (
            "ROWS BETWEEN CURRENT ROW AND CURRENT ROW",
            &[
                "1 | 10 | 10 | 1 | 10",
                "1 | 20 | 20 | 1 | 20",
                "1 | 30 | 30 | 1 | 30",
                "1 | 40 | 40 | 1 | 40",
                "2 | 5 | 5 | 1 | 5",
                "2 | 7 | 7 | 1 | 7",
                "2 | NULL | NULL | 0 | NULL",
                "NULL | 100 | 100 | 1 | 100",
            ],
        ),
    ];
    // By processing time: in arrival order (the file's), nothing late.
    let mut session = SqlSession::default();
    let sql = format!(
        "{with_late} SELECT k, v, COUNT(*) OVER w AS n, SUM(v) OVER w AS s
         FROM (SELECT *, PROCTIME() AS p FROM events)
         WINDOW w AS (PARTITION BY k ORDER BY p ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    );
    let ran = run(&mut session, &sql).await;
    ran.result.as_ref().unwrap();
    let mut rows = crate::rows_in_order(&ran.rows);
    rows.sort();
    assert_eq!(
        rows,
        [
            "1 | 1 | 5 | 101",
            "1 | 10 | 1 | 10",
            "1 | 20 | 3 | 60",
            "1 | 30 | 2 | 40",
            "1 | 40 | 4 | 100",
            "2 | 5 | 2 | 5",
            "2 | 7 | 3 | 12",
            "2 | NULL | 1 | NULL",
            "NULL | 100 | 1 | 100",
        ]
    );
    for (parallelism, header, late_rows) in [(1, &with_late, 1), (2, &on_time, 0)] {
        for (frame, want) in cases {
            let mut session = SqlSession::default();
            let sql = format!(
                "{header} SET 'parallelism.default' = '{parallelism}';
                 SELECT k, v, SUM(v) OVER w AS s, COUNT(v) OVER w AS c, AVG(v) OVER w AS a
                 FROM events WINDOW w AS (PARTITION BY k ORDER BY ts {frame})"
            );
            let ran = run(&mut session, &sql).await;
            ran.result.as_ref().unwrap();
            let mut rows = crate::rows_in_order(&ran.rows);
            rows.sort();
            assert_eq!(rows, want, "{frame} at parallelism {parallelism}");
            let late: u64 = ran.metrics.iter().map(|o| o.late_records).sum();
            assert_eq!(late, late_rows, "{frame} at parallelism {parallelism}");
        }
    }
}
