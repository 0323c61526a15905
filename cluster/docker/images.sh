#!/usr/bin/env bash
# Builds the images of docker-compose.yml (and, with --nohub, docker-compose.nohub.yml's) with
# BuildKit, reusing Docker's layer cache:
#   flashsale/platform:0.1.0     every role of ours (cluster/docker/platform/Dockerfile)
#   flashsale/thirdparty:0.1.0   --nohub only: PostgreSQL, Redis, FerretDB from Debian / the Go proxy
# BASE_IMAGE (FLASHSALE_BASE_IMAGE) defaults to debian:12.8-slim; with --nohub it defaults to
# flashsale/debian-base:bookworm, made here by `debootstrap --variant=minbase` + `docker import`.
# The host's CA bundle (pip's `cert`) reaches pip as a build secret, never a layer.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '\033[1m[images]\033[0m %s\n' "$*"; }
nohub=0; [ "${1:-}" = --nohub ] && nohub=1
ctx=${FLASHSALE_DOCKER_CONTEXT:-.run/docker/context}
base=${FLASHSALE_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if [ $nohub = 1 ]; then base=flashsale/debian-base:bookworm; else base=debian:12.8-slim; fi
fi
# a client that builds with BuildKit: buildx, or a client < 23 (BuildKit built in); Debian's is 20.10
client=""
for c in docker /usr/bin/docker; do
  command -v "$c" >/dev/null || continue
  if "$c" buildx version >/dev/null 2>&1; then client="$c buildx build --load"; break; fi
  major=$("$c" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
  if [ -n "$major" ] && [ "$major" -lt 23 ]; then client="$c build"; break; fi
done
[ -n "$client" ] || { echo "images: no docker client that builds with BuildKit (install docker-buildx)" >&2; exit 1; }
if [ "$base" = flashsale/debian-base:bookworm ] && ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; $SUDO apt-get update -qq; $SUDO apt-get install -y -qq debootstrap >/dev/null; }
  # the host apt's Debian mirror (one-line or deb822 sources; comments skipped); none: deb.debian.org
  mirror=$({ grep -rhE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  say "debootstrap --variant=minbase bookworm from ${mirror:-deb.debian.org} -> $base"
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
fi
bash cluster/docker/stage.sh "$ctx"
cert=${PIP_CERT:-$(.venv/bin/pip config list 2>/dev/null | sed -n "s/^[^=]*[.]cert='\(.*\)'$/\1/p" | head -1)}
secret=(); [ -n "$cert" ] && [ -f "$cert" ] && secret=(--secret "id=pip_cert,src=$cert")
build() {  # IMAGE DOCKERFILE
  local t0=$SECONDS
  DOCKER_BUILDKIT=1 $client --progress=plain --build-arg "BASE_IMAGE=$base" "${secret[@]}" \
    -f "$ctx/project/$2" -t "$1" "$ctx" > ".run/docker/build-${1//[\/:]/_}.log" 2>&1 \
    || { tail -40 ".run/docker/build-${1//[\/:]/_}.log" >&2; exit 1; }
  say "$1 built in $((SECONDS - t0)) s (log .run/docker/build-${1//[\/:]/_}.log)"
}
build flashsale/platform:0.1.0 cluster/docker/platform/Dockerfile
[ $nohub = 1 ] && build flashsale/thirdparty:0.1.0 cluster/docker/thirdparty/Dockerfile
exit 0
