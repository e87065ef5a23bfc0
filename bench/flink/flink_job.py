"""Runs one Flink SQL script (DDL + one INSERT) on a local mini-cluster and prints the
wall time of the INSERT job as JSON: {"seconds": ...}.

Usage: python flink_job.py SCRIPT.sql PARALLELISM [JAR,...]
(connector jars the job needs, such as Flink's SQL Kafka connector)
"""

import json
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment


def statements(text):
    """The script's statements (split on ';' outside quotes, comments dropped)."""
    out, cur, quote = [], [], False
    for line in text.splitlines():
        if not quote and line.strip().startswith("--"):
            continue
        for ch in line:
            if ch == "'":
                quote = not quote
            if ch == ";" and not quote:
                out.append("".join(cur).strip())
                cur = []
            else:
                cur.append(ch)
        cur.append("\n")
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [s for s in out if s]


def main():
    script, parallelism = sys.argv[1], sys.argv[2]
    jars = [j for j in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if j]
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    if jars:
        conf.set("pipeline.jars", ";".join("file://" + j for j in jars))
    conf.set("parallelism.default", parallelism)
    conf.set("table.exec.resource.default-parallelism", parallelism)
    conf.set("pipeline.object-reuse", "true")
    inserts = []
    for stmt in statements(open(script).read()):
        if stmt.upper().startswith("INSERT"):
            inserts.append(stmt)
        else:
            env.execute_sql(stmt)
    if len(inserts) != 1:
        raise SystemExit(f"{script}: expected one INSERT, found {len(inserts)}")
    start = time.perf_counter()
    env.execute_sql(inserts[0]).wait()
    print(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
