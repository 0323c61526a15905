"""`flashsale dashboard`: the server command line and the missing-secret path (no server started)."""

from __future__ import annotations

from typer.testing import CliRunner

from dashboard.serve import APP, command
from radar.cli import app


def test_server_command_is_loopback_headless_and_hides_error_details():
    cmd = command(8599)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(APP) and APP.exists()
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.port"] == "8599" and opts["--server.address"] == "127.0.0.1"
    assert opts["--client.showErrorDetails"] == "none" and opts["--browser.gatherUsageStats"] == "false"


def test_missing_redis_secret_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHSALE_RUN_DIR", str(tmp_path))  # no secrets.env there
    monkeypatch.delenv("FLASHSALE_REDIS_PASSWORD", raising=False)
    res = CliRunner().invoke(app, ["dashboard", "--port", "1"])
    assert res.exit_code == 2 and "FLASHSALE_REDIS_PASSWORD is not set" in res.output
    assert "Traceback" not in res.output
