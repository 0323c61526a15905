"""Pure parts of the KPI job's input planning (spark/kpi_job.py), no Spark or store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale.settings import Settings
from kpi.rules import KpiParams
from spark.kpi_job import inventory_read_start

S = Settings(_env_file=None, profile="local")
P = KpiParams.from_settings(S)
AS_OF = datetime(2025, 11, 11, 1, 0, tzinfo=UTC)
WINDOW_START = AS_OF - timedelta(minutes=P.window_minutes)
STATE = {"1:10": {"on_hand": 5, "reserved": 0, "delay": 1.0, "ts": "2025-11-11T00:30:00+00:00"}}


def _head(minutes_ago: float) -> dict:
    return {"run_id": "r", "data_as_of": (AS_OF - timedelta(minutes=minutes_ago)).isoformat(), "app_started_at": None}


def test_with_fresh_carried_state_inventory_is_read_from_the_window_start():
    assert inventory_read_start(S, P, AS_OF, STATE, _head(1)) == WINDOW_START


def test_after_a_gap_longer_than_the_window_inventory_is_read_from_the_carried_state():
    """A pair drained during a 45-minute KPI gap must not keep its old stock (issue: a KPI gap hides
    inventory changes): the read reaches back to the last published run's data time."""
    gap = P.window_minutes + 30
    start = inventory_read_start(S, P, AS_OF, STATE, _head(gap))
    assert start == AS_OF - timedelta(minutes=gap) < WINDOW_START


def test_without_carried_state_the_bootstrap_look_back_applies():
    start = inventory_read_start(S, P, AS_OF, {}, None)
    assert start == AS_OF - timedelta(minutes=max(S.kpi_inventory_bootstrap_minutes, P.window_minutes))
