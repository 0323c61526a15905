"""The tier checks can fail: tests/conftest.py (folder = marker, no test file directly in tests/) and
tests/unit/conftest.py (no pyspark/ray/airflow import, no JVM/Ray/Airflow/server process in a unit test),
run by a nested pytest on a throw-away tree holding copies of both conftests and tests that break them.

Nothing heavy is started: "pyspark", "ray" and "airflow" there are empty stand-in packages, and "java" is a
shell script that exits 0. The checks go by module and executable names, so the stand-ins trip them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
INI = """[pytest]
pythonpath = tests
markers =
    unit: u
    integration: i
    services: s
    e2e: e
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "integration").mkdir()
    shutil.copy(TESTS / "conftest.py", tmp_path / "tests" / "conftest.py")
    shutil.copy(TESTS / "unit" / "conftest.py", tmp_path / "tests" / "unit" / "conftest.py")
    for name in ("pyspark", "ray", "airflow"):  # stand-ins: importing them costs nothing
        (tmp_path / "fakes" / name).mkdir(parents=True)
        (tmp_path / "fakes" / name / "__init__.py").write_text("")
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    return tmp_path


def write(tree: Path, rel: str, code: str) -> None:
    (tree / rel).write_text(textwrap.dedent(code))


def nested_pytest(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tree / "pytest.ini"), "--rootdir", str(tree)]
        + ["-p", "no:cacheprovider", "-q", "-rA", *args],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree / "fakes"), "HOME": str(tree), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_clean_unit_test_passes_and_gets_its_folders_marker(tree):
    write(tree, "tests/unit/test_fine.py", "def test_fine():\n    assert True\n")
    out = nested_pytest(tree, "-m", "unit", "tests/unit", "tests/integration")
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout + out.stderr
    out = nested_pytest(tree, "-m", "integration", "tests/unit", "tests/integration")
    assert out.returncode == 5 and "1 deselected" in out.stdout, out.stdout + out.stderr  # 5: nothing selected


def test_a_test_file_directly_in_tests_fails_collection_even_of_one_tier(tree):
    write(tree, "tests/unit/test_fine.py", "def test_fine():\n    pass\n")
    write(tree, "tests/test_loose.py", "def test_loose():\n    pass\n")
    out = nested_pytest(tree, "tests/unit")  # as `make test-unit`: the loose file is not even among the paths
    assert out.returncode == 4, out.stdout + out.stderr  # a usage error: nothing runs
    assert "test files live in one tier folder" in out.stderr and "tests/test_loose.py" in out.stderr, out.stderr


def test_another_tiers_marker_fails_collection(tree):
    write(tree, "tests/unit/test_marked.py", "import pytest\n\n@pytest.mark.integration\ndef test_x():\n    pass\n")
    out = nested_pytest(tree, "tests/unit")
    assert out.returncode == 4, out.stdout + out.stderr  # a usage error: nothing runs
    assert "test_marked.py::test_x: folder unit, tier markers ['integration', 'unit']" in out.stderr, out.stderr


def test_a_unit_module_importing_pyspark_fails_collection(tree):
    write(tree, "tests/unit/test_imports.py", "import pyspark\n\ndef test_x():\n    pass\n")
    write(tree, "tests/integration/test_may.py", "import pyspark\n\ndef test_y():\n    pass\n")
    out = nested_pytest(tree, "tests/unit", "tests/integration")  # in tier order, as `make test`
    assert out.returncode == 2, out.stdout + out.stderr  # a collection error: nothing runs
    assert "test_imports.py imports ['pyspark'] at import time" in out.stdout, out.stdout
    assert "ERROR tests/unit/test_imports.py" in out.stdout and "ERROR tests/integration" not in out.stdout


def test_a_unit_test_that_imports_ray_or_starts_java_or_airflow_fails(tree):
    write(
        tree,
        "tests/unit/test_heavy.py",
        f"""
        import subprocess, sys

        def test_imports_ray():
            import ray

        def test_starts_java():
            subprocess.run([{str(tree / "bin" / "java")!r}, "-version"])

        def test_runs_airflow_code():
            subprocess.run([sys.executable, "-c", "import airflow"])

        def test_runs_the_projects_cli_is_fine():
            subprocess.run([sys.executable, "-c", "print('ok')"], check=True)
        """,
    )
    out = nested_pytest(tree, "tests/unit")
    assert out.returncode == 1, out.stdout + out.stderr
    summary = out.stdout.split("short test summary")[-1]
    assert "ERROR tests/unit/test_heavy.py::test_imports_ray" in summary and "imported ['ray']" in summary
    assert "ERROR tests/unit/test_heavy.py::test_starts_java" in summary and "starts java" in summary
    assert "ERROR tests/unit/test_heavy.py::test_runs_airflow_code" in summary
    assert "imports pyspark/ray/airflow" in summary
    assert "PASSED tests/unit/test_heavy.py::test_runs_the_projects_cli_is_fine" in summary
    assert "4 passed, 3 errors" in out.stdout  # a teardown error each: the bodies themselves passed
