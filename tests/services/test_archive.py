"""Archival against the real hot store and Spark: thresholds, compaction, quarantine, lineage, crash
injection at every step (randomized trials), a write between verify and drop, late records of a
committed hour (a supplement, crashed at every step too), each reconciled exactly by id: every record
is in the archive or in the hot store, once. (The pure planning is tests/unit/test_archive_plan.py.)"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
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


@pytest.mark.timeout(2400)  # 36 Spark runs: ~15 min on 2 loaded cores
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
    steps = list(STEPS) * 3  # 18 trials, every step three times, in random order
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


def _late_order(order_id: str, ts: datetime, **bad) -> dict:
    doc = {
        "_id": order_id,
        "order_id": order_id,
        "product_id": 3,
        "seller_id": 1,
        "warehouse_id": 1,
        "city_id": 1,
        "order_qty": 1,
        "order_value": 12.0,
        "order_ts": ts,
    }
    return {**doc, **bad}


def _write_late(s, docs: list[dict]) -> None:
    """Insert the way a writer does: into the bucket of each document's time (a fresh one when the
    hour's buckets were sealed or dropped)."""
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        for d in docs:
            contract = ORDERS_FACT if "order_id" in d else INVENTORY_FACT
            db[hot_layout.collection_for(contract, d[contract.time_column], s.hot_bucket_minutes)].insert_one(d)


def _hot_names(s, hour: str) -> list[str]:
    with mongo_client(s) as client:
        return sorted(n for n in client[s.mongo_db].list_collection_names() if f"__{hour}" in n)


def test_a_write_between_verify_and_drop_survives_and_is_archived(archive_settings, tmp_path, monkeypatch):
    """The driver pauses right after verifying inventory hour 00; a writer's late record for that hour
    arrives then. The batch commits and drops what it sealed; the late record stays hot (in a fresh
    bucket), and the next run archives it as a supplement."""
    s = archive_settings
    orders, inventory = _orders(hours=2, per_bucket=5), _inventory(hours=2)
    _load(s, orders, inventory)
    late = dict(_inventory(hours=1)[3], inventory_event_id="i-late", _id="i-late")
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED},
        "i": {i["inventory_event_id"] for i in inventory} | {"i-late"},
    }
    now = (T0 + timedelta(hours=2)).isoformat()
    pause = tmp_path / "pause"
    monkeypatch.setenv("FLASHSALE_ARCHIVE_PAUSE_AT", f"verify:{pause}")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_archive, s, master="local[*]", now=now, force=True)
        deadline = time.monotonic() + 600
        while not Path(f"{pause}.reached").exists():
            assert time.monotonic() < deadline and not running.done(), running.result() if running.done() else "late"
            time.sleep(0.5)
        _write_late(s, [late])  # inventory hour 00 is verified, not yet committed nor dropped
        Path(f"{pause}.go").touch()
        first = running.result()
    monkeypatch.delenv("FLASHSALE_ARCHIVE_PAUSE_AT")
    assert [b["batch_id"] for b in first["batches"]] == ["inventory_fact-20261111T00", "orders_fact-20261111T00"]
    fresh = hot_layout.collection_for(INVENTORY_FACT, late["inventory_ts"], s.hot_bucket_minutes)
    assert _hot_names(s, "20261111_00") == [fresh]  # the late record, in a fresh bucket
    _reconcile(s, ids)  # nothing lost: the late record is still hot
    second = run_archive(s, master="local[*]", now=now, force=True)
    assert [(b["batch_id"], b["supplement"], b["rows"]) for b in second["batches"]] == [
        ("inventory_fact-20261111T00", 1, 1)
    ]
    assert _hot_names(s, "20261111_00") == []
    where = _reconcile(s, ids)
    assert where["hot"] == 12 * 5 + 12  # hour 01 only


def test_late_records_of_a_committed_hour_are_archived_once_as_a_supplement(archive_settings):
    """Records that arrive after their hour was committed: a new one, a writer's re-sent copy of an
    archived one, a malformed one. The next run archives exactly the ids the partition lacks (anti-join by
    id), records them in a supplement manifest, drops the late buckets; the KPI baseline still reads
    the hour."""
    from kpi.baseline import read_archive_baseline

    s = archive_settings
    orders, inventory = _orders(hours=2, per_bucket=5), _inventory(hours=2)
    _load(s, orders, inventory)
    now = (T0 + timedelta(hours=2)).isoformat()
    run_archive(s, master="local[*]", now=now, force=True)
    resent = {**orders[7], "_id": orders[7]["order_id"]}
    late = [
        _late_order("o-late-1", T0 + timedelta(minutes=3)),
        resent,
        _late_order("o-late-bad", T0 + timedelta(minutes=4), order_qty=-1),
    ]
    _write_late(s, late)
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED} | {"o-late-1", "o-late-bad"},
        "i": {i["inventory_event_id"] for i in inventory},
    }
    result = run_archive(s, master="local[*]", now=now, force=True)
    assert [(b["batch_id"], b["supplement"], b["rows"], b["quarantined"]) for b in result["batches"]] == [
        ("orders_fact-20261111T00", 1, 1, 1)
    ]
    assert _hot_names(s, "20261111_00") == []
    _reconcile(s, ids)  # exactly once: the re-sent copy was not archived again
    root = Path(s.archive_root.removeprefix("file://"))
    sup = json.loads((root / "metadata" / "orders_fact-20261111T00.late-1.json").read_text())
    assert (sup["rows"], sup["quarantined"], sup["supplement"]) == (1, 1, 1) and len(sup["files"]) == 1
    base, info = read_archive_baseline(s.archive_root, T0 + timedelta(hours=2), 1)
    assert info["rows"] == 12 * 5 + 1  # the hour's committed rows and its supplement, readable as before
    again = run_archive(s, master="local[*]", now=now, force=True)
    assert again["batches"] == []


@pytest.mark.timeout(1800)  # 11 Spark runs
def test_a_supplement_crashed_at_every_step_is_finished_by_the_next_run(archive_settings):
    s = archive_settings
    orders, inventory = _orders(hours=2, per_bucket=3), _inventory(hours=2)
    _load(s, orders, inventory)
    now = (T0 + timedelta(hours=2)).isoformat()
    run_archive(s, master="local[*]", now=now, force=True)
    ids = {
        "o": {o["order_id"] for o in orders} | {d["_id"] for d in MALFORMED},
        "i": {i["inventory_event_id"] for i in inventory},
    }
    for k, step in enumerate(STEPS[1:]):  # seal, write, verify, commit, delete
        late = [
            _late_order(f"o-late-{k}", T0 + timedelta(minutes=5 * k + 1)),
            {**orders[k], "_id": orders[k]["order_id"]},
        ]
        _write_late(s, late)
        ids["o"].add(f"o-late-{k}")
        with pytest.raises(RuntimeError, match="exit 17"):
            run_archive(s, master="local[*]", now=now, force=True, crash_at=step)
        _reconcile(s, ids, exact=False)  # right after a crash nothing is lost
        run_archive(s, master="local[*]", now=now, force=True)
        where = _reconcile(s, ids)
        assert _hot_names(s, "20261111_00") == [], step
        print(f"supplement crashed after {step:<7} -> archived {where['archived']}, hot {where['hot']}")
    root = Path(s.archive_root.removeprefix("file://"))
    manifests = [json.loads(p.read_text()) for p in (root / "metadata").glob("orders_fact-20261111T00*.json")]
    assert sum(m["rows"] for m in manifests) == 12 * 3 + len(STEPS[1:])  # each late row claimed by one manifest
