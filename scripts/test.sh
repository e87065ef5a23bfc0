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
# The Python SDK (sdk-python): installed as a user would (pip, into a virtual environment
# kept with the build cache), then its pytest suite, whose client tests use the `fungi`
# binary the tests above built.
venv="${FUNGI_VENV:-$HOME/.cache/fungi/venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=14" "pytest>=7"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk-python
FUNGI_BIN="$CARGO_TARGET_DIR/debug/fungi" "$venv/bin/python" -m pytest -q -p no:cacheprovider sdk-python
