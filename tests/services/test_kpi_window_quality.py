"""The KPI window read against the real hot store (FerretDB here): documents in the window's buckets whose
time is missing, null or not a date are read and quarantined (counted once per cycle, refreshes too),
never skipped; a sealed bucket still in the window (archival in progress) is read once, with its fresh
namesake, no record twice. The bookkeeping alone: tests/unit/test_hot_store_window.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flashsale import hot_layout
from flashsale.redis_keys import keys_for
from flashsale.settings import load_settings
from flashsale.stores import mongo_client, redis_client
from kpi import scenarios as synthetic
from kpi.rules import KpiParams

TEST_DB = "flashsale_test_kpi_window_quality"


@pytest.fixture()
def window(stack):
    s = load_settings(
        profile=stack.profile,
        mongo_db=TEST_DB,
        mongo_auth_source=stack.mongo_db,
        kpi_redis_namespace=f"fsr:test:{uuid.uuid4().hex[:8]}",
    )
    as_of = datetime.now(UTC).replace(second=0, microsecond=0)
    with mongo_client(s) as c:
        synthetic.load(c.get_default_database(), synthetic.scenario(as_of), s.hot_bucket_minutes)
    yield s, as_of
    redis_client(s).delete(*keys_for(s).all())
    with mongo_client(s) as c:
        c.drop_database(TEST_DB)


def _bad_ts_orders(as_of):
    good = {"product_id": 1, "seller_id": 1, "warehouse_id": 10, "city_id": 1, "order_qty": 1, "order_value": 1.0}
    return [
        {"_id": "no-ts", "order_id": "no-ts", **good},
        {"_id": "null-ts", "order_id": "null-ts", **good, "order_ts": None},
        {"_id": "text-ts", "order_id": "text-ts", **good, "order_ts": as_of.isoformat()},
        {"_id": "int-ts", "order_id": "int-ts", **good, "order_ts": 1_700_000_000},
    ]


def test_documents_without_a_date_are_quarantined_not_skipped(window):
    from spark.kpi_job import _read_inputs

    s, as_of = window
    params = KpiParams.from_settings(s)
    before = _read_inputs(s, as_of, params, use_archive=False).dq["orders_fact"]
    bucket = hot_layout.collection_for(synthetic.ORDERS_FACT, as_of - timedelta(minutes=2), s.hot_bucket_minutes)
    old = hot_layout.collection_for(synthetic.ORDERS_FACT, as_of - timedelta(hours=3), s.hot_bucket_minutes)
    with mongo_client(s) as c:
        db = c.get_default_database()
        db[bucket].insert_many(_bad_ts_orders(as_of))
        db[old].insert_one({"_id": "history", "order_id": "history"})  # outside the window: not read
    first = _read_inputs(s, as_of, params, use_archive=False)
    dq = first.dq["orders_fact"]
    assert dq["quarantined"] == before["quarantined"] + 4
    assert dq["by_reason"]["missing"] == before["by_reason"]["missing"] + 2  # absent, null
    assert dq["by_reason"]["wrong_type"] == before["by_reason"]["wrong_type"] + 2  # a string, a number
    assert first.orders.num_rows == 150  # the valid window is unchanged
    # a refresh re-reads only the tail of the window: each of them is still counted, once
    again = _read_inputs(s, as_of, params, use_archive=False, reuse=first)
    assert again.dq["orders_fact"]["quarantined"] == dq["quarantined"]
    assert again.dq["orders_fact"]["by_reason"] == dq["by_reason"]


def test_a_sealed_bucket_in_the_window_is_read_once(window):
    from spark.kpi_job import _read_inputs

    s, as_of = window
    params = KpiParams.from_settings(s)
    bucket = hot_layout.collection_for(synthetic.ORDERS_FACT, as_of - timedelta(minutes=12), s.hot_bucket_minutes)
    with mongo_client(s) as c:
        db = c.get_default_database()
        copy = db[bucket].find_one({"order_ts": {"$type": "date"}})
        db[bucket].rename(hot_layout.sealed_name(bucket))  # archival sealed it
        db[bucket].insert_one(copy)  # a writer's retry landed in the fresh namesake
    inputs = _read_inputs(s, as_of, params, use_archive=False)
    assert hot_layout.sealed_name(bucket) in inputs.collections_read and bucket in inputs.collections_read
    assert inputs.orders.num_rows == 150  # every order once: none lost to the seal, the retry not doubled
