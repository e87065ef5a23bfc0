#!/usr/bin/env bash
# The demo: bids per auction in 10 s windows from the Nexmark generator, in embedded mode
# with no external services. Shows live progress; results land in out/hot-auctions/.
# Builds into the target directory the test command uses, so either reuses the other's
# build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
# --workspace: the same features as the test build, so no dependency builds twice.
cargo build --workspace --bin fungi
"$CARGO_TARGET_DIR/debug/fungi" run --local examples/jobs/hot-auctions.toml "$@"
