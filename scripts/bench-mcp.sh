#!/usr/bin/env bash
# MCP tool call latency: starts a server (the release build) with a running job, and
# measures job_details and explain_sql through the official Python MCP client
# (bench/mcp/latency.py, in ~/.cache/fungi/mcp-venv), p50/p99.
#   scripts/bench-mcp.sh [CALLS]      (default 200 per tool)
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/fungi/mcp-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "mcp>=2.3,<3"
source scripts/bench-server.sh --rate-limit-per-key 0
"$venv/bin/python" bench/mcp/latency.py "$url" "$key" "$job" "${1:-200}"
