"""DAG integrity in the style of Airflow's example-DAG tests, and the DAGs run against the stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.services import airflow_env

ROOT = Path(__file__).resolve().parents[1]
DAG_IDS = {"flashsale_seed_dimensions", "flashsale_kpi_minute", "flashsale_archive"}

# Parse dags/ in a fresh interpreter with every network and database entry point booby-trapped.
PARSE_WITHOUT_IO = r"""
import json, socket, sys
calls = []
def trap(name):
    def boom(*a, **k):
        calls.append(name)
        raise RuntimeError(f"I/O at DAG parse time: {name}")
    return boom
socket.socket.connect = trap("socket.connect")
socket.create_connection = trap("socket.create_connection")
import pymongo, redis
pymongo.MongoClient.__init__ = trap("pymongo.MongoClient")
redis.Redis.__init__ = trap("redis.Redis")
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "calls": calls, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": str(dag.schedule) if dag.schedule is not None else None,
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "tasks": {t.task_id: {"type": type(t).__name__,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "retries": t.retries, "conn_id": getattr(t, "_conn_id", None),
                              "retry_on_timeout": getattr(t, "retry_on_timeout", None),
                              "args": [str(a) for a in getattr(t, "application_args", None) or []]} for t in dag.tasks},
    }
print(json.dumps(out))
"""


def parse_dags(tmp_path, profile: str) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "FLASHSALE_PROFILE": profile,
    }
    out = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_IO, str(ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("profile,conn", [("local", "spark_local"), ("cluster", "spark_yarn")])
def test_dags_import_cleanly_without_io(tmp_path, profile, conn):
    result = parse_dags(tmp_path, profile)
    assert result["errors"] == {}
    assert result["calls"] == []
    dags = result["dags"]
    assert set(dags) == DAG_IDS
    for dag_id, dag in dags.items():  # the minute KPI apps overlap in pairs (the hand-over), nothing else does
        assert dag["catchup"] is False and dag["max_active_runs"] == (2 if dag_id == "flashsale_kpi_minute" else 1)
        for task in dag["tasks"].values():
            assert task["retries"] >= 1 and task["timeout"]
    kpi = dags["flashsale_kpi_minute"]
    assert kpi["schedule"] == "* * * * *"
    # shorter than two intervals: with max_active_runs=2 a third app never waits behind a stuck one
    assert kpi["dagrun_timeout"] < 120 and kpi["tasks"]["compute_kpis"]["timeout"] < kpi["dagrun_timeout"]
    assert kpi["tasks"]["compute_kpis"]["type"] == "FlashsaleSparkSubmitOperator"
    assert kpi["tasks"]["compute_kpis"]["conn_id"] == conn
    # a try that timed out is not retried (the next minute supersedes it; Airflow 3's scheduler crashed
    # on the retry racing the run's timeout); quick failures still are (retries >= 1 above)
    assert kpi["tasks"]["compute_kpis"]["retry_on_timeout"] is False
    assert dags["flashsale_archive"]["tasks"]["archive_cold_hours"]["retry_on_timeout"] is False
    # the app keeps refreshing after its first cycle, and stops refreshing well before the timeout
    assert "--refresh" in kpi["tasks"]["compute_kpis"]["args"]
    from flashsale.settings import Settings

    refresh_cap = Settings.model_fields["kpi_refresh_for_seconds"].metadata
    assert max(m.le for m in refresh_cap if hasattr(m, "le")) + 4 < kpi["tasks"]["compute_kpis"]["timeout"]
    assert dags["flashsale_archive"]["tasks"]["archive_cold_hours"]["conn_id"] == conn
    assert dags["flashsale_seed_dimensions"]["schedule"] is None


# ---------------------------------------------------------------- against the stack (cluster)
def airflow(stack, *args, timeout=600):
    env = {**os.environ, **airflow_env(stack), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.services
def test_seed_dag_runs_and_is_idempotent(stack):
    from flashsale.stores import mongo_client

    for _ in range(2):
        out = airflow(stack, "dags", "test", "flashsale_seed_dimensions")
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    with mongo_client(stack) as client:
        db = client[stack.mongo_db]
        counts = {c: db[c].count_documents({}) for c in ("products_dim", "warehouses_dim", "cities_dim")}
    assert all(v > 0 for v in counts.values()), counts


@pytest.mark.services
def test_kpi_dag_on_yarn_leaves_a_fresh_snapshot(stack):
    from datetime import datetime

    from flashsale.redis_keys import keys_for, read_snapshot
    from flashsale.stores import redis_client

    started = time.time()
    out = airflow(stack, "dags", "test", "flashsale_kpi_minute")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "to yarn (YARN tag" in log
    snap = read_snapshot(redis_client(stack), keys_for(stack))
    assert snap is not None
    assert datetime.fromisoformat(snap["computed_at"]).timestamp() >= started - 1


@pytest.mark.services
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
time.sleep(2)
left = apps_with_tag(s, op.yarn_tag)
final = apps_with_tag(s, op.yarn_tag, states="FINISHED,FAILED,KILLED")
import psutil  # the client-mode driver (spark-submit JVM + the job's Python) must be gone too
drivers = [p.pid for p in psutil.process_iter(["cmdline"]) if sys.argv[1] in " ".join(p.info["cmdline"] or [])
           and p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE]  # (this script names the job too)
print(json.dumps({"running_before": running_before, "left": [a["id"] for a in left],
                  "final": {a["id"]: a["state"] for a in final}, "error": error, "drivers_left": drivers}))
"""


