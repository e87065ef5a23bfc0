#!/usr/bin/env bash
# Kafka → filter → Kafka benchmark: starts an Apache Kafka broker (scripts/kafka-broker.sh,
# a 1 GiB heap and the JVM's full JIT) on free loopback ports, runs `fungi bench kafka`
# against it with the arguments given (e.g. --records 1000000 --partitions 2), and stops
# the broker.
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
scripts/install-test-services.sh
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
if [ ! -x "$fungi" ]; then
  cargo build --release --bin fungi
fi
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
data=$(mktemp -d)
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--Xmx1g}" bash scripts/kafka-broker.sh "$port" "$(free_port)" "$data" \
  >/dev/null &
broker=$!
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 300); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
"$fungi" bench kafka --bootstrap "127.0.0.1:$port" "$@"
