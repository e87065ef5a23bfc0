#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
# System packages, Rust targets and mdbook, installed when missing.
bash scripts/setup.sh test
cargo fmt --all --check
# The documentation: the book builds, its links resolve, and no text names an issue or
# promises what has landed.
python3 scripts/check-docs.py
"$HOME/.cache/fungi/tools/bin/mdbook" build docs --dest-dir "$CARGO_TARGET_DIR/book"
# The Kubernetes manifests render and validate against the Kubernetes schemas.
bash scripts/check-kubernetes.sh
# Services the tests start on loopback (built once into ~/.cache/fungi/tools).
bash scripts/install-test-services.sh
# The guest workspaces (plugins, hostile plugins), the SDK and the dashboard are formatted
# and linted too, for the target they are built for.
for guest in sdk-rust plugins conformance/hostile; do
  (cd "$guest" && cargo fmt --all --check && cargo clippy --target wasm32-wasip2 -- -D warnings)
done
(cd dashboard && cargo fmt --all --check &&
  cargo clippy --locked --target wasm32-unknown-unknown --target-dir "$CARGO_TARGET_DIR/dashboard" -- -D warnings)
# Python: a virtual environment of the system's python3 (the CPython fungi-python
# embeds, see .cargo/config.toml) with pyarrow and the SDK installed as a user would;
# the Rust tests' native Python functions import from it, and pytest runs from it.
# componentize-py builds the sandboxed Python plugins (host/plugin/artifacts, `fungi
# plugin build --python`), so it is installed before the first cargo build; the Kafka
# tests read exactly-once output with Confluent's client (confluent-kafka) as well.
venv="${FUNGI_PYTHON_VENV:-$HOME/.cache/fungi/pyvenv}"
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=14" "pytest>=7" \
  "componentize-py==0.25.1" "confluent-kafka>=2.6"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk-python
export FUNGI_PYTHON_VENV="$venv"
# The MCP tests' agent: the official Python MCP client, in an environment of its own.
mcp_venv="$HOME/.cache/fungi/mcp-venv"
[ -x "$mcp_venv/bin/python" ] || /usr/bin/python3 -m venv "$mcp_venv"
"$mcp_venv/bin/pip" install --quiet --disable-pip-version-check "mcp>=2.3,<3"
# The dashboard's browser tests drive Debian's Chromium with Selenium's WebDriver client.
browser_venv="$HOME/.cache/fungi/browser-venv"
[ -x "$browser_venv/bin/python" ] || /usr/bin/python3 -m venv "$browser_venv"
"$browser_venv/bin/pip" install --quiet --disable-pip-version-check "selenium>=4.20,<5"
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The SDK's pytest suite; its client tests use the `fungi` binary the tests above built.
FUNGI_BIN="$CARGO_TARGET_DIR/debug/fungi" "$venv/bin/python" -m pytest -q -p no:cacheprovider sdk-python
# The same SQL on Fungi and on Apache Flink 2.3 over data with NULLs, late rows and
# gaps: results must match, or differ only where a case records why.
bash conformance/flink/run.sh --scale small
# The REST API fuzzed from its OpenAPI document: no request may get a 5xx.
bash scripts/schemathesis.sh 20
# The decoding of what plugins return, fuzzed for a minute: no input may panic it.
bash scripts/fuzz.sh 60
