# Sourced by the scripts that run Apache Flink beside Fungi (bench/flink/run.sh,
# conformance/flink/run.sh): makes sure Java 17 is there (from Debian when missing and
# running as root) and that Flink 2.3 from PyPI (`apache-flink` ships the Flink jars) is
# installed in a virtual environment; sets `venv` to that environment.
venv="${FLINK_VENV:-$HOME/.cache/fungi/flink-venv}"
if ! command -v java >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless
  else
    echo "Java 17 is needed: apt-get install -y openjdk-17-jre-headless" >&2
    exit 1
  fi
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyflink" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "apache-flink==2.3.0"
fi
