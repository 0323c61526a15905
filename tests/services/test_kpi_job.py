"""The KPI job end to end against the stack's hot store and Redis, on local[*] and yarn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymongo import monitoring

from cluster.spark_apps import run_kpi
from flashsale import hot_layout
from flashsale.contracts import FACTS
from flashsale.redis_keys import encode_inventory_state, keys_for, read_snapshot
from flashsale.settings import load_settings
from flashsale.stores import mongo_client, redis_client
from kpi import scenarios as synthetic
from kpi.rules import KpiParams

TEST_DB = "flashsale_test_kpi"


def _settings(**kw):
    return load_settings(
        mongo_db=TEST_DB,
        mongo_auth_source=load_settings().mongo_db,
        kpi_redis_namespace=f"fsr:test:{uuid.uuid4().hex[:8]}",
        **kw,
    )


@pytest.fixture(scope="module")
def as_of(stack):  # the stack's hot store and Redis: started here, not by whichever test ran before
    t = datetime.now(UTC).replace(second=0, microsecond=0)
    with mongo_client(_settings()) as c:
        synthetic.load(c.get_default_database(), synthetic.scenario(t), _settings().hot_bucket_minutes)
    return t


def _archive(tmp_path, as_of):
    """One archived hour in which (1, 10) sold 120 units: baseline 2 units/min, equal to its window rate."""
    d = tmp_path / "orders_fact" / f"date={as_of.date().isoformat()}" / "hour=00"
    d.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "product_id": pa.array([1], pa.int64()),
                "warehouse_id": pa.array([10], pa.int64()),
                "order_qty": pa.array([120], pa.int64()),
            }
        ),
        d / "part-0.parquet",
    )
    (tmp_path / "metadata").mkdir()  # committed by the archival protocol (flashsale/archive_layout.py)
    (tmp_path / "metadata" / f"orders_fact-{as_of:%Y%m%d}T00.json").write_text("{}")
    return f"file://{tmp_path}"


def _check_scenario(snap, as_of):
    k = snap["kpis"]
    assert snap["data_as_of"] == as_of.isoformat() and snap["computed_at"] >= snap["data_as_of"]
    assert (k["orders_last_minute"], k["units_in_window"]) == (10, 165)
    assert [m["orders"] for m in snap["orders_per_minute"]] == [10] * 15
    assert (k["high_risk_sku_count"], k["high_risk_pairs"], k["watch_pairs"]) == (3, 3, 1)
    assert k["overloaded_warehouses"] == 1 and k["quarantined_docs"] == 6
    assert snap["data_quality"]["orders_fact"]["by_reason"] == {
        "missing": 1,
        "wrong_type": 1,
        "out_of_bounds": 1,
        "unknown_id": 1,
        "future_ts": 1,
    }
    actions = {(a["product_id"], a["warehouse_id"]): a["action"] for a in snap["alerts"]}
    assert actions == synthetic.EXPECTED_ACTION
    reroute = next(a for a in snap["alerts"] if a["action"] == "reroute")
    # the donor sold nothing: a vague prior keeps ~0.005 units/min for it, so it keeps 1 of its 500 units
    assert reroute["numbers"]["reroute_from_warehouse_id"] == 11 and reroute["numbers"]["surplus_units"] == 499
    wh = {w["warehouse_id"]: w for w in snap["warehouses"]}
    assert wh[11]["overloaded"] and wh[11]["load_per_min"] == 6.0 and not wh[10]["overloaded"]
    prov = {g["province"]: g for g in snap["geo_province"]}
    assert prov["P2"]["high_risk_pairs"] == 2 and prov["P1"]["watch_pairs"] == 1
    assert snap["trend"][-1]["run_id"] == snap["run_id"]


def test_local_run_known_answers_archive_baseline_and_hysteresis(as_of, tmp_path):
    # the hand-computed answers are for a store with no archive (every pair's prior is vague)
    s = _settings(archive_root=f"file://{tmp_path}/no-archive")
    r = redis_client(s)
    try:
        res = run_kpi(s, master="local[*]", as_of=as_of.isoformat())
        snap = read_snapshot(r, keys_for(s))
        assert snap["run_id"] == res["run_id"] and snap["master"].startswith("local")
        _check_scenario(snap, as_of)
        assert all(a["status"] == "new" for a in snap["alerts"])
        # second run: alerts are the same alerts (dedup), open for 2 runs; the inventory state was carried
        res2 = run_kpi(s, master="local[*]", as_of=as_of.isoformat())
        snap2 = read_snapshot(r, keys_for(s))
        _check_scenario(snap2, as_of)
        assert [a["alert_id"] for a in snap2["alerts"]] == [a["alert_id"] for a in snap["alerts"]]
        assert all(a["status"] == "open" and a["runs_open"] == 2 for a in snap2["alerts"])
        assert [p["run_id"] for p in snap2["trend"]] == [res["run_id"], res2["run_id"]]
        assert 0 < r.ttl(keys_for(s).snapshot) <= s.kpi_snapshot_ttl_seconds
    finally:
        r.delete(*keys_for(s).all())

    # an archived hour in which only (1, 10) sold: its baseline is read, and the pairs that hour never saw
    # count as having sold nothing there (kpi/forecast.py), so fewer pairs are at high risk, never more
    s2 = _settings(archive_root=_archive(tmp_path, as_of))
    try:
        run_kpi(s2, master="local[*]", as_of=as_of.isoformat())
        with_archive = read_snapshot(r, keys_for(s2))
        assert with_archive["baseline"]["pairs"] == 1
        risk = {(x["product_id"], x["warehouse_id"]): x for x in with_archive["sku_risk"]}
        assert risk[(1, 10)]["baseline_velocity"] == pytest.approx(2.0) and risk[(2, 20)]["baseline_velocity"] is None
        assert with_archive["kpis"]["high_risk_pairs"] <= snap["kpis"]["high_risk_pairs"]
        assert (1, 10) in {(a["product_id"], a["warehouse_id"]) for a in with_archive["alerts"]}
    finally:
        r.delete(*keys_for(s2).all())


@pytest.mark.cluster
def test_yarn_run_same_answers(as_of):
    # an archive root of its own that nothing writes: the stack's default one may hold a `flashsale run`'s hours
    s = _settings(
        profile="cluster", archive_root=f"{load_settings(profile='cluster').hdfs_url}/flashsale/test-kpi-no-archive"
    )
    r = redis_client(s)
    try:
        res = run_kpi(s, master="yarn", as_of=as_of.isoformat())
        snap = read_snapshot(r, keys_for(s))
        assert snap["run_id"] == res["run_id"] and snap["master"] == "yarn"
        _check_scenario(snap, as_of)
        assert snap["baseline"]["pairs"] == 0  # the HDFS archive is empty or missing: tolerated
    finally:
        r.delete(*keys_for(s).all())


class _Finds(monitoring.CommandListener):
    def __init__(self):
        self.finds = []

    def started(self, event):
        if event.command_name == "find":
            self.finds.append((event.command["find"], event.command.get("filter")))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_store_is_asked_only_for_the_window(as_of):
    """Every fact query the job sends carries the indexed time filter; the store's plan is recorded."""
    from flashsale import hot_store
    from spark.kpi_job import _read_inputs

    s = _settings()
    listener = _Finds()
    monitoring.register(listener)
    params = KpiParams.from_settings(s)
    # carried inventory state present -> inventory is read on the same window
    state = pa.table(
        {
            "product_id": [1],
            "warehouse_id": [10],
            "inventory_on_hand": [1],
            "reserved_stock": [0],
            "fulfillment_delay": [1.0],
            "inventory_ts": pa.array([datetime(2020, 1, 1, tzinfo=UTC)], pa.timestamp("ms", tz="UTC")),
            "inbound_units": [0],
            "inbound_due_minutes": [0.0],
        }
    )
    redis_client(s).set(keys_for(s).inventory_state, encode_inventory_state(state), ex=60)
    try:
        inputs = _read_inputs(s, as_of, params, use_archive=False)
    finally:
        redis_client(s).delete(*keys_for(s).all())
    start = as_of - timedelta(minutes=params.window_minutes)
    fact_finds = [(c, f) for c, f in listener.finds if c.split("__")[0] in {x.name for x in FACTS}]
    # only the buckets overlapping the window (15 min in 5-min buckets: 3 + the future-ts bucket for orders)
    ob = s.hot_bucket_minutes
    expected = {n for f in FACTS for n in hot_layout.buckets_overlapping(f, start, as_of, ob)}
    assert {c for c, _ in fact_finds} >= {n for n in expected if n.startswith("orders_fact")}
    assert all(c in expected or hot_layout.parse_bucket(synthetic.ORDERS_FACT, c) > as_of for c, _ in fact_finds)
    with mongo_client(s) as c:
        db = c.get_default_database()
        # an older bucket exists (history) and is never queried
        old = hot_layout.collection_for(synthetic.ORDERS_FACT, start - timedelta(hours=2), ob)
        db[old].insert_one({"_id": "old", "order_id": "old"})
    listener.finds.clear()
    monitoring.register(listener)
    _read_inputs(s, as_of, params, use_archive=False)
    assert old not in {c for c, _ in listener.finds}
    for coll, flt in fact_finds:
        tcol = next(x.time_column for x in FACTS if coll.startswith(x.name))
        assert list(flt) == [tcol] and flt[tcol]["$not"]["$lt"].replace(tzinfo=UTC) == start
    assert inputs.orders.num_rows == 150
    with mongo_client(s) as c:
        db = c.get_default_database()
        db[old].drop()
        coll = hot_layout.buckets_overlapping(synthetic.ORDERS_FACT, start, as_of, ob)[0]
        idx = [i["key"] for i in db[coll].list_indexes()]
        assert any(list(k) == ["order_ts"] for k in idx)
        plan = hot_store.explain_window(db, coll, synthetic.ORDERS_FACT, start)
    text = str(plan)
    if "ferretdbVersion" in str(plan.get("serverInfo", {})):
        # FerretDB 1.24 receives the filter but does not push ranges into SQL: recorded, see spark/README.md
        assert "order_ts" in str(plan["command"]["filter"])
    else:  # real MongoDB: the winning plan is an index scan on order_ts
        assert "IXSCAN" in text and "order_ts" in text


