"""The forecaster (kpi/forecast.py) against closed forms: negative binomial, Poisson limit, the calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from flashsale.calendar import SaleEvent, calendar_json, parse_calendar
from kpi import forecast as F

T0 = datetime(2026, 11, 11, tzinfo=UTC).timestamp()


def test_p_at_least_is_the_negative_binomial_tail():
    shape, rate, exposure = 3.5, 2.0, 5.0
    nb = stats.nbinom(shape, rate / (rate + exposure))
    for k in (1, 2, 7, 20):
        assert F.p_at_least(np.array([k]), np.array([shape]), np.array([rate]), np.array([exposure]))[0] == (
            pytest.approx(nb.sf(k - 1), rel=1e-9)
        )
    # a huge shape with the same mean is a point rate: Poisson
    big = 1e7
    p = F.p_at_least(np.array([12.0]), np.array([big]), np.array([big / 2.0]), np.array([5.0]))[0]
    assert p == pytest.approx(stats.poisson.sf(11, 10.0), rel=1e-4)


def test_uncertainty_widens_the_tails():
    """Same mean demand (10 orders), a thin posterior vs a sure rate: more mass far out, less in the middle."""
    k = np.array([20.0])
    vague = F.p_at_least(k, np.array([2.0]), np.array([1.0]), np.array([5.0]))[0]
    sure = F.p_at_least(k, np.array([1e6]), np.array([5e5]), np.array([5.0]))[0]
    assert vague > 10 * sure


def test_orders_needed_counts_compound_orders():
    assert F.orders_needed(np.array([1.0, 2.0, 11.0]), 1.25).tolist() == pytest.approx([1.0, 1.8, 9.0])
    assert F.orders_needed(np.array([5.0]), 1.0)[0] == 5.0


def test_planned_intensity_and_exposure():
    ev = (SaleEvent(T0, 8.0, 25.0),)
    assert F.planned_intensity(ev, np.array([T0 - 60, T0, T0 + 25 * 60])).tolist() == pytest.approx(
        [1.0, 9.0, 1 + 8 / np.e]
    )
    assert F.planned_intensity((), np.array([T0])).tolist() == [1.0]
    cum = F.future_cumulative(ev, T0 - 600, 20)  # 10 minutes before the event, 20 minutes ahead
    assert cum[10] == pytest.approx(10.0) and cum[20] > 10 + 10 * (1 + 8 * np.exp(-10 / 25))
    assert F.window_exposure((), T0, 15).tolist() == [1.0] * 15


def test_forecast_without_calendar_or_prior_matches_negative_binomial():
    W = 15
    orders = np.full((1, W), 2.0)
    fc = F.forecast(
        np.array([30.0]),
        np.zeros(1),
        np.zeros(1),
        orders,
        np.array([np.nan]),
        events=(),
        as_of_s=T0,
        window_minutes=W,
        alpha=0.05,
        prior_minutes=120.0,
        horizon=60.0,
        pessimistic_q=0.1,
        units_per_order=1.0,
    )
    w = 0.95 ** np.arange(W - 1, -1, -1)
    shape = F.UNSEEN_PRIOR_SHAPE + 2.0 * w.sum()
    rate = F.UNSEEN_PRIOR_MINUTES + w.sum()
    assert fc.p_stockout[0] == pytest.approx(stats.nbinom(shape, rate / (rate + 60)).sf(29), rel=1e-9)
    assert fc.rate_per_min[0] == pytest.approx(shape / rate)
    assert fc.eta_median[0] == pytest.approx(stats.gamma.ppf(0.5, 30, scale=rate / shape), rel=1e-3)


def test_forecast_edge_cases_inbound_and_a_planned_spike():
    kw = dict(
        events=(),
        as_of_s=T0 - 1800,
        window_minutes=15,
        alpha=0.05,
        prior_minutes=120.0,
        horizon=60.0,
        pessimistic_q=0.1,
        units_per_order=1.0,
    )
    orders = np.full((4, 15), 1.0)
    prior = np.full(4, 1.0)
    avail = np.array([0.0, 70.0, 70.0, 70.0])
    inbound = np.array([0.0, 0.0, 50.0, 50.0])
    landing = np.array([0.0, 0.0, 5.0, 90.0])
    fc = F.forecast(avail, inbound, landing, orders, prior, **kw)
    assert fc.p_stockout[0] == 1.0 and fc.eta_median[0] == 0.0
    assert fc.p_stockout[2] < 0.01 < fc.p_stockout[1]  # stock landing in 5 minutes averts it
    assert fc.p_stockout[3] == pytest.approx(fc.p_stockout[1])  # landing after the horizon changes nothing
    # a spike planned 30 minutes ahead (x9 at its start) raises the risk long before it shows in the data
    spiked = F.forecast(avail, inbound, landing, orders, prior, **{**kw, "events": (SaleEvent(T0, 8.0, 25.0),)})
    assert spiked.p_stockout[1] > 0.99 and spiked.eta_median[1] < fc.eta_median[1]


@pytest.mark.parametrize(
    "shape, rate, E, k",
    [
        (4.0, 1.0, 6.0, 20.0),
        (0.3, 2.0, 5.0, 0.0),
        (50.0, 10.0, 3.0, 7.0),
        (1e6, 1e6 / 0.4, 90.0, 30.0),
        (2.0, 1.0, 1.0, 1.0),
    ],
)
def test_expected_short_is_the_direct_sum(shape, rate, E, k):
    nb = stats.nbinom(shape, rate / (rate + E))
    x = np.arange(0, 5000)
    direct = float((np.maximum(x - k, 0) * nb.pmf(x)).sum())
    got = F.expected_short(np.array([k]), np.array([shape]), np.array([rate]), np.array([E]))[0]
    assert got == pytest.approx(direct, rel=1e-6, abs=1e-9)


def test_expected_short_between_whole_orders_and_without_exposure():
    ks = np.linspace(3.0, 4.0, 11)
    got = F.expected_short(ks, np.full(11, 4.0), np.full(11, 1.0), np.full(11, 6.0))
    assert np.all(np.diff(got) < 0)  # more stock, less shortfall, continuously between whole orders
    assert F.expected_short(np.array([0.0]), np.array([4.0]), np.array([1.0]), np.array([0.0]))[0] == 0.0


def test_calendar_parses_round_trips_and_names_bad_events(tmp_path):
    ev = (SaleEvent(T0, 8.0, 25.0), SaleEvent(T0 + 3600, 3.0, 15.0))
    text = calendar_json(ev)
    assert parse_calendar(text) == ev and parse_calendar("") == ()
    f = tmp_path / "cal.json"
    f.write_text(text)
    assert parse_calendar(str(f)) == ev
    with pytest.raises(ValueError, match="event 0.*time zone"):
        parse_calendar('[{"start": "2026-11-11T00:00:00", "lift": 1, "decay_minutes": 5}]')
    with pytest.raises(ValueError, match="event 0: lift must be >= 0"):
        parse_calendar('[{"start": "2026-11-11T00:00:00+00:00", "lift": -1, "decay_minutes": 5}]')


def test_probabilities_are_calibrated_when_the_world_is_the_model():
    """Pairs whose true rate is drawn from the prior, observed for a window, then judged on the next hour: of the
    pairs given ~p, ~p stock out (a plugged-in point rate, the old model, is overconfident on the same cases)."""
    from backtest import metrics as M

    rng = np.random.default_rng(11)
    n, W, H, m0 = 60_000, 15, 60, 120.0
    prior_rate = rng.gamma(2.0, 0.15, n)  # what the archive says, per pair (orders/min)
    true = rng.gamma(m0 * prior_rate, 1 / m0)  # the truth varies around it as the prior says
    orders = rng.poisson(true[:, None] * np.ones(W))
    stock = rng.integers(1, 40, n).astype(float)
    future = rng.poisson(true * H)
    y = future >= stock
    kw = dict(events=(), as_of_s=T0, window_minutes=W, horizon=float(H), pessimistic_q=0.1, units_per_order=1.0)
    fc = F.forecast(stock, np.zeros(n), np.zeros(n), orders, prior_rate, alpha=1e-9, prior_minutes=m0, **kw)
    assert M.ece(fc.p_stockout, y) < 0.01
    assert M.ece(fc.p_stockout[fc.p_stockout >= 0.1], y[fc.p_stockout >= 0.1]) < 0.03
    # the same cases with the point rate plugged in (no uncertainty): worse calibrated where it matters
    point = stats.poisson.sf(stock - 1, orders.mean(axis=1) * H)
    assert M.ece(point[point >= 0.1], y[point >= 0.1]) > 2 * M.ece(
        fc.p_stockout[fc.p_stockout >= 0.1], y[fc.p_stockout >= 0.1]
    )


def test_calibrated_when_the_planned_lift_is_off_by_the_planners_error():
    """The world is the model with a planner: each sale's spike is the plan x a log-normal error (sigma 0.25),
    drawn once per sale, and the forecast is made before the spike (nothing in the data measures it yet).
    Averaged over the error, P is calibrated; taking the plan as certain (sigma 0) is overconfident where
    decisions are made, which is what the backtest saw (P 0.85 -> 58 % observed)."""
    from backtest import metrics as M

    rng = np.random.default_rng(16)
    sales, per_sale, W, H, sigma, lift, decay = 400, 150, 15, 60, 0.25, 8.0, 25.0
    event = (SaleEvent(T0 + 10 * 60, lift, decay),)  # starts 10 minutes after the as-of
    n = sales * per_sale
    rate = np.full(n, 0.05)  # known rates: only the plan's error is uncertain
    orders = rng.poisson(rate[:, None] * np.ones(W))
    m = np.repeat(np.exp(-0.5 * sigma**2 + sigma * rng.standard_normal(sales)), per_sale)  # one error per sale
    t = T0 + (np.arange(H) + 0.5) * 60.0
    extra = F.planned_intensity(event, t) - 1.0
    future = rng.poisson(rate * (H + m * extra.sum()))
    stock = rng.integers(1, 30, n).astype(float)
    y = future >= stock
    kw = dict(events=event, as_of_s=T0, window_minutes=W, alpha=1e-9, horizon=float(H), pessimistic_q=0.1)
    kw |= dict(units_per_order=1.0, prior_minutes=1e7, measured_minutes=10.0)  # the prior pins the rate
    sure = F.forecast(stock, np.zeros(n), np.zeros(n), orders, rate, lift_sigma=0.0, **kw).p_stockout
    unsure = F.forecast(stock, np.zeros(n), np.zeros(n), orders, rate, lift_sigma=sigma, **kw).p_stockout
    act_s, act_u = sure >= 0.1, unsure >= 0.1
    assert M.ece(unsure[act_u], y[act_u]) < 0.02
    assert M.ece(sure[act_s], y[act_s]) > 2 * M.ece(unsure[act_u], y[act_u])
    # once the event has run its measured minutes, the data carries the correction: no averaging any more
    later = {**kw, "as_of_s": T0 + 21 * 60}
    a = F.forecast(stock[:50], np.zeros(50), np.zeros(50), orders[:50], rate[:50], lift_sigma=0.0, **later)
    b = F.forecast(stock[:50], np.zeros(50), np.zeros(50), orders[:50], rate[:50], lift_sigma=sigma, **later)
    np.testing.assert_allclose(a.p_stockout, b.p_stockout)


def test_lift_error_nodes_average_a_mean_one_log_normal():
    m, w = F.lift_error_nodes(0.3, F.LIFT_NODES)
    assert w.sum() == pytest.approx(1.0) and (m * w).sum() == pytest.approx(1.0)
    assert np.sqrt((w * np.log(m) ** 2).sum() - (w * np.log(m)).sum() ** 2) == pytest.approx(0.3)
    assert F.lift_error_nodes(0.0, 7) == (np.ones(1), np.ones(1))


def test_a_busy_pairs_archive_prior_is_no_surer_than_prior_cv():
    """A pair selling 2/min has 240 orders' worth of prior in 120 minutes (CV 6 %); its rate on the sale day
    drifts by tens of per cent from the archive's. With prior_cv the prior keeps its mean and gets that CV, so
    a window selling at 1.5x the archive's rate moves the forecast further toward what it sees."""
    kw = dict(events=(), as_of_s=T0, window_minutes=15, alpha=1e-9, prior_minutes=120.0, horizon=60.0)
    kw |= dict(pessimistic_q=0.1, units_per_order=1.0)
    orders = np.full((1, 15), 3.0)
    tight = F.forecast(np.array([150.0]), np.zeros(1), np.zeros(1), orders, np.array([2.0]), **kw)
    loose = F.forecast(np.array([150.0]), np.zeros(1), np.zeros(1), orders, np.array([2.0]), prior_cv=0.5, **kw)
    assert tight.rate_per_min[0] == pytest.approx((240 + 45) / 135)  # prior 240 orders / 120 min + the window
    assert loose.rate_per_min[0] == pytest.approx((4 + 45) / (2 + 15))  # a0 = 1/0.25 = 4 orders at rate 2
    assert loose.p_stockout[0] > tight.p_stockout[0]
    # a pair whose prior is already vaguer than prior_cv is unchanged
    slow = F.forecast(np.array([5.0]), np.zeros(1), np.zeros(1), orders * 0, np.array([0.01]), prior_cv=0.5, **kw)
    ref = F.forecast(np.array([5.0]), np.zeros(1), np.zeros(1), orders * 0, np.array([0.01]), **kw)
    np.testing.assert_allclose(slow.p_stockout, ref.p_stockout)


def test_a_pair_the_archive_never_saw_is_a_rare_pair_not_an_unknown_one():
    """On a normal day, two orders of a pair that sold nothing in the archive's hours are not a rate of
    0.2/min: with an archive its prior is ~0 orders in ``unseen_prior_minutes``; without one, vague."""
    kw = dict(events=(), as_of_s=T0, window_minutes=15, alpha=0.05, prior_minutes=120.0, horizon=60.0)
    kw |= dict(pessimistic_q=0.1, units_per_order=1.0)
    orders = np.zeros((1, 15))
    orders[0, -3:-1] = 1.0
    args = (np.array([9.0]), np.zeros(1), np.zeros(1), orders, np.array([np.nan]))
    vague = F.forecast(*args, **kw).p_stockout[0]
    rare = F.forecast(*args, unseen_prior_minutes=120.0, **kw).p_stockout[0]
    assert vague > 0.5 > 0.01 > rare  # the normal-day first-hour alert of the backtest (p 0.53, 9 units)