@pytest.mark.services
@pytest.mark.parametrize("mode", ["kill", "crash"])
def test_failed_or_killed_spark_task_leaves_no_yarn_application(stack, mode):
    """on_kill (timeout / marked failed) and a crashing driver both end with no active application and no
    local driver process."""
    env = {**os.environ, **airflow_env(stack), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["120", "0", "kill"] if mode == "kill" else ["3", "1", "nokill"]
    out = subprocess.run(
        [sys.executable, "-c", OPERATOR_RUN, str(ROOT / "tests" / "jobs" / "sleepy_job.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["running_before"]) == 1, result
    assert result["left"] == [] and result["drivers_left"] == [], result
    assert result["error"], result  # the task failed
    if mode == "kill":
        # Either we kill the application by its tag, or the SIGKILLed client-mode driver disconnects first
        # and Spark's ExecutorLauncher unregisters it as FINISHED: a race, and both end it.
        assert result["final"] and set(result["final"].values()) <= {"KILLED", "FINISHED"}, result


GUARD = r"""
import json, subprocess, time, types
import psutil
from airflow.sdk.exceptions import AirflowFailException, AirflowTaskTimeout
from cluster.airflow_spark import FlashsaleSparkSubmitOperator

def outcome(retry_on_timeout, error):
    op = FlashsaleSparkSubmitOperator(task_id="t", application="x.py", retry_on_timeout=retry_on_timeout)
    killed = []
    op.kill_yarn_applications = lambda: killed.append(True) or []
    # a stand-in for spark-submit in client mode: a process with a child (the JVM and its Python driver)
    sp = subprocess.Popen(["bash", "-c", "sleep 300 & wait"])
    op._hook = types.SimpleNamespace(_submit_sp=sp)
    deadline = time.time() + 30  # a loaded machine may take a while to fork the child
    while not psutil.Process(sp.pid).children() and time.time() < deadline:
        time.sleep(0.1)
    tree = [sp.pid] + [c.pid for c in psutil.Process(sp.pid).children(recursive=True)]
    def submit():
        raise error
    try:
        op.guarded(submit)
    except BaseException as exc:
        alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        return {"raised": type(exc).__name__, "killed": bool(killed), "tree": len(tree), "left_running": len(alive)}

print(json.dumps({
    "timeout_no_retry": outcome(False, AirflowTaskTimeout("t")),
    "timeout_retry": outcome(True, AirflowTaskTimeout("t")),
    "other_error": outcome(False, RuntimeError("spark-submit failed")),
}))
"""


def test_timeout_fails_for_good_only_when_asked_and_always_kills_the_apps_and_the_driver(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run(
        [sys.executable, "-c", GUARD],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # the YARN apps are killed, and so is the local spark-submit with its children (client-mode driver)
    assert result["timeout_no_retry"] == {
        "raised": "AirflowFailException",
        "killed": True,
        "tree": 2,
        "left_running": 0,
    }
    assert result["timeout_retry"] == {"raised": "AirflowTaskTimeout", "killed": True, "tree": 2, "left_running": 0}
    assert result["other_error"] == {"raised": "RuntimeError", "killed": True, "tree": 2, "left_running": 0}


def test_the_parse_trap_catches_io(tmp_path):
    """The integrity test above can fail: a DAG file that connects at import is caught."""
    bad = tmp_path / "dags"
    bad.mkdir()
    (bad / "bad_dag.py").write_text(
        "import redis\nfrom airflow.sdk import DAG\nredis.Redis(host='127.0.0.1').ping()\n"
        "dag = DAG(dag_id='bad', schedule=None)\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_IO, str(bad)], env=env, capture_output=True, text=True, timeout=180
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["calls"] == ["redis.Redis"] and "I/O at DAG parse time" in next(iter(result["errors"].values()))