def test_a_refresh_cycle_reads_only_changed_buckets_and_no_dims(as_of):
    """--refresh cycles reuse the app's dims, baseline and every bucket whose count did not change."""
    from flashsale.contracts import DIMS
    from spark.kpi_job import _read_inputs

    s = _settings()
    params = KpiParams.from_settings(s)
    first = _read_inputs(s, as_of, params, use_archive=False)
    listener = _Finds()
    monitoring.register(listener)
    again = _read_inputs(s, as_of, params, use_archive=False, reuse=first)
    assert not {c for c, _ in listener.finds} & {d.name for d in DIMS}
    fact_finds = [c for c, _ in listener.finds if c.startswith(("orders_fact__", "inventory_fact__"))]
    assert fact_finds == [] and again.collections_read == []  # nothing changed: no fact read at all
    assert again.dims is first.dims and again.baseline is first.baseline
    for fact, key in (("orders", "order_id"), ("inventory", "inventory_event_id")):  # same rows, maybe reordered
        assert getattr(again, fact).sort_by(key).equals(getattr(first, fact).sort_by(key)), fact
    assert {d.name: again.dq[d.name] for d in DIMS} == {d.name: first.dq[d.name] for d in DIMS}
    assert again.dq["orders_fact"] == first.dq["orders_fact"]  # quarantine counts stay exact
    # one late order lands in an old bucket of the window: that bucket alone is read again, and it counts
    newest = max(c for c in first.collections_read if c.startswith("orders_fact__"))
    with mongo_client(s) as c:
        bucket = c.get_default_database()[newest]
        doc = bucket.find_one({}, {"_id": 0})
        assert doc is not None
        doc["order_id"] = doc["_id"] = "late-" + doc["order_id"]
        bucket.insert_one(doc)
        try:
            listener.finds.clear()
            third = _read_inputs(s, as_of, params, use_archive=False, reuse=again)
        finally:
            bucket.delete_one({"_id": doc["_id"]})  # the module's other tests keep their known answers
    assert {c for c, _ in listener.finds} == {newest} and third.collections_read == [newest]
    assert third.dq["orders_fact"]["read"] == first.dq["orders_fact"]["read"] + 1  # read, and counted once
    # (valid, or quarantined like its source if that was stamped after the as-of)


