#!/usr/bin/env bash
# `make test-cluster`: the Docker Compose stack for real, on a machine without Docker Hub.
# Starts dockerd if none runs (and stops the one it started), builds the images with the layer cache,
# writes a throw-away secrets file, then runs tests/compose (stack up, checks, `down -v`). Times each phase.
set -euo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
say() { printf '\033[1m[test-cluster]\033[0m %s\n' "$*"; }
# stop dockerd at the end only if this run started it; FLASHSALE_KEEP_STACK=1 keeps the stack, so its engine too
owned=0; [ -f .run/docker/dockerd.started ] || owned=1
bash cluster/docker/engine.sh start
[ -f .run/docker/dockerd.started ] || owned=0
if [ $owned = 1 ] && [ "${FLASHSALE_KEEP_STACK:-0}" != 1 ]; then
  trap 'bash cluster/docker/engine.sh stop' EXIT
elif [ $owned = 1 ]; then
  say "FLASHSALE_KEEP_STACK=1: the stack and the dockerd started here stay up (bash cluster/docker/engine.sh stop)"
fi
say "engine ready: $((SECONDS - t0)) s"
t=$SECONDS
bash cluster/docker/images.sh --nohub
say "images: $((SECONDS - t)) s"
env_file=.run/docker/test.env
python3 - "$env_file" <<'PY'
import base64, os, re, secrets, sys
names = [l.split("=", 1)[0] for l in open(".env.example") if re.match(r"^[A-Z0-9_]+=", l)]
fernet = lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
body = "".join(f"{n}={fernet() if n == 'AIRFLOW_FERNET_KEY' else secrets.token_hex(24)}\n" for n in names)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, body.encode()); os.close(fd)
PY
t=$SECONDS
FLASHSALE_COMPOSE_ENV=$env_file .venv/bin/python -m pytest -ra -s -m compose tests/compose "$@"
say "tests/compose: $((SECONDS - t)) s; test-cluster total $((SECONDS - t0)) s"
