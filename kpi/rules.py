"""The KPI definitions: plain functions on plain numbers / pandas, no server needed.

The Spark job (spark/kpi_job.py) applies exactly these functions (``sku_kpis`` + ``choose_actions`` per
product group via ``cogroup().applyInPandas``; the small driver-side steps call the rest), so a
backtest can replay a run with the same code. Every threshold comes from :class:`KpiParams`, built
from the one settings object.

Definitions
-----------
- Forecast (kpi/forecast.py): per (product, warehouse) a Gamma-Poisson forecaster in orders. The prior is
  the archive's normal-day units/min of the pair x the measured lift of its category x its discount's
  effect (below), worth
  ``kpi_baseline_prior_minutes`` of evidence (a pair the archive never saw: a vague prior); the window's
  orders, EWMA-weighted (``kpi_velocity_alpha``), update it against the planned intensity of the same
  minutes. ``p_stockout = P(NegBin demand over the next H minutes of planned intensity >= k(Q))``, the
  stock Q counted in orders with the pair's units per order (pooled toward the window's, ``UPO_PSEUDO_ORDERS``);
  with inbound I landing in d minutes (``kpi_inbound_in_risk``, on): out if Q goes before d or Q + I within H.
  ETAs: the Gamma time-to-sell quantiles (median; ``kpi_eta_pessimistic_quantile``) mapped through the
  planned cumulative intensity. ``velocity``: expected units/min now.
- Planned calendar (``kpi_sale_calendar``, flashsale/calendar.py): the sale events the business publishes
  (start, lift, decay). The forecast projects demand over the horizon along it, so a spike planned in
  30 minutes raises the risk before it shows in the data. A planned lift is a forecast: until the data has
  measured an event (``kpi_sale_lift_minutes`` after its start) P is averaged over its log-normal error
  (``kpi_plan_lift_sigma``). The archive prior is never surer than ``kpi_prior_cv``; a pair a non-empty
  archive never saw gets a prior at ~0 orders worth ``kpi_baseline_prior_minutes`` (kpi/forecast.py).
- Measured lift (``measured_lift``): units the archive's pairs sold in the window's last
  ``kpi_sale_lift_minutes`` minutes over what their baselines x the plan expect, sale-wide (g) and per
  category (pooled toward g with LIFT_PSEUDO_UNITS): how this sale's demand differs from the plan.
  Discounts move products unevenly, so the window also measures the sale's price elasticity e
  (``price_elasticity``: Poisson likelihood over a grid, one level per category profiled out) from
  products_dim's ``discount_pct``; a category's lift is measured against baselines x (1 - d)^-e and a
  pair's prior is its baseline x that lift x (1 - d)^-e.
- Expected loss: expected units short within H if nobody acts (E[(D_H - k(Q + I))^+] in units) x the unit
  price x ``kpi_margin_rate``. Alerts and the queue are ranked by it.
- Risk: ``high`` if p >= ``kpi_high_risk_p``, ``watch`` if p >= ``kpi_watch_p``, else ``low``.
- Action (one per at-risk pair; rules in order, first match wins). Need = the forecast's expected units
  over H + L (L = restock lead time) under the planned curve:
  1. watch risk -> ``monitor``.
  2. high risk and another warehouse of the SAME province holds a surplus of the product ->
     ``reroute`` from the largest surplus. Surplus of warehouse j = available_j - ceil(need_j), j must be
     low risk and the surplus >= ``kpi_reroute_min_units``; equal surpluses: the lowest warehouse id.
  3. high risk, no reroute, and ``eta_pessimistic < L`` (a restock ordered now arrives too late) ->
     ``pause_ads`` (slow the demand until stock arrives; the restock quantity is still given).
  4. high risk otherwise -> ``restock`` with ``suggested_units = ceil(need) - available - inbound``
     (never below 0: what is already on the way is not ordered twice).
- Hysteresis and dedup (``update_alerts``), in minutes of DATA (the run's as-of), not runs: one alert per
  (product, warehouse) (``alert_id``). An alert opens when p >= watch_p, stays open while p >= exit_p, and
  closes after ``kpi_alert_clear_minutes`` of data with p < exit_p (status ``clearing`` meanwhile). A
  changed action replaces the old one at once when it escalates from ``monitor``; any other change must
  persist for ``kpi_action_confirm_minutes``.
- Action queue (``action_queue``): at most ``kpi_queue_size`` open alerts whose action is reroute,
  pause_ads or restock, by expected loss; the rest is counted by action, city and category, and the
  queue's restocks are grouped into one order per warehouse.
- Warehouse overload (``warehouse_status``), what is abnormal for that warehouse, with the reason: its
  load (orders/min over the window) >= ``kpi_overload_normal_factor`` x its own expected load (its normal
  day's orders/min from the archive baseline, ``warehouse_normal``, x the planned intensity x the sale's
  measured lift) and a < OVERLOAD_SURPRISE_P surprise for that expectation; or ``load/capacity >=
  kpi_overload_load_ratio``; or the latest mean fulfillment delay >= ``kpi_overload_delay_minutes`` (the
  delivery promise: the archive has no delays to learn a warehouse's normal from). The KPI job and the
  backtest's replay both call it.
- Geographic risk: per city and province, pairs at high/watch risk, expected stockouts (sum of p)
  and max p.
- Quarantine: flashsale/contracts.py's ``validate_batch`` (column-wise, from each Contract's Column
  kinds and bounds, plus unknown dimension ids and event times after as-of + skew); the first failure
  names the reason: missing, wrong_type, out_of_bounds, unknown_id, future_ts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from flashsale.calendar import SaleEvent, parse_calendar
from kpi.forecast import UNSEEN_PRIOR_MINUTES, forecast, window_exposure

ACTIONS = ("reroute", "pause_ads", "restock", "monitor")


@dataclass(frozen=True)
class KpiParams:
    window_minutes: int = 15
    horizon_minutes: float = 60.0
    lead_time_minutes: float = 45.0
    alpha: float = 0.05  # defaults = the settings' (tuned by the backtest, spark/README.md)
    prior_minutes: float = 120.0
    pessimistic_q: float = 0.1
    high_p: float = 0.5
    watch_p: float = 0.2
    exit_p: float = 0.1
    clear_minutes: float = 6.0  # minutes of data below exit_p before an alert closes
    action_confirm_minutes: float = 2.0  # minutes of data a changed action must persist
    reroute_min_units: int = 1
    overload_ratio: float = 1.0
    overload_delay: float = 30.0
    overload_normal_factor: float = 2.0  # load over the warehouse's own expected load that is abnormal
    future_skew_seconds: int = 120
    inbound_in_risk: bool = True
    lift_minutes: int = 10
    margin_rate: float = 0.2  # share of the selling price that is margin: loss per unit not sold
    queue_size: int = 20  # actionable items the operator's queue shows
    calendar: tuple[SaleEvent, ...] = ()  # the planned sale calendar (kpi/forecast.py)
    prior_cv: float = 0.5  # the archive prior's least coefficient of variation (kpi/forecast.py)
    plan_lift_sigma: float = 0.25  # log-normal error of a planned event's lift until the data measured it
    # per run, set by the job (and the backtest) from the data, never settings:
    sale_lift: float = 1.0  # sale-wide demand over what the baselines and the plan expect
    # the same per category over what the baselines x the discount's effect (below) expect, pooled toward the
    # sale-wide figure on that scale
    category_lift: tuple[tuple[str, float], ...] = ()
    # the sale's price elasticity: a product's demand over its normal days scales as (1 - discount)^-e within
    # its category (measured_lift estimates it from the window; 0: every product of a category alike)
    price_elasticity: float = 0.0
    units_per_order: float = 1.0  # the window's units / orders
    as_of_s: float = 0.0  # the run's as-of, epoch seconds
    archive_pairs: int = 0  # pairs in the archive baseline (0: no archive; a pair it lacks sold nothing there)

    @classmethod
    def from_settings(cls, s, window_minutes: int | None = None) -> KpiParams:
        return cls(
            window_minutes=window_minutes or s.kpi_window_minutes,
            horizon_minutes=float(s.action_horizon_minutes),
            lead_time_minutes=float(s.restock_lead_time_minutes),
            alpha=s.kpi_velocity_alpha,
            prior_minutes=s.kpi_baseline_prior_minutes,
            pessimistic_q=s.kpi_eta_pessimistic_quantile,
            high_p=s.kpi_high_risk_p,
            watch_p=s.kpi_watch_p,
            exit_p=s.kpi_alert_exit_p,
            clear_minutes=s.kpi_alert_clear_minutes,
            action_confirm_minutes=s.kpi_action_confirm_minutes,
            reroute_min_units=s.kpi_reroute_min_units,
            overload_ratio=s.kpi_overload_load_ratio,
            overload_delay=s.kpi_overload_delay_minutes,
            overload_normal_factor=s.kpi_overload_normal_factor,
            future_skew_seconds=s.kpi_future_skew_seconds,
            inbound_in_risk=s.kpi_inbound_in_risk,
            lift_minutes=s.kpi_sale_lift_minutes,
            margin_rate=s.kpi_margin_rate,
            queue_size=s.kpi_queue_size,
            calendar=parse_calendar(s.kpi_sale_calendar),
            plan_lift_sigma=s.kpi_plan_lift_sigma,
            prior_cv=s.kpi_prior_cv,
        )

    def for_run(self, as_of: datetime, **measured) -> KpiParams:
        """These params with the run's as-of and its measured lifts / units per order."""
        return replace(self, as_of_s=as_of.timestamp(), **measured)

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ risk
def risk_level(p, params: KpiParams) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.where(p >= params.high_p, "high", np.where(p >= params.watch_p, "watch", "low"))