def test_a_scheduled_app_hands_over_to_a_newer_one(as_of):
    """--refresh: an app that finds a newer app's snapshot published stops refreshing and overwrites nothing."""
    import json
    import time

    from cluster.spark_apps import kpi_args
    from cluster.spark_submit import run_app
    from flashsale.job_args import KPI_APP
    from flashsale.job_args import KPI_RESULT_PREFIX as RESULT_PREFIX

    s = _settings()
    r, keys = redis_client(s), keys_for(s)
    submitted = time.time()
    newer = {
        "run_id": "next-minute",
        "data_as_of": (as_of + timedelta(hours=1)).isoformat(),
        "app_started_at": submitted + 60,
    }
    r.set(keys.head, json.dumps(newer), ex=300)
    try:
        res, proc = run_app(
            s,
            str(KPI_APP),
            kpi_args(s, submitted_at=submitted) + ["--refresh"],
            RESULT_PREFIX,
            master="local[2]",
            name="flashsale-kpi-handover",
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert res["superseded"] and res["kpis"]["units_in_window"] > 0  # computed, not published
        assert "KPI_HANDOVER" in proc.stdout and "KPI_REFRESH" not in proc.stdout
        assert read_snapshot(r, keys) is None and json.loads(r.get(keys.head)) == newer
    finally:
        r.delete(*keys.all())
