"""Bad input to the `flashsale` command: one line naming the problem and a non-zero exit, no traceback.

Every case here is refused before any service, JVM or Ray is touched, so this runs in the unit tier."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from radar.cli import app

CASES = {
    "unknown profile": (["kpi", "--profile", "staging"], "profile: Input should be 'local' or 'cluster'"),
    "naive --as-of": (["kpi", "--as-of", "2025-11-11T00:15"], "--as-of: expected ISO 8601 with a UTC offset"),
    "malformed --now": (["archive", "--now", "yesterday"], "--now: expected ISO 8601 with a UTC offset"),
    "naive --start": (["generate", "--fast", "--start", "2025-11-10T22:00"], "expected ISO 8601 with a UTC offset"),
    "unknown --ray": (["generate", "--fast", "--ray", "cloud"], "--ray: unknown value 'cloud'"),
    "unknown --sink": (["generate", "--fast", "--ray", "inline", "--sink", "kafka"], "sink: unknown kind 'kafka'"),
    "--fast and --speed": (["generate", "--fast", "--speed", "5"], "choose exactly one of --fast or --speed"),
    "--max-batches -1": (["archive", "--max-batches", "-1"], "--max-batches"),
    "--window-minutes 0": (["kpi", "--window-minutes", "0"], "--window-minutes"),
    "window past archival": (["kpi", "--window-minutes", "90"], "must be below archive_min_age_minutes"),
    "unknown --setting": (["run", "--setting", "mongo_dbase=x"], "--setting: expected KEY=VALUE with KEY a setting"),
    "--setting without =": (["run", "--setting", "mongo_db"], "--setting: expected KEY=VALUE"),
    "bad --setting value": (["run", "--setting", "kpi_queue_size=many"], "--setting: kpi_queue_size"),
}


@pytest.mark.parametrize("argv,expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_clear_error_and_a_nonzero_exit(argv, expected, monkeypatch):
    monkeypatch.delenv("FLASHSALE_PROFILE", raising=False)
    result = CliRunner().invoke(app, argv)
    text = " ".join(result.output.split())  # click's usage box wraps long messages
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert expected in text, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


NOTHING_LISTENS = {"FLASHSALE_MONGO_PORT": "1", "FLASHSALE_RAY_PORT": "1"}  # port 1: connection refused at once

DOWN = {
    "seed, hot store down": (["seed", "--products", "10"], "the hot store at 127.0.0.1:1 does not answer"),
    "generate, hot store down": (["generate", "--fast", "--ray", "inline"], "the hot store at 127.0.0.1:1"),
    "--ray stack, Ray down": (["generate", "--fast", "--ray", "stack", "--sink", "null"], "no Ray head at 127.0.0.1:1"),
}


@pytest.mark.parametrize("argv,expected", DOWN.values(), ids=DOWN.keys())
def test_a_missing_service_is_named_within_seconds(argv, expected, monkeypatch):
    """Nothing listening: one line naming the service and the fix, within seconds (no 600 s writer retry)."""
    import time

    for key, value in NOTHING_LISTENS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLASHSALE_MONGO_PASSWORD", "unused")  # a fresh machine has no generated secret yet
    t0 = time.monotonic()
    result = CliRunner().invoke(app, argv)
    assert time.monotonic() - t0 < 10
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
    assert "start it with `flashsale stack up`" in result.output and "Traceback" not in result.output
