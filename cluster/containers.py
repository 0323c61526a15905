"""Entrypoint helpers of the compose containers: the same settings-derived setup the local stack does.

    eval "$(python -m cluster.containers airflow-env)"   # Airflow's env from cluster.services.airflow_env
    python -m cluster.containers airflow-password         # generate the admin password file once
    python -m cluster.containers ray-token                # RAY_AUTH_TOKEN -> the settings' token file

Compose sets only what differs in containers (hosts, the metadata database, the JWT secret); every
other Airflow variable and every connection comes from ``cluster.services.airflow_env`` and
``flashsale.connections`` exactly as ``flashsale stack up`` exports them. A variable already in the
container's environment wins.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

from cluster.services import airflow_password_file
from flashsale.settings import Settings, load_settings


def airflow_exports(s: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    from cluster.services import airflow_env

    present: Mapping[str, str] = os.environ if environ is None else environ
    return {k: v for k, v in airflow_env(s).items() if k not in present}


def airflow_password(s: Settings) -> str | None:
    from cluster.stack import _ensure_airflow_password

    return _ensure_airflow_password(s)


def ray_token(s: Settings) -> None:
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        raise SystemExit("RAY_AUTH_TOKEN is not set (see .env.example)")
    path = s.ray_token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(token)


def main(argv: list[str]) -> None:
    s = load_settings()
    cmd = argv[0] if argv else ""
    if cmd == "airflow-env":
        for key, value in airflow_exports(s).items():
            print(f"export {key}={shlex.quote(value)}")
    elif cmd == "airflow-password":
        password = airflow_password(s)
        if password:  # never printed: container logs outlive the container and are read by many
            print(f"Airflow admin login: {s.airflow_admin_user}; its password is in {airflow_password_file(s)}")
        else:
            print("Airflow admin password file already exists (kept)")
    elif cmd == "ray-token":
        ray_token(s)
    else:
        raise SystemExit("usage: python -m cluster.containers airflow-env|airflow-password|ray-token")


if __name__ == "__main__":
    main(sys.argv[1:])
