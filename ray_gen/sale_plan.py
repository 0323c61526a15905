"""The planned sale calendar: what the business publishes ahead of the sale, not the simulator's curve.

A planner knows when each event starts and roughly how big it is and how fast it fades: the events'
times exactly; their extra lift and decay as a forecast, off by a log-normal factor (sigma
``plan_error_sigma``, its own random stream ``PLAN``: the sale surprises the plan) and rounded (lift
to 0.5, decay to 5 minutes); the warm-up level and the discounts' sale-wide lift rounded to 0.1. The
radar may read this (a settings file or a Redis key); it must never read ray_gen's FlashCurve itself.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np

from ray_gen.catalogue import build_catalogue
from ray_gen.model import flash_intensity
from ray_gen.params import FlashCurve, SimParams
from ray_gen.streams import PLAN, rng_for


def _decay(minutes: float) -> float:
    return float(max(5.0, 5.0 * round(minutes / 5.0)))


def _lift(peak: float) -> float:
    return round(peak * 2.0) / 2.0


def planned_curve(p: SimParams) -> FlashCurve:
    """The flash curve a planner publishes: the simulator's times; its lifts and decays as a forecast
    (x a log-normal error, two draws per event, spike first), rounded."""
    f = p.flash
    err = rng_for(p.seed, PLAN).lognormal(0.0, p.plan_error_sigma, (1 + len(f.waves), 2))
    return FlashCurve(
        warmup_level=round(f.warmup_level, 1),
        spike_minute=f.spike_minute,
        spike_peak=_lift(f.spike_peak * err[0, 0]),
        spike_decay_minutes=_decay(f.spike_decay_minutes * err[0, 1]),
        waves=tuple(
            (at, _lift(peak * e[0]), _decay(decay * e[1]))
            for (at, peak, decay), e in zip(f.waves, err[1:], strict=True)
        ),
    )


def planned_calendar(p: SimParams) -> dict:
    """The sale calendar as a planner would publish it, JSON-ready:

    - ``events``: one per flash event, in time order: ``name``, ``start`` (ISO, UTC), ``minute`` (after
      the run's start), ``lift`` (planned extra demand at the event's start, in multiples of the pre-event
      level: total x (1 + lift); rounded to 0.5), ``decay_minutes`` (e-folding time, rounded to 5).
      Events with a rounded lift of 0 are left out. The ``start``/``lift``/``decay_minutes`` keys are the
      format flashsale.calendar.parse_calendar reads (``planned_calendar_json``).
    - ``discount_lift``: the sale's discounts' demand over a normal day (no discounts), rounded to 0.1;
      1.0 for a run without sale discounts. ``warmup_level``: demand at the run's start relative to
      the level at the first event (rounded to 0.1).
    - ``lift_by_minute``: for each minute of the run, the planned demand over a normal day
      (discount_lift x the planned curve), rounded to 0.1: what the plan expects, not the exact curve.
    """
    cat = build_catalogue(p)
    curve = planned_curve(p)
    discount_lift = round(cat.discount_effect, 1)
    events = [("spike", curve.spike_minute, curve.spike_peak, curve.spike_decay_minutes)]
    events += [(f"wave {i + 1}", at, peak, decay) for i, (at, peak, decay) in enumerate(curve.waves)]
    lift = discount_lift * flash_intensity(curve, np.arange(p.minutes))
    return {
        "sale_start": p.start.isoformat(),
        "minutes": p.minutes,
        "discount_lift": discount_lift,
        "warmup_level": curve.warmup_level,
        "events": [
            {
                "name": name,
                "start": (p.start + timedelta(minutes=at)).isoformat(),
                "minute": at,
                "lift": peak,
                "decay_minutes": decay,
            }
            for name, at, peak, decay in sorted(events, key=lambda e: e[1])
            if peak > 0
        ],
        "lift_by_minute": [round(float(x), 1) for x in lift],
    }


def planned_calendar_json(p: SimParams) -> str:
    """The events alone as the JSON list flashsale's ``kpi_sale_calendar`` setting takes:
    ``[{"start": ISO, "lift": x, "decay_minutes": m}, ...]``."""
    return json.dumps([{k: e[k] for k in ("start", "lift", "decay_minutes")} for e in planned_calendar(p)["events"]])
