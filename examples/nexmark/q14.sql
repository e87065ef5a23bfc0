-- Nexmark q14: Calculation
-- Converts prices, classifies bid times and counts characters of the extra field.
--
-- Run: fungi run --local examples/nexmark/q14.sql
-- The tables come from Fungi's built-in Nexmark generator (Flink's Nexmark suite reads
-- them from its `nexmark` connector through views with the same columns).
-- Adapted to the dialect: Flink's HOUR(dateTime) is EXTRACT(HOUR FROM dateTime); the count_char(extra, 'c') UDF is written as length(extra) - length(replace(extra, 'c', '')) until plugin UDFs land.

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

CREATE TABLE nexmark_q14 (auction BIGINT, bidder BIGINT, price DOUBLE, bidTimeType VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR, c_counts BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q14
SELECT auction, bidder, 0.908 * price AS price,
    CASE
        WHEN EXTRACT(HOUR FROM dateTime) >= 8 AND EXTRACT(HOUR FROM dateTime) <= 18 THEN 'dayTime'
        WHEN EXTRACT(HOUR FROM dateTime) <= 6 OR EXTRACT(HOUR FROM dateTime) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    dateTime, extra,
    character_length(extra) - character_length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
