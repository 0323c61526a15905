"""End to end, cluster profile: a flash sale through every component of `flashsale run`.

Simulator (on the stack's Ray) -> FerretDB buckets -> the Airflow minute DAG (Spark on YARN, refreshing)
-> the Redis snapshot -> the dashboard in a real browser; then the archival DAG (Spark on YARN) moves the
cold hour to HDFS. The run uses its own database, Redis namespace and archive root through the
pipeline's settings file, so every process of the pipeline (Airflow tasks, Spark drivers, the
generator, the dashboard) sees them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from bench.bench_faults import archived_ids, hot_ids
from cluster import airflow_api, process, yarn
from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT
from flashsale.hot_layout import existing_buckets
from flashsale.redis_keys import keys_for, read_snapshot, read_state
from flashsale.settings import load_settings
from flashsale.stores import mongo_client, redis_client
from radar import pipeline

START = datetime(2025, 11, 11, 23, 45, tzinfo=UTC)  # the spike lands near midnight; hour 23 becomes archivable
MINUTES = 36  # the data clock ends at 00:21, so hour 23 is older than archive_min_age_minutes=16
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture()
def e2e(stack):
    overrides = {
        "kpi_clock": "data",
        "mongo_db": "flashsale_test_e2e",
        "mongo_auth_source": stack.mongo_db,
        "kpi_redis_namespace": "fsr:test:e2e",
        "archive_root": f"{stack.hdfs_url}/flashsale/test-e2e",
        "archive_min_age_minutes": "16",
        "archive_max_hot_records": "1",
        "dashboard_refresh_seconds": "2",
    }
    s = load_settings(profile=stack.profile, **{k: v for k, v in overrides.items()})
    pipeline.discard_data(s)
    opts = pipeline.RunOptions(
        speed=20, minutes=MINUTES, spike_minute=8, products=2_000, seed=7, start=START, settings=overrides
    )
    try:
        yield s, opts
    finally:
        pipeline.stop(s, echo=lambda *_: None, stop_stack=False)
        pipeline.discard_data(s)


def _wait(predicate, timeout: float, what: str, poll: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _drained_pairs(s, since: datetime) -> set[str]:
    """Ground truth from the simulator's own inventory events: pairs whose available stock hit zero."""
    out = set()
    with mongo_client(s) as c:
        db = c.get_default_database()
        for _start, name in existing_buckets(INVENTORY_FACT, db.list_collection_names()):
            for d in db[name].find(
                {"inventory_ts": {"$gte": since}},
                {"product_id": 1, "warehouse_id": 1, "inventory_on_hand": 1, "reserved_stock": 1},
            ):
                if d["inventory_on_hand"] - d["reserved_stock"] <= 0:
                    out.add(f"{d['product_id']}:{d['warehouse_id']}")
    return out


def _active_kpi_apps(s) -> list[str]:
    return [a["id"] for a in yarn.apps(s) if a["name"] == "flashsale-kpi"]


def test_flash_sale_through_every_component(e2e):
    s, opts = e2e
    t0 = time.time()
    s, _ = pipeline.start(s, opts, echo=lambda *_: None)
    assert s.mongo_db == "flashsale_test_e2e" and s.kpi_clock == "data"  # the pipeline file reached the settings

    # 1. the generator runs its simulated minutes on the stack's Ray and stops consistent
    _wait(lambda: process.live_process(s.run_dir, pipeline.GENERATOR) is None, 600, "the generator to finish")
    assert pipeline.generator_failure(s) is None
    summary = pipeline.generator_summary(s)
    assert summary and summary["consistent"] and summary["simulated_minutes"] == MINUTES, summary
    generated = {k: v["generated"] for k, v in summary["collections"].items()}
    gen_done = time.time()

    # 2. the minute DAG (on YARN) leaves a fresh snapshot of the final window, with alerts
    def final_snapshot():
        snap = read_snapshot(redis_client(s), keys_for(s))
        fresh = snap and datetime.fromisoformat(snap["computed_at"]).timestamp() > gen_done
        return snap if fresh and snap["data_as_of"] >= "2025-11-12T00:20" else None

    snap = _wait(final_snapshot, 600, "a KPI snapshot of the final window")
    assert snap["master"] == "yarn"
    assert snap["kpis"]["quarantined_docs"] == 0
    alert_state, _, _ = read_state(redis_client(s), keys_for(s))
    alerted = set(alert_state)
    assert snap["alerts"], "no alerts during a flash sale"

    # 3. the alerts cover the pairs the simulator really drained in the window
    drained = _drained_pairs(s, datetime.fromisoformat(snap["window_start"]))
    assert drained, "the simulator drained nothing: the scenario is too mild to test alerts"
    covered = len(drained & alerted) / len(drained)
    assert covered >= 0.9, f"only {covered:.0%} of {len(drained)} drained pairs have an alert"

    # 4. the archival DAG moves hour 23 to HDFS; archive + hot store hold every record exactly once
    run_id = airflow_api.trigger(s, "flashsale_archive")
    assert airflow_api.wait_for_run(s, "flashsale_archive", run_id, timeout=600) == "success"
    for contract in (ORDERS_FACT, INVENTORY_FACT):
        hot, archived = hot_ids(s, contract), archived_ids(s, contract)
        assert archived, f"nothing of {contract.name} was archived"
        assert len(set(hot) | set(archived)) == len(hot) + len(archived) == generated[contract.name], contract.name
    with mongo_client(s) as c:
        names = c.get_default_database().list_collection_names()
    assert not [n for t, n in existing_buckets(ORDERS_FACT, names) if t.hour == 23], "hour 23 is still hot"

    # 5. the dashboard shows what to act on first in a real browser: the action queue's top warning, or once
    #    the sale has emptied every shelf at risk, the costliest empty shelf
    from dashboard_services import first_action_shown

    snap = read_snapshot(redis_client(s), keys_for(s))
    empty = snap["queue_summary"]["out_of_stock"]["count"]
    assert snap["queue"] or empty, "a flash sale that drains shelves must leave something to act on"
    shown, seen = first_action_shown(f"http://{s.bind_host}:{s.dashboard_port}", snap, timeout_ms=90_000)
    assert shown, (snap["queue"][:1], empty, seen)

    # 6. stopping the pipeline ends the running KPI apps too (two overlap while they hand over)
    pipeline.stop(s, echo=lambda *_: None, stop_stack=False)
    _wait(lambda: not _active_kpi_apps(s), 90, "the KPI apps to end after the stop")
    print(
        f"e2e: {time.time() - t0:.0f} s, {generated}, {len(snap['alerts'])} alerts, "
        f"{len(drained)} drained pairs, {covered:.0%} alerted"
    )
