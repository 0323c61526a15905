"""The dashboard's only I/O: one Redis read per refresh through the key contract (flashsale/redis_keys.py)."""

from __future__ import annotations

from dashboard.view_model import Fetch
from flashsale.redis_keys import Keys, read_snapshot

TREND_POINTS = 60  # runs shown by the sparklines (one per minute: the last hour)


def fetch(client, keys: Keys, trend_points: int = TREND_POINTS) -> Fetch:
    """One MULTI/EXEC round trip (snapshot + its trend). Never raises: errors become ``Fetch.error``."""
    try:
        return Fetch(snapshot=read_snapshot(client, keys, trend_points=trend_points))
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, auth, bad JSON: all shown as a banner
        return Fetch(error=_short(exc))


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
