#!/usr/bin/env bash
# The differential suite against Apache Flink 2.3 (PyFlink's local mini-cluster).
# Installs Flink from PyPI into a virtual environment (as bench/flink does) and needs
# Java 17. Uses the debug `fungi` binary the tests build, or the release one with
# --scale large. Arguments go to run.py, e.g.:
#   conformance/flink/run.sh --scale small
#   conformance/flink/run.sh --scale large --json /tmp/diff.json
#   conformance/flink/run.sh --cases 'session*'
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
source scripts/flink-env.sh
profile=debug
if [[ " $* " == *" large "* ]]; then
  profile=release
  cargo build --release -p fungi-cli
elif [ ! -x "$CARGO_TARGET_DIR/debug/fungi" ]; then
  cargo build --workspace --bin fungi
fi
exec python3 conformance/flink/run.py --fungi "$CARGO_TARGET_DIR/$profile/fungi" \
  --flink-python "$venv/bin/python" "$@"
