"""What the radar may know before the sale: normal-day history (ray_gen/history.py) for the archive
baseline, and the planned sale calendar (ray_gen/sale_plan.py). Neither is the simulator's sale itself."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow.compute as pc
import pytest

from kpi.baseline import baseline_from_table
from ray_gen.catalogue import build_catalogue
from ray_gen.history import normal_day_order_rate, normal_day_units
from ray_gen.params import FlashCurve, make_params
from ray_gen.sale_plan import planned_calendar, planned_calendar_json

SMALL = dict(n_products=1_500, n_warehouses=8, n_cities=27)


def test_history_is_hourly_units_per_pair_in_the_archive_layout():
    p = make_params(**SMALL)
    t = normal_day_units(p, 5)
    assert t.column_names == ["product_id", "warehouse_id", "order_qty", "date", "hour"]
    assert pc.min(t["order_qty"]).as_py() >= 1  # only pairs that sold something
    hours = sorted(set(zip(t["date"].to_pylist(), t["hour"].to_pylist(), strict=True)))
    want = [p.start - timedelta(hours=h) for h in range(5, 0, -1)]
    assert hours == [(s.date().isoformat(), f"{s.hour:02d}") for s in want]  # the 5 hours before the sale
    base = baseline_from_table(t)  # what the KPI job makes of the archive
    assert len(base) > 0 and (base["baseline_velocity"] > 0).all()
    # the same archived hour always holds the same units, whatever span is asked for
    three = normal_day_units(p, 3)
    last3 = t.filter(pc.is_in(t["hour"], value_set=three["hour"].unique()))
    assert last3.equals(three)
    assert normal_day_units(p, 2, end=datetime.fromisoformat("2025-11-01T08:30:00+00:00"))[
        "hour"
    ].unique().to_pylist() == [
        "06",
        "07",
    ]


def test_normal_days_have_no_sale_lift_and_no_sale_mix():
    p = make_params(**SMALL)
    cat = build_catalogue(p)
    rate = normal_day_order_rate(p)
    # no flash curve and no discount effect: the cities' base demand, split by popularity alone
    assert rate.sum() == pytest.approx(p.base_orders_per_city_minute * cat.city_demand.sum())
    assert cat.baseline_rate.sum() / (1 + p.extra_units_mean) == pytest.approx(rate.sum() * cat.discount_effect)
    hours = 24
    t = normal_day_units(p.replace(history_drift_sigma=0.0), hours)
    total = pc.sum(t["order_qty"]).as_py()
    expected = rate.sum() * 60 * hours * (1 + p.extra_units_mean)
    assert abs(total - expected) < 5 * np.sqrt(expected * 1.6)
    # the sale's mix leans to discounted products; the normal day's does not
    per_product = np.bincount(t["product_id"].to_numpy(), weights=t["order_qty"].to_numpy(), minlength=p.n_products)
    sale_share = cat.baseline_rate.sum(0) / cat.baseline_rate.sum()
    normal_share = per_product / per_product.sum()
    deep, none = cat.discount >= 0.4, cat.discount <= 0.05
    assert normal_share[deep].sum() / sale_share[deep].sum() < 0.8
    assert normal_share[none].sum() / sale_share[none].sum() > 1.1


def test_popularity_drifts_from_day_to_day():
    def day_log_ratio(sigma):
        p = make_params(**SMALL, history_drift_sigma=sigma)
        t = normal_day_units(p, 48, end=datetime.fromisoformat("2025-11-10T00:00:00+00:00"))
        days = np.array(t["date"].to_pylist())
        units = [
            np.bincount(
                t["product_id"].to_numpy()[days == d],
                weights=t["order_qty"].to_numpy()[days == d],
                minlength=p.n_products,
            )
            for d in ("2025-11-08", "2025-11-09")
        ]
        big = (units[0] > 300) & (units[1] > 300)  # Poisson noise < 6 % there
        assert big.sum() >= 10
        return np.log(units[0][big] / units[1][big]).std()

    assert day_log_ratio(0.0) < 0.1
    assert 0.25 < day_log_ratio(0.3) < 0.65  # two independent days: sd ~ sqrt(2) x 0.3


def test_a_run_without_sale_discounts_is_a_normal_day_catalogue():
    p = make_params(**SMALL)
    sale, normal = build_catalogue(p), build_catalogue(p.replace(sale_discounts=False))
    assert (normal.discount == 0).all() and normal.discount_effect == 1.0
    assert np.array_equal(normal.base_price, sale.base_price) and np.array_equal(normal.popularity, sale.popularity)
    assert np.allclose(normal.baseline_rate / (1 + p.extra_units_mean), normal_day_order_rate(p))


def test_the_planned_calendar_has_the_events_times_and_rounded_nominal_lifts():
    p = make_params(**SMALL)
    plan = planned_calendar(p)
    assert plan == planned_calendar(p)  # pure
    events = plan["events"]
    truth = [(p.flash.spike_minute, p.flash.spike_peak, p.flash.spike_decay_minutes), *p.flash.waves]
    assert [e["minute"] for e in events] == [m for m, _, _ in truth]
    for e, (minute, peak, decay) in zip(events, truth, strict=True):
        assert datetime.fromisoformat(e["start"]) == p.start + timedelta(minutes=minute)
        assert e["lift"] % 0.5 == 0 and e["decay_minutes"] % 5 == 0
        assert 0.4 * peak <= e["lift"] <= 2.5 * peak and 0.4 * decay <= e["decay_minutes"] <= 2.5 * decay
    assert len(plan["lift_by_minute"]) == p.minutes
    assert plan["lift_by_minute"][p.flash.spike_minute] == max(plan["lift_by_minute"])
    assert plan["discount_lift"] == round(build_catalogue(p).discount_effect, 1)
    # a forecast, not the curve: across seeds the published lifts are not all the true ones
    published = {tuple(e["lift"] for e in planned_calendar(p.replace(seed=s))["events"]) for s in range(6)}
    assert len(published) > 1
    exact = planned_calendar(p.replace(plan_error_sigma=0.0))["events"]
    assert [(e["lift"], e["decay_minutes"]) for e in exact] == [(float(pk), float(d)) for _, pk, d in truth]
    # the list format the radar's settings take
    listed = json.loads(planned_calendar_json(p))
    assert listed == [{k: e[k] for k in ("start", "lift", "decay_minutes")} for e in events]


def test_a_normal_day_plans_no_event():
    p = make_params(**SMALL, flash=FlashCurve.flat(), sale_discounts=False, minutes=90)
    plan = planned_calendar(p)
    assert plan["events"] == [] and json.loads(planned_calendar_json(p)) == []
    assert plan["lift_by_minute"] == [1.0] * 90
