"""Backtest (backtest/replay.py) and the simulator's closed-loop hooks (ray_gen/actions.py): no services.

Scoring and the action desk against hand-built known answers; the hooks as pure functions and inside
the engine (neutral when empty, shard-count independent when not); one small end-to-end backtest with
the closed loop. The replay against spark.kpi_job.compute() on a local[*] SparkSession is
tests/integration/test_backtest_spark.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from backtest_sale import SETTINGS_PARAMS, SMALL, run_tables

from backtest import replay as B
from kpi.rules import KpiParams
from ray_gen import actions
from ray_gen.catalogue import build_catalogue
from ray_gen.params import make_params
from ray_gen.shards import WarehouseShard
from ray_gen.sinks import SinkSpec


def _eps(rows):
    return pd.DataFrame(rows, columns=["key", "start", "end"])


# ---------------------------------------------------------------- scoring: known answers
def test_score_known_answers():
    outs = _eps([(1, 50, 59), (1, 80, 85), (2, 30, 30), (5, 100, 120), (6, 90, 95)])
    alerts = _eps(
        [
            (1, 20, 60),  # open before the first stockout of pair 1: lead 50-20 = 30, TP
            (1, 70, 90),  # pair 1 back in stock at 60: lead of the 2nd stockout 80-max(70,60) = 10, TP
            (2, 30, 35),  # opened when the shelf was already empty: reactive, and pair 2's stockout is missed
            (3, 100, 110),  # never stocks out, 110+60 <= 199: false positive
            (4, 150, 199),  # never stocks out, still open at the end: pending
            (5, 10, 12),  # pair 5 stocks out at 100 > 12+60: false positive, and that stockout is missed
            (6, 0, 100),  # stockout at 90, inside the episode: TP with lead 90; not within 60 of the opening
        ]
    )
    r = B.score(alerts, outs, minutes=200, horizon=60.0, min_lead=15)
    assert (r["stockouts"], r["detected"]) == (5, 3)
    assert sorted(r["leads_min"]) == [10, 30, 90]
    assert r["recall_at_15min"] == 0.4 and r["recall_any_lead"] == 0.6 and r["median_lead_min"] == 30.0
    assert (
        r["alert_episodes"],
        r["reactive_episodes"],
        r["true_positives"],
        r["false_positives"],
        r["pending_episodes"],
    ) == (7, 1, 3, 2, 1)
    assert r["precision"] == 0.6
    assert r["precision_strict"] == 0.4  # TP: pair 1 twice; FP: pairs 3, 5 and 6 (90 > 0+60)
    assert r["false_alarms_per_hour"] == pytest.approx(2 / (200 / 60), abs=1e-3)


def test_score_with_nothing_to_score():
    r = B.score(_eps([]), _eps([]), minutes=60, horizon=60.0)
    assert r["stockouts"] == 0 and r["recall_at_15min"] is None and r["precision"] is None
    assert r["median_lead_min"] is None and r["false_alarms_per_hour"] == 0.0


def test_episodes_are_maximal_runs():
    e = B.Episodes(3)
    masks = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    for t, m in enumerate(masks):
        e.update(t, np.array(m, dtype=bool))
    f = e.frame(last_minute=4)
    assert f.values.tolist() == [[0, 0, 1], [0, 4, 4], [1, 1, 2], [2, 4, 4]]


def test_naive_baseline_is_stock_over_fifteen_minute_velocity():
    units = np.array([30, 30, 0, 0, 30])  # 2 units/min over 15 min
    available = np.array([100, 130, 0, 5, 1])
    known = np.array([True, True, True, True, False])
    assert B.naive_alerts(units, available, known, horizon=60.0, window=15).tolist() == [
        True,  # ETA 50 < 60
        False,  # ETA 65
        True,  # empty shelf: ETA 0
        False,  # no sales: no ETA
        False,  # no inventory known
    ]


def test_oracle_uses_the_expected_demand_of_the_next_horizon():
    from scipy import stats

    from ray_gen.model import choice_cdf, flash_intensity, warehouse_pressure

    p = make_params(**SMALL)
    cat = build_catalogue(p)
    rng = np.random.default_rng(7)
    stock = rng.integers(0, 40, cat.baseline_rate.shape)  # low stock: the scarcity boost matters
    load = np.linspace(0.5, 3.0, p.n_warehouses)  # some warehouses overloaded: their cities hesitate
    # expected requests per pair from the simulator's own pieces: a warehouse's orders x its cities'
    # pressure x the product's share of the choice CDF (popularity, discount, scarcity)
    share = np.stack(
        [
            np.diff(choice_cdf(cat, p, stock[w]), prepend=0.0) / choice_cdf(cat, p, stock[w])[-1]
            for w in range(p.n_warehouses)
        ]
    )
    wh_orders = cat.baseline_rate / cat.choice_weight[None, :]  # baseline = orders x weight x units per order
    intensity = flash_intensity(p.flash, np.arange(121, 181)).sum()
    expected = (wh_orders * warehouse_pressure(load, p)[:, None] * share * intensity).reshape(-1)
    params = KpiParams(high_p=0.5)
    flat = stock.reshape(-1)
    got = B.oracle_p(p, params, flat, 120, load=load)
    want = np.where(flat <= 0, 1.0, stats.poisson.sf(flat - 1, expected))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.array_equal(B.oracle_alerts(p, params, flat, 120, load=load), want >= 0.5)
    assert B.oracle_alerts(p, params, np.zeros_like(flat), 120).all()  # empty shelves


# ---------------------------------------------------------------- the operator following the alerts
def _alert(p, w, action, units=0, donor=None):
    return {
        "product_id": p,
        "warehouse_id": w,
        "action": action,
        "numbers": {"suggested_units": units, "reroute_from_warehouse_id": donor},
    }


def test_action_desk_orders_once_per_restock_in_flight():
    desk = B.ActionDesk(n_products=100, lead_minutes=45)
    iv = desk.plan(
        10,
        [
            _alert(1, 2, "restock", 30),
            _alert(3, 2, "pause_ads", 8),
            _alert(4, 5, "reroute", 40, donor=6),
            _alert(7, 2, "monitor"),
            _alert(8, 2, "restock", 0),
        ],
    )
    assert iv.restocks.tolist() == [[2, 1, 30], [2, 3, 8]]  # pause_ads still orders its restock; 0 units: nothing
    assert iv.reroutes.tolist() == [[5, 4, 6]] and iv.pauses.tolist() == [[2, 3]]
    again = desk.plan(11, [_alert(1, 2, "restock", 31)])
    assert len(again.restocks) == 0 and len(again.pauses) == 0  # in flight until minute 55; the pause is lifted
    assert desk.plan(55, [_alert(1, 2, "restock", 12)]).restocks.tolist() == [[2, 1, 12]]  # landed: may order again
    assert desk.counts == {"restock_orders": 3, "restock_units": 50, "reroute_minutes": 1, "pause_minutes": 1}
    clearing = desk.plan(
        56,
        [
            {**_alert(4, 5, "reroute", 40, donor=6), "status": "clearing"},
            {**_alert(3, 2, "pause_ads", 8), "status": "clearing"},
        ],
    )
    assert len(clearing.reroutes) == len(clearing.pauses) == len(clearing.restocks) == 0  # the risk has passed


# ---------------------------------------------------------------- the simulator's hooks
def test_route_storefront_and_pause_are_pure_lookups():
    reroutes = np.array([[0, 5, 2], [1, 7, 3]])
    home = np.array([0, 0, 1, 1, 2])
    product = np.array([5, 6, 7, 5, 5])
    assert actions.route(home, product, reroutes, n_products=10).tolist() == [2, 0, 3, 1, 2]
    avail = {0: np.arange(10), 1: np.arange(10) + 100, 2: np.full(10, 42), 3: np.full(10, 7)}
    shelf = actions.storefront(avail, 0, reroutes)
    assert shelf[5] == 42 and shelf[6] == 6 and avail[0][5] == 5  # the donor's stock, without touching the input
    u = np.random.default_rng(1).random(20_000)
    pauses = np.array([[0, 5]])
    keep = actions.kept_after_pause(
        u, np.zeros(20_000, np.int64), np.where(np.arange(20_000) % 2, 5, 6), pauses, 0.3, 10
    )
    paused = np.arange(20_000) % 2 == 1
    assert keep[~paused].all()
    assert abs(keep[paused].mean() - 0.3) < 0.02


def test_interventions_reject_nonsense():
    with pytest.raises(ValueError, match="units"):
        actions.Interventions(restocks=[[0, 1, 0]])
    with pytest.raises(ValueError, match="own donor"):
        actions.Interventions(reroutes=[[3, 1, 3]])


def test_radar_restock_lands_after_the_action_lead_time():
    p = make_params(**{**SMALL, "action_restock_lead_minutes": 7})
    plain, acted = (WarehouseShard(p, 0, SinkSpec("null")) for _ in range(2))
    acted.intervene(3, actions.Interventions(restocks=[[2, 11, 40]]))
    for minute in range(12):
        plain.reserve(minute)
        acted.reserve(minute)
        gap = acted.on_hand[2, 11] - plain.on_hand[2, 11]
        assert gap == (40 if minute >= 10 else 0), minute
    assert (acted.on_hand != plain.on_hand).sum() == 1


def test_empty_interventions_change_nothing(tmp_path):
    p = make_params(**{**SMALL, "minutes": 40})
    _, plain = run_tables(tmp_path, "plain", p)
    _, neutral = run_tables(tmp_path, "neutral", p, interventions=lambda m: actions.Interventions())
    for name in plain:
        assert plain[name].num_rows > 0 and plain[name].equals(neutral[name]), name


def test_reroute_pause_and_restock_act_in_the_world_whatever_the_shards(tmp_path):
    p = make_params(**{**SMALL, "minutes": 40, "n_warehouses": 20, "action_restock_lead_minutes": 20})
    cat = build_catalogue(p)
    # a warehouse with a same-province neighbour, and its best seller
    prov = [cat.city_province[int(c)] for c in cat.warehouse_city]
    w, d = next((a, b) for a in range(20) for b in range(20) if a != b and prov[a] == prov[b])
    top = int(np.argmax(cat.baseline_rate[w]))
    second = int(np.argsort(cat.baseline_rate[w])[-2])
    iv = actions.Interventions(restocks=[[w, top, 500]], reroutes=[[w, top, d]], pauses=[[w, second]])
    plain_pr, plain = run_tables(tmp_path, "plain", p)
    acted_pr, one = run_tables(tmp_path, "one", p, interventions=lambda m: iv if m == 0 else None)
    _, four = run_tables(
        tmp_path, "four", p.replace(city_shards=4, warehouse_shards=4), interventions=lambda m: iv if m == 0 else None
    )
    for name in one:  # the tick protocol sends rerouted requests to the donor's shard
        assert one[name].equals(four[name]), name
    o = one["orders_fact"].to_pandas()
    home = cat.city_warehouse[o["city_id"].to_numpy()] == w
    assert (o.loc[home & (o.product_id == top), "warehouse_id"] == d).all()  # rerouted
    assert (home & (o.product_id == top)).sum() > 0
    assert (o.loc[home & (o.product_id != top), "warehouse_id"] == w).all()
    po = plain["orders_fact"].to_pandas()
    plain_home = cat.city_warehouse[po["city_id"].to_numpy()] == w
    assert (home & (o.product_id == second)).sum() < 0.7 * (plain_home & (po.product_id == second)).sum()  # factor 0.5
    assert acted_pr.suppressed_requests > 0 and plain_pr.suppressed_requests == 0
    inv = one["inventory_fact"].to_pandas()
    pair = inv[(inv.warehouse_id == w) & (inv.product_id == top)].sort_values("inventory_ts")
    landing = pd.Timestamp(p.start + timedelta(minutes=20, seconds=59.999))
    at = pair.index[pair.inventory_ts == landing]
    assert len(at) == 1  # the radar's restock is an inventory event at its landing minute
    before = pair[pair.inventory_ts < landing].iloc[-1]
    assert pair.loc[at[0], "inventory_on_hand"] - before["inventory_on_hand"] >= 500


def test_progress_counts_revenue_and_stockout_minutes(tmp_path):
    p = make_params(**SMALL)
    progress, tables = run_tables(tmp_path, "sale", p)
    orders = tables["orders_fact"]
    assert progress.revenue == pytest.approx(pc.sum(orders["order_value"]).as_py(), rel=1e-9)
    assert progress.lost_orders > 0 and progress.lost_revenue > 0
    assert progress.stockout_minutes >= progress.stockouts > 0


# ---------------------------------------------------------------- end to end
def test_small_backtest_end_to_end_with_closed_loop(tmp_path):
    from backtest.report import save

    p = make_params(**SMALL)
    seen = []

    class Bar:
        def __init__(self, label):
            self.label = label

        def __enter__(self):
            return lambda progress: seen.append((self.label, progress.minute))

        def __exit__(self, *exc):
            return False

    r = B.backtest(p, SETTINGS_PARAMS, history_hours=24, act=True, progress=Bar)
    assert [m for label, m in seen if label.startswith("open")] == list(range(p.minutes))
    assert [m for label, m in seen if label.startswith("closed")] == list(range(p.minutes))
    radar, naive, oracle = r["radar"], r["naive_baseline"], r["oracle"]
    assert radar["stockouts"] == naive["stockouts"] == oracle["stockouts"] == r["open_loop"]["stockout_events"] > 10
    assert radar["detected"] > 0 and radar["true_positives"] > 0
    # the oracle's frontier: a lower threshold alerts on a superset of minutes, so recall never falls;
    # its point at the job's high_p is the oracle's own score
    frontier = r["oracle_frontier"]
    assert [pt["p_threshold"] for pt in frontier] == sorted(B.ORACLE_FRONTIER_P)
    recalls = [pt["recall_any_lead"] for pt in frontier]
    assert recalls == sorted(recalls, reverse=True) and recalls[0] > recalls[-1]
    at_high = next(pt for pt in frontier if pt["p_threshold"] == SETTINGS_PARAMS.high_p)
    assert at_high["precision"] == oracle["precision"] and at_high["recall_any_lead"] == oracle["recall_any_lead"]
    # acting on the radar's alerts keeps shelves fuller than not acting, on the same seed
    o, c = r["open_loop"], r["closed_loop"]
    assert c["stockout_minutes"] < o["stockout_minutes"] and c["lost_revenue"] < o["lost_revenue"]
    assert c["actions"]["restock_orders"] > 0 and c["suppressed_requests"] > 0
    json_path, png_path = save(r, tmp_path / "out")
    assert json.loads(json_path.read_text())["radar"]["stockouts"] == radar["stockouts"]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_json_and_png_and_names_bad_input(tmp_path):
    from typer.testing import CliRunner

    from radar.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "backtest",
            "--products",
            "60",
            "--warehouses",
            "5",
            "--minutes",
            "30",
            "--history-hours",
            "2",
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["simulated_minutes"] == 30 and printed["pairs"] == 300
    assert json.loads((tmp_path / "backtest.json").read_text())["radar"] == printed["radar"]
    assert (tmp_path / "backtest.png").stat().st_size > 10_000
    bad = runner.invoke(app, ["backtest", "--products", "0", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "n_products" in bad.output
