#!/usr/bin/env bash
# Nexmark on a cluster beside embedded mode: starts a JobManager and two TaskManagers of
# one slot each on loopback (the release build), runs `fungi bench nexmark --cluster`
# with the arguments given (default: q5, q7, q8 and q20 at parallelism 2), and stops
# them. Each query runs embedded and then on the cluster, in the same run.
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
if [ ! -x "$fungi" ]; then
  cargo build --release --bin fungi
fi
logs=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$logs"' EXIT
"$fungi" jobmanager --listen 127.0.0.1:0 > "$logs/jobmanager.out" 2> "$logs/jobmanager.log" &
pids+=($!)
for _ in $(seq 100); do
  address=$(sed -n 's/^JobManager listening on //p' "$logs/jobmanager.out")
  [ -n "$address" ] && break
  sleep 0.1
done
for id in tm1 tm2; do
  "$fungi" taskmanager --jobmanager "$address" --slots 1 --id "$id" \
    > /dev/null 2> "$logs/$id.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  [ "$("$fungi" cluster status --json --jobmanager "$address" | grep -c '"id"')" = 2 ] && break
  sleep 0.1
done
if [ $# -eq 0 ]; then
  set -- --query q5,q7,q8,q20 --parallelism 2
fi
"$fungi" bench nexmark --cluster "$address" "$@"
