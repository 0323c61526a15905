"""Pure KPI definitions with known answers (no server)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flashsale.calendar import SaleEvent
from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, arrow_schema, validate_batch
from flashsale.settings import load_settings
from kpi import rules as R
from kpi import scenarios as synthetic
from kpi.baseline import baseline_from_table, read_archive_baseline

P = R.KpiParams()  # defaults mirror the settings defaults (checked below)


def test_params_come_from_settings():
    s = load_settings(kpi_velocity_alpha=0.5, restock_lead_time_minutes=30)
    p = R.KpiParams.from_settings(s)
    assert p.alpha == 0.5 and p.lead_time_minutes == 30.0
    assert R.KpiParams.from_settings(load_settings()).as_dict() == P.as_dict()


def test_measured_lift_is_recent_known_units_over_baselines_times_the_plan():
    base = pd.DataFrame({"product_id": [1, 2], "warehouse_id": [0, 0], "baseline_velocity": [1.0, 0.5]})
    mins = pd.DataFrame(
        {
            "product_id": [1, 2, 9, 1],
            "warehouse_id": [0, 0, 0, 0],
            "minute_idx": [14, 10, 14, 9],  # the last 5 of 15 minutes are 10..14
            "units": [20, 10, 100, 50],
        }
    )  # product 9: no baseline; minute 9: too old
    params = replace(P, lift_minutes=5)
    c = R.LIFT_PSEUDO_UNITS
    g, by_cat, _ = R.measured_lift(mins, base, params)
    assert g == pytest.approx((30 + c) / (1.5 * 5 + c)) and by_cat == ()
    assert R.measured_lift(mins, base, replace(P, lift_minutes=0))[0] == 1.0  # off
    assert R.measured_lift(mins, base.iloc[:0], params)[0] == 1.0  # first day: no archive
    assert R.measured_lift(mins.iloc[:0], base, params)[0] < 1.0  # nothing sold: the lift falls
    # a planned event doubling demand over those minutes: the same sales are only half the plan's lift
    as_of = datetime(2026, 11, 11, 0, 15, tzinfo=UTC)
    plan = (SaleEvent(datetime(2026, 11, 11, tzinfo=UTC).timestamp(), 1.0, 1e9),)
    planned = replace(params, calendar=plan, as_of_s=as_of.timestamp())
    assert R.measured_lift(mins, base, planned)[0] == pytest.approx((30 + c) / (1.5 * 5 * 2 + c))
    # per category, pooled toward the sale-wide lift
    cats = pd.Series({1: "A", 2: "B", 9: "A"})
    g, by_cat, _ = R.measured_lift(mins, base, params, cats)
    assert dict(by_cat) == pytest.approx({"A": (20 + c * g) / (5 + c), "B": (10 + c * g) / (2.5 + c)})


def test_price_elasticity_recovers_the_exponent_demand_follows():
    rng = np.random.default_rng(3)
    n = 400
    discount = rng.uniform(0.0, 0.6, n)
    expected = rng.uniform(5.0, 50.0, n)
    group = np.where(np.arange(n) % 2 == 0, "A", "B")
    level = np.where(group == "A", 2.0, 0.7)  # each category its own lift: profiled out
    sold = rng.poisson(level * expected * (1.0 - discount) ** -1.5)
    assert R.price_elasticity(sold, expected, discount, group) == pytest.approx(1.5, abs=0.1)
    # no discount effect in the data: none measured; too little evidence: none claimed
    assert R.price_elasticity(rng.poisson(level * expected), expected, discount, group) == pytest.approx(0.0, abs=0.1)
    assert R.price_elasticity(sold[:3] * 0 + 1, expected[:3], discount[:3], group[:3]) == 0.0


def test_measured_lift_prices_each_category_lift_by_the_discounts():
    # two products of one category, same baseline, 0 % and 50 % off; demand follows (1 - d)^-2
    base = pd.DataFrame({"product_id": [1, 2], "warehouse_id": [0, 0], "baseline_velocity": [10.0, 10.0]})
    mins = pd.DataFrame(
        {
            "product_id": [1, 2] * 15,
            "warehouse_id": [0, 0] * 15,
            "minute_idx": np.repeat(np.arange(15), 2),
            "units": [10, 40] * 15,
        }
    )
    params = replace(P, lift_minutes=5)
    cats, disc = pd.Series({1: "A", 2: "A"}), pd.Series({1: 0.0, 2: 0.5})
    g, by_cat, e = R.measured_lift(mins, base, params, cats, disc)
    assert e == pytest.approx(2.0)
    assert g == pytest.approx((250 + R.LIFT_PSEUDO_UNITS) / (100 + R.LIFT_PSEUDO_UNITS))  # the plain sale-wide lift
    lift = dict(by_cat)["A"]  # x (1 - d)^-e: each product's own demand over its baseline
    assert lift * R.discount_effect(0.0, e) == pytest.approx(1.0, rel=0.05)
    assert lift * R.discount_effect(0.5, e) == pytest.approx(4.0, rel=0.05)
    # without the discounts: one lift for both, 2.5x, too high for one and too low for the other
    assert dict(R.measured_lift(mins, base, params, cats)[1])["A"] == pytest.approx(2.5, rel=0.05)


def test_units_per_order():
    assert R.units_per_order(pd.DataFrame({"units": [5, 3], "orders": [4, 2]})) == pytest.approx(8 / 6)
    assert R.units_per_order(pd.DataFrame({"units": [5]})) == 1.0


def test_the_lift_scales_the_baseline_prior():
    state = _state_row(available=10, baseline_velocity=0.2)
    quiet = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("product_id", "warehouse_id", "minute_idx", "units")})
    w = (1 - P.alpha) ** np.arange(14, -1, -1)
    for g in (1.0, 3.0):
        lam = R.sku_kpis(quiet, state, replace(P, sale_lift=g, prior_cv=0.0))["velocity"].iloc[0]
        assert lam == pytest.approx(P.prior_minutes * g * 0.2 / (P.prior_minutes + w.sum()))
    # a category lift overrides the sale-wide one for its category
    lam = R.sku_kpis(quiet, state, replace(P, sale_lift=1.0, category_lift=(("Phones", 3.0),), prior_cv=0.0))[
        "velocity"
    ].iloc[0]
    assert lam == pytest.approx(P.prior_minutes * 3.0 * 0.2 / (P.prior_minutes + w.sum()))
    # ... times the discount's effect at the measured price elasticity: half off at e = 2 is 4x
    priced = replace(P, sale_lift=1.0, category_lift=(("Phones", 3.0),), price_elasticity=2.0, prior_cv=0.0)
    lam = R.sku_kpis(quiet, _state_row(available=10, baseline_velocity=0.2, discount=0.5), priced)["velocity"].iloc[0]
    assert lam == pytest.approx(P.prior_minutes * 12.0 * 0.2 / (P.prior_minutes + w.sum()))


def _state_row(**over) -> pd.DataFrame:
    row = {
        "product_id": 1,
        "warehouse_id": 0,
        "available": 10,
        "inbound_units": 0,
        "inbound_in_min": 0.0,
        "category": "Phones",
        "city": "c",
        "province": "p",
        "unit_price": 100.0,
        "discount": 0.0,
        "baseline_velocity": np.nan,
    }
    return pd.DataFrame([{**row, **over}])


def test_restock_suggestion_subtracts_what_is_inbound():
    minutes, state = _scenario_frames()
    state.loc[(state.product_id == 3) & (state.warehouse_id == 20), ["inbound_units", "inbound_in_min"]] = (
        20,
        70.0,
    )  # lands after the horizon: it does not avert the stockout, but it is not ordered twice
    df = _kpis(minutes, state)
    assert df.loc[(3, 20), "action"] == "restock"
    need = math.ceil(df.loc[(3, 20), "velocity"] * 105)  # ceil(velocity x (60+45)): ~1 unit/min
    assert 105 <= need <= 108 and df.loc[(3, 20), "suggested_units"] == need - 58 - 20  # - available - inbound
    assert "20 units already inbound" in df.loc[(3, 20), "reason"]


def test_inbound_enters_the_risk_unless_the_setting_says_not():
    minutes, state = _scenario_frames()
    state.loc[(state.product_id == 3) & (state.warehouse_id == 20), ["inbound_units", "inbound_in_min"]] = (20, 50.0)
    on = R.sku_kpis(minutes, state, P).set_index(["product_id", "warehouse_id"]).loc[(3, 20)]
    off = (
        R.sku_kpis(minutes, state, replace(P, inbound_in_risk=False))
        .set_index(["product_id", "warehouse_id"])
        .loc[(3, 20)]
    )
    minutes0, state0 = _scenario_frames()  # nothing inbound
    none = R.sku_kpis(minutes0, state0, P).set_index(["product_id", "warehouse_id"]).loc[(3, 20)]
    assert off["p_stockout"] == pytest.approx(none["p_stockout"])  # as if nothing were inbound
    assert on["p_stockout"] < off["p_stockout"] - 0.2
    assert P.inbound_in_risk and not R.KpiParams.from_settings(load_settings(kpi_inbound_in_risk=False)).inbound_in_risk


def test_risk_levels():
    assert list(R.risk_level([0.9, 0.5, 0.3, 0.2, 0.1], P)) == ["high", "high", "watch", "watch", "low"]


# ---------------------------------------------------------------- actions: the scenario's known answers
def _scenario_frames(extra_state=()):
    rows, mins = [], []
    city = {w["warehouse_id"]: w["city_id"] for w in synthetic.WAREHOUSES}
    cinfo = {c["city_id"]: c for c in synthetic.CITIES}
    for (p, w), (n, qty, avail) in synthetic.SCENARIO.items():
        c = cinfo[city[w]]
        rows.append(
            {
                "product_id": p,
                "warehouse_id": w,
                "available": avail,
                "inbound_units": 0,
                "inbound_in_min": 0.0,
                "category": "Phones",
                "city": c["city"],
                "province": c["province"],
                "unit_price": 100.0,
                "discount": 0.0,
                "baseline_velocity": np.nan,
            }
        )
        for m in range(15):
            if n:
                mins.append({"product_id": p, "warehouse_id": w, "minute_idx": m, "units": n * qty, "orders": n})
    rows += list(extra_state)
    return pd.DataFrame(mins), pd.DataFrame(rows)


def _kpis(minutes, state, params=P):
    params = replace(params, units_per_order=R.units_per_order(minutes))  # the job measures it per run
    out = [
        R.product_group_kpis(
            minutes[minutes.product_id == p] if len(minutes) else minutes, state[state.product_id == p], params
        )
        for p in sorted(state.product_id.unique())
    ]
    return pd.concat(out, ignore_index=True).set_index(["product_id", "warehouse_id"])


def test_every_action_rule_on_the_scenario():
    df = _kpis(*_scenario_frames())
    for key, action in synthetic.EXPECTED_ACTION.items():
        assert df.loc[key, "action"] == action, (key, df.loc[key, "reason"])
    assert df.loc[(1, 10), "reroute_from_warehouse_id"] == 11
    # the donor sold nothing: a vague prior keeps ~0.005 units/min for it, so it keeps 1 of its 500 units
    assert df.loc[(1, 10), "surplus_units"] == 499
    assert df.loc[(3, 20), "suggested_units"] == math.ceil(df.loc[(3, 20), "velocity"] * 105) - 58  # - available
    assert df.loc[(1, 11), "action"] is None and df.loc[(4, 11), "action"] is None  # low risk: no action
    # 1 order/min of 2 units: its own units per order, pooled a little toward the sale's 1.1
    assert df.loc[(1, 10), "velocity"] == pytest.approx((30 + 3 * 1.1) / 18, rel=0.01)
    assert (df.loc[df["action"].notna() & (df["action"] != "monitor"), "expected_loss"] > 0).all()
    assert df.loc[(4, 11), "units_in_window"] == 90


def test_reroute_needs_same_province_and_a_low_risk_donor():
    minutes, state = _scenario_frames()
    # move the donor warehouse 11 to another province: product 1 at 10 has no reroute -> pause_ads (ETA 3 min)
    state.loc[state.warehouse_id == 11, "province"] = "P9"
    assert _kpis(minutes, state).loc[(1, 10), "action"] == "pause_ads"
    # donor in the same province but itself at risk (little stock, high demand) -> no reroute
    minutes2, state2 = _scenario_frames()
    state2.loc[(state2.product_id == 1) & (state2.warehouse_id == 11), "available"] = 3
    minutes2 = pd.concat(
        [
            minutes2,
            pd.DataFrame({"product_id": 1, "warehouse_id": 11, "minute_idx": range(15), "units": 1, "orders": 1}),
        ]
    )
    assert _kpis(minutes2, state2).loc[(1, 10), "action"] == "pause_ads"


# ---------------------------------------------------------------- hysteresis
def _cand(p, action="restock"):
    return pd.DataFrame(
        [
            {
                "product_id": 1,
                "warehouse_id": 10,
                "p_stockout": p,
                "action": action if p >= P.watch_p else None,
                "reason": "r",
                "available": 5,
                "velocity": 1.0,
                "eta_median_min": 5.0,
                "eta_pessimistic_min": 3.0,
                "suggested_units": 10,
                "reroute_from_warehouse_id": None,
                "surplus_units": None,
            }
        ]
    )


def _at(minute: float) -> str:
    """The data time of a run, `minute` minutes into the test."""
    return datetime.fromtimestamp(datetime(2026, 11, 11, tzinfo=UTC).timestamp() + 60 * minute, UTC).isoformat()


def test_alert_does_not_flap_and_closes_after_clear_minutes_of_data():
    state: dict = {}
    seen = []
    # p oscillates around the watch threshold, then drops below exit for good (one run per data minute)
    params = replace(P, clear_minutes=2)
    for m, p in enumerate([0.6, 0.15, 0.25, 0.15, 0.05, 0.05, 0.05]):
        alerts, state = R.update_alerts(_cand(p), state, _at(m), params)
        seen.append(alerts[0]["status"] if alerts else "closed")
    assert seen == ["new", "open", "open", "open", "clearing", "clearing", "closed"]
    # the default waits longer before it closes
    state, seen = {}, []
    for m, p in enumerate([0.6] + [0.05] * 8):
        alerts, state = R.update_alerts(_cand(p), state, _at(m), P)
        seen.append(alerts[0]["status"] if alerts else "closed")
    assert seen == ["new"] + ["clearing"] * int(P.clear_minutes) + ["closed", "closed"]


def test_a_fast_refresh_does_not_close_an_alert_sooner():
    """Runs every 15 s of data: still 6 minutes of data below exit before it closes, not 6 runs."""
    state: dict = {}
    alerts, state = R.update_alerts(_cand(0.6), state, _at(0), P)
    statuses = []
    for i in range(1, 30):
        alerts, state = R.update_alerts(_cand(0.05), state, _at(i / 4), P)
        statuses.append(alerts[0]["status"] if alerts else "closed")
    assert statuses.index("closed") == 4 * int(P.clear_minutes)  # the run 6 data minutes after the first below


def test_alert_is_deduplicated_and_keeps_first_seen():
    a1, st = R.update_alerts(_cand(0.9), {}, _at(1), P)
    a2, st = R.update_alerts(_cand(0.9), st, _at(2), P)
    assert len(a2) == 1 and a2[0]["alert_id"] == "1:10" and a2[0]["first_seen"] == _at(1) and a2[0]["runs_open"] == 2


def test_action_change_needs_confirmation_but_escalation_from_monitor_is_immediate():
    _, st = R.update_alerts(_cand(0.3, "monitor"), {}, _at(0), P)
    a, st = R.update_alerts(_cand(0.9, "restock"), st, _at(1), P)
    assert a[0]["action"] == "restock"  # escalation
    a, st = R.update_alerts(_cand(0.9, "pause_ads"), st, _at(2), P)
    assert a[0]["action"] == "restock"  # not confirmed yet
    a, st = R.update_alerts(_cand(0.9, "restock"), st, _at(3), P)
    a, st = R.update_alerts(_cand(0.9, "pause_ads"), st, _at(4), P)
    a, st = R.update_alerts(_cand(0.9, "pause_ads"), st, _at(5), P)
    assert a[0]["action"] == "restock"  # interrupted: counting restarted at minute 4, 1 min < 2
    a, st = R.update_alerts(_cand(0.9, "pause_ads"), st, _at(6), P)
    assert a[0]["action"] == "pause_ads"  # 2 minutes of data


def test_below_watch_never_opens():
    assert R.update_alerts(_cand(0.15), {}, _at(0), P) == ([], {})


def _queued(pid, wid, action, loss, status="open", units=None):
    return {
        "alert_id": f"{pid}:{wid}",
        "product_id": pid,
        "warehouse_id": wid,
        "category": "Phones" if pid % 2 else "Shoes",
        "city": f"C{wid}",
        "action": action,
        "status": status,
        "numbers": {"p_stockout": 0.9, "expected_loss": loss, "suggested_units": units},
    }


def test_action_queue_ranks_by_expected_loss_caps_and_summarizes():
    alerts = [
        _queued(1, 1, "restock", 50.0, units=10),
        _queued(2, 1, "pause_ads", 900.0),
        _queued(3, 2, "monitor", 5000.0),  # not an action: never queued, however large
        _queued(4, 1, "restock", 300.0, units=7),
        _queued(5, 3, "reroute", 10.0),
        _queued(6, 3, "restock", 800.0, status="clearing", units=3),  # the risk passed
    ]
    queue, summary = R.action_queue(alerts, 3)
    assert [a["alert_id"] for a in queue] == ["2:1", "4:1", "1:1"] and [a["rank"] for a in queue] == [1, 2, 3]
    assert summary["not_in_queue"] == 3 and summary["actionable_not_in_queue"] == 1
    assert summary["by_action"] == {"clearing": 1, "monitor": 1, "reroute": 1}
    assert summary["by_city"] == {"C3": 2, "C2": 1} and summary["expected_loss_not_in_queue"] == 5810.0
    assert summary["restock_orders"] == [
        {"warehouse_id": 1, "lines": [{"product_id": 4, "units": 7}, {"product_id": 1, "units": 10}], "units": 17}
    ]
    empty_queue, empty_summary = R.action_queue([], 20)
    assert empty_queue == [] and empty_summary["not_in_queue"] == 0 and empty_summary["restock_orders"] == []


def test_an_empty_shelf_is_listed_apart_not_queued():
    out = _queued(8, 2, "pause_ads", 99_000.0, units=40)  # out of stock: the whole horizon's demand is short
    out["numbers"]["available"] = 0
    warn = _queued(9, 2, "reroute", 20.0)
    warn["numbers"]["available"] = 3
    queue, summary = R.action_queue([out, warn, _queued(1, 1, "restock", 50.0, units=10)], 5)
    # the warnings, by expected loss: the empty shelf would have outranked them all
    assert [a["alert_id"] for a in queue] == ["1:1", "9:2"]
    assert summary["out_of_stock"]["count"] == 1 and summary["out_of_stock"]["expected_loss"] == 99_000.0
    assert [a["alert_id"] for a in summary["out_of_stock"]["items"]] == ["8:2"]
    assert summary["not_in_queue"] == 0 and summary["actionable_not_in_queue"] == 0
    # its restock quantity is ordered (its ads paused meanwhile), grouped with the queue's restocks
    assert {o["warehouse_id"]: o["units"] for o in summary["restock_orders"]} == {2: 40, 1: 10}


# ---------------------------------------------------------------- rollups
def test_warehouse_overload_by_load_and_by_delay():
    wh = pd.DataFrame(
        [
            {
                "warehouse_id": 1,
                "warehouse_name": "a",
                "city": "c",
                "province": "p",
                "capacity": 10,
                "fulfillment_delay": 5.0,
            },
            {
                "warehouse_id": 2,
                "warehouse_name": "b",
                "city": "c",
                "province": "p",
                "capacity": 10,
                "fulfillment_delay": 31.0,
            },
            {
                "warehouse_id": 3,
                "warehouse_name": "c",
                "city": "c",
                "province": "p",
                "capacity": 10,
                "fulfillment_delay": np.nan,
            },
        ]
    )
    load = pd.DataFrame(
        {"warehouse_id": [1] * 15 + [2, 3], "minute_idx": list(range(15)) + [0, 0], "orders": [10] * 15 + [1, 149]}
    )
    out = R.warehouse_status(load, wh, P).set_index("warehouse_id")
    assert out.loc[1, "load_per_min"] == 10 and out.loc[1, "overloaded"] and "load" in out.loc[1, "reason"]
    assert out.loc[2, "overloaded"] and out.loc[2, "reason"].startswith("fulfillment delay")
    assert not out.loc[3, "overloaded"] and out.loc[3, "peak_per_min"] == 149  # mean 149/15 < 10


def test_geo_risk_and_headline():
    df = _kpis(*_scenario_frames()).reset_index()
    prov = R.geo_risk(df, "province").set_index("province")
    assert prov.loc["P2", "high_risk_pairs"] == 2 and prov.loc["P1", "high_risk_pairs"] == 1
    assert prov.loc["P1", "watch_pairs"] == 1 and prov.loc["P1", "pairs"] == 4
    series = R.orders_series(
        pd.DataFrame({"minute_idx": [0, 14], "orders": [3, 7], "units": [4, 9]}), datetime(2026, 1, 1, tzinfo=UTC), 15
    )
    assert [x["orders"] for x in series] == [3] + [0] * 13 + [7]
    h = R.headline(df, series, pd.DataFrame({"overloaded": [True, False]}), [{}] * 4, 6, 0)
    assert (h["high_risk_sku_count"], h["high_risk_pairs"], h["watch_pairs"], h["orders_last_minute"]) == (3, 3, 1, 7)


# ---------------------------------------------------------------- quarantine
def test_quarantine_counts_each_reason_and_keeps_the_good_rows():
    as_of = datetime(2026, 1, 1, 12, tzinfo=UTC)
    docs = synthetic.scenario(as_of)
    known = {"product_id": {1, 2, 3, 4}, "warehouse_id": {10, 11, 20}, "city_id": {1, 2, 3}}
    checked = validate_batch(ORDERS_FACT, docs["orders_fact"], known_ids=known, as_of=as_of, future_skew_seconds=120)
    table, dq = checked.valid, checked.quality()
    assert dq["by_reason"] == {"missing": 1, "wrong_type": 1, "out_of_bounds": 1, "unknown_id": 1, "future_ts": 1}
    assert dq["read"] == 155 and dq["valid"] == 150 == table.num_rows and table.schema == arrow_schema(ORDERS_FACT)
    dqi = validate_batch(INVENTORY_FACT, docs["inventory_fact"], known_ids=known, as_of=as_of).quality()
    assert dqi["by_reason"]["out_of_bounds"] == 1 and dqi["quarantined"] == 1


def test_quarantine_never_coerces():
    good = {
        "order_id": "o1",
        "product_id": 1,
        "seller_id": 1,
        "warehouse_id": 1,
        "city_id": 1,
        "order_qty": 1,
        "order_value": 1.0,
        "order_ts": datetime(2026, 1, 1, tzinfo=UTC),
    }
    bad = [
        dict(good, order_qty=2.0),
        dict(good, order_qty=True),
        dict(good, order_value=float("nan")),
        dict(good, order_ts=datetime(2026, 1, 1)),
        dict(good, order_id=""),
    ]
    dq = validate_batch(ORDERS_FACT, [good] + bad).quality()
    assert dq["valid"] == 1 and dq["by_reason"]["wrong_type"] == 5


# ---------------------------------------------------------------- archive baseline
def test_baseline_reads_a_hand_made_partition_and_tolerates_missing(tmp_path):
    as_of = datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert read_archive_baseline(f"file://{tmp_path}/nothing", as_of, 7)[0].empty
    (tmp_path / "metadata").mkdir()
    for hour, qty in (("10", 60), ("11", 120), ("12", 10**6)):
        d = tmp_path / "orders_fact" / "date=2026-01-02" / f"hour={hour}"
        d.mkdir(parents=True)
        pq.write_table(
            pa.table(
                {
                    "order_id": ["a"],
                    "product_id": pa.array([1], pa.int64()),
                    "warehouse_id": pa.array([10], pa.int64()),
                    "order_qty": pa.array([qty], pa.int64()),
                }
            ),
            d / "part-0.parquet",
        )
        if hour != "12":  # hour 12 was written by a crashed run: no manifest, not trusted
            (tmp_path / "metadata" / f"orders_fact-20260102T{hour}.json").write_text("{}")
    old = tmp_path / "orders_fact" / "date=2025-01-01" / "hour=00"  # outside the baseline days: pruned
    old.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "order_id": ["z"],
                "product_id": pa.array([1], pa.int64()),
                "warehouse_id": pa.array([10], pa.int64()),
                "order_qty": pa.array([10**6], pa.int64()),
            }
        ),
        old / "part-0.parquet",
    )
    base, info = read_archive_baseline(f"file://{tmp_path}", as_of, 7)
    assert info["partitions"] == 1 and info["rows"] == 2
    assert base.set_index(["product_id", "warehouse_id"]).loc[(1, 10), "baseline_velocity"] == pytest.approx(180 / 120)


def test_baseline_from_empty_table():
    t = pa.table(
        {
            "product_id": pa.array([], pa.int64()),
            "warehouse_id": pa.array([], pa.int64()),
            "order_qty": pa.array([], pa.int64()),
            "date": pa.array([], pa.string()),
            "hour": pa.array([], pa.string()),
        }
    )
    assert baseline_from_table(t).empty


def test_reroute_donor_ties_do_not_depend_on_row_order():
    """Spark hands a product group's rows in any order: equal surpluses go to the lowest warehouse id."""
    state = pd.DataFrame(
        [
            {
                "product_id": 1,
                "warehouse_id": w,
                "available": a,
                "inbound_units": 0,
                "inbound_in_min": 0.0,
                "category": "Phones",
                "city": "c",
                "province": "P1",
                "unit_price": 10.0,
                "discount": 0.0,
                "baseline_velocity": np.nan,
            }
            for w, a in ((10, 10), (12, 300), (11, 300))
        ]
    )
    minutes = pd.DataFrame({"product_id": 1, "warehouse_id": 10, "minute_idx": range(15), "units": 2})
    for rows in (state, state.iloc[::-1]):
        out = R.product_group_kpis(minutes, rows, P).set_index("warehouse_id")
        assert out.loc[10, "action"] == "reroute" and out.loc[10, "reroute_from_warehouse_id"] == 11


