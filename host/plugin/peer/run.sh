#!/usr/bin/env bash
# Builds both guests and runs the peer benchmark (see Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../../.. && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/fungi/target}"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null
(cd guest && cargo build --release --target wasm32-wasip1 --target-dir "$target/peer-guest")
(cd "$root/plugins" && cargo build --release --target wasm32-wasip2 --target-dir "$target/wasm-guests")
export PEER_UDF="$target/peer-guest/wasm32-wasip1/release/peer_udf.wasm"
export FUNGI_STRINGS_GEO="$target/wasm-guests/wasm32-wasip2/release/strings_geo.wasm"
CARGO_TARGET_DIR="$target" cargo bench --bench peer -- --warm-up-time 1 --measurement-time 4 "$@"
