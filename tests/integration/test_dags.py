"""DAG integrity in the style of Airflow's example-DAG tests (DagBag in a fresh interpreter, every I/O entry
point trapped) and the Spark operator's timeout guard: Airflow imported, no services. The DAGs run
against the stack in tests/services/test_dags_run.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flashsale.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT
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
                              "supervise": getattr(t, "supervise_kpi_app", None),
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
    # the serving app lives about an hour: its task's timeout is longer, the run's longer still
    assert kpi["tasks"]["compute_kpis"]["timeout"] < kpi["dagrun_timeout"]
    assert kpi["tasks"]["compute_kpis"]["type"] == "FlashsaleSparkSubmitOperator"
    assert kpi["tasks"]["compute_kpis"]["conn_id"] == conn
    # a try that timed out is not retried (the next minute replaces it; Airflow 3's scheduler crashed
    # on the retry racing the run's timeout); quick failures still are (retries >= 1 above)
    assert kpi["tasks"]["compute_kpis"]["retry_on_timeout"] is False
    assert dags["flashsale_archive"]["tasks"]["archive_cold_hours"]["retry_on_timeout"] is False
    # the app keeps refreshing after its first cycle, and stops refreshing well before the timeout
    assert "--refresh" in kpi["tasks"]["compute_kpis"]["args"]
    assert kpi["tasks"]["compute_kpis"]["supervise"] is True  # each minute looks; starts an app only if needed
    assert dags["flashsale_archive"]["tasks"]["archive_cold_hours"]["supervise"] is False
    from flashsale.settings import Settings

    refresh_cap = Settings.model_fields["kpi_refresh_for_seconds"].metadata
    assert max(m.le for m in refresh_cap if hasattr(m, "le")) + 4 < kpi["tasks"]["compute_kpis"]["timeout"]
    assert dags["flashsale_archive"]["tasks"]["archive_cold_hours"]["conn_id"] == conn
    assert dags["flashsale_seed_dimensions"]["schedule"] is None


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
        cwd=str(ROOT),
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