def test_overload_is_what_is_abnormal_for_that_warehouse():
    """Two warehouses carrying 6 orders/min, far below capacity: one normally carries 1/min (abnormal: flagged,
    with its normal in the reason), the other 5/min (its usual load: not flagged). A planned spike x9 makes
    9/min normal for the first; the sale's measured lift scales the expectation the same way."""
    from flashsale.calendar import SaleEvent

    base = pd.DataFrame(
        {"product_id": [1, 2, 1], "warehouse_id": [1, 1, 2], "baseline_velocity": [0.5, 0.5, 5.0]}
    )  # units/min
    normal = R.warehouse_normal(base, units_per_order=1.0)
    assert normal.to_dict() == {1: 1.0, 2: 5.0}
    assert R.warehouse_normal(None).empty
    wh = pd.DataFrame(
        {
            "warehouse_id": [1, 2],
            "warehouse_name": ["a", "b"],
            "city": ["c", "c"],
            "province": ["p", "p"],
            "capacity": [100, 100],
            "fulfillment_delay": [5.0, 5.0],
        }
    )
    load = pd.DataFrame({"warehouse_id": [1] * 15 + [2] * 15, "minute_idx": list(range(15)) * 2, "orders": [6] * 30})
    t0 = datetime(2026, 11, 11, tzinfo=UTC).timestamp()
    at = replace(P, as_of_s=t0)
    out = R.warehouse_status(load, wh, at, normal).set_index("warehouse_id")
    assert out.loc[1, "overloaded"] and "6.0x its normal" in out.loc[1, "reason"]
    assert not out.loc[2, "overloaded"] and out.loc[2, "reason"] == ""
    assert out.loc[1, "expected_per_min"] == pytest.approx(1.0) and out.loc[1, "load_ratio"] == pytest.approx(0.06)
    # without a normal (no archive) only the capacity and the delay promise remain
    assert not R.warehouse_status(load, wh, at)["overloaded"].any()
    # the same load in a planned spike (x9 over the window) or a sale measured at 6x is what the plan expects
    spike = replace(at, calendar=(SaleEvent(t0 - 3600, 8.0, 1e9),))
    assert not R.warehouse_status(load, wh, spike, normal)["overloaded"].any()
    assert not R.warehouse_status(load, wh, replace(at, sale_lift=6.0), normal)["overloaded"].any()
    # a small warehouse's few orders are no evidence: 2 orders where 0.15 were expected is x13 but not flagged
    few = pd.DataFrame({"warehouse_id": [1], "minute_idx": [0], "orders": [2]})
    tiny = R.warehouse_status(few, wh, at, pd.Series({1: 0.01, 2: 5.0})).set_index("warehouse_id")
    assert tiny.loc[1, "load_vs_normal"] == pytest.approx(2 / 15 / 0.01) and not tiny.loc[1, "overloaded"]
