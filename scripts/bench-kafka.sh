#!/usr/bin/env bash
# Kafka → filter → Kafka benchmark: starts an Apache Kafka broker (scripts/kafka-broker.sh,
# a 1 GiB heap and the JVM's full JIT) on free loopback ports, runs `fungi bench kafka`
# against it with the arguments given (e.g. --records 1000000 --partitions 2), and stops
# the broker. With --flink first, the same job also runs on Apache Flink 2.3 (PyPI's
# apache-flink, scripts/flink-env.sh) with Flink's SQL Kafka connector from Maven Central.
#   FUNGI_BIN   the fungi binary (default: the release build in $CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
scripts/install-test-services.sh
flink=()
if [ "${1:-}" = --flink ]; then
  shift
  source scripts/flink-env.sh
  jars="$HOME/.cache/fungi/tools/flink-jars"
  jar="$jars/flink-sql-connector-kafka-5.0.0-2.2.jar"
  if [ ! -f "$jar" ]; then
    mvn -q dependency:copy -Dartifact=org.apache.flink:flink-sql-connector-kafka:5.0.0-2.2 \
      -DoutputDirectory="$jars"
  fi
  flink=(--flink-python "$venv/bin/python" --flink-jar "$jar")
fi
fungi="${FUNGI_BIN:-$CARGO_TARGET_DIR/release/fungi}"
if [ ! -x "$fungi" ]; then
  cargo build --release --workspace --bin fungi
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
"$fungi" bench kafka --bootstrap "127.0.0.1:$port" "${flink[@]}" "$@"
