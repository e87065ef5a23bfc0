//! The correctness oracle: for a bounded Nexmark file, each query's streaming result
//! equals DataFusion's batch result over the same file (windows computed with
//! `date_bin`). The file is shuffled within 1.5 s, less than the 4 s watermark delay, so
//! rows arrive out of order but none is late.

use std::path::Path;

use arrow::json::LineDelimitedWriter;
use datafusion::prelude::{JsonReadOptions, SessionConfig, SessionContext};
use fungi_connector::nexmark::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use fungi_sql::SqlSession;

use crate::{apply_changelog, batch_rows, select, select_final, select_in_order};

/// Writes the rows of `table` among `events` Nexmark events as JSON lines; bids are
/// shuffled locally.
fn write_table(path: &Path, table: NexmarkTable, events: u64) {
    write_table_with(path, table, events, None)
}

/// As [`write_table`]; with `late_every = Some(k)`, every k-th batch of 1000 bids is
/// moved 100 batches (~11 s of event time) later in the file, so its bids arrive after
/// the watermark passed them.
fn write_table_with(path: &Path, table: NexmarkTable, events: u64, late_every: Option<usize>) {
    let config = NexmarkConfig {
        max_events: Some(events),
        ..Default::default()
    };
    let mut generator = NexmarkGenerator::new(table, config, 0, 1).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = generator.next_batch(1000).unwrap() {
        batches.push(b);
    }
    if table == NexmarkTable::Bid {
        // 1000 bids span ~109 ms of event time; reverse groups of 12 batches (~1.3 s).
        for chunk in batches.chunks_mut(12) {
            chunk.reverse();
        }
        if let Some(k) = late_every {
            let mut order: Vec<usize> = (0..batches.len()).collect();
            for i in (k..batches.len().saturating_sub(100)).step_by(k).rev() {
                let moved = order.remove(i);
                order.insert(i + 100, moved);
            }
            batches = order.into_iter().map(|i| batches[i].clone()).collect();
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut w = LineDelimitedWriter::new(file);
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

const DDL: &str = "CREATE TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    dateTime TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'DIR/bid.json', 'format' = 'json');
CREATE TABLE person (
    id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR, city VARCHAR,
    state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'DIR/person.json', 'format' = 'json');
CREATE TABLE auction (
    id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT,
    dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'filesystem', 'path' = 'DIR/auction.json', 'format' = 'json');";

struct Fixture {
    dir: tempfile::TempDir,
    ddl: String,
    batch: SessionContext,
}

/// The Nexmark tables of `events` events as files, declared for streaming (`ddl`) and
/// registered with a batch DataFusion context.
async fn fixture(events: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SessionConfig::new();
    fungi_sql::flink_options(&mut config);
    let batch = SessionContext::new_with_config(config);
    for udf in fungi_sql::flink_functions() {
        batch.register_udf(udf);
    }
    for udaf in fungi_sql::flink_aggregates() {
        batch.register_udaf(udaf);
    }
    for (name, table) in [
        ("bid", NexmarkTable::Bid),
        ("person", NexmarkTable::Person),
        ("auction", NexmarkTable::Auction),
    ] {
        let path = dir.path().join(format!("{name}.json"));
        write_table(&path, table, events);
        batch
            .register_json(
                name,
                path.to_str().unwrap(),
                JsonReadOptions::default().schema(&table.schema()),
            )
            .await
            .unwrap();
    }
    Fixture {
        ddl: DDL.replace("DIR", dir.path().to_str().unwrap()),
        dir,
        batch,
    }
}

/// The query of the Nexmark example `examples/nexmark/q{n}.sql` (its INSERT's SELECT).
fn example_query(n: u32) -> String {
    let path = format!(
        "{}/../../examples/nexmark/q{n}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let insert = text.rfind("INSERT INTO").expect("an INSERT");
    let body = &text[insert..];
    let select = body.find('\n').expect("INSERT INTO name\nSELECT ...");
    body[select..].trim().trim_end_matches(';').to_string()
}

async fn check(f: &Fixture, parallelism: u32, stream_sql: &str, batch_sql: &str) {
    let mut session = SqlSession::default();
    session
        .execute(&format!("SET 'parallelism.default' = '{parallelism}'"))
        .await
        .unwrap();
    let streamed = select_final(&mut session, &format!("{}\n{stream_sql}", f.ddl)).await;
    let expected = batch_rows(&f.batch, batch_sql).await;
    assert!(
        !expected.is_empty(),
        "the oracle returned no rows for {batch_sql}"
    );
    if streamed != expected {
        let missing: Vec<&String> = expected
            .iter()
            .filter(|r| !streamed.contains(r))
            .take(5)
            .collect();
        let extra: Vec<&String> = streamed
            .iter()
            .filter(|r| !expected.contains(r))
            .take(5)
            .collect();
        panic!(
            "{stream_sql}\nstreamed {} rows, expected {}\nmissing: {missing:#?}\nunexpected: {extra:#?}",
            streamed.len(),
            expected.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_queries_match_batch() {
    let f = fixture(100_000).await;
    for (stream, batch) in [
        // q0
        (
            "SELECT auction, bidder, price, dateTime, extra FROM bid",
            "SELECT auction, bidder, price, dateTime, extra FROM bid",
        ),
        // q1 and q2
        (
            "SELECT auction, bidder, 0.908 * price AS price FROM bid",
            "SELECT auction, bidder, 0.908 * price AS price FROM bid",
        ),
        (
            "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
            "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        ),
        // CASE, casts and scalar functions (q14, q21, q22 style)
        (
            "SELECT CASE WHEN date_part('second', dateTime) < 30 THEN 'early' ELSE 'late' END, CAST(price AS DOUBLE) / 100, upper(channel), split_part(url, '/', 4), character_length(extra) - character_length(replace(extra, 'c', '')) FROM bid WHERE price > 1000000",
            "SELECT CASE WHEN date_part('second', dateTime) < 30 THEN 'early' ELSE 'late' END, CAST(price AS DOUBLE) / 100, upper(channel), split_part(url, '/', 4), character_length(extra) - character_length(replace(extra, 'c', '')) FROM bid WHERE price > 1000000",
        ),
    ] {
        check(&f, 2, stream, batch).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_aggregations_match_batch() {
    // 200 000 events: 20 s of event time, 184 000 bids.
    let f = fixture(200_000).await;
    // Exact aggregates only: approx_distinct's sketches hash with per-instance seeds.
    let aggs = "count(*), sum(price), min(price), max(price), avg(price), count(DISTINCT bidder), median(price)";
    // Tumbling windows of 1 s.
    check(
        &f,
        2,
        &format!("SELECT auction, window_start, window_end, {aggs} FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) GROUP BY auction, window_start, window_end"),
        &format!("SELECT auction, date_bin(INTERVAL '1' SECOND, dateTime, TIMESTAMP '1970-01-01') AS ws, date_bin(INTERVAL '1' SECOND, dateTime, TIMESTAMP '1970-01-01') + INTERVAL '1' SECOND, {aggs} FROM bid GROUP BY auction, ws"),
    )
    .await;
    // Sliding windows of 3 s every 1 s: the union of three shifted tumbling windows.
    let hop_batch = (0..3)
        .map(|k| format!(
            "SELECT channel, date_bin(INTERVAL '3' SECOND, dateTime, TIMESTAMP '1970-01-01 00:00:0{k}') AS ws, date_bin(INTERVAL '3' SECOND, dateTime, TIMESTAMP '1970-01-01 00:00:0{k}') + INTERVAL '3' SECOND AS we, count(*) AS n, max(price) AS top FROM bid GROUP BY channel, ws"
        ))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    check(
        &f,
        1,
        "SELECT channel, window_start, window_end, count(*), max(price) FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) WHERE channel IN ('Apple', 'Google') GROUP BY channel, window_start, window_end",
        &format!("SELECT * FROM ({hop_batch}) WHERE channel IN ('Apple', 'Google')"),
    )
    .await;
    // Cumulating windows: step 1 s up to 4 s.
    let cumulate_batch = (1..=4)
        .map(|j| format!(
            "SELECT date_bin(INTERVAL '4' SECOND, dateTime, TIMESTAMP '1970-01-01') AS ws, date_bin(INTERVAL '4' SECOND, dateTime, TIMESTAMP '1970-01-01') + INTERVAL '{j}' SECOND AS we, count(*) AS n, sum(price) AS total FROM bid WHERE dateTime < date_bin(INTERVAL '4' SECOND, dateTime, TIMESTAMP '1970-01-01') + INTERVAL '{j}' SECOND GROUP BY ws"
        ))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    check(
        &f,
        2,
        "SELECT window_start, window_end, count(*), sum(price) FROM TABLE(CUMULATE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND, INTERVAL '4' SECOND)) GROUP BY window_start, window_end",
        &cumulate_batch,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_windows_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clicks.csv");
    // user, ts (s): u1 sessions [0,12) [30,35); u2 [3,13) with gap 5 s.
    std::fs::write(
        &path,
        "u1,1970-01-01T00:00:00Z,1\nu2,1970-01-01T00:00:03Z,1\nu1,1970-01-01T00:00:07Z,2\nu1,1970-01-01T00:00:04Z,4\nu2,1970-01-01T00:00:08Z,8\nu1,1970-01-01T00:00:30Z,16\n",
    )
    .unwrap();
    let mut session = SqlSession::default();
    let rows = select(
        &mut session,
        &format!(
            "CREATE TABLE clicks (usr VARCHAR, ts TIMESTAMP(3), v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');
             SELECT usr, window_start, window_end, count(*), sum(v)
             FROM TABLE(SESSION(TABLE clicks PARTITION BY usr, DESCRIPTOR(ts), INTERVAL '5' SECOND))
             GROUP BY usr, window_start, window_end",
            path.display()
        ),
    )
    .await;
    assert_eq!(
        rows,
        vec![
            "u1 | 1970-01-01T00:00:00 | 1970-01-01T00:00:12 | 3 | 7",
            "u1 | 1970-01-01T00:00:30 | 1970-01-01T00:00:35 | 1 | 16",
            "u2 | 1970-01-01T00:00:03 | 1970-01-01T00:00:13 | 2 | 9",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_aggregation_converges_to_batch_result() {
    let f = fixture(100_000).await;
    let query = "SELECT channel, count(*), count(DISTINCT bidder), sum(price) FILTER (WHERE price > 1000), max(price) FROM bid WHERE channel LIKE 'channel-1%' OR channel = 'Apple' GROUP BY channel";
    let mut session = SqlSession::default();
    session
        .execute("SET 'parallelism.default' = '2'")
        .await
        .unwrap();
    let changes = select_in_order(&mut session, &format!("{}\n{query}", f.ddl)).await;
    assert!(
        changes.iter().any(|r| r.ends_with("| 1")),
        "some results were updated"
    );
    let streamed = apply_changelog(changes);
    let expected = batch_rows(&f.batch, query).await;
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn append_only_sinks_refuse_updating_queries() {
    let mut session = SqlSession::default();
    let err = session
        .execute_script(
            "CREATE TABLE bid WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000');
             CREATE TABLE out (channel VARCHAR, n BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'json');
             INSERT INTO out SELECT channel, count(*) FROM bid GROUP BY channel;",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("accepts only inserts") && err.contains("aggregates without a window"),
        "{err}"
    );
}

/// Sliding 10 s windows every 2 s, in batch: the union of five shifted tumbling windows.
fn hop_counts_batch() -> String {
    (0..5)
        .map(|k| format!(
            "SELECT auction, count(*) AS num, date_bin(INTERVAL '10' SECOND, dateTime, TIMESTAMP '1970-01-01 00:00:0{}') AS starttime, date_bin(INTERVAL '10' SECOND, dateTime, TIMESTAMP '1970-01-01 00:00:0{}') + INTERVAL '10' SECOND AS endtime FROM bid GROUP BY auction, starttime",
            k * 2, k * 2
        ))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_join_and_cascaded_window_match_batch() {
    // Nexmark q5 (hot items): a window aggregation, a window over its results, and a
    // window join of the two.
    let f = fixture(300_000).await;
    let stream = "SELECT AuctionBids.auction, AuctionBids.num
        FROM (
            SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end
        ) AS AuctionBids
        JOIN (
            SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
            FROM (
                SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                GROUP BY auction, window_start, window_end
            ) AS CountBids
            GROUP BY CountBids.starttime, CountBids.endtime
        ) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime AND AuctionBids.num >= MaxBids.maxn";
    let hop = hop_counts_batch();
    let batch = format!(
        "SELECT A.auction, A.num FROM ({hop}) A JOIN (SELECT max(num) AS maxn, starttime, endtime FROM ({hop}) C GROUP BY starttime, endtime) M
         ON A.starttime = M.starttime AND A.endtime = M.endtime AND A.num >= M.maxn"
    );
    check(&f, 2, stream, &batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_top_n_matches_batch() {
    let f = fixture(200_000).await;
    let tumble = "date_bin(INTERVAL '1' SECOND, dateTime, TIMESTAMP '1970-01-01')";
    // Top 3 auctions by bids per window (over a window aggregation).
    check(
        &f,
        2,
        "SELECT * FROM (
            SELECT window_start, window_end, auction, num,
                   ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY num DESC, auction) AS rownum
            FROM (SELECT window_start, window_end, auction, count(*) AS num
                  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
                  GROUP BY window_start, window_end, auction)
         ) WHERE rownum <= 3",
        &format!(
            "SELECT * FROM (
                SELECT ws, we, auction, num, ROW_NUMBER() OVER (PARTITION BY ws, we ORDER BY num DESC, auction) AS rownum
                FROM (SELECT {tumble} AS ws, {tumble} + INTERVAL '1' SECOND AS we, auction, count(*) AS num FROM bid GROUP BY ws, we, auction)
             ) WHERE rownum <= 3"
        ),
    )
    .await;
    // Top 2 bids per channel and window, straight on the window table function.
    check(
        &f,
        2,
        "SELECT * FROM (
            SELECT channel, price, auction, bidder, window_start, window_end,
                   ROW_NUMBER() OVER (PARTITION BY window_start, window_end, channel ORDER BY price DESC, auction, bidder) AS rownum
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
         ) WHERE rownum <= 2 AND channel IN ('Apple', 'Baidu')",
        &format!(
            "SELECT * FROM (
                SELECT channel, price, auction, bidder, {tumble} AS ws, {tumble} + INTERVAL '1' SECOND AS we,
                       ROW_NUMBER() OVER (PARTITION BY {tumble}, channel ORDER BY price DESC, auction, bidder) AS rownum
                FROM bid
             ) WHERE rownum <= 2 AND channel IN ('Apple', 'Baidu')"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_join_matches_batch() {
    // Nexmark q7 (highest bid): each 2 s window's maximum price, joined back to the bids
    // of that window by an interval join on time.
    let f = fixture(200_000).await;
    let stream = "SELECT B.auction, B.price, B.bidder, B.dateTime
        FROM bid B
        JOIN (
            SELECT MAX(price) AS maxprice, window_end AS dateTime
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
            GROUP BY window_start, window_end
        ) B1
        ON B.price = B1.maxprice
        WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '2' SECOND AND B1.dateTime";
    let batch = "SELECT B.auction, B.price, B.bidder, B.dateTime
        FROM bid B
        JOIN (
            SELECT MAX(price) AS maxprice, date_bin(INTERVAL '2' SECOND, dateTime, TIMESTAMP '1970-01-01') + INTERVAL '2' SECOND AS dateTime
            FROM bid GROUP BY date_bin(INTERVAL '2' SECOND, dateTime, TIMESTAMP '1970-01-01')
        ) B1
        ON B.price = B1.maxprice
        WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '2' SECOND AND B1.dateTime";
    check(&f, 2, stream, batch).await;
}

/// The Nexmark examples' own queries (`examples/nexmark/qN.sql`) against batch DataFusion.
mod nexmark {
    use super::*;

    /// Flink's DATE_FORMAT as DataFusion's to_char, for the batch side.
    fn batch_dialect(sql: &str) -> String {
        sql.replace(
            "DATE_FORMAT(dateTime, 'yyyy-MM-dd')",
            "to_char(dateTime, '%Y-%m-%d')",
        )
        .replace(
            "DATE_FORMAT(dateTime, 'HH:mm')",
            "to_char(dateTime, '%H:%M')",
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stateless_queries_match_batch() {
        let f = fixture(100_000).await;
        for n in [14, 21, 22] {
            let q = example_query(n);
            check(&f, 2, &q, &q).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daily_updating_aggregations_converge_to_batch_result() {
        let f = fixture(100_000).await;
        for n in [15, 16, 17] {
            let q = example_query(n);
            check(&f, 2, &q, &batch_dialect(&q)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn regular_joins_and_aggregations_over_them_converge_to_batch_result() {
        // q3 and q20: joins of tables; q4: an aggregation over an aggregation over a join
        // (retractions).
        let f = fixture(100_000).await;
        for n in [3, 20, 4] {
            let q = example_query(n);
            check(&f, 2, &q, &q).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn top_n_and_deduplication_converge_to_batch_result() {
        let f = fixture(100_000).await;
        // q9: the best bid per auction, over a join.
        let q = example_query(9);
        check(&f, 2, &q, &q).await;
        // q18: the last bid per bidder and auction. Several bids of a bidder on an auction
        // share a timestamp, and which of those is "last" depends on arrival order, so
        // compare the columns that do not.
        let q = format!(
            "SELECT auction, bidder, dateTime FROM ({})",
            example_query(18)
        );
        check(&f, 2, &q, &q).await;
        // q19: the ten best bids per auction, with the row number. Tie-breakers make the
        // batch numbering deterministic.
        let q = example_query(19).replace(
            "ORDER BY price DESC",
            "ORDER BY price DESC, dateTime, bidder",
        );
        check(&f, 2, &q, &q).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn window_join_of_people_and_auctions_matches_batch() {
        let f = fixture(100_000).await;
        let bin = "date_bin(INTERVAL '10' SECOND, dateTime, TIMESTAMP '1970-01-01')";
        let batch = format!(
            "SELECT P.id, P.name, P.starttime
             FROM (SELECT id, name, {bin} AS starttime FROM person GROUP BY id, name, {bin}) P
             JOIN (SELECT seller, {bin} AS starttime FROM auction GROUP BY seller, {bin}) A
             ON P.id = A.seller AND P.starttime = A.starttime"
        );
        check(&f, 2, &example_query(8), &batch).await;
    }

    /// Writes the side input `key,side-key` for `keys`, registers it with the batch
    /// oracle, and returns its streaming DDL.
    async fn side_input(f: &Fixture, keys: impl Iterator<Item = i64>) -> String {
        let side = f.dir.path().join("side_input.csv");
        let text: String = keys.map(|k| format!("{k},side-{k}\n")).collect();
        std::fs::write(&side, text).unwrap();
        let schema = arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("key", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("value", arrow::datatypes::DataType::Utf8, false),
        ]);
        f.batch
            .register_csv(
                "side_input",
                side.to_str().unwrap(),
                datafusion::prelude::CsvReadOptions::new()
                    .has_header(false)
                    .schema(&schema),
            )
            .await
            .unwrap();
        format!(
            "CREATE TABLE side_input (key BIGINT, `value` VARCHAR) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');",
            side.display()
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_join_matches_batch() {
        let f = fixture(100_000).await;
        let ddl = side_input(&f, 0..10_000).await;
        let stream = format!("{ddl}\n{}", example_query(13));
        let batch = "SELECT B.auction, B.bidder, B.price, B.dateTime, S.value
            FROM bid B JOIN side_input S ON B.auction % 10000 = S.key";
        check(&f, 2, &stream, batch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outer_joins_match_batch() {
        let f = fixture(100_000).await;
        // Sellers without auctions, and auctions of sellers without a person row.
        for join in ["LEFT", "RIGHT", "FULL"] {
            let q = format!(
                "SELECT P.id, P.name, A.id, A.category FROM person P {join} JOIN auction A
                 ON P.id = A.seller AND A.category <> 10"
            );
            check(&f, 2, &q, &q).await;
        }
        // A LEFT lookup join: the side input holds every other key.
        let ddl = side_input(&f, (0..10_000).step_by(2)).await;
        let stream = format!(
            "{ddl}
             SELECT B.auction, B.price, S.`value`
             FROM (SELECT *, PROCTIME() AS p_time FROM bid) B
             LEFT JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
             ON mod(B.auction, 10000) = S.key"
        );
        let batch = "SELECT B.auction, B.price, S.value
            FROM bid B LEFT JOIN side_input S ON B.auction % 10000 = S.key";
        check(&f, 2, &stream, batch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processing_time_windows_count_every_bid() {
        // q12's windows depend on the wall clock; their counts per bidder add up to the
        // bidder's bids, whichever windows the bids fell in.
        let f = fixture(100_000).await;
        let ddl = format!(
            "CREATE TABLE bid_p (
                auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
                dateTime TIMESTAMP(3), extra VARCHAR, p_time AS PROCTIME(),
                WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
            ) WITH ('connector' = 'filesystem', 'path' = '{}/bid.json', 'format' = 'json');",
            f.dir.path().display()
        );
        let q12 = example_query(12).replace(
            "FROM TABLE(TUMBLE(TABLE bid,",
            "FROM TABLE(TUMBLE(TABLE bid_p,",
        );
        let stream = format!("{ddl}\nSELECT bidder, sum(bid_count) FROM ({q12}) GROUP BY bidder");
        check(
            &f,
            2,
            &stream,
            "SELECT bidder, count(*) FROM bid GROUP BY bidder",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bids_are_dropped_and_counted() {
    // Windowed counts over a file with late bids: each window's count is the batch count
    // minus that window's late bids, and the late bids add up to the late-record counter.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bid.json");
    write_table_with(&path, NexmarkTable::Bid, 300_000, Some(40));
    late_bids_are_counted_at(&path, 1).await;
    // Two subtasks, each reading every other bid: each pre-aggregates its rows, and the
    // window counts the late ones among them.
    let text = std::fs::read_to_string(&path).unwrap();
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    for part in 0..2 {
        let lines: String = text
            .lines()
            .skip(part)
            .step_by(2)
            .flat_map(|l| [l, "\n"])
            .collect();
        std::fs::write(parts.join(format!("bid-{part}.json")), lines).unwrap();
    }
    late_bids_are_counted_at(&parts, 2).await;
}

/// Counts per second of the bids at `path` (a file or a directory) at `parallelism`:
/// every bid missing from its window is counted as late.
async fn late_bids_are_counted_at(path: &Path, parallelism: u32) {
    let mut config = SessionConfig::new();
    fungi_sql::flink_options(&mut config);
    let batch = SessionContext::new_with_config(config);
    batch
        .register_json(
            "bid",
            path.to_str().unwrap(),
            JsonReadOptions::default().schema(&NexmarkTable::Bid.schema()),
        )
        .await
        .unwrap();
    let ddl = DDL
        .split_inclusive(';')
        .next()
        .unwrap()
        .replace("DIR/bid.json", path.to_str().unwrap());
    let mut session = SqlSession::default();
    let mut outcomes = session
        .execute_script(&format!(
            "SET 'parallelism.default' = '{parallelism}';\n{ddl}\nSELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND)) GROUP BY window_start, window_end"
        ))
        .await
        .unwrap();
    let Some(fungi_sql::Outcome::Query(query)) = outcomes.pop() else {
        panic!("a query")
    };
    let (sink, collected) = fungi_execution::operators::CollectSink::new();
    let summary = fungi_execution::executor::LocalExecutor::new()
        .execute(query.with_sink(sink.factory(), "collect"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    let late: u64 = summary.operators.iter().map(|o| o.late_records).sum();
    let parse = |rows: Vec<String>| -> std::collections::BTreeMap<String, u64> {
        rows.into_iter()
            .map(|r| {
                let (w, n) = r.split_once(" | ").unwrap();
                (w.to_string(), n.parse().unwrap())
            })
            .collect()
    };
    let streamed = parse(crate::rows(&collected.batches()));
    let expected = parse(
        batch_rows(
            &batch,
            "SELECT date_bin(INTERVAL '1' SECOND, dateTime, TIMESTAMP '1970-01-01'), count(*) FROM bid GROUP BY 1",
        )
        .await,
    );
    assert!(
        late > 1000,
        "the file has late bids ({late} counted at {parallelism})"
    );
    let mut missing = 0;
    let mut exact = 0;
    for (window, &n) in &expected {
        let got = streamed.get(window).copied().unwrap_or(0);
        assert!(got <= n, "window {window}: {got} streamed, {n} in batch");
        missing += n - got;
        exact += usize::from(got == n);
    }
    assert_eq!(
        missing, late,
        "every dropped bid is counted as late at {parallelism}"
    );
    assert!(exact > expected.len() / 2, "most windows are complete");
}
