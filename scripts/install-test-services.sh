#!/usr/bin/env bash
# Installs the external services the tests start on loopback, into one cache directory
# ($FUNGI_TOOLS, default ~/.cache/fungi/tools) that later runs reuse:
#   s3s-fs   an S3-compatible server over a local directory (checkpoints in object storage)
#   kafka    Apache Kafka's broker (KRaft), its jars resolved from Maven Central by
#            Maven (host/testkit/kafka/pom.xml); scripts/kafka-broker.sh runs one
# Each is fetched once; nothing is fetched when it is already there.
set -euo pipefail
tools="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}"
mkdir -p "$tools"
if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing s3s-fs (S3-compatible test server) into $tools" >&2
  # 0.14.1 is the newest release that builds with the pinned toolchain (1.95).
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$tools" --quiet
fi
if [ ! -f "$tools/kafka/libs/.complete" ]; then
  echo "installing Apache Kafka (test broker) from Maven Central into $tools/kafka" >&2
  rm -rf "$tools/kafka/libs"
  mvn --batch-mode --quiet -Dstyle.color=never -f "$(dirname "$0")/../host/testkit/kafka/pom.xml" \
    -Dmaven.repo.local="$tools/kafka/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tools/kafka/libs"
  touch "$tools/kafka/libs/.complete"
fi
