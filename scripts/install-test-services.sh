#!/usr/bin/env bash
# Installs the external services the tests start on loopback, into one cache directory
# ($FUNGI_TOOLS, default ~/.cache/fungi/tools) that later runs reuse:
#   s3s-fs   an S3-compatible server over a local directory (checkpoints in object storage)
#   tansu    a Kafka-compatible broker, storage in memory (the Kafka connector)
# Each is built from crates.io once; nothing is fetched when it is already there.
set -euo pipefail
tools="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}"
mkdir -p "$tools"
if [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "installing s3s-fs (S3-compatible test server) into $tools" >&2
  # 0.14.1 is the newest release that builds with the pinned toolchain (1.95).
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$tools" --quiet
fi
if [ ! -x "$tools/bin/tansu" ]; then
  echo "installing tansu (Kafka-compatible test broker) into $tools; ~20 min the first time" >&2
  cargo install tansu@0.6.0 --features dynostore --locked --root "$tools" --quiet
fi
