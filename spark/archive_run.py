"""Run the archival job (`flashsale archive`, the archival DAG and tests call this)."""

from __future__ import annotations

from flashsale.settings import PROJECT_ROOT, Settings
from spark.job_args import settings_args

ARCHIVE_APP = PROJECT_ROOT / "spark" / "archive_job.py"


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
    from cluster.spark import run_app
    from spark.archive_job import RESULT_PREFIX

    result, proc = run_app(s, str(ARCHIVE_APP), archive_args(s, **kw), RESULT_PREFIX, master=master,
                           name="flashsale-archive", env_extra={"FLASHSALE_ARCHIVE_CRASH_AT": crash_at or ""})
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"archive job failed (exit {proc.returncode}):\n{tail}")
    result["log"] = [ln for ln in proc.stdout.splitlines() if ln.startswith("[archive batch=")]
    return result
