"""Archival against the real hot store and Spark: thresholds, compaction, quarantine, lineage, and
crash injection at every step (randomized trials), each reconciled exactly: every record is in the
archive or in the hot store, once. (The pure planning is tests/unit/test_archive_plan.py.)"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bson import json_util

from cluster.spark_apps import run_archive
from flashsale import hot_layout
from flashsale.archive_layout import STEPS
from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, arrow_schema, to_document
from flashsale.settings import load_settings
from flashsale.stores import mongo_client

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- against the stack
def _orders(hours: int, per_bucket: int) -> list[dict]:
    out = []
    for b in range(hours * 12):
        for i in range(per_bucket):
            ts = T0 + timedelta(minutes=5 * b, seconds=(i * 7) % 300)
            out.append(
                {
                    "order_id": f"o-{b}-{i}",
                    "product_id": i % 13,
                    "seller_id": 1,
                    "warehouse_id": i % 3,
                    "city_id": i % 4,
                    "order_qty": 1 + i % 2,
                    "order_value": 10.0 + i,
                    "order_ts": ts,
                }
            )
    return out


def _inventory(hours: int) -> list[dict]:
    return [
        {
            "inventory_event_id": f"i-{b}",
            "product_id": b % 13,
            "warehouse_id": b % 3,
            "inventory_on_hand": 100,
            "reserved_stock": 2,
            "fulfillment_delay": 5.0,
            "inventory_ts": T0 + timedelta(minutes=5 * b + 1),
            "inbound_units": 40 * (b % 2),
            "inbound_due_minutes": 30.0 * (b % 2),
        }
        for b in range(hours * 12)
    ]


MALFORMED = [  # malformed documents are quarantined, not lost
    {
        "_id": "o-bad-1",
        "order_id": "o-bad-1",
        "product_id": "7",
        "seller_id": 1,
        "warehouse_id": 0,
        "city_id": 0,
        "order_qty": 1,
        "order_value": 1.0,
        "order_ts": T0 + timedelta(minutes=3),
    },
    {
        "_id": "o-bad-2",
        "order_id": "o-bad-2",
        "product_id": 7,
        "seller_id": 1,
        "warehouse_id": 0,
        "city_id": 0,
        "order_qty": -2,
        "order_value": 1.0,
        "order_ts": T0 + timedelta(minutes=4),
    },
]


def _load(s, orders, inventory):
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        for name in db.list_collection_names():
            db[name].drop()
        for contract, rows in ((ORDERS_FACT, orders), (INVENTORY_FACT, inventory)):
            table = pa.Table.from_pylist(rows, schema=arrow_schema(contract))
            for bucket, part in hot_layout.split_by_bucket(contract, table, s.hot_bucket_minutes).items():
                db[bucket].insert_many([to_document(contract, r) for r in part.to_pylist()], ordered=False)
                db[bucket].create_index(contract.time_column)
        bucket0 = hot_layout.collection_for(ORDERS_FACT, T0, s.hot_bucket_minutes)
        db[bucket0].insert_many(MALFORMED, ordered=False)


def _reconcile(s, expected: dict[str, set[str]], exact: bool = True) -> dict[str, int]:
    """Every expected id in archive + hot store (exactly once unless ``exact`` is off); where they are."""
    root = Path(s.archive_root.removeprefix("file://"))
    seen: dict[str, list[str]] = {}
    archived = 0
    for contract in (ORDERS_FACT, INVENTORY_FACT):
        for f in sorted((root / contract.name).rglob("*.parquet")):
            for key in pq.read_table(f, columns=[contract.key]).column(0).to_pylist():
                seen.setdefault(key, []).append(str(f))
                archived += 1
        for f in sorted((root / "quarantine" / contract.name).rglob("*.parquet")):
            for raw in pq.read_table(f, columns=["_raw"]).column(0).to_pylist():
                seen.setdefault(json_util.loads(raw)["_id"], []).append(str(f))
                archived += 1
    hot = 0
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        for name in db.list_collection_names():
            for doc in db[name].find({}, {"_id": 1}):
                seen.setdefault(doc["_id"], []).append(name)
                hot += 1
    want = set().union(*expected.values())
    dupes = {k: v for k, v in seen.items() if len(v) > 1}
    assert not (exact and dupes), f"duplicated: {list(dupes.items())[:3]}"
    assert set(seen) == want, f"lost {len(want - set(seen))}, unexpected {len(set(seen) - want)}"
    return {"archived": archived, "hot": hot}


@pytest.fixture()
def archive_settings(stack, tmp_path):
    s = load_settings(
        profile=stack.profile,
        mongo_db="flashsale_test_archive",
        mongo_auth_source=stack.mongo_db,
        archive_root=f"file://{tmp_path / 'archive'}",
    )
    yield s
    with mongo_client(s) as client:
        client.drop_database(s.mongo_db)


def test_archive_moves_old_hours_exactly_once(archive_settings):
    s = archive_settings
    orders, inventory = _orders(hours=3, per_bucket=20), _inventory(hours=3)
    _load(s, orders, inventory)
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED},
        "i": {i["inventory_event_id"] for i in inventory},
    }
    now = (T0 + timedelta(hours=3)).isoformat()
    result = run_archive(s, master="local[*]", now=now, force=True)
    # hours 00 and 01 are older than 60 min at 03:00; hour 02 stays hot for the KPI window
    assert sorted(b["batch_id"] for b in result["batches"]) == [
        "inventory_fact-20261111T00",
        "inventory_fact-20261111T01",
        "orders_fact-20261111T00",
        "orders_fact-20261111T01",
    ]
    where = _reconcile(s, ids)
    assert where["hot"] == 12 * 20 + 12  # one hour of orders + inventory left
    root = Path(s.archive_root.removeprefix("file://"))
    part = root / "orders_fact" / "date=2026-11-11" / "hour=00"
    assert len(list(part.glob("*.parquet"))) == 1  # 12 buckets compacted into one file
    manifest = json.loads((root / "metadata" / "orders_fact-20261111T00.json").read_text())
    assert manifest["rows"] == 240 and manifest["quarantined"] == 2
    assert sum(manifest["bucket_counts"].values()) == 242
    assert any("orders_fact-20261111T00" in line for line in result["log"])  # lineage in the task log
    q = pq.read_table(next((root / "quarantine" / "orders_fact").rglob("*.parquet"))).to_pylist()
    assert sorted(r["_quarantine_reason"].split(":")[0] for r in q) == [
        "orders_fact.order_qty",
        "orders_fact.product_id",
    ]
    again = run_archive(s, master="local[*]", now=now, force=True)  # nothing left to do, nothing duplicated
    assert again["batches"] == [] or all(b.get("resumed") for b in again["batches"])
    _reconcile(s, ids)


@pytest.mark.timeout(2400)  # 40 Spark runs: ~15 min on 2 loaded cores
def test_crash_at_every_step_then_rerun_reconciles(archive_settings):
    s = archive_settings
    rng = random.Random(20261111)
    hours = 10
    orders, inventory = _orders(hours=hours, per_bucket=3), _inventory(hours=hours)
    _load(s, orders, inventory)
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED},
        "i": {i["inventory_event_id"] for i in inventory},
    }
    now = (T0 + timedelta(hours=hours + 1)).isoformat()
    steps = list(STEPS) * 4  # 20 trials, every step at least four times, in random order
    rng.shuffle(steps)
    for trial, step in enumerate(steps):
        with pytest.raises(RuntimeError, match="exit 17"):
            run_archive(s, master="local[*]", now=now, force=True, max_batches=rng.randint(1, 2), crash_at=step)
        _reconcile(s, ids, exact=False)  # right after a crash nothing is lost (a copy may exist in both until re-run)
        run_archive(s, master="local[*]", now=now, force=True, max_batches=1)
        where = _reconcile(s, ids)
        print(f"trial {trial:2d} crash after {step:<7} -> archived {where['archived']}, hot {where['hot']}")


def test_committed_batch_whose_bucket_came_back_empty_still_finishes(archive_settings):
    """A bucket dropped after its commit and re-created empty (a reader's index build once did this)
    must not block the batch forever: the re-run drops it and the hour leaves the hot store."""
    s = archive_settings
    orders, inventory = _orders(hours=2, per_bucket=5), _inventory(hours=2)
    _load(s, orders, inventory)
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED},
        "i": {i["inventory_event_id"] for i in inventory},
    }
    now = (T0 + timedelta(hours=2)).isoformat()
    with pytest.raises(RuntimeError, match="exit 17"):
        run_archive(s, master="local[*]", now=now, force=True, max_batches=1, crash_at="commit")
    bucket = hot_layout.collection_for(INVENTORY_FACT, T0, s.hot_bucket_minutes)
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        committed = [n for n in db.list_collection_names() if n.startswith("inventory_fact__20261111_00")]
        for name in committed:  # the drop happened, then an index build re-created one bucket
            db[name].drop()
        db[bucket].create_index(INVENTORY_FACT.time_column)
        assert db[bucket].count_documents({}) == 0
    run_archive(s, master="local[*]", now=now, force=True)
    with mongo_client(s) as client:
        hot = [n for n in client[s.mongo_db].list_collection_names() if "__20261111_00" in n]
    assert hot == []
    _reconcile(s, ids)
