"""Deterministic test data for the differential suite: JSON lines that both engines read.

Two tables share one generator, `events` and `other` (for joins). Every column has NULLs
(except the time column, which a watermark needs); timestamps have duplicates, rows out
of order within the watermark bound, late rows behind it, and gaps longer than a session
gap. Settings come from a case's `[data]` table; the defaults are below.
"""

import json
import random
from datetime import datetime, timedelta

DEFAULTS = {
    "rows": 200,            # rows per table (small scale; the large scale multiplies it)
    "keys": 5,              # distinct non-NULL keys
    "null_rate": 0.08,      # chance of NULL in each nullable column
    "step_ms": 700,         # mean time between rows
    "disorder_ms": 1500,    # out of order within the watermark bound (2 s)
    "late_rate": 0.04,      # chance of a row behind the watermark
    "late_ms": 12000,       # how far behind a late row goes at most
    "dup_rate": 0.1,        # chance of repeating the previous timestamp
    "gap_rate": 0.03,       # chance of a silence longer than a session gap
    "gap_ms": 30000,        # the silence
    "seed": 7,
}

NAMES = ["apple", "Banana", "cherry", "", "dátil", "e e", "apple"]
LABELS = ["red", "green", "blue", None]
EPOCH = datetime(2024, 1, 1)


def settings(data, scale):
    s = dict(DEFAULTS)
    s.update(data or {})
    if scale == "large":
        s["rows"] = s["rows"] * 500
    return s


def _times(rng, s):
    t, out = 0, []
    for _ in range(s["rows"]):
        r = rng.random()
        if r < s["dup_rate"] and out:
            out.append(out[-1])
            continue
        t += int(rng.expovariate(1 / s["step_ms"])) + 1
        if rng.random() < s["gap_rate"]:
            t += s["gap_ms"]
        if rng.random() < s["late_rate"]:
            out.append(max(0, t - 2000 - rng.randint(1, s["late_ms"])))
        else:
            out.append(max(0, t - rng.randint(0, s["disorder_ms"])))
    return out


def _ts(ms):
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _inline(path, rows):
    """A case's own rows: `t` (seconds after the epoch) becomes `ts`; absent columns are
    NULL."""
    with open(path, "w") as f:
        for row in rows:
            row = dict(row)
            if "t" in row:
                row["ts"] = _ts(int(round(row.pop("t") * 1000)))
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def generate(path_events, path_other, data, scale="small", inline=None):
    """Writes both tables: a case's own rows where it gives them, generated rows
    otherwise."""
    inline = inline or {}
    s = settings(data, scale)
    rng = random.Random(s["seed"])

    def maybe(v):
        return None if rng.random() < s["null_rate"] else v

    if "events" in inline:
        _inline(path_events, inline["events"])
    else:
        _write_events(path_events, rng, s, maybe)
    if "other" in inline:
        _inline(path_other, inline["other"])
    else:
        _write_other(path_other, rng, s, maybe)


def _write_events(path, rng, s, maybe):
    with open(path, "w") as f:
        for i, t in enumerate(_times(rng, s)):
            row = {
                "k": maybe(rng.randrange(s["keys"])),
                "id": i,
                "v": maybe(rng.randint(-50, 1000)),
                "price": maybe(round(rng.uniform(0, 100), 2)),
                "name": maybe(rng.choice(NAMES)),
                "ts": _ts(t),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_other(path, rng, s, maybe):
    with open(path, "w") as f:
        for i, t in enumerate(_times(rng, s)):
            row = {
                "k": maybe(rng.randrange(s["keys"])),
                "w": maybe(rng.randint(0, 100)),
                "label": maybe(rng.choice(LABELS)),
                "ts": _ts(t),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
