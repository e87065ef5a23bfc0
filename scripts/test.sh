#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
cargo fmt --all --check
# Services the tests start on loopback (built once into ~/.cache/fungi/tools).
bash scripts/install-test-services.sh
# The guest workspaces (plugins, hostile plugins) and the SDK are formatted and linted
# too, for the target they are built for.
for guest in sdk-rust plugins conformance/hostile; do
  (cd "$guest" && cargo fmt --all --check && cargo clippy --target wasm32-wasip2 -- -D warnings)
done
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
