#!/usr/bin/env bash
# The distributed mode measured on loopback (the release build):
#   scripts/bench-cluster.sh [bench args]  a JobManager and two TaskManagers of one slot
#       each; `fungi bench nexmark --cluster` runs each query embedded and then on the
#       cluster, in the same run (default: q5, q7, q8 and q20 at parallelism 2); with
#       --runs N, N times over, comparing the medians.
#   scripts/bench-cluster.sh --recovery    three TaskManagers; a windowed Nexmark job at
#       parallelism 2 checkpoints every second into a shared directory and, after five
#       checkpoints, one of its TaskManagers is killed with SIGKILL. Prints the time from
#       the kill to the attempt running again and to the first checkpoint after it (the
#       first output the sinks commit after recovery), and the checkpoint durations
#       across hosts (EVENTS and RATE size the job).
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
#   TM_WORKER_THREADS  worker threads of each TaskManager (default: the machine's cores
#       shared out among the TaskManagers, at least one each, so that the cluster runs as
#       many threads as embedded mode at parallelism = cores; 0: tokio's default, one per
#       core in every TaskManager)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
if [ ! -x "$fungi" ]; then
  cargo build --release --workspace --bin fungi
fi
recovery=false
if [ "${1:-}" = --recovery ]; then
  recovery=true
  shift
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
FUNGI_LOG=info "$fungi" jobmanager --listen 127.0.0.1:0 > "$work/jobmanager.out" 2> "$work/jobmanager.log" &
pids+=($!)
for _ in $(seq 100); do
  address=$(sed -n 's/^JobManager listening on //p' "$work/jobmanager.out")
  [ -n "$address" ] && break
  sleep 0.1
done
declare -A tm_pid
task_managers=(tm1 tm2)
$recovery && task_managers+=(tm3)
threads=${TM_WORKER_THREADS:-$(( $(nproc) / ${#task_managers[@]} ))}
[ "$threads" -ge 1 ] 2>/dev/null || threads=1
worker_args=()
[ "${TM_WORKER_THREADS:-}" = 0 ] || worker_args=(--worker-threads "$threads")
for id in "${task_managers[@]}"; do
  "$fungi" taskmanager --jobmanager "$address" --slots 1 --id "$id" "${worker_args[@]}" > /dev/null 2> "$work/$id.log" &
  tm_pid[$id]=$!
  pids+=($!)
done
for _ in $(seq 100); do
  registered=$("$fungi" cluster status --json --jobmanager "$address" | grep -c '"data_address"' || true)
  [ "$registered" = "${#task_managers[@]}" ] && break
  sleep 0.1
done
if ! $recovery; then
  if [ $# -eq 0 ]; then
    set -- --query q5,q7,q8,q20 --parallelism 2
  fi
  "$fungi" bench nexmark --cluster "$address" "$@"
  exit
fi
bash scripts/windowed-job.sh "$work" "${EVENTS:-4000000}" "${RATE:-200000}" > "$work/job.sql"
"$fungi" run --cluster "$address" "$work/job.sql" 2> "$work/run.log" &
run=$!
pids+=($run)
until [ "$(grep -c 'checkpoint complete' "$work/jobmanager.log" || true)" -ge 5 ]; do
  sleep 0.2
done
victim=$("$fungi" cluster status --json --jobmanager "$address" | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["jobs"][0]["subtasks"][0]["task_manager"])')
killed_at=$(python3 -c 'import time; print(time.time())')
kill -9 "${tm_pid[$victim]}"
wait "$run"
python3 - "$work" "$killed_at" "$victim" <<'PY'
import datetime, json, re, subprocess, sys
work, killed_at, victim = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def stamp(line):
    t = re.search(r"(\d{4}-\d\d-\d\dT[\d:.]+)Z", line).group(1)
    return datetime.datetime.fromisoformat(t).replace(tzinfo=datetime.timezone.utc).timestamp()
lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(f"{work}/jobmanager.log")]
running = next(stamp(l) for l in lines if "status=running attempt 2" in l)
first = next(stamp(l) for l in lines if "checkpoint complete" in l and stamp(l) > running)
print(f"killed {victim}: attempt 2 running after {running - killed_at:.2f} s; "
      f"first checkpoint (committed output) after {first - killed_at:.2f} s")
PY
"$fungi" checkpoints "$work/checkpoints" --json | python3 -c '
import json, statistics, sys
d = [c["duration_ms"] for c in json.load(sys.stdin) if not c["finished"]]
print(f"checkpoint duration across hosts: median {statistics.median(d):.0f} ms over the {len(d)} kept")'
