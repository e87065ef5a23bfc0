"""Fungi vs Apache Flink on the same Nexmark files, same machine, same parallelism.

Both engines run the Nexmark SQL files of examples/nexmark/ with their `nexmark`
sources replaced by filesystem JSON sources over files written by
`fungi nexmark generate` (the same deterministic events), into blackhole sinks. Runs
alternate (Flink, Fungi, Flink, Fungi, ... per query); medians over the runs.

Times: Flink, from submitting the INSERT to its end (includes starting the local
mini-cluster; `flink startup` below is the same for an empty input, measured in the same
session); Fungi, the job time `fungi run` reports (after planning). Events/s = all
events generated (persons + auctions + bids) / time, as the Nexmark suite counts them.

Usage (see run.sh): python compare.py --fungi BIN --python FLINK_PYTHON --events N
    [--parallelism P] [--runs R] [--queries q0,q1,...] [--data DIR] [--json OUT]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

# Queries the SQL layer runs; the others and why.
QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q14", "q15",
           "q16", "q17", "q18", "q19", "q20", "q21", "q22"]
# Queries of bench/flink/queries/ over the same tables (run them with --queries).
EXTRA = ["over_range", "over_running"]
SKIPPED = {
    "q6": "OVER aggregation over a changelog: Flink refuses it too",
    "q10": "writes partitioned files, not a blackhole (a sink test, not a throughput one)",
    "q12": "processing-time windows: over a bounded file they measure the wall clock",
    "q13": "lookup join against a side-input file (examples/data/side_input.csv), not Nexmark data",
}

SOURCE = re.compile(r"WITH \('connector' = 'nexmark', 'table' = '(\w+)'[^)]*\)")


def script_for(engine, query, data):
    # A Nexmark query, or one of this directory's own queries over the same tables.
    path = os.path.join(ROOT, "examples", "nexmark", f"{query}.sql")
    if not os.path.exists(path):
        path = os.path.join(HERE, "queries", f"{query}.sql")
    text = open(path).read()

    def source(m):
        path = os.path.join(data, f"{m.group(1)}.json")
        if engine == "flink":
            return (f"WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json', "
                    f"'json.timestamp-format.standard' = 'ISO-8601')")
        return f"WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')"

    text = SOURCE.sub(source, text)
    if engine == "flink":
        # DATETIME is reserved in Flink's parser; Flink's Nexmark suite quotes it too.
        text = re.sub(r"\bdateTime\b", "`dateTime`", text)
    return text


def generator_scripts(work, events):
    """q0 on each engine's own generator (different sources, same row count): Fungi's
    Nexmark generator and Flink's `datagen` (random values, strings of 100 chars)."""
    bids = events * 46 // 50
    q0 = open(os.path.join(ROOT, "examples", "nexmark", "q0.sql")).read()
    fungi = SOURCE.sub(f"WITH ('connector' = 'nexmark', 'table' = 'bid', 'events' = '{events}')", q0)
    flink = re.sub(r"\bdateTime\b", "`dateTime`", SOURCE.sub(
        f"WITH ('connector' = 'datagen', 'number-of-rows' = '{bids}', "
        "'rows-per-second' = '1000000000')", q0))
    paths = {}
    for engine, text in (("flink", flink), ("fungi", fungi)):
        paths[engine] = os.path.join(work, f"q0-generator-{engine}.sql")
        with open(paths[engine], "w") as f:
            f.write(text)
    return paths, bids


