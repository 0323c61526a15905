"""Archival's pure planning (flashsale/archive_layout.py): which hours to archive, and when. No services;
the archival itself, against the stack's hot store and Spark, is tests/services/test_archive.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale import hot_layout
from flashsale.archive_layout import STEPS, plan, seal_renames, should_archive, supplement_number, unclaimed
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


def test_plan_takes_sealed_buckets_with_their_hour():
    rows = _rows([0])
    sealed = [(t, hot_layout.sealed_name(n), c) for t, n, c in rows[:3]]
    batches = plan(ORDERS_FACT, rows + sealed, T0 + timedelta(hours=3), min_age_minutes=60)
    assert len(batches) == 1 and len(batches[0].buckets) == 15  # an interrupted seal: both kinds, one batch


def test_seal_renames_only_where_the_sealed_name_is_free():
    a, b = (hot_layout.bucket_name(ORDERS_FACT, T0 + timedelta(minutes=m)) for m in (0, 5))
    assert STEPS.index("seal") == 1  # right after planning, before anything is read
    assert seal_renames([b, a], [a, b]) == [(a, hot_layout.sealed_name(a)), (b, hot_layout.sealed_name(b))]
    # a's sealed copy is still being archived: the late bucket a stays live until it is dropped
    assert seal_renames([a, b], [a, b, hot_layout.sealed_name(a)]) == [(b, hot_layout.sealed_name(b))]


def test_supplements_are_numbered_and_claim_only_unnamed_files():
    bid = "orders_fact-20261111T00"
    meta = [f"/a/metadata/{bid}.json", f"/a/metadata/{bid}.late-1.json", "/a/metadata/orders_fact-20261111T01.json"]
    assert supplement_number(bid, meta) == 2 and supplement_number("x", meta) == 1
    part = "/a/orders_fact/date=2026-11-11/hour=00"
    files = [f"{part}/part-1.parquet", f"{part}/part-2.parquet", f"{part}/part-3.parquet"]
    manifests = [{"files": [files[0]], "quarantine_files": []}, {"files": [files[1]], "quarantine_files": []}]
    assert unclaimed(files, manifests) == [files[2]]  # written by a supplement that crashed before its commit
    assert unclaimed(files[:2], manifests) == []
    assert unclaimed(["/q/part-9.parquet"], [{"files": []}], "quarantine_files") == []  # an old manifest owns all
