"""`flashsale run`'s shutdown completes whatever ends the run: Ctrl-C, SIGTERM, SIGHUP (the terminal went
away) or a closed output pipe (`make run | tee run.log` with tee killed first).

The pipeline's steps are replaced by recorders here (this tests the command's shutdown logic, not the
services); tests/e2e/test_e2e_pipeline.py runs the real pipeline and stops it."""

from __future__ import annotations

import os
import signal

import pytest
import typer
from typer.testing import CliRunner

from radar import cli, pipeline


@pytest.fixture()
def fake_pipeline(monkeypatch):
    calls: list[str] = []
    monkeypatch.delenv("FLASHSALE_PROFILE", raising=False)
    monkeypatch.setattr(pipeline, "start", lambda s, opts, echo: (calls.append("start"), (s, None))[1])
    monkeypatch.setattr(pipeline, "first_alerts", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "status_line", lambda s: "ok")
    monkeypatch.setattr(pipeline, "supervise", lambda s, echo: [])
    monkeypatch.setattr("time.sleep", lambda _: None)  # the status loop waits 30 s between lines

    def stop(s, echo):
        echo("stopping services")  # must not raise even when the output is gone
        calls.append("stopped")

    monkeypatch.setattr(pipeline, "stop", stop)
    return calls


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_stop_signal_stops_everything_and_restores_the_handlers(fake_pipeline, monkeypatch, signum):
    before = {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS}
    ticks = iter(range(3))

    def running(s):
        if next(ticks) == 1:
            os.kill(os.getpid(), signum)  # delivered to this (main) thread: the handler raises
        return True

    monkeypatch.setattr(pipeline, "running", running)
    result = CliRunner().invoke(cli.app, ["run", "--alert-timeout", "1"])
    assert fake_pipeline == ["start", "stopped"], result.output
    assert "stopping ..." in result.output and "stopping services" in result.output
    assert {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS} == before


def test_a_closed_output_pipe_still_stops_everything(fake_pipeline, monkeypatch):
    real_echo = typer.echo
    monkeypatch.setattr(pipeline, "running", lambda s: True)

    def echo(message="", *args, **kwargs):
        if "[" in str(message) or "stopping" in str(message):  # tee died: every write from the loop on fails
            raise BrokenPipeError(32, "Broken pipe")
        real_echo(message, *args, **kwargs)

    monkeypatch.setattr(typer, "echo", echo)
    result = CliRunner().invoke(cli.app, ["run", "--alert-timeout", "1"])
    assert fake_pipeline == ["start", "stopped"], (result.output, result.exception)