UPO_PSEUDO_ORDERS = 3.0  # orders' worth of the sale-wide units per order in each pair's own
LIFT_PSEUDO_UNITS = 20.0  # evidence (units) the lift needs before it moves far from 1 (or from the sale's)
ELASTICITY_GRID = np.round(np.arange(0.0, 4.0001, 0.05), 2)  # the price elasticities measured_lift weighs
ELASTICITY_MIN_UNITS = 200.0  # units the window must hold before it says more than "no elasticity"


def discount_effect(discount, elasticity) -> np.ndarray:
    """A product's demand multiplier from its discount (a fraction off the list price): (1 - d)^-e."""
    return np.power(1.0 - np.clip(np.asarray(discount, dtype=float), 0.0, 0.95), -elasticity)


def price_elasticity(sold: np.ndarray, expected: np.ndarray, discount: np.ndarray, group: np.ndarray) -> float:
    """The elasticity e that makes ``sold`` most likely as Poisson(c_g x expected x (1 - discount)^-e), one
    level c_g per ``group`` (category) profiled out, over ELASTICITY_GRID; 0 with too little evidence.

    Per product: units the window sold, what its archive baselines x the plan expected, its discount. A sale
    discounts products unevenly (5 % here, 60 % there) and demand follows the price, so a category's lift
    alone puts a lightly discounted product's prior too high and a deep discount's too low: the backtest saw
    P 0.26 realized 0.07 on the lightest-discounted quarter before the spike, 0.27 / 0.26 on the deepest."""
    sold, expected = np.asarray(sold, dtype=float), np.asarray(expected, dtype=float)
    ok = expected > 0
    if sold[ok].sum() < ELASTICITY_MIN_UNITS:
        return 0.0
    sold, expected, discount = sold[ok], expected[ok], np.asarray(discount, dtype=float)[ok]
    codes = pd.factorize(np.asarray(group)[ok])[0]
    lam = expected[None, :] * discount_effect(discount[None, :], ELASTICITY_GRID[:, None])  # (grid, products)
    level = np.stack([np.bincount(codes, weights=row) for row in lam])
    sold_g = np.bincount(codes, weights=sold)
    c = np.where(level > 0, sold_g[None, :] / np.where(level > 0, level, 1.0), 0.0)
    mu = c[:, codes] * lam
    loglik = (sold[None, :] * np.log(np.where(mu > 0, mu, 1.0)) - mu).sum(axis=1)
    return float(ELASTICITY_GRID[int(np.argmax(loglik))])


