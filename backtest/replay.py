"""Backtest (`flashsale backtest`): replay the minute KPI job over simulated sales and judge its advice.

The sale runs in-process (ray_gen.observe.ObservedBackend: no Ray, no store). After every simulated
minute t the KPI job's run at as-of = end of minute t is replayed on that minute's fact records with
the job's own functions and the same KpiParams (kpi/rules.py: ``sku_kpis``, ``product_group_kpis``,
``update_alerts``, ``action_queue``). Only two trivial steps of the job's Spark SQL are mirrored here
(`Replay.ingest`, `Replay.inbound_in`): units and orders per product x warehouse x minute and the latest
inventory event per pair. tests/integration/test_backtest_spark.py runs spark.kpi_job.compute() on a
replayed window and checks the per-SKU KPIs are the same.

What the radar may know, as in production: the archive of normal days before the sale
(``history_baseline``: ray_gen.history's simulated normal days, no sale discounts, popularity drifting
day to day) and the sale calendar the business publishes (``planned_calendar``: ray_gen.sale_plan, the
events' times with a planner's error on their size). Never the simulator's parameters.

Ground truth comes from the simulator's inventory state (on hand - reserved of every pair after every
minute), never from the KPI code. A stockout event is a pair's available stock going from > 0 to <= 0;
its weight is the revenue the empty shelf turns away (the pair's true expected demand value per minute
when it emptied x its minutes out).

Judged (backtest/judge.py, backtest/metrics.py): the radar, a naive baseline and an oracle, each turning
its P(stockout within H) into alerts and a queue with the same rules. Forecast quality on every
``eval_every``-th minute for every pair in stock (label: a stockout starts within H); the queue every
minute. The figures come from one frame (``predictions_frame``) that ``flashsale backtest --predictions``
writes, so anyone can recompute them (``figures``).

Closed loop (``closed_loop``): the same seed (same random streams: the same buyers) run without and with an
operator working the queue (``ActionDesk``: restocks land after the simulator's lead time, transfers after
its transfer time, paused ads thin the SKU's demand and move part of it to substitutes); every cost is
counted (restock and transfer fixed + per unit, ad spend saved) and unserved demand is lost + suppressed.
Paired over several seeds, with a 95 % t-interval of the per-seed relative changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from backtest.judge import NAIVE_WINDOW_MINUTES  # the replay keeps the naive baseline's window too
from flashsale.calendar import SaleEvent
from kpi.rules import (
    KpiParams,
    alert_candidates,
    product_group_kpis,
    run_params,
    sku_kpis,
    update_alerts,
    warehouse_normal,
    warehouse_status,
)
from ray_gen.actions import Interventions
from ray_gen.catalogue import build_catalogue
from ray_gen.params import SimParams

if TYPE_CHECKING:
    from ray_gen.engine import Progress

# the oracle's alert threshold swept: the precision-recall trade-off of alerting on the true expected demand


# ---------------------------------------------------------------- the KPI job, replayed
def history_baseline(p: SimParams, hours: int) -> pd.DataFrame:
    """The archive baseline after `hours` archived hours of simulated normal days before the sale (see the
    module doc): no sale discounts, no flash curve, each product's popularity drifting day to day."""
    from kpi.baseline import baseline_from_table, empty_baseline
    from ray_gen.history import normal_day_units

    if hours <= 0:
        return empty_baseline()
    return baseline_from_table(normal_day_units(p, hours))


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
        # the job's join with products_dim: category name and selling price (base x (1 - discount))
        self.category = np.array([cat.category_name[int(c)] for c in cat.category], dtype=object)
        self.product_category = pd.Series(self.category, index=np.arange(cat.n_products))
        self.unit_price = cat.discounted_price()
        self.product_discount = pd.Series(np.asarray(cat.discount, dtype=float), index=np.arange(cat.n_products))
        # the job's warehouses frame: capacity from warehouses_dim, the latest mean fulfillment delay of its pairs
        self.capacity = np.asarray(cat.warehouse_capacity, dtype=np.int64)
        self.delay = np.full(self.n_pairs, np.nan)
        self.keep = max(params.window_minutes, NAIVE_WINDOW_MINUTES)
        self.by_minute: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # minute -> (pair, units, orders)
        self.available = np.zeros(self.n_pairs, dtype=np.int64)
        self.inbound = np.zeros(self.n_pairs, dtype=np.int64)
        self.inbound_due = np.zeros(self.n_pairs)  # minutes after the pair's latest event (its inventory_ts)
        self.inventory_ms = np.zeros(self.n_pairs, dtype=np.int64)
        self.as_of_ms = self.start_ms
        self.known = np.zeros(self.n_pairs, dtype=bool)  # pairs with an inventory event so far
        self.alert_state: dict = {}
        self.last_window: pd.DataFrame = pd.DataFrame()  # the latest run's window and params (kpis)
        self.last_params: KpiParams = params
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
                n_orders = np.bincount(inv).astype(np.int64)
                if int(m) in self.by_minute:  # late records for a minute already seen
                    k0, u0, o0 = self.by_minute[int(m)]
                    keys, inv = np.unique(np.r_[k0, keys], return_inverse=True)
                    units = np.bincount(inv, weights=np.r_[u0, units]).astype(np.int64)
                    n_orders = np.bincount(inv, weights=np.r_[o0, n_orders]).astype(np.int64)
                keep = units > 0
                self.by_minute[int(m)] = (keys[keep], units[keep], n_orders[keep])
        if inventory.num_rows:
            # the newest event wins (ROW_NUMBER ... ORDER BY inventory_ts DESC); stable sort keeps record order on ties
            ts = inventory["inventory_ts"].cast(pa.int64()).to_numpy()
            order = np.argsort(ts, kind="stable")
            flat = self.pairs(inventory["warehouse_id"].to_numpy(), inventory["product_id"].to_numpy())[order]
            avail = (inventory["inventory_on_hand"].to_numpy() - inventory["reserved_stock"].to_numpy())[order]
            self.available[flat] = np.maximum(avail, 0)  # numpy assigns in order: the last (newest) wins
            self.inbound[flat] = inventory["inbound_units"].to_numpy()[order]
            self.inbound_due[flat] = inventory["inbound_due_minutes"].to_numpy()[order]
            self.delay[flat] = inventory["fulfillment_delay"].to_numpy()[order]
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
                {c: pd.Series(dtype="int64") for c in ("product_id", "warehouse_id", "minute_idx", "units", "orders")}
            )
        flat = np.concatenate([k for _, k, _, _ in parts])
        return pd.DataFrame(
            {
                "product_id": flat % self.n_products,
                "warehouse_id": flat // self.n_products,
                "minute_idx": np.concatenate([np.full(len(k), m - (t - W + 1)) for m, k, _, _ in parts]),
                "units": np.concatenate([u for _, _, u, _ in parts]),
                "orders": np.concatenate([o for _, _, _, o in parts]),
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
                "category": self.category[flat % self.n_products],
                "city": self.wh_city[w],
                "province": self.wh_province[w],
                "unit_price": self.unit_price[flat % self.n_products],
                "discount": self.product_discount.to_numpy()[flat % self.n_products],
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
        as_of = datetime.fromtimestamp(self.as_of_ms / 1000.0, UTC)
        params = run_params(self.params, as_of, mins, self.baseline_frame, self.product_category, self.product_discount)
        self.last_window, self.last_params = mins, params  # the judge scores the same run (evaluation_rows)
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
        alerts, self.alert_state = update_alerts(
            alert_candidates(skus, self.alert_state), self.alert_state, now_iso, self.params
        )
        return skus, alerts

    def warehouses(self) -> pd.DataFrame:
        """kpi.rules.warehouse_status on the latest run's window (the job's rollup, through the same function)."""
        mins = self.last_window
        cols = ["warehouse_id", "minute_idx", "orders"]
        load = (
            mins.groupby(["warehouse_id", "minute_idx"])["orders"].sum().reset_index()
            if len(mins)
            else pd.DataFrame({c: pd.Series(dtype="int64") for c in cols})
        )
        delay = pd.Series(self.delay).groupby(np.arange(self.n_pairs) // self.n_products).mean()
        wh = pd.DataFrame(
            {
                "warehouse_id": np.arange(self.n_warehouses, dtype=np.int64),
                "warehouse_name": [f"W{w}" for w in range(self.n_warehouses)],
                "city": self.wh_city,
                "province": self.wh_province,
                "capacity": self.capacity,
                "fulfillment_delay": delay.reindex(np.arange(self.n_warehouses)).to_numpy(dtype=float),
            }
        )
        normal = warehouse_normal(self.baseline_frame, self.last_params.units_per_order)
        return warehouse_status(load, wh, self.last_params, normal)

    def units_last(self, t: int, minutes: int) -> np.ndarray:
        units = np.zeros(self.n_pairs, dtype=np.int64)
        for m in range(t - minutes + 1, t + 1):
            if m in self.by_minute:
                k, u, _ = self.by_minute[m]
                units[k] += u  # keys are unique within a minute
        return units


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


# ---------------------------------------------------------------- closed loop: an operator following the radar
@dataclass
class ActionDesk:
    """Turns the queue into Interventions, the way an operator working it would: a restock (also behind a paused
    ad) and a transfer are placed once per pair while one is on its way; ads stay paused while the queue says so."""

    n_products: int
    lead_minutes: int
    transfer_minutes: int
    in_flight: dict[int, int] = field(default_factory=dict)  # pair -> minute its restock or transfer lands
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "restock_orders": 0,
            "restock_units": 0,
            "transfers": 0,
            "transfer_units": 0,
            "pause_minutes": 0,
        }
    )

    def plan(self, minute: int, queue: list[dict]) -> Interventions:
        """What is in force from `minute` on, given the queue of the run that just ended (at most
        ``kpi_queue_size`` items, by expected loss) and the empty shelves it lists apart."""
        self.in_flight = {k: due for k, due in self.in_flight.items() if due > minute}
        restocks, transfers, pauses = [], [], []
        for a in queue:
            if a.get("status") == "clearing":  # the risk has passed; the alert only stays up against flapping
                continue
            w, pid, n = a["warehouse_id"], a["product_id"], a["numbers"]
            key = w * self.n_products + pid
            need = int(n.get("suggested_units") or 0)
            if a["action"] in ("restock", "pause_ads") and need > 0 and key not in self.in_flight:
                restocks.append((w, pid, need))
                self.in_flight[key] = minute + self.lead_minutes
            donor, surplus = n.get("reroute_from_warehouse_id"), int(n.get("surplus_units") or 0)
            if a["action"] == "reroute" and donor is not None and surplus > 0 and key not in self.in_flight:
                units = min(surplus, max(need, 1))  # what the pair needs, never more than the donor spares
                transfers.append((w, pid, int(donor), units))
                self.in_flight[key] = minute + self.transfer_minutes
            if a["action"] == "pause_ads":
                pauses.append((w, pid))
        self.counts["restock_orders"] += len(restocks)
        self.counts["restock_units"] += sum(u for _, _, u in restocks)
        self.counts["transfers"] += len(transfers)
        self.counts["transfer_units"] += sum(u for *_, u in transfers)
        self.counts["pause_minutes"] += len(pauses)
        return Interventions(
            restocks=np.asarray(restocks, dtype=np.int64).reshape(-1, 3),
            reroutes=np.asarray(transfers, dtype=np.int64).reshape(-1, 4),
            pauses=np.asarray(pauses, dtype=np.int64).reshape(-1, 2),
        )


# ---------------------------------------------------------------- one simulated sale with the radar watching
@dataclass
class SaleRun:
    progress: Progress
    truth: pd.DataFrame  # stockout episodes: key (pair), start, end
    stockout_value: dict[tuple[int, int], float]  # (pair, start) -> revenue/min the empty shelf turns away
    queues: dict[str, pd.DataFrame]  # forecaster -> its queue rows: minute, pair, action, expected_loss
    predictions: pd.DataFrame  # eval minutes x pairs in stock: pair, minute, p_<forecaster>, eta, in_queue, action
    series: dict[str, list]
    snapshots: dict[int, pd.DataFrame]
    desk: dict | None
    interrupted: bool


def planned_calendar(p: SimParams) -> tuple[SaleEvent, ...]:
    """What the business publishes of this sale (ray_gen/sale_plan.py: the events' times, their lift and
    decay as a forecast with a planner's error, rounded), read the way the KPI job reads its setting."""
    from flashsale.calendar import parse_calendar
    from ray_gen.sale_plan import planned_calendar_json

    return parse_calendar(planned_calendar_json(p))


def true_rates(p: SimParams, cat, available: np.ndarray, load: np.ndarray | None) -> np.ndarray:
    """The simulator's expected units/min per pair at intensity 1 right now (pressure and scarcity held)."""
    from ray_gen.model import scarcity_multiplier, warehouse_pressure

    boost = scarcity_multiplier(available.reshape(cat.baseline_rate.shape), p)
    share = boost / (cat.choice_weight[None, :] * boost).sum(axis=1, keepdims=True)  # choice_cdf's normalisation
    pressure = warehouse_pressure(load, p)[:, None] if load is not None else 1.0
    return (cat.baseline_rate * share * pressure).reshape(-1)


def simulate(
    p: SimParams,
    params: KpiParams,
    *,
    baseline: pd.DataFrame | None = None,
    act: bool = False,
    judge: bool = True,
    eval_every: int = 5,
    on_progress: Callable | None = None,
    snapshot_minutes: frozenset[int] = frozenset(),
    should_stop: Callable[[], bool] = lambda: False,
) -> SaleRun:
    """Run the sale in-process with the KPI job replayed after every minute (and its queue acted on if act).

    With ``judge`` the naive baseline and the oracle watch too, and every ``eval_every`` minutes each
    forecaster's P(stockout) of every pair in stock is kept for scoring (backtest/judge.py)."""
    from backtest import judge as J
    from ray_gen.engine import run
    from ray_gen.model import flash_intensity
    from ray_gen.observe import ObservedBackend
    from ray_gen.sinks import SinkSpec

    backend = ObservedBackend()
    replay = Replay(p, params, baseline)
    cat = build_catalogue(p)
    truth = Episodes(replay.n_pairs)
    desks = {name: J.Desk(name) for name in (("radar", "naive", "oracle") if judge else ("radar",))}
    desk = ActionDesk(replay.n_products, p.action_restock_lead_minutes, p.transfer_minutes) if act else None
    planned: dict[int, Interventions] = {}
    snapshots: dict[int, pd.DataFrame] = {}
    stockout_value: dict[tuple[int, int], float] = {}
    preds: list[pd.DataFrame] = []
    mc_rng = np.random.default_rng([p.seed, 0x0AC1E])
    H = int(round(params.horizon_minutes))
    price = np.tile(cat.discounted_price(), replay.n_warehouses)
    series: dict[str, list] = {
        k: []
        for k in (
            "orders",
            "units",
            "stocked_out_pairs",
            "new_stockouts",
            "radar_alerts",
            "radar_queue",
            "overloaded_warehouses",
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
        data_as_of = (p.start + timedelta(minutes=t + 1)).isoformat()
        skus, alerts = replay.run(t, data_as_of)
        if t in snapshot_minutes:
            snapshots[t] = skus
        queue, empty_shelves = J.queue_from_alerts(desks["radar"], t, alerts, params, replay.n_products)
        rate_units = true_rates(p, cat, replay.available, backend.load())
        for k in np.flatnonzero(truth.since == t):
            stockout_value[(int(k), t)] = float(rate_units[k] * flash_intensity(p.flash, t) * price[k])
        flat = np.arange(replay.n_pairs, dtype=np.int64)  # every pair is known after minute 0 (checked above)
        numbers: dict[str, tuple] = {}
        if judge:
            numbers["naive"] = J.naive_numbers(replay, t, flat, params)
            future = flash_intensity(p.flash, np.arange(t + 1, t + 1 + H))
            numbers["oracle"] = J.oracle_numbers(
                mc_rng,
                rate_units / (1 + p.extra_units_mean),
                future,
                replay.available,
                replay.inbound,
                replay.inbound_in(),
                p.extra_units_mean,
                params,
            )
            for name in ("naive", "oracle"):
                pr, rate, short, med, pes = numbers[name]
                al = J.judged_alerts(desks[name], replay, flat, pr, rate, short, med, pes, params, data_as_of)
                J.queue_from_alerts(desks[name], t, al, params, replay.n_products)
            if t % eval_every == 0:
                preds.append(evaluation_rows(replay, t, numbers, desks, params))
        if desk is not None:
            planned[t + 1] = desk.plan(t + 1, queue + empty_shelves)
        o = facts["orders_fact"]
        series["orders"].append(o.num_rows)
        series["units"].append(int(pc.sum(o["order_qty"]).as_py() or 0))
        series["stocked_out_pairs"].append(truth.current())
        series["new_stockouts"].append(int((truth.since == t).sum()))
        series["radar_alerts"].append(len(alerts))
        series["radar_queue"].append(len(queue))
        series["overloaded_warehouses"].append(int(replay.warehouses()["overloaded"].sum()))
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
        stockout_value=stockout_value,
        queues={name: d.frame() for name, d in desks.items()},
        predictions=pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(),
        series=series,
        snapshots=snapshots,
        desk=dict(desk.counts) if desk else None,
        interrupted=interrupted,
    )


def evaluation_rows(replay: Replay, t: int, numbers: dict, desks: dict, params: KpiParams) -> pd.DataFrame:
    """Every pair in stock at the run ending minute t, with each forecaster's P(stockout within H), the
    radar's ETA, and whether (and with which action) each forecaster's queue holds it."""
    flat = np.flatnonzero(replay.known & (replay.available > 0))
    radar = sku_kpis(replay.last_window, replay.state(flat), replay.last_params)
    out = pd.DataFrame(
        {
            "pair": flat,
            "minute": np.full(len(flat), t, dtype=np.int64),
            "p_stockout": radar["p_stockout"].to_numpy(float),
            "eta": radar["eta_median_min"].to_numpy(float),
        }
    )
    for name, (pr, *_rest) in numbers.items():
        out[f"p_{name}"] = pr[flat]
    for name, d in desks.items():
        rows = d.rows[-1] if d.rows else (np.zeros(0, np.int64),) * 4
        q = pd.Series(rows[2], index=rows[1], dtype=object)
        col = "" if name == "radar" else f"_{name}"
        out[f"action{col}"] = pd.Series(flat).map(q).to_numpy(dtype=object)
        out[f"in_queue{col}"] = pd.notna(out[f"action{col}"])
    return out


def outcome(run: SaleRun) -> dict:
    """What a sale cost and earned: stockouts, demand served / lost / suppressed, every action cost."""
    pr = run.progress
    money = (
        "revenue",
        "margin",
        "lost_revenue",
        "suppressed_revenue",
        "substituted_revenue",
        "ad_spend_saved",
        "restock_cost",
        "transfer_cost",
    )
    counts = ("orders", "lost_orders", "lost_units", "suppressed_requests", "suppressed_units", "substituted_units")
    return {
        "stockout_events": pr.stockouts,
        "stockout_minutes": pr.stockout_minutes,
        **{k: round(float(getattr(pr, k)), 2) for k in money},
        **{k: int(getattr(pr, k)) for k in counts},
        # demand that brought no revenue: met an empty shelf, or vanished because its ads were paused
        "unserved_revenue": round(pr.unserved_revenue, 2),
        "unserved_units": int(pr.unserved_units),
        "net_margin": round(pr.net_margin, 2),
        **({"actions": run.desk} if run.desk is not None else {}),
    }


SHAPES = ("spike", "waves", "normal")
CLOSED_LOOP_SEEDS = 5
REQUIRED_LEAD = {"reroute": 15, "pause_ads": 15}  # restock: the restock lead time (set per run)


def shaped(p: SimParams, shape: str) -> SimParams:
    """The sale shapes the backtest judges on: one spike; a spike and two later waves; a normal day."""
    from ray_gen.params import FlashCurve

    if shape == "spike":
        curve = FlashCurve(waves=())
    elif shape == "waves":
        at = p.flash.spike_minute
        curve = FlashCurve(waves=((at + 80, 3.0, 15.0), (at + 160, 2.0, 15.0)))
    elif shape == "normal":  # no sale: no flash curve and no sale discounts (the catalogue of a normal day)
        return p.replace(flash=FlashCurve.flat(), sale_discounts=False)
    else:
        raise ValueError(f"unknown sale shape {shape!r}: choose one of {', '.join(SHAPES)}")
    return p.replace(flash=curve)


def stockout_events(sale: SaleRun) -> pd.DataFrame:
    """pair, minute (first minute out), back (first minute in stock before it), lost_revenue (the revenue/min
    the empty shelf turned away when it emptied x its minutes out)."""
    t = sale.truth.rename(columns={"key": "pair", "start": "minute"}).sort_values(["pair", "minute"], ignore_index=True)
    prev_end = t.groupby("pair")["end"].shift(1)
    t["back"] = (prev_end + 1).fillna(0).astype("int64")
    value = np.array([sale.stockout_value.get((int(k), int(m)), 0.0) for k, m in zip(t["pair"], t["minute"])])
    t["lost_revenue"] = value * (t["end"] - t["minute"] + 1).to_numpy()
    return t


def score_forecasters(sale: SaleRun, p: SimParams, params: KpiParams) -> tuple[dict, pd.DataFrame]:
    """(every figure of the radar, the naive baseline and the oracle; the predictions frame they come from)."""
    frame = predictions_frame(sale, p, params)
    return figures(frame), frame


def figures(frame: pd.DataFrame) -> dict:
    """Every figure from the predictions frame alone (``predictions_frame``; ``flashsale backtest
    --predictions`` writes it, its attrs as the file's metadata): anyone can recompute the JSON from the file."""
    from backtest import metrics as M

    minutes = int(frame.attrs["minutes"])
    H = int(round(float(frame.attrs["horizon"])))
    lead = json.loads(frame.attrs["required_lead"])
    hours = minutes / 60.0
    kind = frame["kind"].to_numpy()
    known = frame["label"].notna().to_numpy()
    fc = frame[(kind == "forecast") & known]
    y = fc["label"].to_numpy(dtype=bool)
    st = frame[kind == "stockout"]
    events = pd.DataFrame(
        {
            "pair": st["pair"].to_numpy(np.int64),
            "minute": st["minute"].to_numpy(np.int64),
            "back": st["back"].to_numpy(np.int64),
            "lost_revenue": st["lost_revenue"].to_numpy(float),
        }
    )
    top = st["top5"].to_numpy(dtype=bool)
    out: dict = {}
    for name, col in (("radar", "p_stockout"), ("naive", "p_naive"), ("oracle", "p_oracle")):
        probs = fc[col].to_numpy(float)
        q = frame[kind == f"queue_{name}"]
        qy = q.loc[q["label"].notna(), "label"].to_numpy(dtype=bool)
        eps = M.episodes(q[["pair", "minute"]])
        starts = events[["pair", "minute"]]
        rec, _ = M.weighted_recall(events, q[["pair", "minute", "action"]], lead, 15)
        rec_top, _ = M.weighted_recall(events[top], q[["pair", "minute", "action"]], lead, 15)
        active = probs >= M.ACTIVE_P
        out[name] = {
            "brier": M.brier(probs, y),
            "brier_skill": M.brier_skill(probs, fc["p_naive"].to_numpy(float), y),
            "ece": M.ece(probs, y),
            "ece_active": M.ece(probs[active], y[active]),
            "pr_auc": M.pr_auc(probs, y),
            "queue_precision": M.queue_precision(qy),
            "false_actionable_per_hour": M.false_episodes(eps, starts, H, minutes - 1) / hours,
            "queue_episodes": int(len(eps)),
            "recall_weighted": rec,
            "recall_weighted_top5": rec_top,
            "reliability": M.reliability(probs, y).to_dict("list"),
        }
    out["cases"] = {"rows": int(len(fc)), "positives": int(y.sum()), "stockouts": int(len(events))}
    return out


def queue_precision_series(frame: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    """Per forecaster: (minute, share of that minute's queue items that were right), judged minutes only."""
    out = {}
    for name in ("radar", "naive", "oracle"):
        q = frame[(frame["kind"] == f"queue_{name}") & frame["label"].notna()]
        g = q["label"].astype(bool).groupby(q["minute"]).mean()
        out[name] = [(int(m), round(float(v), 4)) for m, v in zip(g.index.to_numpy(), g.to_numpy())]
    return out


def net_margin(run: SaleRun) -> float:
    """Gross margin of what was served - every restock and transfer cost + ad spend saved (ray_gen Progress)."""
    return float(run.progress.net_margin)


def unserved(run: SaleRun) -> float:
    """Demand that brought no revenue: met an empty shelf, or vanished because its ads were paused."""
    return float(run.progress.unserved_revenue)


def closed_loop(
    p: SimParams,
    params: KpiParams,
    seeds: list[int],
    history_hours: int,
    progress: Callable[[str], ContextManager[Callable | None]],
) -> dict:
    """Paired runs (same seed: same random streams, so the same buyers) with and without acting on the queue."""
    from backtest import metrics as M

    per_seed = []
    for seed in seeds:
        ps = p.replace(seed=seed, run_id=f"bt{seed}")
        base = history_baseline(ps, history_hours)
        with progress(f"seed {seed}: nobody acting") as bar:
            off = simulate(ps, params, baseline=base, judge=False, on_progress=bar)
        with progress(f"seed {seed}: acting on the radar's queue") as bar:
            on = simulate(ps, params, baseline=base, act=True, judge=False, on_progress=bar)
        m0, m1, u0, u1 = net_margin(off), net_margin(on), unserved(off), unserved(on)
        per_seed.append(
            {
                "seed": seed,
                "net_margin": [round(m0, 2), round(m1, 2)],
                "unserved_revenue": [round(u0, 2), round(u1, 2)],
                "net_margin_change": (m1 - m0) / abs(m0) if m0 else None,
                "unserved_change": (u1 - u0) / u0 if u0 else None,
                "open_loop": outcome(off),
                "closed_loop": outcome(on),
            }
        )
    res: dict = {"seeds": per_seed}
    for k in ("net_margin_change", "unserved_change"):
        xs = np.array([s[k] for s in per_seed if s[k] is not None], dtype=float)
        res[k], res[f"{k}_ci95"] = M.mean_ci95(xs)
    return res


def normal_day(p: SimParams, params: KpiParams, history_hours: int, minutes: int = 120) -> dict:
    """A day without a sale: the radar should stay quiet (actionable alerts = queue episodes)."""
    from backtest import metrics as M

    pn = shaped(p, "normal").replace(minutes=minutes)
    run = simulate(pn, replace(params, calendar=()), baseline=history_baseline(pn, history_hours), judge=False)
    eps = M.episodes(run.queues["radar"])
    return {
        "minutes": minutes,
        "actionable_per_hour": len(eps) / (minutes / 60.0),
        "actionable_first_hour": int((eps["start"] < 60).sum()),
        "overloaded_warehouse_minutes": int(sum(run.series["overloaded_warehouses"])),
    }


def backtest(
    p: SimParams,
    params: KpiParams,
    *,
    shape: str = "spike",
    history_hours: int = 24,
    seeds: list[int] | None = None,
    eval_every: int = 5,
    progress: Callable[[str], ContextManager[Callable | None]] = lambda label: nullcontext(),
) -> tuple[dict, pd.DataFrame]:
    """Judge the radar, the naive baseline and the oracle on one sale of ``shape`` (open loop), the radar on a
    normal day, and the closed loop over ``seeds`` (none: skipped). Returns (result, predictions)."""
    import time

    t0 = time.monotonic()
    p = shaped(p, shape)
    params = replace(params, calendar=planned_calendar(p))
    baseline = history_baseline(p, history_hours)
    with progress(f"{shape}: radar, naive and oracle watching, nobody acting") as bar:
        sale = simulate(p, params, baseline=baseline, eval_every=eval_every, on_progress=bar)
    scores, predictions = score_forecasters(sale, p, params)
    result: dict[str, Any] = {
        "sim": p.model_dump(mode="json"),
        "shape": shape,
        "kpi_params": params.as_dict(),
        "history_hours": history_hours,
        "baseline_pairs": int(len(baseline)),
        "simulated_minutes": sale.progress.minute + 1,
        "pairs": build_catalogue(p).n_products * p.n_warehouses,
        **scores,
        "open_loop": outcome(sale),
        "series": {"open_loop": sale.series, "queue_precision": queue_precision_series(predictions)},
    }
    with progress("normal day: the radar should stay quiet") as bar:
        result["normal_day"] = normal_day(p, params, history_hours)
    if seeds:
        result["closed_loop"] = closed_loop(p, params, seeds, history_hours, progress)
    result["goals"] = goals(result)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result, predictions


def predictions_frame(sale: SaleRun, p: SimParams, params: KpiParams) -> pd.DataFrame:
    """The --predictions file, one frame of three kinds of rows (``kind``):

    - ``forecast``: every pair in stock at every ``eval_every``-th minute: pair, minute, p_stockout (radar), eta,
      in_queue, action (the radar's queue), p_naive, p_oracle, label;
    - ``queue_<forecaster>``: every minute, each item of that forecaster's queue: pair, minute, action, label;
    - ``stockout``: every stockout event: pair, minute (first minute out), back, lost_revenue, top5 (the pair is
      among the 5 % with the most revenue at stake).

    label = the pair stocks out within the horizon after the minute; NA where the horizon runs past the sale.
    """
    from backtest import judge as J

    H = int(round(params.horizon_minutes))
    last = sale.progress.minute
    events = stockout_events(sale)
    starts = events[["pair", "minute"]]
    parts = []
    fc = sale.predictions.copy()
    if len(fc):
        fc["kind"] = "forecast"
        parts.append(fc)
    for name, q in sale.queues.items():
        parts.append(q[["pair", "minute", "action"]].assign(kind=f"queue_{name}"))
    cat = build_catalogue(p)
    value = (np.tile(cat.discounted_price(), p.n_warehouses) * cat.baseline_rate.reshape(-1)).astype(float)
    top = np.zeros(len(value), bool)
    top[np.argsort(-value)[: max(1, int(round(0.05 * len(value))))]] = True
    parts.append(
        events[["pair", "minute", "back", "lost_revenue"]].assign(kind="stockout", top5=top[events["pair"].to_numpy()])
    )
    frame = pd.concat(parts, ignore_index=True)
    pair = frame["pair"].to_numpy(np.int64)
    minute = frame["minute"].to_numpy(np.int64)
    frame["pair"], frame["minute"] = pair, minute
    y = J.labels(pair, minute, starts, H)
    label = pd.array(y, dtype="boolean")
    label[(minute + H > last) | (frame["kind"] == "stockout").to_numpy()] = pd.NA
    frame["label"] = label
    n = cat.n_products
    frame.insert(1, "product_id", pair % n)
    frame.insert(2, "warehouse_id", pair // n)
    frame["top5"] = frame["top5"].astype("boolean") if "top5" in frame else pd.NA
    frame.attrs["required_lead"] = json.dumps({**REQUIRED_LEAD, "restock": p.action_restock_lead_minutes})
    frame.attrs["minutes"] = str(last + 1)
    frame.attrs["horizon"] = str(params.horizon_minutes)
    return frame


def goals(result: dict) -> dict:
    """The issue's goals, each met or not (figures from this run)."""
    r = result["radar"]

    def ge(x, y):
        return x is not None and x >= y

    def le(x, y):
        return x is not None and x <= y

    out = {
        "ece_le_0.03": le(r["ece"], 0.03),
        "brier_skill_ge_0.3": ge(r["brier_skill"], 0.3),
        "queue_precision_ge_0.6": ge(r["queue_precision"], 0.6),
        "false_actionable_per_hour_le_60": le(r["false_actionable_per_hour"], 60),
        "recall_weighted_top5_ge_0.85": ge(r["recall_weighted_top5"], 0.85),
        "normal_day_actionable_per_hour_le_5": le(result["normal_day"]["actionable_per_hour"], 5),
    }
    cl = result.get("closed_loop")
    if cl:
        lo_m = cl["net_margin_change_ci95"][0]
        hi_u = cl["unserved_change_ci95"][1]
        out["net_margin_up_ci_clear_of_zero"] = lo_m is not None and lo_m > 0
        out["unserved_down_30pct_ci_clear_of_zero"] = (
            hi_u is not None and hi_u < 0 and cl["unserved_change"] is not None and cl["unserved_change"] <= -0.3
        )
    return out


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
