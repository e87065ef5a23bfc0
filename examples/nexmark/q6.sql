-- Nexmark q6: Average Selling Price by Seller
-- Each seller's average selling price over their last 10 closed auctions.
--
-- NOT RUNNABLE YET: needs an OVER aggregation (AVG(...) OVER (... ROWS BETWEEN 10 PRECEDING
-- AND CURRENT ROW)) over an updating result: each auction's final price changes as bids
-- arrive. Flink refuses this query too. `fungi run` refuses it at planning and says why.
-- The tables come from Fungi's built-in Nexmark generator (Flink's Nexmark suite reads
-- them from its `nexmark` connector through views with the same columns).

CREATE TABLE auction (
    id BIGINT,
    itemName VARCHAR,
    description VARCHAR,
    initialBid BIGINT,
    reserve BIGINT,
    dateTime TIMESTAMP(3),
    expires TIMESTAMP(3),
    seller BIGINT,
    category BIGINT,
    extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'table' = 'auction', 'events' = '1000000');

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

CREATE TABLE nexmark_q6 (seller VARCHAR, avg_price BIGINT)
WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q6
SELECT Q.seller, AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.dateTime ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
    SELECT MAX(B.price) AS final, A.seller, MAX(B.dateTime) AS dateTime
    FROM auction AS A, bid AS B
    WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
    GROUP BY A.id, A.seller
) AS Q;