def measured_lift(
    minutes: pd.DataFrame,
    baseline: pd.DataFrame | None,
    params: KpiParams,
    product_category: pd.Series | None = None,
    product_discount: pd.Series | None = None,
) -> tuple[float, tuple[tuple[str, float], ...], float]:
    """(sale-wide lift g, per-category lifts, price elasticity e) of this run (module doc): units the archive's
    pairs sold in the window's last ``lift_minutes`` over what their baselines x the planned intensity expect.
    e comes from the whole window (``price_elasticity``); a category's lift is then measured against its
    baselines x (1 - discount)^-e and pooled toward the sale-wide figure on that scale with
    LIFT_PSEUDO_UNITS of evidence, so lift x (1 - d)^-e is a product's expected demand over its normal days.

    ``minutes``: the window's product_id, warehouse_id, minute_idx (0 = oldest), units. ``baseline``:
    product_id, warehouse_id, baseline_velocity (units/min of a normal day). ``product_category``:
    category by product_id; ``product_discount``: the discount (fraction off) by product_id."""
    W = params.window_minutes
    k = min(params.lift_minutes, W)
    if k <= 0 or baseline is None or baseline.empty:
        return 1.0, (), 0.0
    exposure = window_exposure(params.calendar, params.as_of_s, W)
    plan = float(exposure[W - k :].sum())
    on_baseline = minutes.merge(
        baseline[["product_id", "warehouse_id"]], on=["product_id", "warehouse_id"], how="inner"
    )
    known = on_baseline[on_baseline["minute_idx"] >= W - k]
    b = baseline["baseline_velocity"].to_numpy(dtype=float)
    sold, expected = float(known["units"].sum()), float(np.nansum(b)) * plan
    g = (sold + LIFT_PSEUDO_UNITS) / (expected + LIFT_PSEUDO_UNITS)
    if product_category is None or product_category.empty:
        return g, (), 0.0
    base_p = baseline.groupby("product_id")["baseline_velocity"].sum()
    cat_p = product_category.reindex(base_p.index)
    e = 0.0
    if product_discount is not None and not product_discount.empty:
        sold_w = on_baseline.groupby("product_id")["units"].sum().reindex(base_p.index, fill_value=0.0)
        disc = product_discount.reindex(base_p.index).to_numpy(dtype=float)
        known_p = np.isfinite(disc) & cat_p.notna().to_numpy()
        e = price_elasticity(
            sold_w.to_numpy()[known_p],
            base_p.to_numpy()[known_p] * float(exposure.sum()),
            disc[known_p],
            np.asarray(cat_p)[known_p],
        )
        effect = np.where(np.isfinite(disc), discount_effect(np.nan_to_num(disc), e), 1.0)
    else:
        effect = np.ones(len(base_p))
    sold_c = known.groupby(known["product_id"].map(product_category))["units"].sum()
    exp_c = pd.Series(base_p.to_numpy() * effect * plan, index=base_p.index).groupby(cat_p).sum()
    g_priced = (sold + LIFT_PSEUDO_UNITS) / (float(exp_c.sum()) + LIFT_PSEUDO_UNITS)
    cats = exp_c.index.union(sold_c.index)
    sold_c, exp_c = sold_c.reindex(cats, fill_value=0.0), exp_c.reindex(cats, fill_value=0.0)
    lifts = (sold_c + LIFT_PSEUDO_UNITS * g_priced) / (exp_c + LIFT_PSEUDO_UNITS)
    return g, tuple((str(c), float(v)) for c, v in lifts.items()), e


def run_params(
    params: KpiParams,
    as_of: datetime,
    minutes: pd.DataFrame,
    baseline: pd.DataFrame | None,
    product_category: pd.Series | None,
    product_discount: pd.Series | None = None,
) -> KpiParams:
    """The params of one run: its as-of, the lifts and the price elasticity measured on its window, its units
    per order (the KPI job and the backtest's replay both call this)."""
    at = params.for_run(as_of)
    lift, by_category, elasticity = measured_lift(minutes, baseline, at, product_category, product_discount)
    return at.for_run(
        as_of,
        sale_lift=lift,
        category_lift=by_category,
        price_elasticity=elasticity,
        units_per_order=units_per_order(minutes),
        archive_pairs=0 if baseline is None else len(baseline),
    )


