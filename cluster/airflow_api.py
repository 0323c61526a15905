"""The few Airflow REST calls the pipeline needs (Airflow 3: /auth/token JWT, then /api/v2)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from cluster.services import airflow_password_file
from flashsale.settings import Settings


def base_url(s: Settings) -> str:
    return f"http://{s.bind_host}:{s.airflow_port}"


def token(s: Settings, password: str | None = None) -> str | None:
    """A JWT for the admin user (password: the generated one). None when Airflow refuses the login."""
    if password is None:
        password = json.loads(airflow_password_file(s).read_text())[s.airflow_admin_user]
    req = urllib.request.Request(
        f"{base_url(s)}/auth/token",
        data=json.dumps({"username": s.airflow_admin_user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["access_token"]
    except urllib.error.HTTPError:
        return None


def call(s: Settings, method: str, path: str, body: dict | None = None, jwt: str | None = None) -> dict:
    jwt = jwt or token(s)
    if jwt is None:
        raise RuntimeError(f"Airflow refused the admin login: is {airflow_password_file(s)} current?")
    req = urllib.request.Request(
        f"{base_url(s)}/api/v2/{path.lstrip('/')}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {jwt}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=15) as resp:
        return json.loads(resp.read() or b"{}")


def set_paused(s: Settings, dag_ids, paused: bool) -> None:
    jwt = token(s)
    for dag_id in dag_ids:
        call(s, "PATCH", f"dags/{dag_id}?update_mask=is_paused", {"is_paused": paused}, jwt=jwt)


def dag_runs(s: Settings, dag_id: str, limit: int = 20) -> list[dict]:
    """The newest runs of a DAG, newest first."""
    return call(s, "GET", f"dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")["dag_runs"]


def fail_active_runs(s: Settings, dag_id: str) -> list[str]:
    """Mark the DAG's queued and running runs failed (their tasks are killed: on_kill ends YARN apps)."""
    from urllib.parse import quote

    jwt = token(s)
    active = [
        r["dag_run_id"]
        for r in call(s, "GET", f"dags/{dag_id}/dagRuns?state=running&state=queued", jwt=jwt)["dag_runs"]
    ]
    for run_id in active:
        call(
            s,
            "PATCH",
            f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}?update_mask=state",
            {"state": "failed"},
            jwt=jwt,
        )
    return active


def trigger(s: Settings, dag_id: str, conf: dict | None = None) -> str:
    """Start a manual run now; returns its run id."""
    run = call(s, "POST", f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
    return run["dag_run_id"]


def wait_for_run(s: Settings, dag_id: str, run_id: str, timeout: float = 600, poll: float = 3.0) -> str:
    """Block until the run finishes; returns its final state ('success' or 'failed')."""
    import time
    from urllib.parse import quote

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = call(s, "GET", f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(poll)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s")
