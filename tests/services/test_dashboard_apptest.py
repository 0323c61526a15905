"""The Streamlit page (AppTest) against the real Redis of the running stack, in a private namespace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from dashboard_services import free_port
from dashboard_snapshots import snapshot, write
from streamlit.testing.v1 import AppTest

from flashsale.redis_keys import keys_for
from flashsale.settings import PROJECT_ROOT, load_settings
from flashsale.stores import redis_client

APP = str(PROJECT_ROOT / "dashboard" / "app.py")


@pytest.fixture
def ns_redis(stack, monkeypatch):  # the stack's Redis: started here, not by whichever test ran before
    ns = f"fsr:test:dash:{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FLASHSALE_KPI_REDIS_NAMESPACE", ns)
    s = load_settings(kpi_redis_namespace=ns)
    r, keys = redis_client(s), keys_for(s)
    yield r, keys
    r.delete(*keys.all())


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def block_ids(node) -> str:
    """Ids of every block under node (a keyed st.container's id ends with its key)."""
    own = str(node.proto.id) if getattr(node, "proto", None) is not None and hasattr(node.proto, "id") else ""
    return " ".join([own, *(block_ids(c) for c in getattr(node, "children", {}).values())])


def banners(at: AppTest) -> list[str]:
    return [e.value for e in (*at.error, *at.warning, *at.info)]


def test_values_shown_match_the_snapshot(ns_redis):
    r, keys = ns_redis
    write(r, keys, snapshot(datetime.now(UTC) - timedelta(minutes=1), run="prev", high_risk=4))
    write(r, keys, snapshot(datetime.now(UTC) - timedelta(seconds=3), run="now", orders_last_minute=4321, high_risk=9))
    at = run_app()
    m = metrics(at)
    assert m["Orders / min"] == ("4,321", f"+{4321 - 1160:,} vs prev. min")
    assert m["High-risk SKUs"] == ("9", "+5 vs last run")
    assert m["Open alerts"][0] == "5" and m["Overloaded warehouses"][0] == "2 / 3"
    assert m["Data freshness"][0].endswith("s ago") and m["Data freshness"][1].startswith("data as of ")
    queue = at.table[0].value  # the action queue: actions only, by expected loss
    assert list(queue["Product"]) == ["#7 Sneakers", "#42 Phones", "#99"] and list(queue["#"]) == [1, 2, 3]
    assert list(queue["Action"]) == ["RESTOCK +120 u", "PAUSE ADS", "REROUTE 35 u from W3"]
    assert list(queue.iloc[1][["Warehouse", "City", "ETA pessim.", "Exp. loss"]]) == [
        "Dhaka North DC",
        "Dhaka",
        "9.5 min",
        "5,200",
    ]
    assert list(queue["P(stockout)"]) == [0.88, 0.97, 0.97]
    captions = " ".join(c.value for c in at.caption)
    assert "Not in the queue: 2 alerts" in captions and "Restock orders:" in captions  # counted, not listed
    assert list(at.table[1].value["Warehouse"]) == ["Dhaka North DC", "Chittagong Port WH"]
    assert banners(at) == [] and "fsr_body_live" in block_ids(at.main)
    links = " ".join(md.value for md in at.markdown)
    assert "Airflow" in links and "Ray" in links and "YARN" in links and "HDFS" in links


def test_empty_snapshot(ns_redis):
    r, keys = ns_redis
    write(r, keys, snapshot(datetime.now(UTC), run="empty", empty=True))
    at = run_app()
    assert metrics(at)["High-risk SKUs"][0] == "0" and metrics(at)["Open alerts"][0] == "0"
    assert any("Nothing to act on" in s.value for s in at.success)
    assert banners(at) == []


def test_nothing_left_to_prevent_but_empty_shelves_is_no_all_clear(ns_redis):
    r, keys = ns_redis
    snap = snapshot(datetime.now(UTC), run="emptied", empty=True)
    item = {"product_id": 77, "warehouse_id": 1, "action": "pause_ads"}
    snap["queue_summary"] = {
        **snap["queue_summary"],
        "out_of_stock": {"count": 4, "expected_loss": 800.0, "items": [item]},
    }
    write(r, keys, snap)
    at = run_app()
    assert not at.success  # not "nothing to act on"
    assert any("4 pairs are out of stock now" in w.value for w in at.warning)
    assert any(
        c.value.startswith("Out of stock now (not in the queue): 4 pairs") and "#77 at " in c.value for c in at.caption
    )
    # the empty shelves are a table too, in an expander that opens by itself when nothing is queued
    (shelves,) = [e for e in at.expander if e.label.startswith("Empty shelves")]
    (table,) = shelves.table
    assert "#77" in table.value.iloc[0]["Product"]


def test_no_snapshot_at_all(ns_redis):
    at = run_app()
    assert len(at.metric) == 0 and any("No KPI snapshot in Redis" in b for b in banners(at))


def test_stale_snapshot_is_greyed_under_a_banner(ns_redis):
    r, keys = ns_redis
    write(r, keys, snapshot(datetime.now(UTC) - timedelta(minutes=5), run="old", orders_last_minute=77))
    at = run_app()
    assert metrics(at)["Orders / min"][0] == "77"  # still shown...
    assert any("Stale data" in w.value and "5 min" in w.value for w in at.warning)  # ...under a banner
    assert "fsr_body_stale" in block_ids(at.main) and "fsr_body_live" not in block_ids(at.main)


def test_expired_snapshot_keeps_last_good_then_recovers(ns_redis):
    r, keys = ns_redis
    write(r, keys, snapshot(datetime.now(UTC), run="good", orders_last_minute=500))
    at = run_app()
    assert metrics(at)["Orders / min"][0] == "500" and banners(at) == []
    r.delete(*keys.all())  # the snapshot expired (the KPI job stopped)
    at.run()
    assert not at.exception and metrics(at)["Orders / min"][0] == "500"
    assert any("No KPI snapshot" in b and "greyed" in b for b in banners(at))
    write(r, keys, snapshot(datetime.now(UTC), run="back", orders_last_minute=600))
    at.run()
    assert not at.exception and metrics(at)["Orders / min"][0] == "600" and banners(at) == []


def test_redis_unreachable_is_a_banner_not_a_traceback(ns_redis, monkeypatch):
    monkeypatch.setenv("FLASHSALE_REDIS_PORT", str(free_port()))  # nothing listens there
    at = run_app()
    assert any("Redis unreachable" in e.value for e in at.error) and len(at.metric) == 0
