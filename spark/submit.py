"""Submit one KPI cycle with cluster.spark.submit_command and report where the time went."""

from __future__ import annotations

import time
from pathlib import Path

from flashsale.settings import PROJECT_ROOT, Settings
from spark.job_args import settings_args

KPI_APP = PROJECT_ROOT / "spark" / "kpi_job.py"
RESULT_PREFIX = "KPI_RESULT "


def kpi_args(s: Settings, *, as_of: str | None = None, window_minutes: int | None = None,
             no_archive: bool = False, submitted_at: float | None = None) -> list[str]:
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
    from cluster.spark import run_app

    master = master or s.spark_master
    t0 = time.time()
    res, proc = run_app(s, str(KPI_APP), kpi_args(s, submitted_at=t0, **kw), RESULT_PREFIX, master=master,
                        name="flashsale-kpi", timeout=timeout)
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
