-- Nexmark q16: Channel Statistics Report
-- Daily counts per channel and minute.
--
-- Run: fungi run --local examples/nexmark/q16.sql
-- An aggregation without a window: the result is a changelog (+I, -U, +U), as in Flink;
-- the sink must accept updates (blackhole and stdout do).
-- The tables come from Fungi's built-in Nexmark generator (Flink's Nexmark suite reads
-- them from its `nexmark` connector through views with the same columns).
-- Flink's DATE_FORMAT(ts, 'yyyy-MM-dd') is rewritten to DataFusion's to_char(ts, '%Y-%m-%d').

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

CREATE TABLE nexmark_q16 (channel VARCHAR, `day` VARCHAR, `minute` VARCHAR, total_bids BIGINT, total_bidders BIGINT, total_auctions BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q16
SELECT channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, max(DATE_FORMAT(dateTime, 'HH:mm')) AS `minute`,
       count(*) AS total_bids, count(DISTINCT bidder) AS total_bidders, count(DISTINCT auction) AS total_auctions
FROM bid
GROUP BY channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd');
