#!/usr/bin/env bash
# `ray up` / `ray down` of cluster/ray-cluster.yaml, safe next to the stack's Ray head. From anywhere:
#
#   scripts/ray_up.sh up       # stage the project's files, then ray up (the head starts on GCS 6390)
#   scripts/ray_up.sh down     # stop this cluster's Ray processes only, ray down, check none is left
#   scripts/ray_up.sh status
#
# Why a wrapper: `ray up` hashes every file under a file mount's source, so mounting the project
# root would read .venv and the live data under .run (and fails when a file there vanishes
# mid-walk); the yaml mounts a staged copy of the project's own files instead (git's tracked and
# untracked-not-ignored files, ~1.5 MB). `ray down` runs a bare `ray stop` on the head, which would
# kill every Ray process of that machine if `ray` were on its PATH; `down` first stops this cluster's
# processes by their temp dir (cluster/ray_up.py). Needs an sshd the yaml's key can log in to:
# scripts/private_sshd.sh start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

YAML=cluster/ray-cluster.yaml
STAGE=.run/ray-up/project  # ray-cluster.yaml's file_mounts source for ~/flashsale
export RAY_USAGE_STATS_ENABLED=0

case "${1:-}" in
  up)
    rm -rf "$STAGE" && mkdir -p "$STAGE"
    git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$STAGE/"
    .venv/bin/ray up -y --no-config-cache "$YAML"
    ;;
  down)
    .venv/bin/ray exec "$YAML" '~/flashsale/.venv/bin/python -m cluster.ray_up stop' \
      || echo "ray_up.sh: stopping the head's Ray over ssh failed; ray down goes on" >&2
    .venv/bin/ray down -y "$YAML"
    # the head of the default one-machine cluster is this machine: nothing of it may be left
    if grep -q '^  head_ip: 127.0.0.1' "$YAML"; then .venv/bin/python -m cluster.ray_up status; fi
    ;;
  status)
    .venv/bin/python -m cluster.ray_up status
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
