"""Tool call latency of Fungi's MCP server, with the official Python MCP client.

Usage: python latency.py SERVER_URL KEY JOB_ID [CALLS]

Calls job_details (of JOB_ID) and explain_sql (a windowed Nexmark aggregation) CALLS
times each over streamable HTTP and prints p50/p99 per tool in milliseconds as JSON.
"""

import asyncio
import json
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

SQL = """CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR,
    url VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR,
    WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND)
  WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '1000');
CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime),
  INTERVAL '10' SECOND)) GROUP BY auction, window_start, window_end;"""


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def main():
    url, key, job = sys.argv[1:4]
    calls = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    out = {}
    async with client:
        async with streamable_http_client(f"{url}/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for tool, args in [("job_details", {"job_id": job}), ("explain_sql", {"sql": SQL})]:
                    times = []
                    for _ in range(calls):
                        start = time.perf_counter()
                        r = await session.call_tool(tool, args)
                        times.append((time.perf_counter() - start) * 1000)
                        if r.is_error:
                            raise SystemExit(f"{tool}: {r.content}")
                    out[tool] = {"calls": calls, "p50_ms": round(percentile(times, 0.5), 2),
                                 "p99_ms": round(percentile(times, 0.99), 2)}
    print(json.dumps(out))


asyncio.run(main())
