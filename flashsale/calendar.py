"""The planned sale calendar: what the business publishes ahead of a sale (events, their lift and decay).

The radar reads it as an input (setting ``kpi_sale_calendar``, kpi/forecast.py); it never reads the
simulator's internals. One definition here, so settings can validate it at load and every component
reads it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SaleEvent:
    """A planned sale event, as the business publishes it: start (epoch seconds), lift over a normal day
    at its start (extra x normal demand), decay (minutes)."""

    start_s: float
    lift: float
    decay_minutes: float


def parse_calendar(text: str | None) -> tuple[SaleEvent, ...]:
    """The sale calendar from its JSON (a list of {"start": ISO time, "lift": x, "decay_minutes": m}),
    or the path of a file holding it; empty text: no planned event (every minute like a normal day)."""
    import json
    from datetime import datetime
    from pathlib import Path

    if not text or not text.strip():
        return ()
    raw = text.strip()
    if not raw.startswith("["):
        raw = Path(raw).read_text()
    events = []
    for i, e in enumerate(json.loads(raw)):
        try:
            start = datetime.fromisoformat(str(e["start"]))
            if start.tzinfo is None:
                raise ValueError("start needs a time zone")
            lift, decay = float(e["lift"]), float(e["decay_minutes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"sale calendar event {i}: {exc} (want start ISO with zone, lift, decay_minutes)"
            ) from None
        if lift < 0 or decay <= 0:
            raise ValueError(f"sale calendar event {i}: lift must be >= 0 and decay_minutes > 0")
        events.append(SaleEvent(start.timestamp(), lift, decay))
    return tuple(sorted(events, key=lambda ev: ev.start_s))


def calendar_json(events: tuple[SaleEvent, ...]) -> str:
    import json
    from datetime import UTC, datetime

    return json.dumps(
        [
            {
                "start": datetime.fromtimestamp(e.start_s, UTC).isoformat(),
                "lift": e.lift,
                "decay_minutes": e.decay_minutes,
            }
            for e in events
        ]
    )
