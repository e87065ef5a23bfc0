# Sourced by the benchmarks that need a running server (bench-mcp.sh,
# bench-dashboard.sh): builds the release `fungi` if missing, starts `fungi server` on a
# free loopback port with the arguments given (at least one: a bare `source` passes the
# caller's own), submits one endless job (generated rows counted per key, checkpoints
# every second), and sets `url`, `key` and `job`. The server and its data directory go
# when the calling script exits.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
[ -x "$fungi" ] || cargo build --release --workspace --bin fungi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$fungi" server --data-dir "$work/data" --listen "127.0.0.1:$port" "$@" 2> "$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do grep -q "admin key" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
key=$(sed -n 's/.*admin key.*: //p' "$work/server.log" | head -1)
url="http://127.0.0.1:$port"
sql="SET 'execution.checkpointing.interval' = '1s';
CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '1000');
CREATE TABLE o (k BIGINT, n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT id % 10, COUNT(*) FROM g GROUP BY id % 10;"
job=$(python3 -c 'import json,sys; print(json.dumps({"sql": sys.argv[1]}))' "$sql" \
  | curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' \
      "$url/api/v1/jobs" -d @- \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 2
