"""Bucket naming and splitting for the hot store's time-partitioned fact collections (pure)."""

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from flashsale import hot_layout as hl
from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, arrow_schema

T = datetime(2026, 11, 11, 0, 7, 30, tzinfo=UTC)


def test_collection_for_floors_to_the_bucket():
    assert hl.collection_for(ORDERS_FACT, T, 5) == "orders_fact__20261111_0005"
    assert hl.collection_for(ORDERS_FACT, T, 15) == "orders_fact__20261111_0000"
    assert hl.collection_for(INVENTORY_FACT, T + timedelta(hours=23, minutes=55), 5) == "inventory_fact__20261112_0000"


def test_other_timezones_are_converted_not_guessed():
    plus_one = timezone(timedelta(hours=1))
    assert hl.collection_for(ORDERS_FACT, T.astimezone(plus_one), 5) == "orders_fact__20261111_0005"
    with pytest.raises(ValueError, match="timezone-aware"):
        hl.collection_for(ORDERS_FACT, T.replace(tzinfo=None), 5)


@pytest.mark.parametrize("bad", [0, 7, 45, 61])
def test_bucket_size_must_divide_an_hour(bad):
    with pytest.raises(ValueError, match="divide 60"):
        hl.bucket_start(T, bad)


def test_parse_round_trips_and_ignores_foreign_names():
    name = hl.collection_for(ORDERS_FACT, T, 5)
    assert hl.parse_bucket(ORDERS_FACT, name) == datetime(2026, 11, 11, 0, 5, tzinfo=UTC)
    for other in ["orders_fact", "orders_fact__x", "inventory_fact__20261111_0005", "orders_fact__20261111_005"]:
        assert hl.parse_bucket(ORDERS_FACT, other) is None


def test_window_touches_only_overlapping_buckets():
    end = T
    names = hl.buckets_overlapping(ORDERS_FACT, end - timedelta(minutes=15), end, 5)
    assert names == [
        "orders_fact__20261110_2350",
        "orders_fact__20261110_2355",
        "orders_fact__20261111_0000",
        "orders_fact__20261111_0005",
    ]


def test_existing_buckets_sorted_oldest_first():
    names = [
        "orders_fact__20261111_0010",
        "products_dim",
        "orders_fact__20261111_0000",
        "inventory_fact__20261111_0000",
    ]
    assert [n for _, n in hl.existing_buckets(ORDERS_FACT, names)] == [
        "orders_fact__20261111_0000",
        "orders_fact__20261111_0010",
    ]


def test_split_by_bucket_is_exact_and_loses_nothing():
    rows = [
        {
            "order_id": f"o{i}",
            "product_id": i,
            "seller_id": 0,
            "warehouse_id": 0,
            "city_id": 0,
            "order_qty": 1,
            "order_value": 1.0,
            "order_ts": T + timedelta(minutes=i),
        }
        for i in range(12)
    ]
    table = pa.Table.from_pylist(rows, schema=arrow_schema(ORDERS_FACT))
    parts = hl.split_by_bucket(ORDERS_FACT, table, 5)
    assert sum(p.num_rows for p in parts.values()) == 12
    for name, part in parts.items():
        for ts in part["order_ts"].to_pylist():
            assert hl.collection_for(ORDERS_FACT, ts, 5) == name
    assert sorted(parts) == ["orders_fact__20261111_0005", "orders_fact__20261111_0010", "orders_fact__20261111_0015"]


def test_sealed_names_are_not_buckets_and_parse_back():
    b = hl.collection_for(ORDERS_FACT, T, 5)
    sealed = hl.sealed_name(b)
    assert sealed == "orders_fact__20261111_0005__sealed" and hl.unsealed_name(sealed) == b
    assert hl.parse_bucket(ORDERS_FACT, sealed) is None  # writers and bucket readers never see it
    assert hl.parse_sealed(ORDERS_FACT, sealed) == datetime(2026, 11, 11, 0, 5, tzinfo=UTC)
    assert hl.parse_sealed(ORDERS_FACT, b) is None and hl.parse_sealed(INVENTORY_FACT, sealed) is None
    assert hl.existing_sealed(ORDERS_FACT, [b, sealed, "products_dim"]) == [(hl.parse_bucket(ORDERS_FACT, b), sealed)]
