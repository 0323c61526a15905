"""Three forecasters judged alike: the radar (the KPI job replayed), a naive baseline and an oracle.

Each minute every forecaster gives P(stockout within H) per pair; the same action rules, hysteresis and
queue (kpi/rules.py: ``choose_actions``, ``update_alerts``, ``action_queue``) turn the probabilities into
the operator's queue. Only the probability (and the velocity, ETA and expected shortfall that come with
it) differs:

- radar: the KPI job's forecaster (kpi/forecast.py) on the replayed window, archive and calendar;
- naive: the textbook rule, demand = the last 15 minutes' plain average velocity, Poisson:
  P = P(Poisson(v H) >= available), no archive, no calendar, no inbound;
- oracle (a fair ceiling): knows the simulator's true state and parameters (each pair's true expected
  orders per minute: normal-day rate x flash curve x warehouse pressure x scarcity share, the last two
  held at their current values; units per order 1 + Poisson(extra); the inbound restocks and when they
  land) and computes P by forward Monte Carlo (``ORACLE_PATHS`` paths). What it misses is noise no
  forecaster can see (and the feedback of scarcity and pressure within the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammainc, gammaincinv

from kpi.forecast import expected_short
from kpi.rules import KpiParams, action_queue, alert_candidates, choose_actions, risk_level, update_alerts

ORACLE_PATHS = 200
ORACLE_SCREEN_P = 1e-3  # pairs whose compound-free Poisson P is below this get P = 0 without Monte Carlo
NAIVE_WINDOW_MINUTES = 15


@dataclass
class Desk:
    """One forecaster's hysteresis state and the queue rows it showed (minute, pair, action)."""

    name: str
    state: dict = field(default_factory=dict)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def record(self, minute: int, queue: list[dict], n_products: int) -> None:
        pairs = np.array([q["warehouse_id"] * n_products + q["product_id"] for q in queue], dtype=np.int64)
        self.rows.append(
            (
                np.full(len(queue), minute, dtype=np.int64),
                pairs,
                np.array([q["action"] for q in queue], dtype=object),
                np.array([q["numbers"].get("expected_loss") or 0.0 for q in queue]),
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame({"minute": [], "pair": [], "action": [], "expected_loss": []})
        m, p, a, e = (np.concatenate([r[i] for r in self.rows]) for i in range(4))
        return pd.DataFrame({"minute": m, "pair": p, "action": a, "expected_loss": e})


def queue_from_alerts(
    desk: Desk, minute: int, alerts: list[dict], params: KpiParams, n_products: int
) -> tuple[list[dict], list[dict]]:
    """(the queue, the empty shelves listed apart): the desk records the queue (what the queue's metrics
    judge); an operator works both."""
    queue, summary = action_queue(alerts, params.queue_size)
    desk.record(minute, queue, n_products)
    return queue, summary["out_of_stock"]["items"]


def judged_alerts(
    desk: Desk,
    replay,
    flat_all: np.ndarray,
    p_all: np.ndarray,
    rate_all: np.ndarray,
    short_all: np.ndarray,
    eta_med_all: np.ndarray,
    eta_pes_all: np.ndarray,
    params: KpiParams,
    data_as_of: str,
) -> list[dict]:
    """The radar's action rules and hysteresis applied to another forecaster's numbers (all known pairs)."""
    n_p = replay.n_products
    alerted = np.array([int(w) * n_p + int(p) for p, w in (k.split(":") for k in desk.state)], dtype=np.int64)
    risky = flat_all[p_all >= params.watch_p]
    products = np.unique(np.r_[risky % n_p, alerted % n_p])
    group = np.sort((np.arange(replay.n_warehouses, dtype=np.int64)[None, :] * n_p + products[:, None]).ravel())
    group = group[replay.known[group]]
    pos = np.searchsorted(flat_all, group)  # flat_all: every known pair, sorted
    st = replay.state(group).reset_index(drop=True)
    st["units_in_window"] = 0
    st["velocity"] = rate_all[pos]
    st["eta_median_min"] = eta_med_all[pos]
    st["eta_pessimistic_min"] = eta_pes_all[pos]
    st["p_stockout"] = p_all[pos]
    st["expected_short_units"] = short_all[pos]
    st["expected_loss"] = short_all[pos] * st["unit_price"].to_numpy(float) * params.margin_rate
    st["risk"] = risk_level(p_all[pos], params)
    alerts, desk.state = update_alerts(
        alert_candidates(choose_actions(st, params), desk.state), desk.state, data_as_of, params
    )
    return alerts


def poisson_numbers(available, rate_units, horizon: float, q: float):
    """P(stockout within H), ETAs and expected units short for Poisson unit demand at a point rate."""
    Q = np.asarray(available, float)
    lam = np.asarray(rate_units, float)
    p = np.zeros_like(Q)
    med = np.full(Q.shape, np.nan)
    pes = np.full(Q.shape, np.nan)
    out = Q <= 0
    p[out], med[out], pes[out] = 1.0, 0.0, 0.0
    sel = ~out & (lam > 0)
    if sel.any():
        Qs, ls = Q[sel], lam[sel]
        p[sel] = gammainc(Qs, ls * horizon)
        med[sel] = gammaincinv(Qs, 0.5) / ls
        pes[sel] = gammaincinv(Qs, q) / ls
    short = np.zeros_like(Q)
    risky = (lam * horizon > 0) & (p >= 0.05)
    if risky.any():
        big = np.full(int(risky.sum()), 1e6)  # a Gamma shape this large is a point rate: Poisson
        short[risky] = expected_short(np.maximum(Q, 0)[risky], big, big / lam[risky], np.full(len(big), horizon))
    return p, med, pes, short


def naive_numbers(replay, t: int, flat: np.ndarray, params: KpiParams):
    units = replay.units_last(t, NAIVE_WINDOW_MINUTES)[flat]
    rate = units / NAIVE_WINDOW_MINUTES
    p, med, pes, short = poisson_numbers(replay.available[flat], rate, params.horizon_minutes, params.pessimistic_q)
    return p, rate, short, med, pes


def oracle_numbers(
    rng: np.random.Generator,
    rate_orders: np.ndarray,
    future: np.ndarray,
    available: np.ndarray,
    inbound: np.ndarray,
    inbound_in: np.ndarray,
    extra_units_mean: float,
    params: KpiParams,
):
    """Forward Monte Carlo with the true rates. ``rate_orders``: orders/min at intensity 1 now (pressure and
    scarcity in); ``future``: the true flash intensity of the next H minutes."""
    H = len(future)
    cum = np.r_[0.0, np.cumsum(future)]
    Q = available.astype(float)
    inb = inbound.astype(float)
    d = np.clip(np.rint(inbound_in), 0, H).astype(int)
    mean_units = rate_orders * (1 + extra_units_mean) * cum[H]
    # screen: far from running out even without the compound spread and the inbound
    screen = (Q <= 0) | (gammainc(np.maximum(Q, 1), np.maximum(mean_units, 1e-12)) >= ORACLE_SCREEN_P)
    p = np.where(Q <= 0, 1.0, 0.0)
    short = np.zeros(len(Q))
    sel = np.flatnonzero(screen & (Q > 0))
    if len(sel):
        n = ORACLE_PATHS
        r = rate_orders[sel][:, None]
        o1 = rng.poisson(r * cum[d[sel]][:, None], size=(len(sel), n))
        o2 = rng.poisson(r * (cum[H] - cum[d[sel]])[:, None], size=(len(sel), n))
        u1 = o1 + rng.poisson(extra_units_mean * o1)
        u2 = o2 + rng.poisson(extra_units_mean * o2)
        q, i = Q[sel][:, None], inb[sel][:, None]
        out = (u1 >= q) | (u1 + u2 >= q + i)
        p[sel] = out.mean(axis=1)
        short[sel] = np.maximum(u1 + u2 - q - i, 0).mean(axis=1)
    empty = Q <= 0
    short[empty] = rate_orders[empty] * (1 + extra_units_mean) * cum[H]
    lam_units = rate_orders * (1 + extra_units_mean) * (cum[H] / H)
    with np.errstate(divide="ignore", invalid="ignore"):
        med = np.where(Q <= 0, 0.0, np.where(lam_units > 0, gammaincinv(np.maximum(Q, 1), 0.5) / lam_units, np.nan))
        pes = np.where(
            Q <= 0,
            0.0,
            np.where(lam_units > 0, gammaincinv(np.maximum(Q, 1), params.pessimistic_q) / lam_units, np.nan),
        )
    return p, lam_units, short, med, pes


def labels(rows_pair: np.ndarray, rows_minute: np.ndarray, starts: pd.DataFrame, horizon: int) -> np.ndarray:
    """y = the pair stocks out (a stockout starts) in (minute, minute + horizon]. ``starts``: pair, minute."""
    if starts.empty or not len(rows_pair):
        return np.zeros(len(rows_pair), bool)
    M = 1 << 20
    keys = np.sort(starts["pair"].to_numpy(np.int64) * M + starts["minute"].to_numpy(np.int64))
    q = rows_pair.astype(np.int64) * M + rows_minute.astype(np.int64)
    i = np.searchsorted(keys, q, side="right")  # first start after the minute
    nxt = keys[np.minimum(i, len(keys) - 1)]
    return (i < len(keys)) & (nxt // M == rows_pair) & (nxt % M <= rows_minute + horizon)