def alert_candidates(kpis: pd.DataFrame, alert_state: dict) -> pd.DataFrame:
    """The rows update_alerts acts on: not low risk, or holding an alert (it skips the others anyway)."""
    ids = kpis["product_id"].astype(str) + ":" + kpis["warehouse_id"].astype(str)
    return kpis[(kpis["risk"] != "low") | ids.isin(alert_state.keys())]


def units_per_order(minutes: pd.DataFrame) -> float:
    """The window's units / orders (1 without orders)."""
    if "orders" not in minutes or minutes.empty:
        return 1.0
    orders = float(minutes["orders"].sum())
    return max(float(minutes["units"].sum()) / orders, 1.0) if orders else 1.0


# ------------------------------------------------------------------ per (product, warehouse)
SKU_COLUMNS = {  # output of sku_kpis + choose_actions: name -> SQL type
    "product_id": "BIGINT",
    "warehouse_id": "BIGINT",
    "category": "STRING",
    "city": "STRING",
    "province": "STRING",
    "unit_price": "DOUBLE",
    "available": "BIGINT",
    "inbound_units": "BIGINT",
    "inbound_in_min": "DOUBLE",
    "units_in_window": "BIGINT",
    "velocity": "DOUBLE",
    "baseline_velocity": "DOUBLE",
    "eta_median_min": "DOUBLE",
    "eta_pessimistic_min": "DOUBLE",
    "p_stockout": "DOUBLE",
    "expected_short_units": "DOUBLE",
    "expected_loss": "DOUBLE",
    "risk": "STRING",
    "action": "STRING",
    "reason": "STRING",
    "suggested_units": "BIGINT",
    "reroute_from_warehouse_id": "BIGINT",
    "surplus_units": "BIGINT",
}
STATE_COLUMNS = [  # what sku_kpis needs of each pair's inventory state (the job's state query builds these)
    "product_id",
    "warehouse_id",
    "available",
    "inbound_units",
    "inbound_in_min",
    "category",
    "city",
    "province",
    "unit_price",
    "discount",  # fraction off the list price (products_dim's discount_pct / 100)
    "baseline_velocity",
]


