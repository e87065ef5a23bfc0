"""The differential suite: each case's SQL on Fungi and on Apache Flink, same data,
results compared as multisets (changelogs applied).

Usage: python run.py --fungi BIN --flink-python PY [--scale small|large]
                     [--cases GLOB] [--parallelism 1,4] [--json OUT]
                     [--flink-runners N] [--keep]

A case is one TOML file in cases/ (see README.md). Exit status 1 when a case ends
other than it says: results differ without a recorded `difference`, a recorded
difference no longer holds, or an engine fails where the case expects an answer.
"""

import argparse
import collections
import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import datagen  # noqa: E402

TABLES = {
    "events": "k INT, id BIGINT, v BIGINT, price DOUBLE, name STRING, ts TIMESTAMP(3)",
    "other": "k INT, w BIGINT, label STRING, ts TIMESTAMP(3)",
}
WATERMARK = "WATERMARK FOR ts AS ts - INTERVAL '2' SECOND"
ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?$")


def ddl(engine, paths):
    out = []
    for name, columns in TABLES.items():
        options = f"'connector' = 'filesystem', 'path' = '{paths[name]}', 'format' = 'json'"
        if engine == "flink":
            options += ", 'json.timestamp-format.standard' = 'ISO-8601'"
        out.append(f"CREATE TABLE {name} ({columns}, {WATERMARK}) WITH ({options})")
    return out


def load_cases(pattern):
    cases = []
    for path in sorted(glob.glob(os.path.join(HERE, "cases", pattern + ".toml"))):
        with open(path, "rb") as f:
            case = tomllib.load(f)
        case["name"] = os.path.splitext(os.path.basename(path))[0]
        if "query" not in case:
            raise SystemExit(f"{path}: a case needs a query")
        cases.append(case)
    return cases


