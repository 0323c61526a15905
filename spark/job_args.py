"""The settings a caller hands to a Spark driver process, as command-line flags (one definition).

The caller's overrides (tests and benches use their own database, namespace or archive) must reach
the driver, which builds its own settings object: ``settings_args`` writes them, ``add_settings_args``
declares them, ``settings_from_args`` reads them back.
"""

from __future__ import annotations

import argparse

from flashsale.settings import Settings, load_settings

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
