"""Backtest (backtest/replay.py) and the simulator's closed-loop hooks (ray_gen/actions.py): no services.

Scoring and the action desk against hand-built known answers; the hooks as pure functions and inside
the engine (neutral when empty, shard-count independent when not); one small end-to-end backtest with
the closed loop. The replay against spark.kpi_job.compute() on a local[*] SparkSession is
tests/integration/test_backtest_spark.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from backtest_sale import SETTINGS_PARAMS, SMALL, run_tables

from backtest import replay as B
from ray_gen import actions
from ray_gen.catalogue import build_catalogue
from ray_gen.params import make_params
from ray_gen.shards import WarehouseShard
from ray_gen.sinks import SinkSpec


def _eps(rows):
    return pd.DataFrame(rows, columns=["key", "start", "end"])


def test_episodes_are_maximal_runs():
    e = B.Episodes(3)
    masks = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    for t, m in enumerate(masks):
        e.update(t, np.array(m, dtype=bool))
    f = e.frame(last_minute=4)
    assert f.values.tolist() == [[0, 0, 1], [0, 4, 4], [1, 1, 2], [2, 4, 4]]


def test_true_rates_are_the_simulators_expected_demand():
    from ray_gen.model import choice_cdf, warehouse_pressure

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
    expected = (wh_orders * warehouse_pressure(load, p)[:, None] * share).reshape(-1)
    np.testing.assert_allclose(B.true_rates(p, cat, stock.reshape(-1), load), expected, rtol=1e-9)


def test_oracle_monte_carlo_matches_compound_poisson():
    """One pair, 2 orders/min x 1 for 10 minutes, units 1 + Poisson(0.25): P(units >= 25) by direct sum."""
    from scipy import stats

    from backtest import judge as J

    params = replace(SETTINGS_PARAMS, horizon_minutes=10.0)
    rng = np.random.default_rng(1)
    n = 4000  # the same pair many times: the Monte Carlo's average must hit the closed form
    p, _, short, _, _ = J.oracle_numbers(
        rng, np.full(n, 2.0), np.ones(10), np.full(n, 25), np.zeros(n), np.zeros(n), 0.25, params
    )
    # units = N + Poisson(0.25 N), N ~ Poisson(20): P(units >= 25) = sum_N P(N) P(Poisson(0.25 N) >= 25 - N)
    N = np.arange(0, 80)
    exact = float((stats.poisson.pmf(N, 20) * stats.poisson.sf(24 - N, 0.25 * N)).sum())
    assert p.mean() == pytest.approx(exact, abs=0.01)
    assert short.mean() > 0
    empty, *_ = J.oracle_numbers(rng, np.ones(2), np.ones(10), np.zeros(2), np.zeros(2), np.zeros(2), 0.25, params)
    assert empty.tolist() == [1.0, 1.0]


def test_labels_look_ahead_exactly_the_horizon():
    from backtest import judge as J

    starts = pd.DataFrame({"pair": [1, 1, 2], "minute": [10, 50, 5]})
    y = J.labels(np.array([1, 1, 1, 1, 2, 3]), np.array([0, 9, 10, 45, 5, 0]), starts, horizon=5)
    assert y.tolist() == [False, True, False, True, False, False]  # (minute, minute + 5]


# ---------------------------------------------------------------- the operator following the alerts
def _alert(p, w, action, units=0, donor=None, surplus=None):
    return {
        "product_id": p,
        "warehouse_id": w,
        "action": action,
        "numbers": {"suggested_units": units, "reroute_from_warehouse_id": donor, "surplus_units": surplus},
    }


def test_action_desk_orders_once_per_restock_or_transfer_in_flight():
    desk = B.ActionDesk(n_products=100, lead_minutes=45, transfer_minutes=20)
    iv = desk.plan(
        10,
        [
            _alert(1, 2, "restock", 30),
            _alert(3, 2, "pause_ads", 8),
            _alert(4, 5, "reroute", 40, donor=6, surplus=25),
            _alert(7, 2, "monitor"),
            _alert(8, 2, "restock", 0),
        ],
    )
    assert iv.restocks.tolist() == [[2, 1, 30], [2, 3, 8]]  # pause_ads still orders its restock; 0 units: nothing
    # a transfer of what the pair needs, capped by what the donor spares
    assert iv.transfers.tolist() == [[5, 4, 6, 25]] and iv.pauses.tolist() == [[2, 3]]
    again = desk.plan(11, [_alert(1, 2, "restock", 31), _alert(4, 5, "reroute", 40, donor=6, surplus=25)])
    assert len(again.restocks) == len(again.transfers) == len(again.pauses) == 0  # in flight; the pause is lifted
    assert desk.plan(30, [_alert(4, 5, "reroute", 10, donor=6, surplus=25)]).transfers.tolist() == [[5, 4, 6, 10]]
    assert desk.plan(55, [_alert(1, 2, "restock", 12)]).restocks.tolist() == [[2, 1, 12]]  # landed: may order again
    assert desk.counts == {
        "restock_orders": 3,
        "restock_units": 50,
        "transfers": 2,
        "transfer_units": 35,
        "pause_minutes": 1,
    }
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

    r, frame = B.backtest(p, SETTINGS_PARAMS, history_hours=24, seeds=[5, 6], progress=Bar)
    assert [m for label, m in seen if label.startswith("spike")] == list(range(p.minutes))
    assert [m for label, m in seen if label.startswith("seed 6: acting")] == list(range(p.minutes))
    assert r["cases"]["stockouts"] > 10 and r["cases"]["positives"] > 0
    for name in ("radar", "naive", "oracle"):
        assert 0 <= r[name]["brier"] < 1 and r[name]["queue_episodes"] > 0
    # the figures come from the predictions frame alone
    assert B.figures(frame)["radar"] == r["radar"]
    assert r["radar"]["brier_skill"] > 0  # the radar beats the naive rule on this sale
    cl = r["closed_loop"]
    assert [s["seed"] for s in cl["seeds"]] == [5, 6] and len(cl["net_margin_change_ci95"]) == 2
    acted = cl["seeds"][0]["closed_loop"]["actions"]
    assert acted["restock_orders"] + acted["transfers"] + acted["pause_minutes"] > 0
    assert r["normal_day"]["actionable_first_hour"] == 0  # no sale: nothing to act on
    json_path, png_path = save(r, tmp_path / "out")
    assert json.loads(json_path.read_text())["radar"]["brier"] == r["radar"]["brier"]
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
            "--loop-seeds",
            "0",
            "--predictions",
            str(tmp_path / "pred.parquet"),
            "--json",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["simulated_minutes"] == 30 and printed["pairs"] == 300
    for key in ("brier_skill", "ece", "pr_auc", "queue_precision", "false_actionable_per_hour", "recall_weighted"):
        assert key in printed["radar"] and key in printed["naive"] and key in printed["oracle"]
    assert "actionable_per_hour" in printed["normal_day"]
    assert json.loads((tmp_path / "backtest.json").read_text())["radar"] == printed["radar"]
    assert (tmp_path / "backtest.png").stat().st_size > 10_000
    # the predictions file alone gives the same figures
    again = runner.invoke(app, ["backtest", "--predictions", str(tmp_path / "pred.parquet"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["radar"] == printed["radar"]
    bad = runner.invoke(app, ["backtest", "--products", "0", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "n_products" in bad.output
    shape = runner.invoke(app, ["backtest", "--shape", "tsunami", "--out", str(tmp_path)])
    assert shape.exit_code != 0 and "--shape" in shape.output


def test_waves_shape_through_the_backtest():
    """The waves sale (a spike, then waves at +80 and +160 minutes) goes through the whole backtest: its planned
    calendar holds every event, the figures come from the predictions frame, a planned wave raises the
    radar's risk before it shows in the data, and the overload KPI (kpi.rules.warehouse_status, the job's)
    is quiet before the spike and on the normal day."""
    p = make_params(**{**SMALL, "minutes": 215})
    r, frame = B.backtest(p, SETTINGS_PARAMS, shape="waves", history_hours=24, seeds=None)
    start = datetime.fromisoformat(r["sim"]["start"]).timestamp()
    starts = [round((e["start_s"] - start) / 60) for e in r["kpi_params"]["calendar"]]
    assert r["shape"] == "waves" and starts == [120, 200, 280]
    assert B.figures(frame)["radar"] == r["radar"] and r["cases"]["rows"] > 0
    fc = frame[frame["kind"] == "forecast"]
    p_mean = fc.groupby("minute")["p_stockout"].mean()
    assert p_mean[195] > 1.5 * p_mean[175]  # the wave at 200 is planned: the risk rises before it
    over = r["series"]["open_loop"]["overloaded_warehouses"]
    assert len(over) == p.minutes and not any(over[:100])
    assert r["normal_day"]["overloaded_warehouse_minutes"] == 0
