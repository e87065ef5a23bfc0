#!/usr/bin/env bash
# What the demo (`setup.sh demo`) or the test suite (`setup.sh test`) needs on this
# machine, installed when missing: Debian packages (when run as root; otherwise the
# exact command to run is printed and the script fails), the Rust targets and
# components, and for the tests the book's builder. Does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose="${1:-test}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is missing: install rustup (https://rustup.rs); it reads rust-toolchain.toml" >&2
  exit 1
fi

# A C/C++ toolchain for the -sys crates (zstd, RocksDB), libclang for librocksdb-sys's
# bindgen, and the CPython that fungi-python embeds (headers, libpython) with venv.
need=()
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
ls /usr/lib/*/libpython3*.so /usr/lib/libpython3*.so >/dev/null 2>&1 || need+=(python3-dev)
/usr/bin/python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
if [ "$purpose" = test ]; then
  # protoc for the test that checks the committed gRPC code against proto/, openssl
  # for the test that checks plugin signatures with a second implementation.
  command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # Java and Maven for the Apache Kafka broker the Kafka tests run against.
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || need+=(maven)
  # iproute2 for the cluster test that cuts a TaskManager off in a network namespace.
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  # etcd for the high-availability tests (leader election among JobManagers), and
  # etcdctl, with which a test plants foreign data.
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
  # A real browser for the dashboard's tests, driven through chromedriver.
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing system packages; install them with:" >&2
    echo "  sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

# The toolchain, components and targets pinned in rust-toolchain.toml.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
# The dashboard that `fungi server` embeds is compiled for the browser by a build script
# (host/dashboard); a toolchain installed before the target was pinned lacks it.
rustup target add wasm32-unknown-unknown >/dev/null
if [ "$purpose" = test ]; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  # Plugins are built for wasm32-wasip2 by host/plugin/artifacts during the tests.
  rustup target add wasm32-wasip2 >/dev/null
  # The documentation book's builder, from crates.io, into the tools cache.
  tools="$HOME/.cache/fungi/tools"
  if [ ! -x "$tools/bin/mdbook" ]; then
    echo "installing mdbook into $tools (about 3 min, once)" >&2
    cargo install mdbook@0.5.4 --locked --no-default-features --features search \
      --root "$tools" --quiet
  fi
fi
