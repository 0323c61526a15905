"""Run the Spark apps from Python (`flashsale kpi`, `flashsale archive`, benches, tests): submit with
cluster/spark_submit.py, wait, and parse the one result line the app prints.

The apps themselves live in spark/; what caller and driver agree on (entry points, flags, result
prefixes) is the kernel's flashsale/job_args.py, so this module never imports a Spark job."""

from __future__ import annotations

import time
from pathlib import Path

from cluster.spark_submit import run_app
from flashsale.job_args import ARCHIVE_APP, ARCHIVE_RESULT_PREFIX, KPI_APP, KPI_RESULT_PREFIX, settings_args
from flashsale.settings import Settings


def kpi_args(
    s: Settings,
    *,
    as_of: str | None = None,
    window_minutes: int | None = None,
    no_archive: bool = False,
    submitted_at: float | None = None,
) -> list[str]:
    """Job arguments that carry the caller's settings overrides into the driver process."""
    if window_minutes:
        s = s.model_copy(update={"kpi_window_minutes": window_minutes})
    args = settings_args(s)
    if as_of:
        args += ["--as-of", as_of]
    if no_archive:
        args.append("--no-archive")
    if submitted_at is not None:
        args += ["--submitted-at", f"{submitted_at:.3f}"]
    return args


def run_kpi(s: Settings, master: str | None = None, timeout: float = 600, log_dir: Path | None = None, **kw) -> dict:
    """spark-submit the KPI job, wait, and return its KPI_RESULT plus the wall time seen by the caller."""
    master = master or s.spark_master
    t0 = time.time()
    res, proc = run_app(
        s,
        str(KPI_APP),
        kpi_args(s, submitted_at=t0, **kw),
        KPI_RESULT_PREFIX,
        master=master,
        name="flashsale-kpi",
        timeout=timeout,
    )
    wall = time.time() - t0
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "kpi_job.stderr.log").write_text(proc.stderr)
    if proc.returncode != 0 or res is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"KPI job failed on {master} (exit {proc.returncode}):\n{tail}")
    res["wall_s"] = round(wall, 3)
    t = res["timings_s"]
    # after the snapshot is written the driver still stops Spark: that tail is not on the KPI path
    res["timings_s"]["spark_stop_and_exit_s"] = round(wall - t.get("submit_to_snapshot_s", wall), 3)
    return res


def archive_args(s: Settings, now: str | None = None, max_batches: int = 0, force: bool = False) -> list[str]:
    args = settings_args(s)
    if now:
        args += ["--now", now]
    if max_batches:
        args += ["--max-batches", str(max_batches)]
    if force:
        args.append("--force")
    return args


def run_archive(s: Settings, master: str | None = None, crash_at: str | None = None, **kw) -> dict:
    result, proc = run_app(
        s,
        str(ARCHIVE_APP),
        archive_args(s, **kw),
        ARCHIVE_RESULT_PREFIX,
        master=master,
        name="flashsale-archive",
        env_extra={"FLASHSALE_ARCHIVE_CRASH_AT": crash_at or ""},
    )
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"archive job failed (exit {proc.returncode}):\n{tail}")
    result["log"] = [ln for ln in proc.stdout.splitlines() if ln.startswith("[archive batch=")]
    return result
