#!/usr/bin/env bash
# Stages the build context of cluster/docker/*/Dockerfile in DIR (default .run/docker/context):
#   project/      the project's tracked files as they are in the work tree (git ls-files)
#   hadoop-lib/   the Hadoop 3.5.0 jars scripts/install.sh resolved with Maven
#   ferretdb      the FerretDB binary scripts/build_ferretdb.sh built from the Go module proxy
#   constraints.txt, deps.txt (pyproject's runtime dependencies, pinned by constraints.txt)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TOOLS=${FLASHSALE_RUN_DIR:-$ROOT/.run}/tools
DIR=${1:-$ROOT/.run/docker/context}
[ -n "$(ls "$TOOLS/hadoop/lib"/hadoop-hdfs-*.jar 2>/dev/null)" ] || { echo "stage: no Hadoop jars in $TOOLS/hadoop/lib: run make install" >&2; exit 1; }
mkdir -p "$DIR"
# rewritten every time: BuildKit's COPY cache key is the files' content and modes, not their mtimes
rm -rf "$DIR/project" "$DIR/hadoop-lib"
mkdir -p "$DIR/project"
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$DIR/project"
cp -a "$TOOLS/hadoop/lib" "$DIR/hadoop-lib"
cp -p constraints.txt "$DIR/constraints.txt"
if [ -x "$TOOLS/bin/ferretdb" ]; then cp -p "$TOOLS/bin/ferretdb" "$DIR/ferretdb"; fi
python3 - "$DIR/deps.txt" <<'PY'
import sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
new = "\n".join(deps) + "\n"
try:
    old = open(sys.argv[1]).read()
except FileNotFoundError:
    old = None
if old != new:
    open(sys.argv[1], "w").write(new)
PY
echo "staged $DIR ($(du -sh "$DIR" | cut -f1))"
