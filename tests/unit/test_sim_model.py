"""The statistical model with fixed seeds: pure numpy, no Ray, no store."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from ray_gen import model, records
from ray_gen.catalogue import build_catalogue, dimension_records
from ray_gen.params import FlashCurve, ParamsError, make_params
from ray_gen.streams import rng_for

SMALL = dict(n_products=2_000, n_cities=27, n_warehouses=20, minutes=60)


def test_per_minute_counts_fit_poisson_at_the_configured_lambda():
    p = make_params(**SMALL)
    cat = build_catalogue(p)
    cdf = model.choice_cdf(cat, p, cat.initial_stock[0])
    lam = 12.5
    counts = np.array([len(model.draw_orders(rng_for(7, 2, 0, m), 0, lam, cdf, cat, p)) for m in range(3_000)])

    assert abs(counts.mean() - lam) < 4 * np.sqrt(lam / len(counts))
    dispersion = counts.var(ddof=1) / counts.mean()  # 1 for Poisson; (n-1)*D ~ chi2(n-1)
    assert stats.chi2.sf((len(counts) - 1) * dispersion, len(counts) - 1) > 0.001
    assert stats.chi2.cdf((len(counts) - 1) * dispersion, len(counts) - 1) > 0.001

    # goodness of fit: pooled tail bins so every expected count is >= 5
    edges = np.arange(4, 22)
    observed = np.array([(counts <= 4).sum()] + [(counts == k).sum() for k in edges[1:]] + [(counts > 21).sum()])
    pmf = np.array(
        [stats.poisson.cdf(4, lam)] + [stats.poisson.pmf(k, lam) for k in edges[1:]] + [stats.poisson.sf(21, lam)]
    )
    result = stats.chisquare(observed, pmf * len(counts))
    assert result.pvalue > 0.001, result


def test_city_lambda_is_the_product_of_its_factors():
    p = make_params(**SMALL)
    cat = build_catalogue(p)
    pressure = np.ones(cat.n_warehouses)
    pressure[cat.city_warehouse[3]] = 0.5
    lam = model.city_lambda(p, cat, 130, pressure)
    expected = (
        p.base_orders_per_city_minute
        * model.flash_intensity(p.flash, 130)
        * cat.discount_effect
        * cat.city_demand[3]
        * 0.5
    )
    assert lam[3] == pytest.approx(float(expected))


def test_choice_frequencies_follow_popularity_discount_and_scarcity_weights():
    p = make_params(**{**SMALL, "n_products": 40})
    cat = build_catalogue(p)
    available = np.full(40, 1_000)
    available[:5] = [0, 1, 3, 8, 20]  # scarce SKUs draw extra clicks
    cdf = model.choice_cdf(cat, p, available)
    weights = cat.choice_weight * model.scarcity_multiplier(available, p)
    picks = np.concatenate([model.draw_orders(rng_for(3, 2, 1, m), 1, 400.0, cdf, cat, p).product for m in range(200)])
    observed = np.bincount(picks, minlength=40)
    expected = weights / weights.sum() * len(picks)
    keep = expected >= 5
    obs, exp = observed[keep], expected[keep]
    if (~keep).any():  # pool the rare SKUs into one bin
        obs, exp = np.r_[obs, observed[~keep].sum()], np.r_[exp, expected[~keep].sum()]
    assert stats.chisquare(obs, exp).pvalue > 0.001
    # and the scarcity multiplier really rises as stock falls
    assert np.all(np.diff(model.scarcity_multiplier(np.array([0, 1, 3, 8, 20, 1_000]), p)) < 0)


def test_prices_are_log_normal_around_the_discounted_price_per_category():
    p = make_params(**{**SMALL, "n_products": 3_000})
    cat = build_catalogue(p)
    cdf = model.choice_cdf(cat, p, np.full(cat.n_products, 10_000))
    orders = model.Orders.concat([model.draw_orders(rng_for(5, 2, 2, m), 2, 300.0, cdf, cat, p) for m in range(100)])
    log_ratio = np.log(orders.unit_price / cat.discounted_price()[orders.product])
    categories = cat.category[orders.product]
    tested = 0
    for c in range(p.n_categories):
        x = log_ratio[
            (categories == c) & (cat.discounted_price()[orders.product] > 50)
        ]  # 2-decimal rounding negligible
        if len(x) < 200:
            continue
        assert stats.kstest(x, "norm", args=(0.0, cat.category_sigma[c])).pvalue > 0.001, c
        tested += 1
    assert tested >= p.n_categories // 2
    # the variances really differ by category, so a single global sigma would not fit
    assert cat.category_sigma.max() / cat.category_sigma.min() > 1.5


@pytest.mark.parametrize("lam", [0.25, 3.0])
def test_extra_units_are_poisson_at_the_configured_mean(lam):
    units = model.small_poisson(rng_for(9, 2, 0, 0), lam, 200_000)
    top = int(stats.poisson.ppf(1 - 1e-4, lam))  # pool the tail so every expected count is >= 20
    observed = np.r_[np.bincount(np.minimum(units, top), minlength=top + 1)]
    expected = np.r_[stats.poisson.pmf(np.arange(top), lam), stats.poisson.sf(top - 1, lam)] * len(units)
    assert stats.chisquare(observed, expected).pvalue > 0.001
    assert abs(units.mean() - lam) < 4 * np.sqrt(lam / len(units))
    assert not model.small_poisson(rng_for(9, 2, 0, 1), 0.0, 1_000).any()


def test_record_ids_are_the_prefix_and_decimal_parts_joined_by_dashes():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(0, 400))
        a = rng.integers(0, 10 ** int(rng.integers(1, 9)), n)  # past the first table size: it must grow
        b = rng.integers(0, 30, n)
        if trial % 2:  # sorted keys (what the shards pass) make long runs; unsorted ones must be right too
            a = np.sort(a)
        minute = int(rng.integers(0, 100_000))
        ids = records._ids("o-r1", b, minute, a)
        assert ids.type == pa.string() and ids.validate(full=True) is None
        assert ids.to_pylist() == [f"o-r1-{x}-{minute}-{y}" for x, y in zip(b.tolist(), a.tolist())]
    with pytest.raises(ValueError, match="non-negative"):
        records._ids("i-r1", np.array([1, -1]), 3)


def test_serving_is_first_come_first_served_and_never_over_allocates():
    available = np.array([3, 0, 5])
    key = np.array([0, 0, 1, 0, 2, 0, 2])
    qty = np.array([1, 2, 1, 1, 4, 1, 2])
    served = model.serve_in_order(available, key, qty)
    # SKU 0: 1+2 fit (3), the 3rd request would make 4 -> sold out for the rest of the minute
    assert served.tolist() == [True, True, False, False, True, False, False]
    for k in range(3):
        assert qty[served & (key == k)].sum() <= available[k]


def test_flash_curve_warms_up_spikes_at_midnight_and_decays():
    curve = FlashCurve()
    t = np.arange(0, 900)
    level = model.flash_intensity(curve, t)
    assert level[0] == pytest.approx(curve.warmup_level)
    assert level.argmax() == curve.spike_minute
    assert level[curve.spike_minute] == pytest.approx(1 + curve.spike_peak)
    assert level[curve.spike_minute + 200] < level[curve.spike_minute] / 5
    wave_at = curve.waves[0][0]
    assert level[wave_at] > level[wave_at - 1] + curve.waves[0][1] * 0.9
    assert np.allclose(model.flash_intensity(FlashCurve.flat(), t), 1.0)


def test_fulfillment_delay_grows_with_load():
    p = make_params()
    delay = model.fulfillment_delay(np.array([0.0, 0.5, 1.0, 2.0, 4.0]), p)
    assert np.all(np.diff(delay) > 0)
    assert model.warehouse_pressure(np.array([0.5, 1.0, 3.0]), p).tolist()[:2] == [1.0, 1.0]


def test_catalogue_is_deterministic_heavy_tailed_and_valid():
    p = make_params(n_products=20_000)
    a, b = build_catalogue(p), build_catalogue(make_params(n_products=20_000, minutes=5))
    assert np.array_equal(a.base_price, b.base_price) and np.array_equal(a.city_warehouse, b.city_warehouse)
    top = np.sort(a.popularity)[::-1]
    assert top[: len(top) // 100].sum() / top.sum() > 0.15  # Pareto(1.1): the top 1% hold a heavy share
    dims = dimension_records(a)
    assert len(dims["cities_dim"]) == 27 and len({c["province"] for c in dims["cities_dim"]}) == 7
    assert len(dims["warehouses_dim"]) == 20 and len(dims["products_dim"]) == 20_000
    # every city is served by a warehouse in its own province when its province has one
    for c in dims["cities_dim"]:
        w = a.city_warehouse[c["city_id"]]
        provinces_with_wh = {a.city_province[x] for x in a.warehouse_city}
        if c["province"] in provinces_with_wh:
            assert a.city_province[a.warehouse_city[w]] == c["province"]


@pytest.mark.parametrize(
    "field,value",
    [("minutes", 0), ("n_products", "20000"), ("base_orders_per_city_minute", -1.0), ("run_id", "bad id!")],
)
def test_bad_parameters_name_the_field(field, value):
    with pytest.raises(ParamsError, match=field):
        make_params(**{field: value})


def test_shard_counts_must_fit_the_entities():
    with pytest.raises(ParamsError, match="city_shards"):
        make_params(n_cities=2, city_shards=3)
