"""Find and kill YARN applications by tag through the ResourceManager's REST API.

Every Spark submit from Airflow carries a unique ``spark.yarn.tags`` value per task try, so a failed,
timed-out or killed task can kill exactly its own application (apache/airflow#15280: client-mode
submits otherwise leave zombie applications behind).
"""

from __future__ import annotations

import json
import re
import urllib.request

from flashsale.settings import Settings

ACTIVE = "NEW,NEW_SAVING,SUBMITTED,ACCEPTED,RUNNING"


def safe_tag(text: str) -> str:
    """YARN tags are lower-cased ASCII without commas; keep them short and unambiguous."""
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower())[:96]


def apps(s: Settings, states: str = ACTIVE, tag: str | None = None) -> list[dict]:
    """The ResourceManager's applications in ``states`` (carrying ``tag`` if given)."""
    url = f"{s.resourcemanager_http}/ws/v1/cluster/apps?states={states}"
    if tag is not None:
        url += f"&applicationTags={safe_tag(tag)}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (loopback RM)
        found = json.loads(resp.read()).get("apps") or {}
    return found.get("app", [])


def apps_with_tag(s: Settings, tag: str, states: str = ACTIVE) -> list[dict]:
    return apps(s, states, tag)


def kill_apps_with_tag(s: Settings, tag: str) -> list[str]:
    """Kill every active application carrying ``tag``; returns their ids."""
    killed = []
    for app in apps_with_tag(s, tag):
        req = urllib.request.Request(
            f"{s.resourcemanager_http}/ws/v1/cluster/apps/{app['id']}/state",
            data=json.dumps({"state": "KILLED"}).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310
            killed.append(app["id"])
    return killed
