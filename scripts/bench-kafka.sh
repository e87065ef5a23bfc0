#!/usr/bin/env bash
# Kafka → filter → Kafka benchmark: starts the test broker (tansu, storage in
# memory) on a free loopback port, runs `fungi bench kafka` against it with the arguments
# given (e.g. --records 1000000 --partitions 2), and stops the broker.
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
scripts/install-test-services.sh
tools="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}"
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
if [ ! -x "$fungi" ]; then
  cargo build --release --bin fungi
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="tcp://127.0.0.1:$port"
RUST_LOG=error "$tools/bin/tansu" --listener-url "$url" --advertised-listener-url "$url" \
  --storage-engine memory://tansu/ >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
"$fungi" bench kafka --bootstrap "127.0.0.1:$port" "$@"
