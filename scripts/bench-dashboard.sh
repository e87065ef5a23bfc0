#!/usr/bin/env bash
# The dashboard's load figures: starts a server (the release build) with a running job
# and measures, in Debian's headless Chromium through Selenium (bench/dashboard/load.py,
# in ~/.cache/fungi/browser-venv), the files' wire size, the time to first render cold,
# and the API calls per second of a job's page.
#   scripts/bench-dashboard.sh [RUNS]      (default 10 cold loads)
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/fungi/browser-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "selenium>=4.20,<5"
# The default rate limit, named: a bare `source` would pass this script's arguments on.
source scripts/bench-server.sh --rate-limit-per-key 100
"$venv/bin/python" bench/dashboard/load.py "$url" "$key" "$job" "${1:-10}"
