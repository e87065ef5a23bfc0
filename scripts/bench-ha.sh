#!/usr/bin/env bash
# High availability measured on loopback (the release build), with Debian's etcd:
#   scripts/bench-ha.sh failover [LEASE_TTL]  etcd, two JobManagers (lease LEASE_TTL s,
#       default 15) and two TaskManagers of one slot; a windowed Nexmark job at
#       parallelism 2 checkpoints every second and, after five checkpoints, the leader
#       is killed with SIGKILL. Prints the time from the kill to the standby leading,
#       to the job running again, and to its first checkpoint there (the first output
#       the sinks commit after recovery).
#   scripts/bench-ha.sh overhead [bench args]  `fungi bench nexmark --cluster` on the
#       same two TaskManagers behind one JobManager without high availability, then
#       behind two elected through etcd (default: q5, checkpoints every second).
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
[ -x "$fungi" ] || cargo build --release --workspace
mode="${1:-failover}"
shift || true
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

etcd_port=$(port)
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$(port)" > "$work/etcd.log" 2>&1 &
pids+=($!)
sleep 1

# Starts a JobManager named $1 on port $2 with extra arguments; records its pid.
declare -A jm_pid
job_manager() {
  local name=$1 address=127.0.0.1:$2
  shift 2
  FUNGI_LOG=info "$fungi" jobmanager --listen "$address" --id "$name" "$@" \
    > /dev/null 2> "$work/$name.log" &
  jm_pid[$name]=$!
  pids+=($!)
}
# Starts two TaskManagers for the JobManagers at $1 and waits until a leader has them.
task_managers() {
  for id in tm1 tm2; do
    "$fungi" taskmanager --jobmanager "$1" --slots 1 --id "$id" > /dev/null 2> "$work/$id.log" &
    pids+=($!)
  done
  for _ in $(seq 300); do
    registered=$("$fungi" cluster status --json --jobmanager "$1" 2>/dev/null | grep -c '"data_address"' || true)
    [ "$registered" = 2 ] && return
    sleep 0.1
  done
  echo "the TaskManagers did not register" >&2
  exit 1
}

if [ "$mode" = overhead ]; then
  [ $# -eq 0 ] && set -- --query q5 --parallelism 2 --checkpoint-interval-ms 1000
  p1=$(port)
  job_manager single "$p1"
  task_managers "127.0.0.1:$p1"
  echo "## one JobManager, no high availability"
  "$fungi" bench nexmark --cluster "127.0.0.1:$p1" "$@"
  kill "${pids[@]:1}" 2>/dev/null || true
  sleep 1
  a=$(port) b=$(port)
  job_manager jm1 "$a" --ha etcd --ha-endpoints "http://127.0.0.1:$etcd_port"
  job_manager jm2 "$b" --ha etcd --ha-endpoints "http://127.0.0.1:$etcd_port"
  task_managers "127.0.0.1:$a,127.0.0.1:$b"
  echo "## two JobManagers elected through etcd"
  "$fungi" bench nexmark --cluster "127.0.0.1:$a,127.0.0.1:$b" "$@"
  exit
fi

ttl="${1:-15}"
a=$(port) b=$(port)
addresses="127.0.0.1:$a,127.0.0.1:$b"
job_manager jm1 "$a" --ha etcd --ha-endpoints "http://127.0.0.1:$etcd_port" --ha-lease-ttl "$ttl"
sleep 0.5
job_manager jm2 "$b" --ha etcd --ha-endpoints "http://127.0.0.1:$etcd_port" --ha-lease-ttl "$ttl"
task_managers "$addresses"
bash scripts/windowed-job.sh "$work" "${EVENTS:-8000000}" "${RATE:-200000}" > "$work/job.sql"
"$fungi" run --cluster "$addresses" "$work/job.sql" 2> "$work/run.log" &
run=$!
pids+=($run)
leader=$(grep -l "elected leader" "$work"/jm1.log "$work"/jm2.log | head -1 | xargs basename | sed 's/\.log$//')
until [ "$(grep -c 'checkpoint complete' "$work/$leader.log" || true)" -ge 5 ]; do
  sleep 0.2
done
standby=jm1
[ "$leader" = jm1 ] && standby=jm2
killed_at=$(python3 -c 'import time; print(time.time())')
kill -9 "${jm_pid[$leader]}"
wait "$run"
python3 - "$work/$standby.log" "$killed_at" "$ttl" <<'PY'
import datetime, re, sys
log, killed_at, ttl = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def stamp(line):
    t = re.search(r"(\d{4}-\d\d-\d\dT[\d:.]+)Z", line).group(1)
    return datetime.datetime.fromisoformat(t).replace(tzinfo=datetime.timezone.utc).timestamp()
lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(log)]
elected = next(stamp(l) for l in lines if "elected leader" in l)
running = next(stamp(l) for l in lines if "status=running attempt" in l)
first = next(stamp(l) for l in lines if "checkpoint complete" in l and stamp(l) > running)
print(f"lease {ttl} s, leader killed: the standby leads after {elected - killed_at:.2f} s, "
      f"the job runs again after {running - killed_at:.2f} s, first checkpoint "
      f"(committed output) after {first - killed_at:.2f} s")
PY