def norm(v):
    """One form for a value from either engine."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        return float(f"{v:.9g}")
    if isinstance(v, str):
        m = ISO.match(v)
        if m:
            frac = (m.group(3) or "").ljust(3, "0")[:3]
            return f"TS:{m.group(1)} {m.group(2)}.{frac}"
        return v
    if isinstance(v, list):
        return tuple(norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, norm(x)) for k, x in v.items()))
    return v


def multiset(rows):
    """Applies a changelog: [kind, values...] rows to counts of value tuples."""
    counts = collections.Counter()
    for kind, *values in rows:
        key = tuple(norm(v) for v in values)
        counts[key] += -1 if kind in ("-U", "-D") else 1
    return {k: c for k, c in counts.items() if c != 0}


def run_fungi(args, case, statements, parallelism, work):
    script = os.path.join(work, f"fungi-p{parallelism}.sql")
    with open(script, "w") as f:
        for s in statements:
            f.write(s + ";\n")
        f.write(case.get("fungi_query", case["query"]).strip().rstrip(";") + ";\n")
    try:
        out = subprocess.run(
            [args.fungi, "run", "--local", "--no-progress", "--parallelism", str(parallelism),
             script], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 180 s"}
    if out.returncode != 0:
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        return {"error": " | ".join(lines[-3:])[:800]}
    rows = []
    for line in out.stdout.splitlines():
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        kind = obj.pop("op", "+I")
        rows.append((kind, obj))
    return {"rows": rows}


def fungi_rows(result, columns):
    """Fungi's JSON objects as [kind, values...] in Flink's column order (NULLs are
    left out of the objects); None when Fungi named its columns differently."""
    rows = []
    for kind, obj in result["rows"]:
        if not set(obj) <= set(columns):
            return None, sorted(set(obj) - set(columns))
        rows.append([kind] + [obj.get(c) for c in columns])
    return rows, []


def sample(d, n=4):
    return [f"{c:+d} x {k}" for k, c in list(sorted(d.items(), key=str))[:n]]


def judge(case, flink, fungi):
    """(status, ok, detail) for one case at one parallelism."""
    expect_error = case.get("fungi_error")
    if "error" in fungi:
        if expect_error and expect_error.lower() in fungi["error"].lower():
            return "refused as recorded", True, fungi["error"][:200]
        return "fungi error", False, fungi["error"]
    if expect_error:
        return "fungi answered, refusal recorded", False, expect_error
    if "error" in flink:
        return "flink error", False, flink["error"]
    rows, extra = fungi_rows(fungi, flink["columns"])
    if rows is None:
        return "column names differ", False, f"fungi has {extra}, flink {flink['columns']}"
    a, b = multiset(flink["rows"]), multiset(rows)
    only_flink = {k: c - b.get(k, 0) for k, c in a.items() if c != b.get(k, 0)}
    only_fungi = {k: c - a.get(k, 0) for k, c in b.items() if c != a.get(k, 0)}
    same = not only_flink and not only_fungi
    detail = (f"{sum(a.values())} rows" if same else
              f"flink-only {sample(only_flink)}; fungi-only {sample(only_fungi)}")
    if case.get("difference"):
        if same:
            return "recorded difference no longer holds", False, case["difference"]
        return "differs as recorded", True, case["difference"]
    if case.get("known_defect"):
        if same:
            return "known defect is fixed: drop known_defect", False, case["known_defect"]
        return "known defect", True, case["known_defect"]
    return ("match", True, detail) if same else ("MISMATCH", False, detail)


# Jobs per Flink runner process. One JVM slows down with every job it runs (a PyFlink
# table environment and its mini-cluster are not fully released: measured 1.9 s a job
# for the first 40, 4.9 s by the 80th), so runners are restarted after this many jobs.
JOBS_PER_RUNNER = 20


def run_flink(args, jobs, work):
    """Runs the jobs on Flink in fresh runner processes of JOBS_PER_RUNNER jobs, as many
    at once as --flink-runners says; returns each job's result by id."""
    chunks = [jobs[i:i + JOBS_PER_RUNNER] for i in range(0, len(jobs), JOBS_PER_RUNNER)]

    def run_chunk(n_chunk):
        n, chunk = n_chunk
        jobs_file = os.path.join(work, f"jobs-{n}.json")
        flink_file = os.path.join(work, f"flink-{n}.jsonl")
        with open(jobs_file, "w") as f:
            json.dump(chunk, f)
        subprocess.run([args.flink_python, os.path.join(HERE, "flink_runner.py"), jobs_file,
                        flink_file], check=True, stdout=subprocess.DEVNULL,
                       stderr=None if os.environ.get("FLINK_VERBOSE") else subprocess.DEVNULL,
                       timeout=1800)
        with open(flink_file) as f:
            return [json.loads(line) for line in f]

    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.flink_runners) as pool:
        for chunk_results in pool.map(run_chunk, enumerate(chunks)):
            for r in chunk_results:
                results[r["id"]] = r
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fungi", required=True)
    p.add_argument("--list", action="store_true", help="print the cases and stop")
    p.add_argument("--flink-python", required=True)
    p.add_argument("--scale", choices=["small", "large"], default="small")
    p.add_argument("--cases", default="*")
    p.add_argument("--parallelism", default=None, help="override, e.g. 1,4")
    p.add_argument("--json", default=None)
    p.add_argument("--flink-runners", type=int, default=2,
                   help="Flink runner processes at once (each a JVM of about 1-3 GB)")
    p.add_argument("--keep", action="store_true",
                   help="keep the generated data and scripts (printed at the end)")
    args = p.parse_args()
    cases = load_cases(args.cases)
    if not cases:
        raise SystemExit(f"no case matches {args.cases}")
    if args.list:
        for c in cases:
            print(f"{c['name']}: {c.get('description', '')}")
        return
    work = tempfile.mkdtemp(prefix="fungi-flink-diff-")
    jobs, fungi_results, plan = [], {}, []
    started = time.time()
    for case in cases:
        cdir = os.path.join(work, case["name"])
        os.makedirs(cdir)
        levels = case.get("parallelism", [1, 4])
        if args.parallelism:
            levels = [int(x) for x in args.parallelism.split(",")]
        for par in levels:
            # Late rows only at parallelism 1 and over one table: otherwise which rows are
            # late depends on how parallel operators, or two sources, interleave their
            # inputs, in either engine.
            data = dict(case.get("data") or {})
            query = case.get("fungi_query", case["query"])
            if par > 1 or re.search(r"\bother\b", query):
                data["late_rate"] = 0
            paths = {t: os.path.join(cdir, f"{t}-p{par}.json") for t in TABLES}
            datagen.generate(paths["events"], paths["other"], data, args.scale,
                             inline={t: case[t] for t in TABLES if t in case})
            job_id = f"{case['name']}@p{par}"
            plan.append((case, par, job_id))
            jobs.append({"id": job_id, "statements": ddl("flink", paths),
                         "query": case.get("flink_query", case["query"]), "parallelism": par})
            fungi_results[job_id] = run_fungi(args, case, ddl("fungi", paths), par, cdir)
    flink_results = run_flink(args, jobs, work)
    report, failures = [], 0
    for case, par, job_id in plan:
        flink = flink_results.get(job_id, {"error": "no result from the Flink runner"})
        status, ok, detail = judge(case, flink, fungi_results[job_id])
        failures += not ok
        report.append({"case": case["name"], "parallelism": par, "status": status, "ok": ok,
                       "detail": detail})
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} {job_id:40} {status}: {detail[:300]}")
        if "retried_after" in flink:
            print(f"     {'':40} (Flink's first attempt failed: {flink['retried_after'][:200]})")
    print(f"\n{len(report) - failures}/{len(report)} runs as expected, {len(cases)} cases, "
          f"scale {args.scale}, {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": args.scale, "runs": report}, f, indent=1)
    if args.keep:
        print(f"data, scripts and results kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
