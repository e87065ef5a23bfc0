#!/usr/bin/env bash
# Fuzzes the REST API from its OpenAPI document with schemathesis (PyPI): a real
# `fungi server` on a free loopback port, the admin key it prints, a bounded number of
# generated requests per operation, and a failure on any 5xx answer.
#   scripts/schemathesis.sh [max examples per operation, default 25]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
examples="${1:-25}"
venv="${FUNGI_SCHEMATHESIS_VENV:-$HOME/.cache/fungi/st-venv}"
if [ ! -x "$venv/bin/st" ]; then
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
fungi="$CARGO_TARGET_DIR/debug/fungi"
[ -x "$fungi" ] || cargo build -p fungi-cli
data="$(mktemp -d)"
log="$data/server.log"
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$fungi" server --data-dir "$data/server" --listen "127.0.0.1:$port" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q "REST /api/v1" "$log" 2>/dev/null && break
  sleep 0.2
done
key="$(grep -o 'fgk_[0-9a-f]*_[0-9a-f]*' "$log" | head -1)"
[ -n "$key" ] || { echo "the server printed no admin key:"; cat "$log"; exit 1; }
"$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --url "http://127.0.0.1:$port" \
  --checks not_a_server_error \
  --max-examples "$examples" \
  --seed 20261202 \
  --request-timeout 60 \
  --header "Authorization: Bearer $key"
# The server answered everything and is still up.
kill -0 "$server"
