"""`flashsale run` from a stopped stack: the stack's start-up and the time to the first alerts.

    flock /tmp/radar-stack.lock .venv/bin/python -m bench.bench_run [--profile cluster] [--timeout 420]
    .venv/bin/python -m bench.bench_run --from-last-run   # the record of the last `make run`, nothing started

`flashsale run` measures both itself and keeps them in ``<run dir>/first_alerts.json`` (radar/pipeline.py):
the seconds `stack up` took inside the run, the seconds from the command to the first snapshot with
alerts from this run's data, and the run's conditions (profile, products, pace, load). This bench runs
the command as `make run` does (`flashsale run --profile cluster`, its defaults, with --alert-timeout
set to --timeout), waits for that record's first alerts (none within --timeout is recorded as
``first_alerts_s: null``, ``no_alerts_within_s``), then interrupts it (Ctrl-C: the run stops the
generator, the dashboard and every service) and copies the record, with the machine and the stop's
duration, to bench/results/run_first_alerts.json. It refuses to start while any service of the
profile is up: a running stack is not a cold start. It leaves the stack stopped, as it found it. The hot store's data
stays (an earlier run's data makes the inventory bootstrap read more: the record says when the data
starts, ``data_as_of``).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from flashsale.settings import PROJECT_ROOT, load_settings

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "run_first_alerts.json"
FIRST_ALERTS = "first_alerts.json"  # radar/pipeline.py FIRST_ALERTS (bench sits above radar.pipeline)


def _machine() -> dict:
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
    }


def _write(record: dict, **extra: object) -> None:
    if "stack_up_s" not in record:
        raise SystemExit(f"the run left no record of its start: {record}")
    out = {**record, **extra, "machine": _machine()}
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"wrote {OUT}")


def main(
    profile: str = typer.Option("cluster", help="the profile `flashsale run` starts"),
    timeout: float = typer.Option(420.0, help="seconds to wait for the first alerts before giving up"),
    from_last_run: bool = typer.Option(False, help="copy the last run's record; start nothing"),
):
    s = load_settings(profile=profile)
    record_path = s.run_dir / FIRST_ALERTS
    if from_last_run:
        _write(json.loads(record_path.read_text()), command="flashsale run (the last run; copied)")
        return
    from cluster import stack

    up = [x.name for x in stack.status(s) if x.running]
    if up:
        raise SystemExit(f"services are up ({', '.join(up)}): stop them first (`make stop`) for a cold start")
    record_path.unlink(missing_ok=True)
    command = [
        str(PROJECT_ROOT / ".venv" / "bin" / "flashsale"),
        *("run", "--profile", profile, "--alert-timeout", f"{timeout:g}"),
    ]
    started = time.time()
    run = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True)
    record: dict = {}
    try:
        while time.time() - started < timeout + 30 and run.poll() is None:
            time.sleep(2)
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            if "first_alerts_s" in record:
                break
    finally:
        t = time.monotonic()
        if run.poll() is None:
            run.send_signal(signal.SIGINT)  # the run's own shutdown: nothing is left running
            run.wait(timeout=600)
        stop_s = round(time.monotonic() - t, 1)
    if "first_alerts_s" not in record:  # none within the timeout: that is the figure
        record.update(first_alerts_s=None, no_alerts_within_s=timeout)
    _write(
        record,
        command=" ".join(["flashsale", *command[1:]]),
        exit_code=run.returncode,
        stop_s=stop_s,
        measured_at=record.get("measured_at", datetime.now(UTC).isoformat(timespec="seconds")),
    )


if __name__ == "__main__":
    typer.run(main)
