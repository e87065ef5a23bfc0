"""Runs the Flink side of the differential suite in one JVM (PyFlink's local
mini-cluster): reads jobs as JSON from argv[1], writes one JSON line per job to argv[2].

A job is {"id", "statements": [DDL...], "query": SELECT, "parallelism"}. Its result is
{"id", "columns", "rows": [[kind, value...]...]} or {"id", "error"}. Values are made
JSON-safe with tags that run.py reads the same way for both engines: timestamps as
"TS:yyyy-MM-dd HH:mm:ss.SSS", dates as "yyyy-MM-dd", times as "T:HH:mm:ss".
Watermarks follow every record (`pipeline.auto-watermark-interval` 0), so which rows are
late depends on the data alone, not on timing.
"""

import datetime
import decimal
import json
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment


def value(v):
    if isinstance(v, datetime.datetime):
        return "TS:" + v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(v, datetime.date):
        # As Fungi's JSON writes a DATE (so a DATE and a string of it compare equal).
        return v.isoformat()
    if isinstance(v, datetime.time):
        return "T:" + v.strftime("%H:%M:%S")
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray)):
        # As Fungi's JSON writes BYTES: lower-case hex.
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): value(x) for k, x in v.items()}
    return v


KINDS = {"INSERT": "+I", "UPDATE_BEFORE": "-U", "UPDATE_AFTER": "+U", "DELETE": "-D"}


def run(job):
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(job["parallelism"]))
    conf.set("table.exec.resource.default-parallelism", str(job["parallelism"]))
    conf.set("pipeline.auto-watermark-interval", "0")
    conf.set("table.local-time-zone", "UTC")
    for s in job["statements"]:
        env.execute_sql(s)
    table = env.sql_query(job["query"])
    columns = table.get_schema().get_field_names()
    rows = []
    with table.execute().collect() as results:
        for r in results:
            kind = KINDS.get(str(r.get_row_kind()).split(".")[-1], str(r.get_row_kind()))
            rows.append([kind] + [value(x) for x in r])
    return {"id": job["id"], "columns": columns, "rows": rows}


def error_text(e):
    msg = str(e)
    # Java exceptions arrive with a long stack: keep the cause lines.
    lines = [line for line in msg.splitlines() if "Exception" in line or "rror" in line]
    return " | ".join(lines[:4])[:800] or msg[:800]


def run_with_retry(job):
    """Runs a job, and once more in a fresh table environment when the first attempt
    fails. Flink's planner keeps its metadata provider in a thread-local of the Java
    thread that created the environment, and Py4J now and then serves a later call on
    another thread of its pool, where planning fails with `NullPointerException:
    metadataHandlerProvider` (about one job in 150). A failure of the query itself fails
    the second attempt the same way, so it is still reported."""
    try:
        return run(job)
    except Exception as first:  # noqa: BLE001 - every failure is a result to report
        try:
            result = run(job)
        except Exception as e:  # noqa: BLE001
            return {"id": job["id"], "error": error_text(e)}
        result["retried_after"] = error_text(first)
        return result


def main():
    jobs = json.load(open(sys.argv[1]))
    with open(sys.argv[2], "w") as out:
        for job in jobs:
            result = run_with_retry(job)
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            out.flush()
            print(f"flink: {job['id']}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
