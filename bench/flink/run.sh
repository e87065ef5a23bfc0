#!/usr/bin/env bash
# Fungi vs Apache Flink on the same Nexmark files. Installs Flink 2.x from PyPI
# (`apache-flink` ships the Flink jars) into a virtual environment, needs Java 17
# (installed from Debian when missing and running as root), builds Fungi in release, and
# runs compare.py. Arguments go to compare.py, e.g.:
#   bench/flink/run.sh --events 2000000 --parallelism 1 --runs 3 --json /tmp/flink.json
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
source scripts/flink-env.sh
cargo build --release -p fungi-cli
exec "$venv/bin/python" bench/flink/compare.py \
  --fungi "$CARGO_TARGET_DIR/release/fungi" --python "$venv/bin/python" "$@"
