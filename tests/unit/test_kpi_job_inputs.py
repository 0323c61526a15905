"""Pure parts of the KPI job's input planning (spark/kpi_job.py), no Spark or store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from flashsale.redis_keys import decode_inventory_state, encode_inventory_state
from flashsale.settings import Settings
from kpi.rules import KpiParams
from spark.kpi_job import inventory_read_start

S = Settings(_env_file=None, profile="local")
P = KpiParams.from_settings(S)
AS_OF = datetime(2025, 11, 11, 1, 0, tzinfo=UTC)
WINDOW_START = AS_OF - timedelta(minutes=P.window_minutes)
STATE = pa.table(
    {
        "product_id": [1],
        "warehouse_id": [10],
        "inventory_on_hand": [5],
        "reserved_stock": [0],
        "fulfillment_delay": [1.0],
        "inventory_ts": pa.array([datetime(2025, 11, 11, 0, 30, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
        "inbound_units": [0],
        "inbound_due_minutes": [0.0],
    }
)


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
    start = inventory_read_start(S, P, AS_OF, None, None)
    assert start == AS_OF - timedelta(minutes=max(S.kpi_inventory_bootstrap_minutes, P.window_minutes))


def test_the_carried_inventory_round_trips_through_its_bytes_into_inventory_rows():
    from spark.kpi_job import _carried_inventory_table, _inventory_state

    state = decode_inventory_state(encode_inventory_state(STATE))
    assert state is not None and state.to_pylist() == STATE.cast(state.schema).to_pylist()
    rows = _carried_inventory_table(state)
    assert rows["inventory_event_id"].to_pylist() == ["carried:1:10"] and rows["inventory_on_hand"].to_pylist() == [5]
    assert _carried_inventory_table(None).num_rows == 0
    # the job's own output (a pandas frame from Spark, naive UTC times) encodes to the same state
    latest = STATE.to_pandas()
    latest["inventory_ts"] = latest["inventory_ts"].dt.tz_localize(None)
    assert decode_inventory_state(_inventory_state(latest)).equals(state)


def test_a_state_written_in_the_old_json_is_not_read_but_bootstrapped():
    assert decode_inventory_state(b'{"1:10": {"on_hand": 5}}') is None and decode_inventory_state(None) is None
