"""Archival's pure planning (flashsale/archive_layout.py): which hours to archive, and when. No services;
the archival itself, against the stack's hot store and Spark, is tests/services/test_archive.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale import hot_layout
from flashsale.archive_layout import (
    STEPS,
    in_spike,
    plan,
    seal_renames,
    should_archive,
    supplement_number,
    unclaimed,
)
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


def test_plan_takes_only_buckets_older_than_the_minimum_age():
    now = T0 + timedelta(hours=3, minutes=30)
    batches = plan(ORDERS_FACT, _rows(range(4)), now, min_age_minutes=60, bucket_minutes=5)
    # 02:00-02:30 ended 60 min ago: taken; 02:30 onwards is too young, whatever the hot store's size
    assert [b.hour for b in batches] == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert batches[0].rows == 120 and len(batches[0].buckets) == 12
    assert len(batches[2].buckets) == 6 and max(batches[2].buckets) == hot_layout.bucket_name(
        ORDERS_FACT, T0 + timedelta(hours=2, minutes=25)
    )
    assert batches[0].batch_id == "orders_fact-20261111T00"
    assert batches[0].partition("hdfs://nn/a") == "hdfs://nn/a/orders_fact/date=2026-11-11/hour=00"
    # one minute later the next bucket is old enough; a bucket still filling never is
    assert len(plan(ORDERS_FACT, _rows([2]), now + timedelta(minutes=4), 60, 5)[0].buckets) == 6
    assert len(plan(ORDERS_FACT, _rows([2]), now + timedelta(minutes=5), 60, 5)[0].buckets) == 7
    assert plan(ORDERS_FACT, _rows([3]), now, 60, 5) == []


def test_trigger_on_old_buckets_or_count_but_not_in_a_spike():
    assert should_archive(11, 0, False, max_hot_records=10, spike_defer_share=0.8)[0]  # over the limit
    assert should_archive(11, 5, True, max_hot_records=10, spike_defer_share=0.8)[0]  # over it, even in a spike
    assert should_archive(5, 3, False, max_hot_records=10, spike_defer_share=0.8)[0]
    assert not should_archive(5, 0, False, max_hot_records=10, spike_defer_share=0.8)[0]  # nothing old enough
    assert not should_archive(5, 3, True, max_hot_records=10, spike_defer_share=0.8)[0]  # spike: wait ...
    assert should_archive(9, 3, True, max_hot_records=10, spike_defer_share=0.8)[0]  # ... unless near the limit


def test_a_spike_is_the_newest_complete_bucket_far_above_the_median_while_data_arrives():
    def rows(counts):
        return [(T0 + timedelta(minutes=5 * i), f"b{i}", c) for i, c in enumerate(counts)]

    live = T0  # every bucket below is live intake
    assert in_spike(rows([100, 110, 90, 400, 5]), factor=2, live_after=live)  # the last bucket is still filling
    assert not in_spike(rows([100, 110, 90, 150, 5]), factor=2, live_after=live)
    assert not in_spike(rows([100, 400]), factor=2, live_after=live)  # too little history to say
    sealed = [(T0 - timedelta(hours=1), "orders_fact__20261110_2300__sealed", 10_000)]
    assert in_spike(rows([100, 110, 90, 400, 5]) + sealed, factor=2, live_after=live)  # a sealed bucket is no intake
    # data that stopped arriving in a spike (a generated cold hour), or a load without a clock: no spike
    assert not in_spike(rows([100, 110, 90, 400, 5]), factor=2, live_after=T0 + timedelta(hours=2))
    assert not in_spike(rows([100, 110, 90, 400, 5]), factor=2, live_after=None)
    # a quieter backlog hours older (a cold hour waiting for archival) is no baseline for the live intake
    backlog = [(T0 - timedelta(hours=3, minutes=-i), f"old{i}", 10) for i in range(60)]
    assert not in_spike(rows([100, 110, 90, 120, 5]) + backlog, factor=2, live_after=live)
    assert in_spike(rows([100, 110, 90, 400, 5]) + backlog, factor=2, live_after=live)


def test_plan_takes_sealed_buckets_with_their_hour():
    rows = _rows([0])
    sealed = [(t, hot_layout.sealed_name(n), c) for t, n, c in rows[:3]]
    batches = plan(ORDERS_FACT, rows + sealed, T0 + timedelta(hours=3), min_age_minutes=60, bucket_minutes=5)
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
