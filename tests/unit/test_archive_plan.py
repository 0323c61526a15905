"""Archival's pure planning (flashsale/archive_layout.py): which hours to archive, and when. No services;
the archival itself, against the stack's hot store and Spark, is tests/services/test_archive.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale import hot_layout
from flashsale.archive_layout import plan, should_archive
from flashsale.contracts import ORDERS_FACT

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


def _rows(hours):
    return [
        (
            T0 + timedelta(hours=h, minutes=m),
            hot_layout.bucket_name(ORDERS_FACT, T0 + timedelta(hours=h, minutes=m)),
            10,
        )
        for h in hours
        for m in range(0, 60, 5)
    ]


def test_plan_takes_only_hours_older_than_the_minimum_age():
    now = T0 + timedelta(hours=3, minutes=30)
    batches = plan(ORDERS_FACT, _rows(range(4)), now, min_age_minutes=60)
    assert [b.hour for b in batches] == [T0, T0 + timedelta(hours=1)]  # 02:00-03:00 ends 30 min ago: too young
    assert batches[0].rows == 120 and len(batches[0].buckets) == 12
    assert batches[0].batch_id == "orders_fact-20261111T00"
    assert batches[0].partition("hdfs://nn/a") == "hdfs://nn/a/orders_fact/date=2026-11-11/hour=00"


def test_trigger_on_count_or_age():
    now = T0 + timedelta(hours=5)
    assert should_archive(11, None, now, max_hot_records=10, max_age_minutes=60)[0]
    assert should_archive(5, T0, now, max_hot_records=10, max_age_minutes=60)[0]
    assert not should_archive(5, now - timedelta(minutes=30), now, max_hot_records=10, max_age_minutes=60)[0]
