#!/usr/bin/env bash
# Builds FerretDB v1.24.x (MongoDB wire protocol on SQLite/PostgreSQL) from the Go module proxy.
# `go install ...@v1.24.2` alone yields a binary that panics at start: the module zip ships an
# empty build/version/version.txt, which FerretDB embeds. So: download the module, copy it to a
# writable tree, write the version file, build there.
set -euo pipefail
version="${FERRETDB_VERSION:-v1.24.2}"
out="${1:?usage: build_ferretdb.sh OUTPUT_BINARY}"
if [ -x "$out" ] && [[ "$("$out" --version 2>/dev/null)" == *"${version}"* ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "build_ferretdb: Go is not installed (apt-get install golang-go, or install Go >= 1.22)" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@${version}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
echo "$version" > "$work/src/build/version/version.txt"
mkdir -p "$(dirname "$out")"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -o "$out" ./cmd/ferretdb)
"$out" --version | sed -n 1p  # sed reads it all: head would SIGPIPE ferretdb under pipefail
