#!/usr/bin/env bash
# The Docker engine for `make cluster-up` / `make test-cluster`:
#   engine.sh start   install Debian's docker.io if dockerd is missing; start dockerd if none answers
#                     (records that this script started it in .run/docker/dockerd.started)
#   engine.sh stop    stop the dockerd this script started (by its pid), and only that one
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=.run/docker
mkdir -p "$STATE"
say() { printf '\033[1m[engine]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
case "${1:-}" in
  start)
    if docker info >/dev/null 2>&1; then say "a Docker engine is running (kept)"; exit 0; fi
    if ! command -v dockerd >/dev/null; then
      say "apt-get install docker.io (Debian's Docker Engine)"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker.io >/dev/null
      # the package's unit may have started one: use it, and leave it to the system
      if docker info >/dev/null 2>&1; then say "the docker.io service is running (kept)"; exit 0; fi
    fi
    say "starting dockerd (log: $STATE/dockerd.log)"
    $SUDO sh -c "nohup dockerd --pidfile '$PWD/$STATE/dockerd.pid' >'$PWD/$STATE/dockerd.log' 2>&1 &"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 "$STATE/dockerd.log" >&2; exit 1; }
    cp "$STATE/dockerd.pid" "$STATE/dockerd.started"
    ;;
  stop)
    [ -f "$STATE/dockerd.started" ] || { say "no dockerd started by this script"; exit 0; }
    pid=$(cat "$STATE/dockerd.started")
    if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm")" = dockerd ]; then
      say "stopping the dockerd this script started (pid $pid)"
      $SUDO kill -TERM "$pid"
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$STATE/dockerd.started"
    ;;
  *) echo "usage: engine.sh start|stop" >&2; exit 2 ;;
esac