def sku_kpis(minutes: pd.DataFrame, state: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """Velocity, ETA, p_stockout, expected shortfall and risk for every (product, warehouse) with a known
    inventory state (the forecaster of kpi/forecast.py).

    ``minutes``: product_id, warehouse_id, minute_idx (0 = oldest window minute), units, orders (optional:
    units / units_per_order without it). ``state``: STATE_COLUMNS (baseline_velocity NaN if none;
    inbound_in_min = minutes from the as-of until the inbound lands).
    """
    W = params.window_minutes
    st = state[STATE_COLUMNS].copy().reset_index(drop=True)
    n = len(st)
    units = np.zeros((n, W))
    orders = np.zeros((n, W))
    if len(minutes) and n:
        idx = pd.MultiIndex.from_frame(st[["product_id", "warehouse_id"]])
        m = minutes[(minutes["minute_idx"] >= 0) & (minutes["minute_idx"] < W)]
        pos = idx.get_indexer(pd.MultiIndex.from_frame(m[["product_id", "warehouse_id"]]))
        ok = pos >= 0
        col = m["minute_idx"].to_numpy()[ok].astype(int)
        u = m["units"].to_numpy(dtype=float)[ok]
        np.add.at(units, (pos[ok], col), u)
        o = m["orders"].to_numpy(dtype=float)[ok] if "orders" in m else u / params.units_per_order
        np.add.at(orders, (pos[ok], col), o)
    # each pair's units per order, pooled toward the sale-wide mean (a SKU bought in pairs empties faster)
    c = UPO_PSEUDO_ORDERS
    upo = (units.sum(axis=1) + c * params.units_per_order) / (orders.sum(axis=1) + c)
    lifts = dict(params.category_lift)
    if lifts:  # a category's lift is on the discount-adjusted scale (measured_lift)
        cat_lift = st["category"].map(lifts)
        effect = discount_effect(st["discount"].fillna(0.0).to_numpy(dtype=float), params.price_elasticity)
        lift = np.where(cat_lift.notna(), cat_lift.fillna(0.0).to_numpy(dtype=float) * effect, params.sale_lift)
    else:
        lift = np.full(n, params.sale_lift)
    prior = lift * st["baseline_velocity"].to_numpy(dtype=float) / upo  # orders per unit of planned intensity
    if params.prior_minutes <= 0:
        prior = np.full(n, np.nan)
    avail = st["available"].to_numpy(dtype=float)
    inbound = st["inbound_units"].to_numpy(dtype=float) if params.inbound_in_risk else np.zeros(n)
    fc = forecast(
        avail,
        inbound,
        st["inbound_in_min"].to_numpy(dtype=float),
        orders,
        prior,
        events=params.calendar,
        as_of_s=params.as_of_s,
        window_minutes=W,
        alpha=params.alpha,
        prior_minutes=params.prior_minutes,
        horizon=params.horizon_minutes,
        pessimistic_q=params.pessimistic_q,
        units_per_order=upo,
        short_for=None,
        cover_minutes=params.horizon_minutes + params.lead_time_minutes,
        lift_sigma=params.plan_lift_sigma,
        prior_cv=params.prior_cv,
        # a pair a non-empty archive never saw sold nothing in all its hours (module doc)
        unseen_prior_minutes=params.prior_minutes if params.archive_pairs > 0 else UNSEEN_PRIOR_MINUTES,
        measured_minutes=float(params.lift_minutes),
    )
    st["cover_units"] = fc.cover_units
    st["units_in_window"] = units.sum(axis=1).astype("int64")
    st["velocity"] = fc.rate_per_min
    st["eta_median_min"] = fc.eta_median
    st["eta_pessimistic_min"] = fc.eta_pessimistic
    st["p_stockout"] = fc.p_stockout
    st["expected_short_units"] = fc.expected_short_units
    st["expected_loss"] = fc.expected_short_units * st["unit_price"].to_numpy(dtype=float) * params.margin_rate
    st["risk"] = risk_level(fc.p_stockout, params)
    return st


def choose_actions(kpis: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """One candidate action per at-risk pair by the documented rules (see module doc)."""
    df = kpis.copy().reset_index(drop=True)
    H, L = params.horizon_minutes, params.lead_time_minutes
    # what the pair sells until a restock ordered now has landed and covered the horizon: the forecast's
    # expected units over H + L under the planned curve (a spike's peak is not held for 105 minutes)
    cover = df["cover_units"].to_numpy(float) if "cover_units" in df else df["velocity"].to_numpy() * (H + L)
    need = np.ceil(cover)
    # what is already on the way counts: a second order for the same gap would double the stock
    df["suggested_units"] = np.maximum(need - df["available"].to_numpy() - df["inbound_units"].to_numpy(), 0).astype(
        "int64"
    )
    surplus = (df["available"].to_numpy() - need).astype("int64")
    donor_ok = (df["risk"].to_numpy() == "low") & (surplus >= params.reroute_min_units)
    # the columns once, not per row; donors indexed by (product, province) so a frame holding many products
    # (the Spark job hands over whole buckets of products, the backtest many groups) costs O(rows)
    product, province, warehouse = df["product_id"].to_numpy(), df["province"].to_numpy(), df["warehouse_id"].to_numpy()
    suggested = df["suggested_units"].to_numpy()
    donors: dict = {}
    for j in np.flatnonzero(donor_ok):
        donors.setdefault((product[j], province[j]), []).append(j)
    actions, reasons, src, sur = [], [], [], []
    # pandas-stubs types every namedtuple field as the Scalar union; here each has its column's type
    rows: Iterator[Any] = df.itertuples(index=False)
    for i, r in enumerate(rows):
        a: str | None = None
        reason: str | None = None
        s_from: int | None = None
        s_units: int | None = None
        if r.risk == "watch":
            a = "monitor"
            reason = (
                f"P(stockout within {H:g} min) = {r.p_stockout:.2f} "
                f"is between watch {params.watch_p:g} and high {params.high_p:g}"
            )
        elif r.risk == "high":
            cand = np.array(
                [j for j in donors.get((r.product_id, r.province), ()) if warehouse[j] != r.warehouse_id], dtype=int
            )
            if len(cand):
                # largest surplus; ties go to the lowest warehouse id, so the answer does not depend on the
                # order Spark hands the group's rows in
                j = cand[np.lexsort((warehouse[cand], -surplus[cand]))[0]]
                s_from, s_units = int(warehouse[j]), int(surplus[j])
                a = "reroute"
                reason = (
                    f"high risk (p={r.p_stockout:.2f}); warehouse {s_from} in {r.province} holds a surplus "
                    f"of {s_units} units beyond its own {H:g}+{L:g} min demand"
                )
            elif np.isfinite(r.eta_pessimistic_min) and r.eta_pessimistic_min < L:
                a = "pause_ads"
                reason = (
                    f"high risk (p={r.p_stockout:.2f}); pessimistic ETA {r.eta_pessimistic_min:.1f} min < restock "
                    f"lead time {L:g} min and no warehouse in {r.province} has surplus"
                )
            else:
                a = "restock"
                reason = (
                    f"high risk (p={r.p_stockout:.2f}); pessimistic ETA {r.eta_pessimistic_min:.1f} min >= lead "
                    f"time {L:g} min: a restock of {int(suggested[i])} units arrives in time"
                )
        if a in ACTIONABLE and np.isfinite(r.expected_loss):
            assert reason is not None
            reason += (
                f"; doing nothing loses ~{r.expected_short_units:.0f} units "
                f"(margin {r.expected_loss:,.0f}) within {H:g} min"
            )
        if a in ("pause_ads", "restock") and r.inbound_units > 0:
            assert reason is not None  # both actions come with a reason
            reason += f"; {int(r.inbound_units)} units already inbound, landing in {r.inbound_in_min:.0f} min"
        actions.append(a)
        reasons.append(reason)
        src.append(s_from)
        sur.append(s_units)
    df["action"] = actions
    df["reason"] = reasons
    df["reroute_from_warehouse_id"] = pd.array(src, dtype="Int64")
    df["surplus_units"] = pd.array(sur, dtype="Int64")
    return df[list(SKU_COLUMNS)]


def product_group_kpis(minutes: pd.DataFrame, state: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """What the Spark job runs per group of whole products (cogroup of minutes and inventory state): every
    warehouse of a product is in the same call, which the reroute rule needs."""
    if state.empty:
        return pd.DataFrame({k: pd.Series(dtype="object") for k in SKU_COLUMNS})
    return choose_actions(sku_kpis(minutes, state, params), params)


# ------------------------------------------------------------------ hysteresis
_ESCALATE_FROM = "monitor"
_INT_NUMBERS = {"available", "inbound_units", "suggested_units", "reroute_from_warehouse_id", "surplus_units"}


def _minutes_between(since_iso: str | None, now: datetime) -> float:
    return (now - datetime.fromisoformat(since_iso)).total_seconds() / 60.0 if since_iso else 0.0


def _worth_a_look(candidates: pd.DataFrame, prev_state: dict, params: KpiParams) -> list[dict]:
    """The rows update_alerts can act on: at least ``watch_p``, or carrying an alert's state. The rest
    (most of 400k pairs at 20,000 products) would be skipped one by one in Python."""
    if candidates.empty:
        return []
    carried = pd.MultiIndex.from_tuples([tuple(int(x) for x in k.split(":")) for k in prev_state], names=["p", "w"])
    pairs = pd.MultiIndex.from_arrays([candidates["product_id"].astype(int), candidates["warehouse_id"].astype(int)])
    keep = (candidates["p_stockout"].to_numpy(dtype=float) >= params.watch_p) | pairs.isin(carried)
    return candidates[keep].to_dict("records")


def update_alerts(
    candidates: pd.DataFrame, prev_state: dict, data_as_of: str, params: KpiParams
) -> tuple[list[dict], dict]:
    """Open/keep/close alerts with hysteresis; returns (open alerts, state to carry to the next run).

    Hysteresis and confirmation count minutes of DATA (``data_as_of``, the run's as-of), not runs: a job
    refreshing every 15 s must not close an alert after 6 refreshes. ``candidates``: the output of
    choose_actions for every pair (any risk). ``prev_state``: the state returned by the previous run.
    The alerts come ranked by expected loss (then p, then the pessimistic ETA).
    """
    now = datetime.fromisoformat(data_as_of)
    rows = {
        f"{int(r['product_id'])}:{int(r['warehouse_id'])}": r for r in _worth_a_look(candidates, prev_state, params)
    }
    new_state: dict = {}
    alerts: list[dict] = []
    for aid in sorted(set(rows) | set(prev_state)):
        r = rows.get(aid)
        p = float(r["p_stockout"]) if r is not None else 0.0
        cand = r["action"] if r is not None else None
        prev = prev_state.get(aid)
        if prev is None:
            if r is None or p < params.watch_p or cand is None:
                continue
            st = {"action": cand, "first_seen": data_as_of, "runs_open": 1, "below_since": None}
            st |= {"pending_action": None, "pending_since": None}
            status = "new"
        else:
            st = dict(prev)
            st["runs_open"] = int(prev.get("runs_open", 0)) + 1
            if p < params.exit_p:
                st["below_since"] = prev.get("below_since") or data_as_of
                st["pending_action"], st["pending_since"] = None, None
                if _minutes_between(st["below_since"], now) >= params.clear_minutes:
                    continue  # closed
                status = "clearing"
            else:
                st["below_since"] = None
                status = "open"
                if cand is not None and cand != st["action"]:
                    if st["action"] == _ESCALATE_FROM:
                        st["action"], st["pending_action"], st["pending_since"] = cand, None, None
                    else:
                        since = prev.get("pending_since") if prev.get("pending_action") == cand else None
                        since = since or data_as_of
                        if _minutes_between(since, now) >= params.action_confirm_minutes:
                            st["action"], st["pending_action"], st["pending_since"] = cand, None, None
                        else:
                            st["pending_action"], st["pending_since"] = cand, since
                else:
                    st["pending_action"], st["pending_since"] = None, None
        new_state[aid] = st
        pid, wid = (int(x) for x in aid.split(":"))
        numbers = {
            "p_stockout": p,
            "horizon_min": params.horizon_minutes,
            "restock_lead_time_min": params.lead_time_minutes,
        }
        if r is not None:
            for k in _NUMBERS:
                v = _jsonable(r.get(k))
                numbers[k] = int(v) if v is not None and k in _INT_NUMBERS else v
        reason = (
            r["reason"]
            if (r is not None and r["action"] == st["action"] and r["reason"])
            else (
                f"kept '{st['action']}' (hysteresis): p={p:.2f}, "
                f"closes after {params.clear_minutes:g} min of data below {params.exit_p:g}"
                if status == "clearing"
                else f"kept '{st['action']}' (hysteresis): p={p:.2f}"
            )
        )
        alerts.append(
            {
                "alert_id": aid,
                "product_id": pid,
                "warehouse_id": wid,
                "category": r.get("category") if r is not None else prev_state.get(aid, {}).get("category"),
                "city": r.get("city") if r is not None else prev_state.get(aid, {}).get("city"),
                "action": st["action"],
                "reason": reason,
                "numbers": numbers,
                "status": status,
                "first_seen": st["first_seen"],
                "runs_open": st["runs_open"],
            }
        )
        if r is not None:
            st["category"], st["city"] = r.get("category"), r.get("city")
    alerts.sort(key=alert_rank)
    return alerts, new_state


_NUMBERS = (
    "available",
    "inbound_units",
    "inbound_in_min",
    "velocity",
    "eta_median_min",
    "eta_pessimistic_min",
    "expected_short_units",
    "expected_loss",
    "unit_price",
    "suggested_units",
    "reroute_from_warehouse_id",
    "surplus_units",
)


def alert_rank(a: dict) -> tuple:
    """Expected loss first (what doing nothing costs), then p, then the pessimistic ETA, then the id."""
    n = a["numbers"]
    return (-(n.get("expected_loss") or 0.0), -n["p_stockout"], _nan_last(n.get("eta_pessimistic_min")), a["alert_id"])


ACTIONABLE = ("reroute", "pause_ads", "restock")


def _in_stock(a: dict) -> bool:
    available = a["numbers"].get("available")
    return available is None or available > 0


def action_queue(alerts: list[dict], size: int) -> tuple[list[dict], dict]:
    """(the operator's queue, the summary of the rest).

    The queue: at most ``size`` open (not clearing) alerts with an action to take on pairs still in stock,
    by expected loss: the stockouts there is time to prevent. A pair already out of stock is no warning
    any more: its shelf is losing sales now and it would outrank every warning (its shortfall is the whole
    horizon's demand); those are listed apart (``out_of_stock``: the count, their expected loss and the
    ``size`` costliest with their action). The rest (actionable beyond the queue, monitor, clearing) is
    only counted: by action, city and category. Restocks of the queue and of the empty shelves are grouped
    into one order per warehouse (``restock_orders``)."""
    live = [a for a in alerts if a["action"] in ACTIONABLE and a["status"] != "clearing"]
    queue = sorted((a for a in live if _in_stock(a)), key=alert_rank)[:size]
    empty = sorted((a for a in live if not _in_stock(a)), key=alert_rank)
    queued = {a["alert_id"] for a in queue} | {a["alert_id"] for a in empty}
    rest = [a for a in alerts if a["alert_id"] not in queued]

    def counts(key) -> dict:
        out: dict = {}
        for a in rest:
            k = str(key(a) if key(a) is not None else "unknown")
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    orders: dict[int, dict] = {}
    for a in queue + empty:
        # an empty shelf needs its units whether or not its ads are paused meanwhile
        restocks = a["action"] == "restock" or (a["action"] == "pause_ads" and not _in_stock(a))
        if restocks and (a["numbers"].get("suggested_units") or 0) > 0:
            o = orders.setdefault(a["warehouse_id"], {"warehouse_id": a["warehouse_id"], "lines": [], "units": 0})
            o["lines"].append({"product_id": a["product_id"], "units": int(a["numbers"]["suggested_units"])})
            o["units"] += int(a["numbers"]["suggested_units"])
    summary = {
        "not_in_queue": len(rest),
        "actionable_not_in_queue": sum(1 for a in live if a["alert_id"] not in queued),
        "by_action": counts(lambda a: a["action"] if a["status"] != "clearing" else "clearing"),
        "by_city": counts(lambda a: a.get("city")),
        "by_category": counts(lambda a: a.get("category")),
        "expected_loss_not_in_queue": round(sum(a["numbers"].get("expected_loss") or 0.0 for a in rest), 2),
        "out_of_stock": {
            "count": len(empty),
            "expected_loss": round(sum(a["numbers"].get("expected_loss") or 0.0 for a in empty), 2),
            "items": [dict(a, rank=i + 1) for i, a in enumerate(empty[:size])],
        },
    }
    return [dict(a, rank=i + 1) for i, a in enumerate(queue)], {
        **summary,
        "restock_orders": sorted(orders.values(), key=lambda o: -o["units"]),
    }


def _nan_last(x) -> float:
    return float("inf") if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _jsonable(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


# ------------------------------------------------------------------ rollups
def orders_series(per_minute: pd.DataFrame, window_start: datetime, W: int) -> list[dict]:
    """``per_minute``: minute_idx, orders, units -> one row per window minute, zeros included."""
    orders = np.zeros(W, dtype=int)
    units = np.zeros(W, dtype=int)
    if len(per_minute):
        m = per_minute[(per_minute["minute_idx"] >= 0) & (per_minute["minute_idx"] < W)]
        orders[m["minute_idx"].to_numpy().astype(int)] = m["orders"].to_numpy()
        units[m["minute_idx"].to_numpy().astype(int)] = m["units"].to_numpy()
    return [
        {"minute": (window_start + timedelta(minutes=i)).isoformat(), "orders": int(orders[i]), "units": int(units[i])}
        for i in range(W)
    ]


OVERLOAD_SURPRISE_P = 1e-3  # a window's orders this unlikely under a warehouse's expected (Poisson) load


def warehouse_normal(baseline: pd.DataFrame | None, units_per_order: float = 1.0) -> pd.Series:
    """Each warehouse's normal orders/min: the archive baseline's units/min of its pairs (simulated or archived
    normal days) / units per order. Empty without an archive."""
    if baseline is None or baseline.empty:
        return pd.Series(dtype=float)
    return baseline.groupby("warehouse_id")["baseline_velocity"].sum() / max(units_per_order, 1.0)


def warehouse_status(
    load: pd.DataFrame, warehouses: pd.DataFrame, params: KpiParams, normal: pd.Series | None = None
) -> pd.DataFrame:
    """``load``: warehouse_id, minute_idx, orders. ``warehouses``: warehouse_id, warehouse_name, city,
    province, capacity, fulfillment_delay (latest mean, NaN if unknown). ``normal``: orders/min of a normal
    day by warehouse_id (``warehouse_normal``); ``params``: the run's (its as-of, calendar and measured lift).

    Overloaded, with the reason: the load is abnormal for this warehouse (>= ``overload_normal_factor`` x what
    its normal day x the planned intensity x the sale's measured lift expect of the window, and that many
    orders would be a < OVERLOAD_SURPRISE_P surprise for a Poisson load at the expected rate), or at or past
    its capacity (``overload_ratio``), or its fulfillment delay is past the delivery promise
    (``overload_delay``: the archive holds orders, not delays, so a delay has no per-warehouse normal)."""
    from scipy.stats import poisson

    W = params.window_minutes
    wh = warehouses.copy().reset_index(drop=True)
    tot = load.groupby("warehouse_id")["orders"].sum() if len(load) else pd.Series(dtype=float)
    peak = load.groupby("warehouse_id")["orders"].max() if len(load) else pd.Series(dtype=float)
    orders = wh["warehouse_id"].map(tot).fillna(0).to_numpy(dtype=float)
    wh["load_per_min"] = orders / W
    wh["peak_per_min"] = wh["warehouse_id"].map(peak).fillna(0).astype("int64")
    wh["load_ratio"] = wh["load_per_min"] / wh["capacity"].astype(float)
    plan = float(window_exposure(params.calendar, params.as_of_s, W).mean()) if params.as_of_s else 1.0
    base = wh["warehouse_id"].map(normal if normal is not None else pd.Series(dtype=float)).to_numpy(dtype=float)
    wh["expected_per_min"] = base * plan * params.sale_lift
    expected = wh["expected_per_min"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wh["load_vs_normal"] = np.where(expected > 0, wh["load_per_min"].to_numpy() / expected, np.nan)
        surprise = poisson.sf(orders - 1, np.where(expected > 0, expected * W, 1.0)) < OVERLOAD_SURPRISE_P
    by_normal = (expected > 0) & (wh["load_vs_normal"].fillna(0).to_numpy() >= params.overload_normal_factor) & surprise
    by_cap = (wh["load_ratio"] >= params.overload_ratio).to_numpy()
    by_delay = (wh["fulfillment_delay"].fillna(-1) >= params.overload_delay).to_numpy()
    wh["overloaded"] = by_normal | by_cap | by_delay
    reasons = []
    for i in range(len(wh)):
        parts = []
        if by_normal[i]:
            parts.append(
                f"load {wh['load_vs_normal'].iat[i]:.1f}x its normal for now "
                f"({wh['load_per_min'].iat[i]:.1f}/min, {expected[i]:.1f}/min expected)"
            )
        if by_cap[i]:
            parts.append(f"load >= {params.overload_ratio:g} x capacity")
        if by_delay[i]:
            parts.append(f"fulfillment delay >= {params.overload_delay:g} min")
        reasons.append("; ".join(parts))
    wh["reason"] = reasons
    return wh


def geo_risk(skus: pd.DataFrame, level: str) -> pd.DataFrame:
    """Risk rolled up by ``city`` or ``province``."""
    if skus.empty:
        return pd.DataFrame(
            columns=[
                level,
                "pairs",
                "high_risk_pairs",
                "watch_pairs",
                "expected_stockouts",
                "max_p_stockout",
                "units_per_min",
            ]
        )
    g = skus.assign(_high=(skus["risk"] == "high").astype(int), _watch=(skus["risk"] == "watch").astype(int)).groupby(
        level
    )
    out = pd.DataFrame(
        {
            "pairs": g.size(),
            "high_risk_pairs": g["_high"].sum(),
            "watch_pairs": g["_watch"].sum(),
            "expected_stockouts": g["p_stockout"].sum(),
            "max_p_stockout": g["p_stockout"].max(),
            "units_per_min": g["velocity"].sum(),
        }
    ).reset_index()
    return out.sort_values(["expected_stockouts", level], ascending=[False, True]).reset_index(drop=True)


def headline(
    skus: pd.DataFrame,
    series: list[dict],
    warehouses: pd.DataFrame,
    alerts: list[dict],
    quarantined: int,
    pairs_without_inventory: int,
) -> dict:
    high = skus[skus["risk"] == "high"] if len(skus) else skus
    n = len(series)
    return {
        "orders_last_minute": series[-1]["orders"] if n else 0,
        "orders_per_minute_avg": (sum(x["orders"] for x in series) / n) if n else 0.0,
        "units_in_window": int(sum(x["units"] for x in series)),
        "high_risk_sku_count": int(high["product_id"].nunique()) if len(high) else 0,
        "high_risk_pairs": int(len(high)),
        "watch_pairs": int((skus["risk"] == "watch").sum()) if len(skus) else 0,
        "expected_stockouts": float(skus["p_stockout"].sum()) if len(skus) else 0.0,
        "overloaded_warehouses": int(warehouses["overloaded"].sum()) if len(warehouses) else 0,
        "open_alerts": len(alerts),
        "quarantined_docs": int(quarantined),
        "pairs_without_inventory": int(pairs_without_inventory),
    }


def records(df: pd.DataFrame, limit: int | None = None) -> list[dict]:
    """JSON-safe rows (NaN -> None, numpy scalars -> Python)."""
    rows = df.head(limit).to_dict("records") if limit is not None else df.to_dict("records")
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows]
