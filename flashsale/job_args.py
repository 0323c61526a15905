"""The settings a caller hands to a Spark driver process, as command-line flags (one definition).

The caller's overrides (tests and benches use their own database, namespace or archive) must reach
the driver, which builds its own settings object: ``settings_args`` writes them, ``add_settings_args``
declares them, ``settings_from_args`` reads them back. The apps' entry points and the prefix of the one result line
each prints are part of the same contract: launchers (cluster/spark_apps.py, the DAGs) name them from
here and never import a Spark job.
"""

from __future__ import annotations

import argparse

from flashsale.settings import PROJECT_ROOT, Settings, load_settings

KPI_APP = PROJECT_ROOT / "spark" / "kpi_job.py"
ARCHIVE_APP = PROJECT_ROOT / "spark" / "archive_job.py"
KPI_RESULT_PREFIX = "KPI_RESULT "
ARCHIVE_RESULT_PREFIX = "ARCHIVE_RESULT "

# settings field -> flag
FLAGS = {
    "profile": "--profile",
    "mongo_db": "--mongo-db",
    "mongo_auth_source": "--mongo-auth-source",
    "archive_root": "--archive-root",
    "kpi_redis_namespace": "--namespace",
    "kpi_window_minutes": "--window-minutes",
    "kpi_clock": "--clock",
}


def settings_args(s: Settings) -> list[str]:
    args: list[str] = []
    for field, flag in FLAGS.items():
        value = getattr(s, field)
        if value is not None:
            args += [flag, str(value)]
    return args


def add_settings_args(ap: argparse.ArgumentParser) -> None:
    for field, flag in FLAGS.items():
        ap.add_argument(flag, dest=field, default=None, type=int if field == "kpi_window_minutes" else str)


def settings_from_args(a: argparse.Namespace) -> Settings:
    return load_settings(**{f: getattr(a, f) for f in FLAGS if getattr(a, f, None) is not None})