def run_flink(args, script):
    out = subprocess.run(
        [args.python, os.path.join(HERE, "flink_job.py"), script, str(args.parallelism)],
        capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["seconds"]
    raise RuntimeError(f"flink failed on {script}:\n{out.stderr[-3000:]}")


def run_fungi(args, script):
    out = subprocess.run(
        [args.fungi, "run", "--local", "--no-progress", "--parallelism", str(args.parallelism),
         script], capture_output=True, text=True)
    m = re.search(r"job finished in ([0-9.]+)s", out.stderr)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"fungi failed on {script}:\n{out.stderr[-3000:]}")
    return float(m.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fungi", required=True)
    p.add_argument("--python", required=True, help="python of the Flink venv")
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--queries", default=",".join(QUERIES),
                   help=f"comma-separated; also {', '.join(EXTRA)} (bench/flink/queries)")
    p.add_argument("--data", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--no-generators", action="store_true",
                   help="skip q0 on each engine's own generator")
    p.add_argument("--plot", default=None, help="also write the throughput chart (SVG) here")
    p.add_argument("--update-doc", default=None,
                   help="a markdown file whose flink-comparison:pP markers get the table")
    args = p.parse_args()
    data = args.data or os.path.join(tempfile.gettempdir(), f"fungi-nexmark-{args.events}")
    if not os.path.exists(os.path.join(data, "bid.json")):
        subprocess.run([args.fungi, "nexmark", "generate", "--events", str(args.events),
                        "--out", data], check=True)
    work = tempfile.mkdtemp(prefix="fungi-vs-flink-")
    queries = [q for q in args.queries.split(",") if q]
    # Flink's fixed cost: the same job machinery over an empty file.
    empty = os.path.join(work, "empty.json")
    open(empty, "w").close()
    startup_sql = os.path.join(work, "startup.sql")
    with open(startup_sql, "w") as f:
        f.write(f"CREATE TABLE t (a BIGINT) WITH ('connector' = 'filesystem', 'path' = '{empty}', "
                "'format' = 'json');\nCREATE TABLE s (a BIGINT) WITH ('connector' = 'blackhole');\n"
                "INSERT INTO s SELECT a FROM t;\n")
    times = {q: {"flink": [], "fungi": []} for q in queries}
    failed = {}
    startup = []
    for r in range(args.runs):
        startup.append(run_flink(args, startup_sql))
        for q in list(queries):
            scripts = {}
            for engine in ("flink", "fungi"):
                path = os.path.join(work, f"{q}-{engine}.sql")
                with open(path, "w") as f:
                    f.write(script_for(engine, q, data))
                scripts[engine] = path
            try:
                times[q]["flink"].append(run_flink(args, scripts["flink"]))
                times[q]["fungi"].append(run_fungi(args, scripts["fungi"]))
            except RuntimeError as e:
                failed[q] = str(e).splitlines()[-1][:300]
                print(f"{q} failed: {failed[q]}", file=sys.stderr, flush=True)
                queries.remove(q)
                continue
            print(f"run {r + 1}/{args.runs} {q}: flink {times[q]['flink'][-1]:.2f}s "
                  f"fungi {times[q]['fungi'][-1]:.2f}s", file=sys.stderr, flush=True)
    generator = {"flink": [], "fungi": []}
    if not args.no_generators:
        paths, bids = generator_scripts(work, args.events)
        for r in range(args.runs):
            generator["flink"].append(run_flink(args, paths["flink"]))
            generator["fungi"].append(run_fungi(args, paths["fungi"]))
            print(f"run {r + 1}/{args.runs} q0 on generators: flink {generator['flink'][-1]:.2f}s "
                  f"fungi {generator['fungi'][-1]:.2f}s", file=sys.stderr, flush=True)
    flink_startup = statistics.median(startup)
    rows = []
    for q in queries:
        fl, fu = statistics.median(times[q]["flink"]), statistics.median(times[q]["fungi"])
        rows.append({
            "query": q,
            "flink_seconds": fl,
            "fungi_seconds": fu,
            "flink_events_per_second": args.events / fl,
            "flink_events_per_second_net_of_startup": args.events / max(fl - flink_startup, 1e-9),
            "fungi_events_per_second": args.events / fu,
            "ratio": fl / fu,
            "ratio_net_of_flink_startup": max(fl - flink_startup, 1e-9) / fu,
        })
    result = {
        "events": args.events, "parallelism": args.parallelism, "runs": args.runs,
        "flink_startup_seconds": flink_startup, "queries": rows, "skipped": SKIPPED,
        "failed": failed,
        "date": time.strftime("%Y-%m-%d"),
    }
    lines = [f"events {args.events}, parallelism {args.parallelism}, medians of {args.runs} "
             f"alternating runs; Flink startup (empty input) {flink_startup:.2f}s", "",
             "| query | Flink | Fungi | Flink ev/s | Fungi ev/s | Fungi/Flink | "
             "Fungi/Flink, Flink net of startup |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['query']} | {r['flink_seconds']:.2f} s | {r['fungi_seconds']:.2f} s | "
            f"{r['flink_events_per_second'] / 1e6:.2f} M | "
            f"{r['fungi_events_per_second'] / 1e6:.2f} M | {r['ratio']:.1f}x | "
            f"{r['ratio_net_of_flink_startup']:.1f}x |")
    if generator["flink"]:
        gf, gu = statistics.median(generator["flink"]), statistics.median(generator["fungi"])
        lines += ["", "Different sources, same number of bids "
                  f"({args.events * 46 // 50}): q0 on Flink's `datagen` vs Fungi's Nexmark "
                  "generator:", "",
                  "| query | Flink (datagen) | Fungi (nexmark generator) | Flink bids/s | "
                  "Fungi bids/s | Fungi/Flink | Fungi/Flink, Flink net of startup |",
                  "|---|---:|---:|---:|---:|---:|---:|",
                  f"| q0 | {gf:.2f} s | {gu:.2f} s | {args.events * 46 / 50 / gf / 1e6:.2f} M | "
                  f"{args.events * 46 / 50 / gu / 1e6:.2f} M | {gf / gu:.1f}x | "
                  f"{max(gf - flink_startup, 1e-9) / gu:.1f}x |"]
        result["generators"] = {"flink_seconds": gf, "fungi_seconds": gu}
    lines.append("")
    for q, why in SKIPPED.items():
        lines.append(f"- {q}: not compared ({why})")
    for q, why in failed.items():
        lines.append(f"- {q}: failed: {why}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    table = "\n".join(lines)
    print(table)
    if args.plot:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import plot
        with open(args.plot, "w") as f:
            f.write(plot.svg(result))
    if args.update_doc:
        doc = open(args.update_doc).read()
        start = doc.index(f"<!-- flink-comparison:p{args.parallelism}:start")
        start = doc.index("\n", start) + 1
        end = doc.index(f"<!-- flink-comparison:p{args.parallelism}:end -->")
        with open(args.update_doc, "w") as f:
            f.write(doc[:start] + table + "\n" + doc[end:])

if __name__ == "__main__":
    main()
