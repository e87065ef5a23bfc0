#!/usr/bin/env bash
# Prints the windowed Nexmark job the cluster benchmarks run: bids counted per auction
# in 2 s tumbling windows at parallelism 2, checkpoints every second into DIR/checkpoints,
# committed output in DIR/out.  Usage: scripts/windowed-job.sh DIR EVENTS RATE
set -euo pipefail
dir=$1 events=$2 rate=$3
cat <<SQL
SET 'execution.checkpointing.interval' = '1s';
SET 'execution.checkpointing.dir' = '$dir/checkpoints';
SET 'parallelism.default' = '2';
SET 'restart-strategy.type' = 'fixed-delay';
SET 'restart-strategy.fixed-delay.attempts' = '3';
SET 'restart-strategy.fixed-delay.delay' = '100ms';
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
    url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '1' SECOND)
WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '$events',
      'rate-limit' = '$rate', 'base-time' = '0');
CREATE TABLE results (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
WITH ('connector' = 'filesystem', 'path' = '$dir/out', 'format' = 'csv');
INSERT INTO results
SELECT auction, window_start, COUNT(*), MAX(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND))
GROUP BY auction, window_start, window_end;
SQL
