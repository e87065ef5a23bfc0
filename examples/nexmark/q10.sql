-- Nexmark q10: Log to File System
-- Writes every bid to files partitioned by day and minute.
--
-- Run: fungi run --local examples/nexmark/q10.sql
-- The tables come from Fungi's built-in Nexmark generator (Flink's Nexmark suite reads
-- them from its `nexmark` connector through views with the same columns).
-- Adapted to the dialect: Flink's DATE_FORMAT(dateTime, 'yyyy-MM-dd') is DataFusion's to_char(dateTime, '%Y-%m-%d'); the sink is not partitioned by dt/hm yet (PARTITIONED BY), and writes to out/nexmark_q10/.

CREATE TABLE bid (
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel VARCHAR,
    url VARCHAR,
    dateTime TIMESTAMP(3),
    extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000000');

CREATE TABLE nexmark_q10 (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), extra VARCHAR, dt VARCHAR, hm VARCHAR)
WITH ('connector' = 'filesystem', 'path' = 'out/nexmark_q10', 'format' = 'json');

INSERT INTO nexmark_q10
SELECT auction, bidder, price, dateTime, extra, to_char(dateTime, '%Y-%m-%d'), to_char(dateTime, '%H:%M')
FROM bid;
