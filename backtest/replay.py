"""Backtest (`flashsale backtest`): replay the minute KPI job over a simulated flash sale and score it.

The sale runs in-process (ray_gen.observe.ObservedBackend: no Ray, no store). After every simulated
minute t the KPI job's run at as-of = end of minute t is replayed on that minute's fact records with
the job's own functions and the same KpiParams (kpi/rules.py: ``sku_kpis``,
``product_group_kpis``, ``update_alerts``). Only two trivial steps of the job's Spark SQL are mirrored
here (`Replay.ingest`, `Replay.inbound_in`): units per product x warehouse x minute (`HAVING units > 0`)
and the latest inventory event per pair (`GREATEST(on_hand - reserved, 0)`, its inbound aged to the
as-of). tests/unit/test_backtest.py runs
spark.kpi_job.compute() on a replayed window and checks the per-SKU KPIs are the same.

Archive baseline: in steady state the job reads the archive of earlier days. The backtest gives it
`history_hours` of normal-day history (`history_baseline`: Poisson units per pair and archived hour
at the catalogue's normal-day rate, drawn from their own random stream, turned into the baseline by
the job's kpi.baseline.baseline_from_table); history_hours=0 is a first day without archive.

Ground truth comes from the simulator's inventory state (on hand - reserved of every pair after every
minute), never from the KPI code.

Definitions (minute t = the KPI run at the end of simulated minute t, seeing data up to t):
- Stockout event: pair k's available stock is > 0 after minute s-1 and <= 0 after minute s. Its
  "back in stock" minute r is 0 for the pair's first event, else the first minute with stock after the
  pair's previous stockout.
- Alert episode: a maximal run of minutes [a, b] in which pair k has an open alert (any status, any
  action, `monitor` included: what the dashboard shows). For the naive baseline: minutes in which its
  rule holds.
- Lead time of an event: if an episode is open at run s-1 (the last run before the stock hit zero),
  lead = s - max(a, r); otherwise the event was missed. recall@L = events with lead >= L / all events.
  Median lead is over the detected events.
- An episode is *reactive* if the pair was already out of stock at its first minute (p_stockout = 1
  for an empty shelf: it reports, not predicts); reactive episodes are counted, not scored.
  A predictive episode is a true positive if the pair stocks out at some s with a < s <= b + H
  (H = action horizon: the prediction "out within H" was re-issued every minute up to b); a false
  positive if it did not and b + H is within the run; otherwise pending (the run ended too early to
  know; excluded). precision = TP / (TP + FP); false alarms per hour = FP / simulated hours.
  ``precision_strict`` also reported: TP only if the stockout comes within H of the opening (a < s <= a + H).
- Naive baseline: ETA = available / (units sold in the last 15 minutes / 15); it alerts whenever
  ETA < H (an empty shelf: ETA 0).
- Oracle (a yardstick, not a contender, and not a strict ceiling: the radar, which ignores inbound stock,
  reaches more recall at far less precision): knows each pair's expected demand over the next H minutes from
  the simulator's own model (normal-day rate x flash curve x warehouse pressure x scarcity boost, the
  last two held at their current values), counts
  the restocks on their way as the KPI job can (inventory_fact's inbound fields) and alerts while
  P(stockout within H) >= kpi_high_risk_p. What it misses
  is Poisson noise no forecaster can see. Its threshold is also swept (``ORACLE_FRONTIER_P``, result
  ``oracle_frontier``): the precision-recall frontier of alerting on the true expected demand.

Closed loop (``act=True``): an operator follows the open alerts, not those clearing (ActionDesk): ``restock`` and
``pause_ads`` order ``suggested_units`` once per pair while none is in flight (the restock lands
after the simulator's action lead time); ``reroute`` sends the pair's demand to the donor and
``pause_ads`` thins the SKU's demand while the alert says so (ray_gen/actions.py). The same seed is
run with and without acting; stockout-minutes and lost revenue (requests that met an empty shelf)
are compared, and so is the demand paused ads suppressed (it brings no revenue either).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kpi.rules import KpiParams, product_group_kpis, sale_lift, sku_kpis, update_alerts
from ray_gen.actions import Interventions
from ray_gen.catalogue import build_catalogue
from ray_gen.params import SimParams
from ray_gen.streams import HISTORY, rng_for

if TYPE_CHECKING:
    from ray_gen.engine import Progress

NAIVE_WINDOW_MINUTES = 15  # the naive baseline's velocity: a plain 15-minute average
# the oracle's alert threshold swept: the precision-recall trade-off of alerting on the true expected demand
ORACLE_FRONTIER_P = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
DEFAULT_MIN_LEAD_MINUTES = 15


# ---------------------------------------------------------------- the KPI job, replayed
def history_baseline(p: SimParams, hours: int) -> pd.DataFrame:
    """The archive baseline after `hours` archived hours of a normal day (see the module doc)."""
    from kpi.baseline import baseline_from_table, empty_baseline

    if hours <= 0:
        return empty_baseline()
    cat = build_catalogue(p)
    units = rng_for(p.seed, HISTORY).poisson(cat.baseline_rate.reshape(-1) * 60.0, size=(hours, cat.baseline_rate.size))
    hour, pair = np.nonzero(units)  # the archive holds rows only where something sold
    starts = [p.start - timedelta(hours=hours - h) for h in range(hours)]  # the archived hours, before the sale
    table = pa.table(
        {
            "product_id": pair % cat.n_products,
            "warehouse_id": pair // cat.n_products,
            "order_qty": units[hour, pair],
            "date": np.array([s.date().isoformat() for s in starts])[hour],
            "hour": np.array([f"{s.hour:02d}" for s in starts])[hour],
        }
    )
    return baseline_from_table(table)


class Replay:
    """The KPI job's inputs rebuilt from fact records, and the job's own functions run on them."""

    def __init__(self, p: SimParams, params: KpiParams, baseline: pd.DataFrame | None = None):
        cat = build_catalogue(p)
        self.params = params
        self.n_products, self.n_warehouses = cat.n_products, cat.n_warehouses
        self.n_pairs = self.n_products * self.n_warehouses
        self.start_ms = int(p.start.timestamp() * 1000)
        # the job's join warehouses_dim -> cities_dim (ray_gen.catalogue.dimension_records builds the same)
        self.wh_city = np.array([cat.city_name[int(c)] for c in cat.warehouse_city], dtype=object)
        self.wh_province = np.array([cat.city_province[int(c)] for c in cat.warehouse_city], dtype=object)
        self.keep = max(params.window_minutes, NAIVE_WINDOW_MINUTES)
        self.by_minute: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # minute -> (pair, units)
        self.available = np.zeros(self.n_pairs, dtype=np.int64)
        self.inbound = np.zeros(self.n_pairs, dtype=np.int64)
        self.inbound_due = np.zeros(self.n_pairs)  # minutes after the pair's latest event (its inventory_ts)
        self.inventory_ms = np.zeros(self.n_pairs, dtype=np.int64)
        self.as_of_ms = self.start_ms
        self.known = np.zeros(self.n_pairs, dtype=bool)  # pairs with an inventory event so far
        self.alert_state: dict = {}
        # the job LEFT JOINs the baseline: pairs the archive never saw have NaN (no prior)
        self.baseline = np.full(self.n_pairs, np.nan)
        self.baseline_frame = baseline
        if baseline is not None and len(baseline):
            self.baseline[self.pairs(baseline["warehouse_id"].to_numpy(), baseline["product_id"].to_numpy())] = (
                baseline["baseline_velocity"].to_numpy(dtype=float)
            )
        # pairs without sales in the window: their KPIs depend only on (available, baseline), so their
        # risk is recomputed (by sku_kpis) only when their stock changes; -1 = not evaluated as quiet
        self.quiet_available = np.full(self.n_pairs, -1, dtype=np.int64)
        self.quiet_inbound = np.full(self.n_pairs, -1, dtype=np.int64)
        self.quiet_risky = np.zeros(self.n_pairs, dtype=bool)

    # pair key = warehouse * n_products + product (the simulator's flat layout)
    def pairs(self, warehouse, product) -> np.ndarray:
        return np.asarray(warehouse, dtype=np.int64) * self.n_products + np.asarray(product, dtype=np.int64)

    def ingest(self, orders: pa.Table, inventory: pa.Table) -> None:
        """Mirror of the job's two early steps: units per product x warehouse x minute, latest inventory per pair."""
        if orders.num_rows:
            minute = (orders["order_ts"].cast(pa.int64()).to_numpy() - self.start_ms) // 60_000
            flat = self.pairs(orders["warehouse_id"].to_numpy(), orders["product_id"].to_numpy())
            qty = orders["order_qty"].to_numpy()
            for m in np.unique(minute):
                sel = minute == m
                keys, inv = np.unique(flat[sel], return_inverse=True)
                units = np.bincount(inv, weights=qty[sel]).astype(np.int64)
                if int(m) in self.by_minute:  # late records for a minute already seen
                    k0, u0 = self.by_minute[int(m)]
                    keys, inv = np.unique(np.r_[k0, keys], return_inverse=True)
                    units = np.bincount(inv, weights=np.r_[u0, units]).astype(np.int64)
                self.by_minute[int(m)] = (keys[units > 0], units[units > 0])
        if inventory.num_rows:
            # the newest event wins (ROW_NUMBER ... ORDER BY inventory_ts DESC); stable sort keeps record order on ties
            ts = inventory["inventory_ts"].cast(pa.int64()).to_numpy()
            order = np.argsort(ts, kind="stable")
            flat = self.pairs(inventory["warehouse_id"].to_numpy(), inventory["product_id"].to_numpy())[order]
            avail = (inventory["inventory_on_hand"].to_numpy() - inventory["reserved_stock"].to_numpy())[order]
            self.available[flat] = np.maximum(avail, 0)  # numpy assigns in order: the last (newest) wins
            self.inbound[flat] = inventory["inbound_units"].to_numpy()[order]
            self.inbound_due[flat] = inventory["inbound_due_minutes"].to_numpy()[order]
            self.inventory_ms[flat] = ts[order]
            self.known[flat] = True
        if self.by_minute:
            newest = max(self.by_minute)
            for m in [m for m in self.by_minute if m <= newest - self.keep]:
                del self.by_minute[m]

    def window(self, t: int) -> pd.DataFrame:
        """The job's order_minutes for the run at the end of minute t: product, warehouse, minute_idx, units."""
        W = self.params.window_minutes
        parts = [(m, *self.by_minute[m]) for m in range(t - W + 1, t + 1) if m in self.by_minute]
        if not parts:
            return pd.DataFrame(
                {c: pd.Series(dtype="int64") for c in ("product_id", "warehouse_id", "minute_idx", "units")}
            )
        flat = np.concatenate([k for _, k, _ in parts])
        return pd.DataFrame(
            {
                "product_id": flat % self.n_products,
                "warehouse_id": flat // self.n_products,
                "minute_idx": np.concatenate([np.full(len(k), m - (t - W + 1)) for m, k, _ in parts]),
                "units": np.concatenate([u for _, _, u in parts]),
            }
        )

    def state(self, flat: np.ndarray) -> pd.DataFrame:
        """The job's inventory state rows (latest inventory joined with the dims) for these pairs."""
        flat = flat[self.known[flat]]
        w = flat // self.n_products
        return pd.DataFrame(
            {
                "product_id": flat % self.n_products,
                "warehouse_id": w,
                "available": self.available[flat],
                "inbound_units": self.inbound[flat],
                "inbound_in_min": self.inbound_in(flat),
                "city": self.wh_city[w],
                "province": self.wh_province[w],
                "baseline_velocity": self.baseline[flat],
            }
        )

    def inbound_in(self, flat: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Minutes from the as-of until the pairs' inbound lands: the job's
        GREATEST(inbound_due_minutes - (as-of - inventory_ts) / 60000, 0)."""
        return np.maximum(self.inbound_due[flat] - (self.as_of_ms - self.inventory_ms[flat]).astype(float) / 60000, 0.0)

    def _alert_pairs(self) -> np.ndarray:
        return np.array(
            [int(w) * self.n_products + int(p) for p, w in (k.split(":") for k in self.alert_state)], dtype=np.int64
        )

    def kpis(self, t: int) -> pd.DataFrame:
        """product_group_kpis for every product that has something to say at the run ending minute t.

        The job runs it on every product group. A group whose pairs are all low risk and hold no alert
        yields nothing the job reports (low risk: no action; update_alerts skips it), so here
        ``sku_kpis`` first screens the pairs (sold in the window, or quiet but found non-low, or
        alerted), then the whole group (every warehouse: reroute donors) of each product with a
        non-low pair or an alert goes through ``product_group_kpis``. A quiet pair (no sales in the
        window) has an all-zero series, so its risk changes only with its stock: it is re-screened
        (by sku_kpis, on no minutes) only then.
        """
        mins = self.window(t)
        self.as_of_ms = self.start_ms + (t + 1) * 60_000  # the run at the end of minute t
        params = replace(self.params, sale_lift=sale_lift(mins, self.baseline_frame, self.params))
        alerted = self._alert_pairs()
        sold = np.zeros(self.n_pairs, dtype=bool)
        sold[self.pairs(mins["warehouse_id"].to_numpy(), mins["product_id"].to_numpy())] = True
        # (an inbound landing nearer only lowers a quiet pair's risk: re-screening on a change of stock or
        # inbound is enough; a moving sale-wide lift moves every quiet pair's risk)
        changed = (
            (self.quiet_available != self.available) | (self.quiet_inbound != self.inbound) | (params.lift_minutes > 0)
        )
        stale = np.flatnonzero(self.known & ~sold & changed)
        if len(stale):
            quiet = sku_kpis(mins.iloc[:0], self.state(stale), params)
            self.quiet_risky[stale] = quiet["risk"].to_numpy() != "low"
            self.quiet_available[stale] = self.available[stale]
            self.quiet_inbound[stale] = self.inbound[stale]
        self.quiet_available[sold] = -1  # re-screen once it turns quiet
        screen = np.unique(np.concatenate([np.flatnonzero(sold), np.flatnonzero(self.quiet_risky & ~sold), alerted]))
        screened = sku_kpis(mins, self.state(screen), params)
        products = np.unique(
            np.concatenate(
                [
                    screened.loc[screened["risk"] != "low", "product_id"].to_numpy(dtype=np.int64),
                    alerted % self.n_products,
                ]
            )
        )
        group = (np.arange(self.n_warehouses, dtype=np.int64)[None, :] * self.n_products + products[:, None]).ravel()
        return product_group_kpis(mins[mins["product_id"].isin(products)], self.state(np.sort(group)), params)

    def run(self, t: int, now_iso: str) -> tuple[pd.DataFrame, list[dict]]:
        """One KPI run: (per-SKU KPIs of the products with something to say, open alerts after hysteresis)."""
        skus = self.kpis(t)
        # update_alerts ignores low-risk pairs without an alert: hand it only the others (same result, less work)
        ids = skus["product_id"].astype(str) + ":" + skus["warehouse_id"].astype(str)
        relevant = skus[(skus["risk"] != "low") | ids.isin(self.alert_state.keys())]
        alerts, self.alert_state = update_alerts(relevant, self.alert_state, now_iso, self.params)
        return skus, alerts

    def alert_mask(self, alerts: list[dict]) -> np.ndarray:
        mask = np.zeros(self.n_pairs, dtype=bool)
        if alerts:
            mask[self.pairs([a["warehouse_id"] for a in alerts], [a["product_id"] for a in alerts])] = True
        return mask

    def naive_alerts(self, t: int) -> np.ndarray:
        """The naive baseline at the run ending minute t: available / 15-minute average velocity < H."""
        return naive_alerts(
            self.units_last(t, NAIVE_WINDOW_MINUTES),
            self.available,
            self.known,
            self.params.horizon_minutes,
            NAIVE_WINDOW_MINUTES,
        )

    def units_last(self, t: int, minutes: int) -> np.ndarray:
        units = np.zeros(self.n_pairs, dtype=np.int64)
        for m in range(t - minutes + 1, t + 1):
            if m in self.by_minute:
                k, u = self.by_minute[m]
                units[k] += u  # keys are unique within a minute
        return units


def oracle_alerts(
    p: SimParams,
    params: KpiParams,
    available: np.ndarray,
    t: int,
    inbound: np.ndarray | int = 0,
    inbound_in: np.ndarray | float = 0.0,
    load: np.ndarray | None = None,
) -> np.ndarray:
    """The oracle at the run ending minute t: alerts where oracle_p >= kpi_high_risk_p."""
    return oracle_p(p, params, available, t, inbound, inbound_in, load) >= params.high_p


def oracle_p(
    p: SimParams,
    params: KpiParams,
    available: np.ndarray,
    t: int,
    inbound: np.ndarray | int = 0,
    inbound_in: np.ndarray | float = 0.0,
    load: np.ndarray | None = None,
) -> np.ndarray:
    """The oracle's P(stockout within H) at the run ending minute t (see the module doc):
    P(Poisson(expected demand) >= available), with the inbound restocks counted the way the KPI job
    counts them (kpi_rules' module doc). Expected demand is the simulator's own: the normal-day rate x
    the flash curve x each warehouse's pressure (from ``load``, its last minute's orders / capacity;
    None: no pressure) x the pair's share of its warehouse's clicks under the scarcity boost, all held
    at their current values over the horizon."""
    from kpi.rules import p_out_with_inbound
    from ray_gen.model import flash_intensity, scarcity_multiplier, warehouse_pressure

    H = int(round(params.horizon_minutes))
    cat = build_catalogue(p)
    boost = scarcity_multiplier(available.reshape(cat.baseline_rate.shape), p)
    share = boost / (cat.choice_weight[None, :] * boost).sum(axis=1, keepdims=True)  # choice_cdf's normalisation
    pressure = warehouse_pressure(load, p)[:, None] if load is not None else 1.0
    rate = (cat.baseline_rate * share * pressure).reshape(-1)
    cum = np.r_[0.0, np.cumsum(flash_intensity(p.flash, np.arange(t + 1, t + 1 + H)))]  # intensity-minutes ahead
    d = np.clip(np.rint(inbound_in), 0, H).astype(np.int64)
    q = np.maximum(available, 1).astype(float)
    return np.where(
        available <= 0,
        1.0,
        p_out_with_inbound(q, np.broadcast_to(inbound, q.shape).astype(float), rate * cum[d], rate * cum[H]),
    )


def naive_alerts(
    units: np.ndarray, available: np.ndarray, known: np.ndarray, horizon: float, window: int
) -> np.ndarray:
    """ETA = available / (units / window); alert when ETA < horizon. An empty shelf has ETA 0; no sales and
    stock: no ETA, no alert."""
    velocity = units / window
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(
            available <= 0, 0.0, np.where(velocity > 0, available / np.where(velocity > 0, velocity, 1), np.inf)
        )
    return known & (eta < horizon)


# ---------------------------------------------------------------- episodes and scoring (pure)
class Episodes:
    """Maximal runs of minutes in which a per-pair condition holds: rows (key, start, end)."""

    def __init__(self, n: int):
        self.since = np.full(n, -1, dtype=np.int64)
        self._done: list[tuple[np.ndarray, np.ndarray, int]] = []

    def update(self, minute: int, holds: np.ndarray) -> None:
        opened = holds & (self.since < 0)
        self.since[opened] = minute
        closed = np.flatnonzero(~holds & (self.since >= 0))
        if len(closed):
            self._done.append((closed, self.since[closed].copy(), minute - 1))
            self.since[closed] = -1

    def current(self) -> int:
        return int((self.since >= 0).sum())

    def frame(self, last_minute: int) -> pd.DataFrame:
        """Every episode so far; those still holding end at last_minute."""
        still = np.flatnonzero(self.since >= 0)
        parts = self._done + ([(still, self.since[still], last_minute)] if len(still) else [])
        if not parts:
            return pd.DataFrame(
                {"key": pd.Series(dtype="int64"), "start": pd.Series(dtype="int64"), "end": pd.Series(dtype="int64")}
            )
        return pd.DataFrame(
            {
                "key": np.concatenate([k for k, _, _ in parts]),
                "start": np.concatenate([s for _, s, _ in parts]),
                "end": np.concatenate([np.full(len(k), e, dtype=np.int64) for k, _, e in parts]),
            }
        ).sort_values(["key", "start"], ignore_index=True)


def score(
    alerts: pd.DataFrame, outs: pd.DataFrame, minutes: int, horizon: float, min_lead: int = DEFAULT_MIN_LEAD_MINUTES
) -> dict:
    """Score alert episodes against stockout episodes (both: key, start, end) by the module's definitions."""
    last = minutes - 1
    outs = outs.sort_values(["key", "start"], ignore_index=True).copy()
    prev_end = outs.groupby("key")["end"].shift(1)
    outs["back"] = (prev_end + 1).fillna(0).astype("int64")
    outs["event"] = np.arange(len(outs))
    al = alerts.rename(columns={"start": "a", "end": "b"}).reset_index(drop=True)
    al["episode"] = np.arange(len(al))

    # lead time of each stockout event: the episode open at run s-1
    m = outs.merge(al, on="key", how="inner")
    m = m[(m["a"] <= m["start"] - 1) & (m["start"] - 1 <= m["b"])]
    lead = pd.Series(np.nan, index=outs["event"], dtype=float)
    lead[m["event"].to_numpy()] = (m["start"] - np.maximum(m["a"], m["back"])).to_numpy(dtype=float)
    detected = lead.dropna()

    # each alert episode against the pair's stockouts
    x = al.merge(outs[["key", "start", "end"]], on="key", how="left")
    reactive = ((x["start"] <= x["a"]) & (x["a"] <= x["end"])).groupby(x["episode"]).any()
    tp = ((x["start"] > x["a"]) & (x["start"] <= x["b"] + horizon)).groupby(x["episode"]).any()
    tp_strict = ((x["start"] > x["a"]) & (x["start"] <= x["a"] + horizon)).groupby(x["episode"]).any()
    b = al.set_index("episode")["b"]
    a = al.set_index("episode")["a"]
    predictive = ~reactive
    n_tp = int((predictive & tp).sum())
    n_fp = int((predictive & ~tp & (b + horizon <= last)).sum())
    n_tp_s = int((predictive & tp_strict).sum())
    n_fp_s = int((predictive & ~tp_strict & (a + horizon <= last)).sum())
    hours = minutes / 60.0
    return {
        "stockouts": int(len(outs)),
        "detected": int(len(detected)),
        f"recall_at_{min_lead}min": _ratio(int((detected >= min_lead).sum()), len(outs)),
        "recall_any_lead": _ratio(len(detected), len(outs)),
        "median_lead_min": float(detected.median()) if len(detected) else None,
        "alert_episodes": int(len(al)),
        "reactive_episodes": int(reactive.sum()),
        "true_positives": n_tp,
        "false_positives": n_fp,
        "pending_episodes": int(predictive.sum()) - n_tp - n_fp,
        "precision": _ratio(n_tp, n_tp + n_fp),
        "precision_strict": _ratio(n_tp_s, n_tp_s + n_fp_s),
        "false_alarms_per_hour": round(n_fp / hours, 3) if hours else None,
        "leads_min": [int(v) for v in detected.to_numpy()],
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# ---------------------------------------------------------------- closed loop: an operator following the radar
@dataclass
class ActionDesk:
    """Turns the open alerts into Interventions, the way an operator following the radar would."""

    n_products: int
    lead_minutes: int
    in_flight: dict[int, int] = field(default_factory=dict)  # pair -> minute its radar restock lands
    counts: dict[str, int] = field(
        default_factory=lambda: {"restock_orders": 0, "restock_units": 0, "reroute_minutes": 0, "pause_minutes": 0}
    )

    def plan(self, minute: int, alerts: list[dict]) -> Interventions:
        """What is in force from `minute` on, given the alerts of the run that just ended."""
        self.in_flight = {k: due for k, due in self.in_flight.items() if due > minute}
        restocks, reroutes, pauses = [], [], []
        for a in alerts:
            if a.get("status") == "clearing":  # the risk has passed; the alert only stays up against flapping
                continue
            w, pid, n = a["warehouse_id"], a["product_id"], a["numbers"]
            key = w * self.n_products + pid
            if (
                a["action"] in ("restock", "pause_ads")
                and (n.get("suggested_units") or 0) > 0
                and key not in self.in_flight
            ):
                restocks.append((w, pid, n["suggested_units"]))
                self.in_flight[key] = minute + self.lead_minutes
            if a["action"] == "reroute" and n.get("reroute_from_warehouse_id") is not None:
                reroutes.append((w, pid, n["reroute_from_warehouse_id"]))
            if a["action"] == "pause_ads":
                pauses.append((w, pid))
        self.counts["restock_orders"] += len(restocks)
        self.counts["restock_units"] += sum(u for _, _, u in restocks)
        self.counts["reroute_minutes"] += len(reroutes)
        self.counts["pause_minutes"] += len(pauses)
        return Interventions(
            restocks=np.asarray(restocks, dtype=np.int64),
            reroutes=np.asarray(reroutes, dtype=np.int64),
            pauses=np.asarray(pauses, dtype=np.int64),
        )


# ---------------------------------------------------------------- one simulated sale with the radar watching
@dataclass
class SaleRun:
    progress: Progress
    truth: pd.DataFrame  # stockout episodes
    radar: pd.DataFrame  # KPI alert episodes
    naive: pd.DataFrame  # naive-baseline alert episodes
    oracle: pd.DataFrame  # oracle alert episodes
    oracle_frontier: dict[float, pd.DataFrame]  # oracle alert episodes at each ORACLE_FRONTIER_P threshold
    series: dict[str, list]
    snapshots: dict[int, pd.DataFrame]
    desk: dict | None
    interrupted: bool


def simulate(
    p: SimParams,
    params: KpiParams,
    *,
    baseline: pd.DataFrame | None = None,
    act: bool = False,
    on_progress: Callable | None = None,
    snapshot_minutes: frozenset[int] = frozenset(),
    should_stop: Callable[[], bool] = lambda: False,
) -> SaleRun:
    """Run the sale in-process with the KPI job replayed after every minute (and its actions applied if act)."""
    from ray_gen.engine import run
    from ray_gen.observe import ObservedBackend
    from ray_gen.sinks import SinkSpec

    backend = ObservedBackend()
    replay = Replay(p, params, baseline)
    truth, radar, naive, oracle = (Episodes(replay.n_pairs) for _ in range(4))
    frontier = {level: Episodes(replay.n_pairs) for level in ORACLE_FRONTIER_P}
    desk = ActionDesk(replay.n_products, p.action_restock_lead_minutes) if act else None
    planned: dict[int, Interventions] = {}
    snapshots: dict[int, pd.DataFrame] = {}
    series: dict[str, list] = {
        k: []
        for k in (
            "orders",
            "units",
            "stocked_out_pairs",
            "new_stockouts",
            "radar_alerts",
            "naive_alerts",
            "lost_revenue_cum",
            "revenue_cum",
        )
    }

    def observe(progress) -> None:
        t = progress.minute
        facts = backend.take_facts()
        replay.ingest(facts["orders_fact"], facts["inventory_fact"])
        stock = backend.available().reshape(-1)
        # the replay's inventory (rebuilt from records) must be the simulator's own state
        if not np.array_equal(replay.available, np.maximum(stock, 0)) or not replay.known.all():
            raise AssertionError(f"minute {t}: inventory rebuilt from the records differs from the simulator's state")
        truth.update(t, stock <= 0)
        skus, alerts = replay.run(t, (p.start + timedelta(minutes=t + 1)).isoformat())
        if t in snapshot_minutes:
            snapshots[t] = skus
        radar.update(t, replay.alert_mask(alerts))
        naive_mask = replay.naive_alerts(t)
        naive.update(t, naive_mask)
        prob = oracle_p(p, params, replay.available, t, replay.inbound, replay.inbound_in(), backend.load())
        oracle.update(t, prob >= params.high_p)
        for level, episodes in frontier.items():
            episodes.update(t, prob >= level)
        if desk is not None:
            planned[t + 1] = desk.plan(t + 1, alerts)
        o = facts["orders_fact"]
        series["orders"].append(o.num_rows)
        series["units"].append(int(pc.sum(o["order_qty"]).as_py() or 0))
        series["stocked_out_pairs"].append(truth.current())
        series["new_stockouts"].append(int((truth.since == t).sum()))
        series["radar_alerts"].append(len(alerts))
        series["naive_alerts"].append(int(naive_mask.sum()))
        series["lost_revenue_cum"].append(round(progress.lost_revenue, 2))
        series["revenue_cum"].append(round(progress.revenue, 2))
        if on_progress:
            on_progress(progress)

    progress, _, interrupted = run(
        p,
        SinkSpec("null"),
        backend,
        on_progress=observe,
        max_in_flight=0,
        should_stop=should_stop,
        interventions=(lambda m: planned.pop(m, None)) if act else None,
    )
    last = progress.minute
    return SaleRun(
        progress=progress,
        truth=truth.frame(last),
        radar=radar.frame(last),
        naive=naive.frame(last),
        oracle=oracle.frame(last),
        oracle_frontier={k: e.frame(last) for k, e in frontier.items()},
        series=series,
        snapshots=snapshots,
        desk=dict(desk.counts) if desk else None,
        interrupted=interrupted,
    )


def outcome(run: SaleRun) -> dict:
    """What a sale cost: stockout-minutes and lost revenue (and what else changed)."""
    pr = run.progress
    return {
        "stockout_events": pr.stockouts,
        "stockout_minutes": pr.stockout_minutes,
        "lost_revenue": round(pr.lost_revenue, 2),
        "lost_orders": pr.lost_orders,
        "lost_units": pr.lost_units,
        "revenue": round(pr.revenue, 2),
        "orders": pr.orders,
        "suppressed_requests": pr.suppressed_requests,
        "suppressed_revenue": round(pr.suppressed_revenue, 2),
        # demand that brought no revenue: met an empty shelf, or never came because its ads were paused
        "unserved_revenue": round(pr.lost_revenue + pr.suppressed_revenue, 2),
        **({"actions": run.desk} if run.desk is not None else {}),
    }


def backtest(
    p: SimParams,
    params: KpiParams,
    *,
    history_hours: int = 24,
    act: bool = False,
    min_lead: int = DEFAULT_MIN_LEAD_MINUTES,
    progress: Callable[[str], ContextManager[Callable | None]] = lambda label: nullcontext(),
) -> dict:
    """Score the radar and the naive baseline on an open-loop sale; with act, also run the closed loop.

    ``progress(label)`` is entered around each simulated sale and yields its per-minute callback."""
    import time

    t0 = time.monotonic()
    baseline = history_baseline(p, history_hours)
    with progress("open loop (radar watching, nobody acting)") as bar:
        sale = simulate(p, params, baseline=baseline, on_progress=bar)
    minutes = sale.progress.minute + 1
    result: dict[str, Any] = {
        "sim": p.model_dump(mode="json"),
        "kpi_params": params.as_dict(),
        "min_lead_min": min_lead,
        "history_hours": history_hours,
        "baseline_pairs": int(len(baseline)),
        "simulated_minutes": minutes,
        "pairs": build_catalogue(p).n_products * p.n_warehouses,
        "radar": score(sale.radar, sale.truth, minutes, params.horizon_minutes, min_lead),
        "naive_baseline": score(sale.naive, sale.truth, minutes, params.horizon_minutes, min_lead),
        "oracle": score(sale.oracle, sale.truth, minutes, params.horizon_minutes, min_lead),
        "oracle_frontier": frontier_points(sale, minutes, params.horizon_minutes, min_lead),
        "open_loop": outcome(sale),
        "series": {"open_loop": sale.series},
    }
    if act:
        with progress("closed loop (same seed, acting on the radar's alerts)") as bar:
            closed = simulate(p, params, baseline=baseline, act=True, on_progress=bar)
        result["closed_loop"] = outcome(closed)
        result["series"]["closed_loop"] = {
            k: closed.series[k] for k in ("stocked_out_pairs", "lost_revenue_cum", "revenue_cum", "radar_alerts")
        }
        o, c = result["open_loop"], result["closed_loop"]
        result["closed_loop_change"] = {
            k: _change(o[k], c[k])
            for k in ("stockout_minutes", "lost_revenue", "stockout_events", "revenue", "unserved_revenue")
        }
    result["goals"] = goals(result, min_lead)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def frontier_points(sale: SaleRun, minutes: int, horizon: float, min_lead: int) -> list[dict]:
    """The oracle's recall and precision at each swept threshold."""
    keep = (f"recall_at_{min_lead}min", "recall_any_lead", "precision", "false_alarms_per_hour")
    return [
        {"p_threshold": level, **{k: score(ep, sale.truth, minutes, horizon, min_lead)[k] for k in keep}}
        for level, ep in sale.oracle_frontier.items()
    ]


def _change(before: float, after: float) -> float | None:
    return round((after - before) / before, 4) if before else None


def goals(result: dict, min_lead: int) -> dict:
    """The issue's goals: recall >= 0.9 at >= min_lead, precision >= 0.8, better than the naive baseline on both."""
    r, n = result["radar"], result["naive_baseline"]
    rk = f"recall_at_{min_lead}min"

    def ge(x, y):
        return x is not None and y is not None and x >= y

    def gt(x, y):
        return x is not None and (y is None or x > y)

    return {
        "recall_ge_0.9": ge(r[rk], 0.9),
        "precision_ge_0.8": ge(r["precision"], 0.8),
        "recall_beats_baseline": gt(r[rk], n[rk]),
        "precision_beats_baseline": gt(r["precision"], n["precision"]),
    }


def jsonable(obj):
    """numpy/NaN-free copy for json.dumps."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
