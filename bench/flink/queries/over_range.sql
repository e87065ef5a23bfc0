-- Not a Nexmark query: each bid with the number of bids and the highest price of its
-- auction in the 10 seconds before it (an OVER aggregation on a RANGE frame), over the
-- same bid table. compare.py runs it beside the Nexmark queries.

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

CREATE TABLE over_range (auction BIGINT, price BIGINT, bids BIGINT, top BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO over_range
SELECT auction, price,
       COUNT(*) OVER w,
       MAX(price) OVER w
FROM bid
WINDOW w AS (PARTITION BY auction ORDER BY dateTime
             RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW);
