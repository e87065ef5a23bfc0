-- Not a Nexmark query: each bid with the running total and average price of its bidder
-- (an OVER aggregation from UNBOUNDED PRECEDING), over the same bid table. compare.py
-- runs it beside the Nexmark queries.

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

CREATE TABLE over_running (bidder BIGINT, price BIGINT, total BIGINT, mean BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO over_running
SELECT bidder, price,
       SUM(price) OVER (PARTITION BY bidder ORDER BY dateTime),
       AVG(price) OVER (PARTITION BY bidder ORDER BY dateTime)
FROM bid;
