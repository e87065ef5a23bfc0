#!/usr/bin/env bash
# Runs one Apache Kafka broker on loopback in KRaft mode (broker and controller in one
# process), its data under DATA_DIR, until killed:
#   kafka-broker.sh PORT CONTROLLER_PORT DATA_DIR
# The broker's jars come from Maven Central (scripts/install-test-services.sh); the test
# kit (host/testkit) and scripts/bench-kafka.sh start brokers with this script.
# KAFKA_JVM_OPTS overrides the JVM options (the default starts fast with a small heap).
set -euo pipefail
port="$1" controller="$2" dir="$3"
libs="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}/kafka/libs"
if [ ! -d "$libs" ]; then
  echo "Apache Kafka is not installed in $libs: run scripts/install-test-services.sh" >&2
  exit 1
fi
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
mkdir -p "$dir/data"
cat > "$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
# shellcheck disable=SC2086
opts=${KAFKA_JVM_OPTS:--Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}
# shellcheck disable=SC2086
"$java" $opts -cp "$libs/*" kafka.tools.StorageTool format \
  --cluster-id MkU3OEVBNTcwNTJENDM2Qg --config "$dir/server.properties" >/dev/null
# shellcheck disable=SC2086
exec "$java" $opts -cp "$libs/*" kafka.Kafka "$dir/server.properties"
