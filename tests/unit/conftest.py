"""The unit tier stays a unit tier: no JVM, no server, no Ray, no Airflow.

Checked, not trusted:
- importing a unit test module must not import pyspark/py4j, ray or airflow (the module's collection
  fails otherwise);
- a unit test must not import them either, nor start a process that is a JVM, Spark, Ray, Airflow, a
  server or the compose binary (by executable name), nor a Python that imports or runs pyspark/ray/
  airflow (``-c`` code or ``-m``). The test fails at teardown otherwise.
Python subprocesses of the project's own CLI and plain helper processes (sleepers) are allowed.
tests/unit/test_tier_guard.py proves each of these checks fails when it should.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HEAVY = ("pyspark", "py4j", "ray", "airflow")
SERVERS = {
    "java",
    "spark-submit",
    "spark-class",
    "pyspark",
    "ray",
    "raylet",
    "gcs_server",
    "airflow",
    "redis-server",
    "ferretdb",
    "mongod",
    "mongos",
    "hdfs",
    "yarn",
    "docker",
    "docker-compose",
    "streamlit",
    "chromium",
}
HEAVY_CODE = re.compile(r"^\s*(?:from|import)\s+(?:pyspark|py4j|ray|airflow)\b", re.M)


def heavy_modules() -> set[str]:
    return {name for name in list(sys.modules) if name.split(".", 1)[0] in HEAVY}


def forbidden_command(args) -> str | None:
    """Why starting ``args`` breaks the unit tier, or None."""
    argv = [os.fspath(a) for a in ([args] if isinstance(args, (str, bytes, os.PathLike)) else list(args))]
    if not argv:
        return None
    if isinstance(args, (str, bytes)):
        argv = str(argv[0]).split()  # shell=True or a bare command string
    exe = os.path.basename(str(argv[0]))
    if exe in SERVERS:
        return f"starts {exe}"
    if exe.startswith("python"):
        rest = [str(a) for a in argv[1:]]
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            module = rest[rest.index("-m") + 1].split(".", 1)[0]
            if module in HEAVY or module in SERVERS:
                return f"runs python -m {module}"
        if "-c" in rest and rest.index("-c") + 1 < len(rest) and HEAVY_CODE.search(rest[rest.index("-c") + 1]):
            return "runs Python code that imports pyspark/ray/airflow"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """Importing a unit test module (its collection) must not pull in pyspark, ray or airflow."""
    if not isinstance(collector, pytest.Module):
        return (yield)
    before = heavy_modules()
    report = yield
    new = heavy_modules() - before
    if new and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.path.name} imports {sorted({n.split('.', 1)[0] for n in new})} at import time: "
            "a unit test needs no JVM, Ray or Airflow (move it to tests/integration/)"
        )
    return report


@pytest.fixture(autouse=True)
def _stays_a_unit_test(monkeypatch):
    started: list[str] = []
    popen_init = subprocess.Popen.__init__

    def watched_init(self, *a, **kw):
        args = a[0] if a else kw.get("args")
        why = forbidden_command(args) if args is not None else None
        if why:
            started.append(f"{why}: {args!r}"[:300])
        popen_init(self, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", watched_init)  # subprocess.run/check_output too
    before = heavy_modules()
    yield
    monkeypatch.undo()
    imported = sorted({n.split(".", 1)[0] for n in heavy_modules() - before})
    problems = [f"imported {imported}"] if imported else []
    problems += started
    if problems:
        pytest.fail(
            "a unit test needs no JVM, no server, no Ray and no Airflow (move it to tests/integration/ or "
            "tests/services/): " + "; ".join(problems),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _own_run_directory(monkeypatch, tmp_path_factory):
    """A unit test reads no run directory of a live pipeline: `.run/pipeline.env` of a `make run` in another
    terminal would change the settings it loads (a sale calendar, a database). A test may set its own."""
    if "FLASHSALE_RUN_DIR" not in os.environ:
        monkeypatch.setenv("FLASHSALE_RUN_DIR", str(tmp_path_factory.getbasetemp() / "run"))
