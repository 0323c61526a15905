"""The Redis KPI contract against the real Redis: atomic snapshots, TTL, capped trend, one-trip reader."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flashsale.redis_keys import (
    MAX_SNAPSHOT_BYTES,
    SNAPSHOT_SCHEMA,
    Keys,
    SnapshotTooLarge,
    read_head,
    read_snapshot,
    read_state,
    write_snapshot,
)
from flashsale.settings import load_settings
from flashsale.stores import redis_client


@pytest.fixture
def rc_keys(stack):  # the stack's Redis: started here, not by whichever test ran before
    r = redis_client(load_settings())
    keys = Keys(f"fsr:test:{uuid.uuid4().hex[:8]}")
    yield r, keys
    r.delete(*keys.all())


SALE_START = datetime(2025, 11, 11, tzinfo=UTC)


def _snap(i: int, rows: int = 50) -> dict:
    return {
        "schema": SNAPSHOT_SCHEMA,
        "run_id": f"run-{i}",
        # run i's data is minute i of the sale: later runs hold newer data (writes compare data times)
        "computed_at": (SALE_START + timedelta(minutes=i)).isoformat(),
        "data_as_of": (SALE_START + timedelta(minutes=i)).isoformat(),
        "kpis": {
            "high_risk_sku_count": i,
            "high_risk_pairs": i,
            "watch_pairs": i,
            "open_alerts": rows,
            "expected_stockouts": float(i),
            "orders_last_minute": i,
            "quarantined_docs": i,
        },
        "alerts": [{"alert_id": f"{j}:{i}", "run": i} for j in range(rows)],
    }


def test_roundtrip_ttl_and_capped_trend(rc_keys):
    r, keys = rc_keys
    assert read_snapshot(r, keys) is None
    for i in range(7):
        write_snapshot(r, keys, _snap(i), ttl_seconds=120, trend_max_points=5, alert_state={"a": i})
    snap = read_snapshot(r, keys)
    assert snap["run_id"] == "run-6" and [p["run_id"] for p in snap["trend"]] == [f"run-{i}" for i in range(2, 7)]
    assert 0 < r.ttl(keys.snapshot) <= 120 and r.ttl(keys.trend) > 0 and r.ttl(keys.alert_state) > 0
    assert [p["run_id"] for p in read_snapshot(r, keys, trend_points=2)["trend"]] == ["run-5", "run-6"]


def test_oversized_snapshot_is_refused_and_nothing_is_written(rc_keys):
    r, keys = rc_keys
    big = _snap(1)
    big["alerts"] = [{"x": "y" * 1000}] * (MAX_SNAPSHOT_BYTES // 1000 + 10)
    with pytest.raises(SnapshotTooLarge):
        write_snapshot(r, keys, big, ttl_seconds=60, trend_max_points=5)
    assert r.exists(*keys.all()) == 0


def test_reader_polling_during_writes_never_sees_a_mixed_snapshot(rc_keys):
    r, keys = rc_keys
    n_writes = 300
    stop = threading.Event()
    reads, errors = [], []

    def reader():
        rr = redis_client(load_settings())
        while not stop.is_set():
            s = read_snapshot(rr, keys)
            if s is None:
                continue
            i = s["kpis"]["orders_last_minute"]
            ok = (
                s["run_id"] == f"run-{i}"
                and s["trend"][-1]["run_id"] == s["run_id"]
                and all(a["run"] == i for a in s["alerts"])
                and len(s["alerts"]) == s["kpis"]["open_alerts"]
            )
            reads.append(i)
            if not ok:
                errors.append(s["run_id"])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(n_writes):
            write_snapshot(r, keys, _snap(i, rows=20 + i % 30), ttl_seconds=60, trend_max_points=50)
    finally:
        stop.set()
        t.join(10)
    assert errors == []
    assert len(set(reads)) > 10  # the reader really observed many different runs while they were written


def _at(minute: int) -> dict:
    snap = _snap(minute, rows=3)
    snap["data_as_of"] = f"2025-11-11T00:{minute:02d}:00+00:00"
    return snap


def test_newest_data_wins_whoever_publishes_and_older_data_changes_nothing(rc_keys):
    """Overlapping apps and manual runs: a write is a compare-and-set on the head's data time."""
    r, keys = rc_keys
    put = dict(ttl_seconds=60, trend_max_points=50)
    assert read_state(r, keys)[2] is None
    # the old app publishes minutes 1 and 2; the next minute's app read its state after minute 1
    assert write_snapshot(r, keys, _at(1), alert_state={"by": "old"}, app_started_at=100.0, **put)
    assert write_snapshot(r, keys, _at(2), alert_state={"by": "old"}, app_started_at=100.0, **put)
    # the new app's first cycle holds newer data (minute 3): it publishes, although the old app wrote since
    assert write_snapshot(r, keys, _at(3), alert_state={"by": "new"}, app_started_at=160.0, **put)
    assert read_snapshot(r, keys)["run_id"] == "run-3"
    # the old app's next refresh (older data) and a stale run change nothing: snapshot, state, head, trend
    before = {k: r.get(k) for k in (keys.snapshot, keys.head, keys.alert_state)}
    assert write_snapshot(r, keys, _at(2), alert_state={"by": "old"}, app_started_at=100.0, **put) is None
    assert write_snapshot(r, keys, _at(1), **put) is None  # e.g. `flashsale kpi --as-of` in the past
    assert {k: r.get(k) for k in before} == before
    alerts, _, head = read_state(r, keys)
    assert head is not None and time.time() - head.pop("published_at") < 60  # when: for the DAG's look
    assert alerts == {"by": "new"} and head == {
        "run_id": "run-3",
        "data_as_of": _at(3)["data_as_of"],
        "app_started_at": 160.0,
        "app_deadline": None,
    }
    assert read_head(r, keys)["app_started_at"] > 100.0  # what makes the old app stop refreshing
    assert [p["run_id"] for p in read_snapshot(r, keys)["trend"]] == ["run-1", "run-2", "run-3"]
    # a one-off run with newer data publishes and never claims the hand-over
    assert write_snapshot(r, keys, _at(4), **put)
    assert read_head(r, keys)["app_started_at"] is None
