"""Pure unit tests of the dashboard's display models (no Streamlit, no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dashboard_snapshots import snapshot

from dashboard.view_model import (
    Fetch,
    _action_label,
    build_view,
    format_age,
    format_eta,
    freshness,
    geo_rows,
    overloaded_rows,
    queue_rows,
    resolve,
    summary_lines,
    ui_links,
)
from flashsale.redis_keys import trend_point

NOW = datetime(2026, 11, 25, 12, 3, 24, tzinfo=UTC)


def with_trend(snap: dict, *previous: dict) -> dict:
    return {**snap, "trend": [trend_point(p) for p in (*previous, snap)]}


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0 s ago"),
        (14, "14 s ago"),
        (-3, "0 s ago"),
        (60, "1 min ago"),
        (185, "3 min 5 s ago"),
        (7300, "2 h 1 min ago"),
    ],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    "minutes,text",
    [(None, "—"), (float("nan"), "—"), (0, "0.0 min"), (9.54, "9.5 min"), (38.4, "38 min"), (125, "2 h 05 min")],
)
def test_format_eta(minutes, text):
    assert format_eta(minutes) == text


def test_freshness_text_and_stale_threshold():
    f = freshness(snapshot(NOW - timedelta(seconds=14)), NOW, 120, tz=UTC)
    assert f.text == "data as of 12:03:10, updated 14 s ago" and not f.stale
    assert freshness(snapshot(NOW - timedelta(seconds=120)), NOW, 120, tz=UTC).stale is False
    assert freshness(snapshot(NOW - timedelta(seconds=121)), NOW, 120, tz=UTC).stale is True
    assert freshness({"data_as_of": "garbage"}, NOW, 120).stale is True


def test_stale_is_judged_by_when_the_kpi_job_ran_not_by_the_data_clock():
    """Under the data clock (accelerated sale) data time runs ahead of the wall clock: a KPI job that
    stopped 5 minutes ago must read stale even though its data time is "in the future"."""
    dead = {**snapshot(NOW + timedelta(minutes=30)), "computed_at": (NOW - timedelta(minutes=5)).isoformat()}
    f = freshness(dead, NOW, 120, tz=UTC)
    assert f.stale and f.ago == "5 min ago" and f.clock == "12:33:24"
    screen = resolve(Fetch(snapshot=dead), None, NOW, 120, 5, tz=UTC)
    assert screen.greyed and "Stale data" in screen.banner.text and "5 min ago" in screen.banner.text
    # and the other way round: a live job on old data time (replaying a past sale) is not stale
    live = {**snapshot(NOW - timedelta(hours=3)), "computed_at": (NOW - timedelta(seconds=20)).isoformat()}
    assert not freshness(live, NOW, 120, tz=UTC).stale
    assert not freshness({**live, "computed_at": None}, NOW, 120).age_s


def test_queue_ranks_actionable_alerts_by_expected_loss_and_counts_the_rest():
    rows = queue_rows(snapshot(NOW))
    # expected loss desc; monitor and clearing alerts are not actions to take: counted, not listed
    assert [r.alert_id for r in rows] == ["7:2", "42:1", "99:1"]
    assert [r.rank for r in rows] == [1, 2, 3]
    assert rows[1].cells() == (
        2,
        "#42 Phones",
        "Dhaka North DC",
        "Dhaka",
        "9.5 min",
        0.97,
        "5,200",
        "PAUSE ADS",
        "rule for pause_ads fired (p=0.97)",
    )
    assert [r.action_label for r in rows] == ["RESTOCK +120 u", "PAUSE ADS", "REROUTE 35 u from W3"]
    assert rows[2].product == "#99" and rows[2].city == "Dhaka"  # not in sku_risk: name from the warehouse list
    summary = summary_lines(snapshot(NOW))
    assert summary[0].startswith("Not in the queue: 2 alerts (0 actionable")
    assert "monitor 1" in summary[0] and "clearing 1" in summary[0]
    assert summary[1].startswith("Restock orders: ") and "1 lines, 120 u" in summary[1]


def test_pairs_already_out_of_stock_are_counted_apart_with_the_costliest_named():
    item = {"product_id": 5, "warehouse_id": 1, "action": "pause_ads"}
    summary = {"out_of_stock": {"count": 7, "expected_loss": 12345.6, "items": [item]}}
    (line,) = summary_lines(snapshot(NOW), summary)
    assert line.startswith("Out of stock now (not in the queue): 7 pairs, expected loss 12,346")
    assert "#5 at " in line and "(pause ads)" in line and line.endswith("+6 more")
    assert summary_lines(snapshot(NOW), {"out_of_stock": {"count": 0, "items": []}}) == ()


def test_the_costliest_empty_shelves_are_rows_with_their_loss_and_action():
    snap = snapshot(NOW)
    items = [
        {"product_id": 5, "warehouse_id": 1, "action": "restock", "rank": 1, "reason": "out of stock",
         "numbers": {"expected_loss": 900.4, "suggested_units": 40, "available": 0}},
        {"product_id": 6, "warehouse_id": 2, "action": "pause_ads", "rank": 2, "numbers": {"expected_loss": 10.0}},
    ]  # fmt: skip
    snap["queue_summary"] = {
        **snap["queue_summary"],
        "out_of_stock": {"count": 9, "expected_loss": 1e4, "items": items},
    }
    view = build_view(snap, NOW, 120)
    assert view.out_of_stock == 9
    cells = [r.shelf_cells() for r in view.empty_shelves]
    assert [c[0] for c in cells] == [1, 2] and cells[0][1].startswith("#5")
    assert cells[0][4] == "900" and cells[0][5].startswith("RESTOCK +40") and cells[0][6] == "out of stock"
    assert cells[1][4] == "10" and cells[1][5].lower().startswith("pause")
    assert build_view(snapshot(NOW), NOW, 120).empty_shelves == ()


def test_queue_of_an_older_snapshot_is_ranked_the_jobs_way():
    old = {k: v for k, v in snapshot(NOW).items() if k not in ("queue", "queue_summary")}
    assert [r.alert_id for r in queue_rows(old)] == ["7:2", "42:1", "99:1"]
    assert queue_rows({}) == () and summary_lines({}) == ()


def test_an_older_snapshots_queue_is_computed_once_for_the_view(monkeypatch):
    import kpi.rules

    calls = []
    real = kpi.rules.action_queue
    monkeypatch.setattr(kpi.rules, "action_queue", lambda *a, **k: calls.append(1) or real(*a, **k))
    old = {k: v for k, v in snapshot(NOW).items() if k not in ("queue", "queue_summary")}
    view = build_view(old, NOW, 120, tz=UTC)
    assert len(calls) == 1  # the queue rows and the summary lines share one ranking
    assert [r.alert_id for r in view.queue] == ["7:2", "42:1", "99:1"] and view.summary


def test_restock_label_says_what_is_already_on_the_way():
    assert _action_label("restock", {"suggested_units": 120, "inbound_units": 40}) == "RESTOCK +120 u (40 on the way)"
    assert _action_label("restock", {"suggested_units": 120, "inbound_units": 0}) == "RESTOCK +120 u"


def test_tiles_show_the_snapshot_numbers_and_deltas():
    prev = snapshot(NOW - timedelta(minutes=1), run="r0", high_risk=4)
    view = build_view(with_trend(snapshot(NOW - timedelta(seconds=14), high_risk=7), prev), NOW, 120, tz=UTC)
    t = {x.key: x for x in view.tiles}
    assert (t["orders"].value, t["orders"].delta) == ("1,234", "+74 vs prev. min")  # 1234 - (900 + 20*13)
    assert (t["high_risk"].value, t["high_risk"].delta, t["high_risk"].delta_color) == (
        "7",
        "+3 vs last run",
        "inverse",
    )
    assert t["high_risk"].chart == (4.0, 7.0)
    assert (t["alerts"].value, t["alerts"].delta, t["alerts"].arrow) == ("5", "±0 vs last run", False)
    assert t["overloaded"].value == "2 / 3"
    assert (t["freshness"].value, t["freshness"].delta) == ("14 s ago", "data as of 12:03:10")
    assert view.risk_trend == (3.8, 3.8)


def test_where_and_overloaded():
    level, geo = geo_rows(snapshot(NOW))
    assert level == "city" and [(g.place, g.high, g.watch) for g in geo] == [
        ("Dhaka", 2, 1),
        ("Chittagong", 1, 0),
        ("Sylhet", 0, 1),
    ]
    over = overloaded_rows(snapshot(NOW))
    assert [(w.warehouse, w.load, w.delay) for w in over] == [
        ("Dhaka North DC", "1.42× cap", "12 min"),
        ("Chittagong Port WH", "0.50× cap", "41 min"),
    ]
    many = {
        **snapshot(NOW),
        "geo_city": [{"city": f"c{i}", "high_risk_pairs": 1, "expected_stockouts": i} for i in range(12)],
        "geo_province": [{"province": "P1", "high_risk_pairs": 3, "watch_pairs": 0, "expected_stockouts": 5}],
    }
    assert geo_rows(many)[0] == "province"


def test_empty_snapshot_renders_zeros_not_errors():
    view = build_view(snapshot(NOW, empty=True), NOW, 120, tz=UTC)
    assert view.queue == () and view.geo == () and {t.key: t.value for t in view.tiles}["high_risk"] == "0"


def test_resolve_live_then_down_then_recovered():
    fresh = snapshot(NOW - timedelta(seconds=5), run="r1")
    live = resolve(Fetch(snapshot=fresh), None, NOW, 120, 5, tz=UTC)
    assert live.banner is None and not live.greyed and live.last_good is fresh and live.view.run_id == "r1"

    down = resolve(Fetch(error="ConnectionError: refused"), live.last_good, NOW + timedelta(seconds=30), 120, 5, tz=UTC)
    assert down.greyed and down.banner.level == "error" and "Redis unreachable" in down.banner.text
    assert down.view.run_id == "r1" and "35 s ago" in down.banner.text and down.last_good is fresh

    newer = snapshot(NOW + timedelta(seconds=55), run="r2")
    back = resolve(Fetch(snapshot=newer), down.last_good, NOW + timedelta(seconds=60), 120, 5, tz=UTC)
    assert back.banner is None and not back.greyed and back.view.run_id == "r2" and back.last_good is newer


def test_resolve_stale_expired_nothing_and_malformed():
    old = snapshot(NOW - timedelta(minutes=5), run="old")
    stale = resolve(Fetch(snapshot=old), None, NOW, 120, 5, tz=UTC)
    assert stale.greyed and stale.banner.level == "warning" and "Stale data" in stale.banner.text
    assert "5 min ago" in stale.banner.text and stale.view.run_id == "old" and stale.last_good is old

    expired = resolve(Fetch(snapshot=None), old, NOW, 120, 5, tz=UTC)
    assert expired.greyed and expired.view.run_id == "old" and "No KPI snapshot" in expired.banner.text

    nothing = resolve(Fetch(snapshot=None), None, NOW, 120, 5, tz=UTC)
    assert nothing.view is None and nothing.banner.level == "info"

    bad = {**snapshot(NOW), "kpis": ["not", "a", "dict"]}
    broken = resolve(Fetch(snapshot=bad), old, NOW, 120, 5, tz=UTC)
    assert broken.banner.level == "error" and broken.view.run_id == "old" and broken.last_good is old


def test_an_older_snapshot_never_replaces_newer_last_good():
    newer = snapshot(NOW, run="new")
    screen = resolve(Fetch(snapshot=snapshot(NOW - timedelta(seconds=30), run="older")), newer, NOW, 120, 5, tz=UTC)
    assert screen.view.run_id == "older" and screen.last_good is newer


def test_ui_links_in_order_with_missing_profile_services():
    assert ui_links({"airflow": "http://a", "ray_dashboard": "http://r"}) == (
        ("Airflow", "http://a"),
        ("YARN", None),
        ("HDFS", None),
        ("Ray", "http://r"),
    )
