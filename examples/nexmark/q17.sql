-- Nexmark q17: Auction Statistics Report
-- Daily bid statistics per auction.
--
-- Run: fungi run --local examples/nexmark/q17.sql
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

CREATE TABLE nexmark_q17 (auction BIGINT, `day` VARCHAR, total_bids BIGINT, min_price BIGINT, max_price BIGINT, avg_price BIGINT, sum_price BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q17
SELECT auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, count(*) AS total_bids,
       min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price
FROM bid
GROUP BY auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd');
