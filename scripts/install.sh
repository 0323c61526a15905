#!/usr/bin/env bash
# Installs everything the stack and the tests need, idempotently, on Debian/Ubuntu:
#   system packages (only those missing), the Python virtualenv (.venv), FerretDB (built from the
#   Go module proxy), the Hadoop 3.5.0 daemon jars (resolved by Maven from cluster/hadoop/pom.xml).
# Each step is skipped when its inputs have not changed (stamp files under .run/tools/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR=${FLASHSALE_RUN_DIR:-$ROOT/.run}
TOOLS=$RUN_DIR/tools
mkdir -p "$TOOLS"
chmod 700 "$RUN_DIR"  # the hot store's files, logs and generated secrets live here
say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }
stamp_ok() { [ -f "$TOOLS/$1.stamp" ] && [ "$(cat "$TOOLS/$1.stamp")" = "$2" ]; }
stamp_set() { echo "$2" > "$TOOLS/$1.stamp"; }

# ---- system packages: only what is missing
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
command -v go >/dev/null || need+=(golang-go)
command -v unzip >/dev/null || need+=(unzip)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ "${FLASHSALE_BROWSER_TESTS:-1}" = "1" ]; then command -v chromium >/dev/null || need+=(chromium); fi
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's redis-server package starts a system Redis on 6379: the stack runs its own, with a password
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  say "stopping the system redis-server (the stack runs its own on loopback with a password)"
  $SUDO systemctl stop redis-server || true
fi

# ---- Python virtualenv
py_hash=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || ! stamp_ok venv "$py_hash"; then
  say "creating .venv and installing the project (pyspark, airflow, ray, streamlit, ...)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # constraints.txt pins every package once: the same versions as the images (cluster/docker/platform)
  .venv/bin/pip install -q -c constraints.txt -e ".[dev]"
  stamp_set venv "$py_hash"
fi

# ---- FerretDB (MongoDB wire protocol) unless a real mongod is installed
if ! command -v mongod >/dev/null; then
  bash scripts/build_ferretdb.sh "$TOOLS/bin/ferretdb" >/dev/null
fi

# ---- Hadoop daemons from Maven Central
pom_hash=$(sha256sum cluster/hadoop/pom.xml | cut -c1-16)
if ! stamp_ok hadoop "$pom_hash"; then
  say "resolving Hadoop 3.5.0 jars with Maven"
  rm -rf "$TOOLS/hadoop/lib"
  mvn -q -B -f cluster/hadoop/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$TOOLS/hadoop/lib" -DincludeScope=runtime
  stamp_set hadoop "$pom_hash"
fi
say "ready: $(.venv/bin/flashsale --help >/dev/null && echo 'flashsale command installed')"
