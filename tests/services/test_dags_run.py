"""The DAGs run against the stack (cluster profile): `airflow dags test` of each DAG, and a failed or
killed Spark task leaves no YARN application and no local driver. DAG integrity (parsing with every I/O
entry point trapped) and the operator's timeout guard are tests/integration/test_dags.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.services import airflow_env
from flashsale.settings import PROJECT_ROOT


def airflow(stack, *args, timeout=600, env_extra: dict[str, str] | None = None):
    env = {**os.environ, **airflow_env(stack), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.update(env_extra or {})
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_seed_dag_runs_and_is_idempotent(stack):
    from flashsale.stores import mongo_client

    for _ in range(2):
        out = airflow(stack, "dags", "test", "flashsale_seed_dimensions")
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    with mongo_client(stack) as client:
        db = client[stack.mongo_db]
        counts = {c: db[c].count_documents({}) for c in ("products_dim", "warehouses_dim", "cities_dim")}
    assert all(v > 0 for v in counts.values()), counts


def test_kpi_dag_on_yarn_leaves_a_fresh_snapshot(stack):
    """No app serves: the minute's run starts one (here for one cycle, not the hour), which publishes."""
    from datetime import datetime

    from flashsale.redis_keys import keys_for, read_snapshot
    from flashsale.stores import redis_client

    r, keys = redis_client(stack), keys_for(stack)
    r.delete(keys.head, keys.launch)
    started = time.time()
    out = airflow(stack, "dags", "test", "flashsale_kpi_minute", env_extra={"FLASHSALE_KPI_REFRESH_FOR_SECONDS": "0"})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "KPI app: no scheduled app has published" in log and "to yarn (YARN tag" in log
    snap = read_snapshot(r, keys)
    assert snap is not None
    assert datetime.fromisoformat(snap["computed_at"]).timestamp() >= started - 1


def test_kpi_dag_only_looks_while_an_app_serves(stack):
    """A live app published seconds ago and serves for long: the minute's run starts no Spark app."""
    from flashsale.redis_keys import keys_for
    from flashsale.stores import redis_client

    r, keys = redis_client(stack), keys_for(stack)
    now = time.time()
    head = {"run_id": "live", "data_as_of": "2026-01-01T00:00:00+00:00", "app_started_at": now - 60}
    r.set(keys.head, json.dumps({**head, "app_deadline": now + 3000, "published_at": now}), ex=300)
    r.delete(keys.launch)
    try:
        out = airflow(stack, "dags", "test", "flashsale_kpi_minute")
    finally:
        r.delete(keys.head, keys.launch)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "serves (published" in log and "to yarn (YARN tag" not in log


def test_archive_dag_runs(stack):
    out = airflow(stack, "dags", "test", "flashsale_archive")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "ARCHIVE_RESULT" in log


OPERATOR_RUN = r"""
import json, os, sys, threading, time
from types import SimpleNamespace
from cluster.airflow_spark import FlashsaleSparkSubmitOperator
from cluster.yarn import apps_with_tag
from flashsale.settings import get_settings
seconds, code, kill = float(sys.argv[2]), sys.argv[3], sys.argv[4] == "kill"
op = FlashsaleSparkSubmitOperator(task_id="t", application=sys.argv[1], name="flashsale-sleepy",
                                  application_args=[str(seconds), code], profile="cluster")
ti = SimpleNamespace(dag_id="zombie_test", run_id=f"run-{time.time_ns()}", try_number=1)
error = []
def run():
    try:
        op.execute({"ti": ti})
    except BaseException as exc:
        error.append(type(exc).__name__)
t = threading.Thread(target=run); t.start()
s = get_settings()
deadline = time.time() + 180
def running(tag):
    return [a for a in apps_with_tag(s, tag) if a["state"] == "RUNNING"]
while time.time() < deadline and not (op.yarn_tag and running(op.yarn_tag)):
    time.sleep(1)
running_before = [a["id"] for a in apps_with_tag(s, op.yarn_tag)] if op.yarn_tag else []
if kill:
    op.on_kill()
t.join(240)
import psutil  # the client-mode driver (spark-submit JVM + the job's Python) must be gone too
def drivers_alive():
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if (sys.argv[1] in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid()
                    and p.status() != psutil.STATUS_ZOMBIE):  # (this script names the job too)
                out.append(p.pid)
        except psutil.Error:  # it ended while we looked
            pass
    return out
# the ResourceManager moves a killed app out of the active states within seconds, and the driver's
# processes exit as fast as a loaded machine lets them: wait for both (up to 60 s), never just sleep
settle = time.time() + 60
while True:
    left, drivers = apps_with_tag(s, op.yarn_tag), drivers_alive()
    if (not left and not drivers) or time.time() > settle:
        break
    time.sleep(1)
final = apps_with_tag(s, op.yarn_tag, states="FINISHED,FAILED,KILLED")
print(json.dumps({"running_before": running_before, "left": [a["id"] for a in left],
                  "final": {a["id"]: a["state"] for a in final}, "error": error, "drivers_left": drivers}))
"""


@pytest.mark.parametrize("mode", ["kill", "crash"])
def test_failed_or_killed_spark_task_leaves_no_yarn_application(stack, mode):
    """on_kill (timeout / marked failed) and a crashing driver both end with no active application and no
    local driver process."""
    env = {**os.environ, **airflow_env(stack), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["120", "0", "kill"] if mode == "kill" else ["3", "1", "nokill"]
    out = subprocess.run(
        [sys.executable, "-c", OPERATOR_RUN, str(PROJECT_ROOT / "tests" / "jobs" / "sleepy_job.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["running_before"]) == 1, result
    assert result["left"] == [] and result["drivers_left"] == [], result
    if mode == "crash":
        assert result["error"], result  # the task failed
    if mode == "kill":
        # execute() may return normally here (the client-mode driver of a killed app can exit 0): Airflow
        # marks a killed task failed itself; what on_kill owes is no application and no driver left
        # Either we kill the application by its tag, or the SIGKILLed client-mode driver disconnects first
        # and Spark's ExecutorLauncher unregisters it as FINISHED: a race, and both end it.
        assert result["final"] and set(result["final"].values()) <= {"KILLED", "FINISHED"}, result
