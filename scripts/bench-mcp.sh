#!/usr/bin/env bash
# MCP tool call latency: starts a server (the release build) with a running job, and
# measures job_details and explain_sql through the official Python MCP client
# (bench/mcp/latency.py, in ~/.cache/fungi/mcp-venv), p50/p99.
#   scripts/bench-mcp.sh [CALLS]      (default 200 per tool)
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
[ -x "$fungi" ] || cargo build --release --workspace --bin fungi
venv="$HOME/.cache/fungi/mcp-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "mcp>=2.3,<3"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$fungi" server --data-dir "$work/data" --listen "127.0.0.1:$port" --rate-limit-per-key 0 \
  2> "$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do grep -q "admin key" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
key=$(sed -n 's/.*admin key.*: //p' "$work/server.log" | head -1)
url="http://127.0.0.1:$port"
job=$(curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' "$url/api/v1/jobs" \
  -d '{"sql": "SET '"'"'execution.checkpointing.interval'"'"' = '"'"'1s'"'"'; CREATE TABLE g (id BIGINT) WITH ('"'"'connector'"'"' = '"'"'datagen'"'"', '"'"'rows-per-second'"'"' = '"'"'1000'"'"'); CREATE TABLE o (k BIGINT, n BIGINT) WITH ('"'"'connector'"'"' = '"'"'blackhole'"'"'); INSERT INTO o SELECT id % 10, COUNT(*) FROM g GROUP BY id % 10;"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 2
"$venv/bin/python" bench/mcp/latency.py "$url" "$key" "$job" "${1:-200}"
