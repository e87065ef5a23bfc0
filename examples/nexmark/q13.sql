-- Nexmark q13: Bounded Side Input Join
-- Joins each bid with a static side input.
--
-- Run: fungi run --local examples/nexmark/q13.sql   (from the repository root: the side
-- input is examples/data/side_input.csv, keys 0-9999)
-- A lookup join: the side table is read whole first; bids are looked up in it and not
-- kept. PROCTIME() is the processing-time attribute Flink's syntax asks for.
-- The tables come from Fungi's built-in Nexmark generator (Flink's Nexmark suite reads
-- them from its `nexmark` connector through views with the same columns).

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

CREATE TABLE side_input (
    key BIGINT,
    `value` VARCHAR
) WITH ('connector' = 'filesystem', 'path' = 'examples/data/side_input.csv', 'format' = 'csv');

CREATE TABLE nexmark_q13 (auction BIGINT, bidder BIGINT, price BIGINT, dateTime TIMESTAMP(3), `value` VARCHAR)
WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q13
SELECT B.auction, B.bidder, B.price, B.dateTime, S.`value`
FROM (SELECT *, PROCTIME() AS p_time FROM bid) B
JOIN side_input FOR SYSTEM_TIME AS OF B.p_time AS S
ON mod(B.auction, 10000) = S.key;
