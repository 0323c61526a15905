"""The KPI definitions: plain functions on plain numbers / pandas, no server needed.

The Spark job (spark/kpi_job.py) applies exactly these functions (``sku_kpis`` + ``choose_actions`` per
product group via ``cogroup().applyInPandas``; the small driver-side steps call the rest), so a
backtest can replay a run with the same code. Every threshold comes from :class:`KpiParams`, built
from the one settings object.

Definitions
-----------
- Velocity (units/min) of a (product, warehouse): EWMA over the window's per-minute units, oldest to
  newest, minutes without sales counting as 0: ``v = sum(w_k u_k) / sum(w_k)``, ``w_k = (1-a)^(W-1-k)``
  (a = ``kpi_velocity_alpha``). When the archive gives a baseline b (typical units/min of that pair)
  it acts as a Gamma prior worth ``m0`` minutes against the EWMA's ``1/a`` effective minutes:
  ``lambda = (v/a + m0 g b) / (1/a + m0)``; without a baseline ``lambda = v``.
- Sale-wide lift g (``sale_lift``): a flash sale moves every SKU's demand together, and the sum over
  thousands of pairs measures that move within a few minutes, long before one slow mover's own sales
  can. g = (units sold in the window's last ``kpi_sale_lift_minutes`` minutes by the pairs the archive
  knows + c) / (what their baselines expect in those minutes + c), c = ``LIFT_PSEUDO_UNITS`` (so a
  trickle of data, or none, leaves g near 1). The job computes g once per run over all pairs and
  hands it to every group (``KpiParams.sale_lift``); ``kpi_sale_lift_minutes`` = 0 keeps g = 1.
- Stockout ETA: unit demand is Poisson(lambda/min), so the time to sell the Q available units
  (on hand minus reserved) is Gamma(shape=Q, rate=lambda). ``eta_median`` is its median,
  ``eta_pessimistic`` its early quantile q (``kpi_eta_pessimistic_quantile``: with probability q we
  are out sooner). ``p_stockout = P(T <= H) = P(Poisson(lambda H) >= Q)`` for the action horizon H.
  Q = 0: ETA 0 and p = 1. lambda = 0, Q > 0: ETA unknown (None) and p = 0.
- Inbound stock: I units ordered and landing in d minutes (inventory_fact ``inbound_units`` and
  ``inbound_due_minutes``, aged to the as-of). With ``kpi_inbound_in_risk`` the shelf empties within H
  if the Q units sell out before they land, or Q + I sell out within H: ``p = max(P(Poisson(lambda
  min(d, H)) >= Q), P(Poisson(lambda H) >= Q + I))`` (exact when I = 0; otherwise low by at most the
  chance of both, which is small when I is worth anything), and an ETA quantile past d is taken on
  Q + I units. Off by default (the backtest: the velocity lags a flash spike, and ignoring inbound
  stock is what keeps recall up); the suggested restock always subtracts I.
- Risk: ``high`` if p >= ``kpi_high_risk_p``, ``watch`` if p >= ``kpi_watch_p``, else ``low``.
- Action (one per at-risk pair; rules in order, first match wins):
  1. watch risk -> ``monitor``.
  2. high risk and another warehouse of the SAME province holds a surplus of the product ->
     ``reroute`` from the largest surplus. Surplus of warehouse j = available_j - ceil(lambda_j (H+L))
     (what it keeps for its own demand over horizon H plus restock lead time L), j must be low risk and
     the surplus >= ``kpi_reroute_min_units``; equal surpluses: the lowest warehouse id.
  3. high risk, no reroute, and ``eta_pessimistic < L`` (a restock ordered now arrives too late) ->
     ``pause_ads`` (slow the demand until stock arrives; the restock quantity is still given).
  4. high risk otherwise -> ``restock`` with ``suggested_units = ceil(lambda (H+L)) - available - inbound``
     (never below 0: what is already on the way is not ordered twice).
- Hysteresis and dedup (``update_alerts``): one alert per (product, warehouse) (``alert_id``). An alert
  opens when p >= watch_p, stays open while p >= exit_p, and closes only after ``clear_runs``
  consecutive runs with p < exit_p (status ``clearing`` meanwhile). A changed action replaces the old
  one at once when it escalates from ``monitor``; any other change must repeat for
  ``action_confirm_runs`` consecutive runs.
- Warehouse overload: load = orders/min over the window vs capacity (orders/min); overloaded when
  ``load/capacity >= kpi_overload_load_ratio`` or the latest mean fulfillment delay >=
  ``kpi_overload_delay_minutes``.
- Geographic risk: per city and province, pairs at high/watch risk, expected stockouts (sum of p)
  and max p.
- Quarantine: flashsale/contracts.py's ``validate_batch`` (column-wise, from each Contract's Column
  kinds and bounds, plus unknown dimension ids and event times after as-of + skew); the first failure
  names the reason: missing, wrong_type, out_of_bounds, unknown_id, future_ts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import gammainc, gammaincinv

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
    clear_runs: int = 6
    action_confirm_runs: int = 2
    reroute_min_units: int = 1
    overload_ratio: float = 1.0
    overload_delay: float = 30.0
    future_skew_seconds: int = 120
    inbound_in_risk: bool = False
    lift_minutes: int = 0
    sale_lift: float = 1.0  # per run: set by the job (and the backtest) from sale_lift(), never a setting

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
            clear_runs=s.kpi_alert_clear_runs,
            action_confirm_runs=s.kpi_action_confirm_runs,
            reroute_min_units=s.kpi_reroute_min_units,
            overload_ratio=s.kpi_overload_load_ratio,
            overload_delay=s.kpi_overload_delay_minutes,
            future_skew_seconds=s.kpi_future_skew_seconds,
            inbound_in_risk=s.kpi_inbound_in_risk,
            lift_minutes=s.kpi_sale_lift_minutes,
        )

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ velocity and ETA
def ewma_weights(n: int, alpha: float) -> np.ndarray:
    """Weights of minutes 0..n-1 (oldest to newest); the newest weighs 1."""
    return (1.0 - alpha) ** np.arange(n - 1, -1, -1, dtype=float)


def smoothed_velocity(
    units_by_minute: np.ndarray, alpha: float, baseline: float | None = None, prior_minutes: float = 0.0
) -> float:
    """Units/min: EWMA of the per-minute series, shrunk towards the archive baseline when given."""
    u = np.asarray(units_by_minute, dtype=float)
    w = ewma_weights(len(u), alpha)
    v = float((w * u).sum() / w.sum()) if len(u) else 0.0
    if baseline is None or not np.isfinite(baseline) or prior_minutes <= 0:
        return v
    n_eff = 1.0 / alpha
    return (v * n_eff + prior_minutes * baseline) / (n_eff + prior_minutes)


def p_out_with_inbound(
    Q: np.ndarray, I: np.ndarray, demand_until_inbound: np.ndarray, demand_horizon: np.ndarray
) -> np.ndarray:
    """P(the shelf empties within the horizon) for Q > 0 units on the shelf and I inbound (the module
    doc's rule): the Q go before the inbound lands, or Q + I go within the horizon. Demand arguments are
    Poisson means (expected units). Without inbound: P(Poisson(demand_horizon) >= Q)."""
    before = gammainc(Q, demand_until_inbound)  # P(Poisson >= Q) is the regularized lower gamma
    after = gammainc(Q + I, demand_horizon)
    return np.where(I > 0, np.maximum(before, after), gammainc(Q, demand_horizon))


def stockout_eta(available, rate, horizon: float, q: float, inbound=0, inbound_in=0.0):
    """Vectorized (eta_median, eta_pessimistic, p_stockout) for Gamma(available, rate) time-to-sell,
    with ``inbound`` units landing ``inbound_in`` minutes from now (see the module doc).

    NaN ETA means "no demand, no stockout foreseeable"."""
    Q, lam, I, d = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (available, rate, inbound, inbound_in)))
    med = np.full(Q.shape, np.nan)
    pes = np.full(Q.shape, np.nan)
    p = np.zeros(Q.shape)
    out = Q <= 0
    med[out], pes[out], p[out] = 0.0, 0.0, 1.0
    sel = (~out) & (lam > 0)
    if sel.any():
        Qs, ls, Is, ds = Q[sel], lam[sel], I[sel], d[sel]
        has_in = Is > 0
        p[sel] = p_out_with_inbound(Qs, Is, ls * np.minimum(ds, horizon), ls * horizon)
        for out_arr, level in ((med, 0.5), (pes, q)):
            eta = gammaincinv(Qs, level) / ls
            late = has_in & (eta > ds)  # the inbound lands first: the shelf holds Q + I
            eta[late] = gammaincinv(Qs[late] + Is[late], level) / ls[late]
            out_arr[sel] = eta
    return med, pes, p


def risk_level(p, params: KpiParams) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.where(p >= params.high_p, "high", np.where(p >= params.watch_p, "watch", "low"))


LIFT_PSEUDO_UNITS = 20.0  # evidence (units) the lift needs before it moves far from 1


def sale_lift(minutes: pd.DataFrame, baseline: pd.DataFrame | None, params: KpiParams) -> float:
    """The sale-wide demand multiplier g of this run (module doc).

    ``minutes``: the window's product_id, warehouse_id, minute_idx (0 = oldest), units. ``baseline``:
    product_id, warehouse_id, baseline_velocity (the archive's units/min per pair)."""
    k = min(params.lift_minutes, params.window_minutes)
    if k <= 0 or baseline is None or baseline.empty:
        return 1.0
    recent = minutes[minutes["minute_idx"] >= params.window_minutes - k]
    known = recent.merge(baseline[["product_id", "warehouse_id"]], on=["product_id", "warehouse_id"], how="inner")
    sold = float(known["units"].sum())
    expected = float(np.nansum(baseline["baseline_velocity"].to_numpy(dtype=float))) * k
    return (sold + LIFT_PSEUDO_UNITS) / (expected + LIFT_PSEUDO_UNITS)


# ------------------------------------------------------------------ per (product, warehouse)
SKU_COLUMNS = {  # output of sku_kpis + choose_actions: name -> Spark type (the job builds its schema here)
    "product_id": "BIGINT",
    "warehouse_id": "BIGINT",
    "city": "STRING",
    "province": "STRING",
    "available": "BIGINT",
    "inbound_units": "BIGINT",
    "inbound_in_min": "DOUBLE",
    "units_in_window": "BIGINT",
    "velocity": "DOUBLE",
    "baseline_velocity": "DOUBLE",
    "eta_median_min": "DOUBLE",
    "eta_pessimistic_min": "DOUBLE",
    "p_stockout": "DOUBLE",
    "risk": "STRING",
    "action": "STRING",
    "reason": "STRING",
    "suggested_units": "BIGINT",
    "reroute_from_warehouse_id": "BIGINT",
    "surplus_units": "BIGINT",
}


def sku_spark_schema() -> str:
    return ", ".join(f"{k} {v}" for k, v in SKU_COLUMNS.items())


def sku_kpis(minutes: pd.DataFrame, state: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """Velocity, ETA, p_stockout and risk for every (product, warehouse) with a known inventory state.

    ``minutes``: product_id, warehouse_id, minute_idx (0 = oldest window minute), units.
    ``state``: product_id, warehouse_id, available, inbound_units, inbound_in_min (minutes from the as-of
    until it lands), city, province, baseline_velocity (NaN if none).
    """
    W = params.window_minutes
    st = state[
        [
            "product_id",
            "warehouse_id",
            "available",
            "inbound_units",
            "inbound_in_min",
            "city",
            "province",
            "baseline_velocity",
        ]
    ].copy()
    st = st.reset_index(drop=True)
    n = len(st)
    series = np.zeros((n, W))
    if len(minutes) and n:
        idx = pd.MultiIndex.from_frame(st[["product_id", "warehouse_id"]])
        m = minutes[(minutes["minute_idx"] >= 0) & (minutes["minute_idx"] < W)]
        pos = idx.get_indexer(pd.MultiIndex.from_frame(m[["product_id", "warehouse_id"]]))
        ok = pos >= 0
        np.add.at(series, (pos[ok], m["minute_idx"].to_numpy()[ok].astype(int)), m["units"].to_numpy()[ok])
    w = ewma_weights(W, params.alpha)
    v = (series * w).sum(axis=1) / w.sum()
    b = st["baseline_velocity"].to_numpy(dtype=float)
    has_b = np.isfinite(b) & (params.prior_minutes > 0)
    n_eff = 1.0 / params.alpha
    prior = params.sale_lift * np.nan_to_num(b)
    lam = np.where(has_b, (v * n_eff + params.prior_minutes * prior) / (n_eff + params.prior_minutes), v)
    avail = st["available"].to_numpy(dtype=float)
    inbound = st["inbound_units"].to_numpy(dtype=float) if params.inbound_in_risk else 0
    med, pes, p = stockout_eta(
        avail, lam, params.horizon_minutes, params.pessimistic_q, inbound, st["inbound_in_min"].to_numpy(dtype=float)
    )
    st["units_in_window"] = series.sum(axis=1).astype("int64")
    st["velocity"] = lam
    st["eta_median_min"] = med
    st["eta_pessimistic_min"] = pes
    st["p_stockout"] = p
    st["risk"] = risk_level(p, params)
    return st


def choose_actions(kpis: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """One candidate action per at-risk pair by the documented rules (see module doc)."""
    df = kpis.copy().reset_index(drop=True)
    H, L = params.horizon_minutes, params.lead_time_minutes
    need = np.ceil(df["velocity"].to_numpy() * (H + L))
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


def update_alerts(
    candidates: pd.DataFrame, prev_state: dict, now_iso: str, params: KpiParams
) -> tuple[list[dict], dict]:
    """Open/keep/close alerts with hysteresis; returns (open alerts, state to carry to the next run).

    ``candidates``: the output of choose_actions for every pair (any risk). ``prev_state``: the state
    returned by the previous run ({alert_id: {...}}).
    """
    rows = {f"{int(r['product_id'])}:{int(r['warehouse_id'])}": r for r in candidates.to_dict("records")}
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
            st = {
                "action": cand,
                "first_seen": now_iso,
                "runs_open": 1,
                "below_exit_runs": 0,
                "pending_action": None,
                "pending_runs": 0,
            }
            status = "new"
        else:
            st = dict(prev)
            st["runs_open"] = int(prev.get("runs_open", 0)) + 1
            if p < params.exit_p:
                st["below_exit_runs"] = int(prev.get("below_exit_runs", 0)) + 1
                st["pending_action"], st["pending_runs"] = None, 0
                if st["below_exit_runs"] >= params.clear_runs:
                    continue  # closed
                status = "clearing"
            else:
                st["below_exit_runs"] = 0
                status = "open"
                if cand is not None and cand != st["action"]:
                    if st["action"] == _ESCALATE_FROM:
                        st["action"], st["pending_action"], st["pending_runs"] = cand, None, 0
                    else:
                        runs = int(prev.get("pending_runs", 0)) + 1 if prev.get("pending_action") == cand else 1
                        if runs >= params.action_confirm_runs:
                            st["action"], st["pending_action"], st["pending_runs"] = cand, None, 0
                        else:
                            st["pending_action"], st["pending_runs"] = cand, runs
                else:
                    st["pending_action"], st["pending_runs"] = None, 0
        new_state[aid] = st
        pid, wid = (int(x) for x in aid.split(":"))
        numbers = {
            "p_stockout": p,
            "horizon_min": params.horizon_minutes,
            "restock_lead_time_min": params.lead_time_minutes,
        }
        if r is not None:
            for k in (
                "available",
                "inbound_units",
                "inbound_in_min",
                "velocity",
                "eta_median_min",
                "eta_pessimistic_min",
                "suggested_units",
                "reroute_from_warehouse_id",
                "surplus_units",
            ):
                v = _jsonable(r.get(k))
                numbers[k] = int(v) if v is not None and k in _INT_NUMBERS else v
        reason = (
            r["reason"]
            if (r is not None and r["action"] == st["action"] and r["reason"])
            else (
                f"kept '{st['action']}' (hysteresis): p={p:.2f}, "
                f"closes after {params.clear_runs} runs below {params.exit_p:g}"
                if status == "clearing"
                else f"kept '{st['action']}' (hysteresis): p={p:.2f}"
            )
        )
        alerts.append(
            {
                "alert_id": aid,
                "product_id": pid,
                "warehouse_id": wid,
                "action": st["action"],
                "reason": reason,
                "numbers": numbers,
                "status": status,
                "first_seen": st["first_seen"],
                "runs_open": st["runs_open"],
            }
        )
    alerts.sort(
        key=lambda a: (-a["numbers"]["p_stockout"], _nan_last(a["numbers"].get("eta_pessimistic_min")), a["alert_id"])
    )
    return alerts, new_state


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


def warehouse_status(load: pd.DataFrame, warehouses: pd.DataFrame, params: KpiParams) -> pd.DataFrame:
    """``load``: warehouse_id, minute_idx, orders. ``warehouses``: warehouse_id, warehouse_name, city,
    province, capacity, fulfillment_delay (latest mean, NaN if unknown)."""
    W = params.window_minutes
    wh = warehouses.copy().reset_index(drop=True)
    tot = load.groupby("warehouse_id")["orders"].sum() if len(load) else pd.Series(dtype=float)
    peak = load.groupby("warehouse_id")["orders"].max() if len(load) else pd.Series(dtype=float)
    wh["load_per_min"] = wh["warehouse_id"].map(tot).fillna(0).to_numpy(dtype=float) / W
    wh["peak_per_min"] = wh["warehouse_id"].map(peak).fillna(0).astype("int64")
    wh["load_ratio"] = wh["load_per_min"] / wh["capacity"].astype(float)
    by_load = wh["load_ratio"] >= params.overload_ratio
    by_delay = wh["fulfillment_delay"].fillna(-1) >= params.overload_delay
    wh["overloaded"] = by_load | by_delay
    wh["reason"] = np.where(
        by_load & by_delay,
        "load and fulfillment delay over limits",
        np.where(
            by_load,
            f"load >= {params.overload_ratio:g} x capacity",
            np.where(by_delay, f"fulfillment delay >= {params.overload_delay:g} min", ""),
        ),
    )
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
