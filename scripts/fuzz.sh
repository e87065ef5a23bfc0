#!/usr/bin/env bash
# Fuzzes the host's decoding of what untrusted peers send (plugin results and states,
# Arrow IPC) with cargo-fuzz (libFuzzer), for a bounded time, from the seeds in
# host/common/fuzz/seeds. A panic anywhere in the decoding is a crash, and fails.
#   scripts/fuzz.sh [seconds, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
tools="${FUNGI_TOOLS:-$HOME/.cache/fungi/tools}"
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz into $tools" >&2
  cargo install cargo-fuzz@0.13.2 --locked --root "$tools" --quiet
fi
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cd host/common
# Sanitizers need a nightly compiler; coverage-guided fuzzing does not.
CARGO_TARGET_DIR="${FUNGI_FUZZ_TARGET:-$HOME/.cache/fungi/fuzz-target}" \
  "$tools/bin/cargo-fuzz" run untrusted_ipc --sanitizer none "$corpus" fuzz/seeds -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
