"""Drives the tick protocol over the shards, in-process or on Ray, with pacing, progress and clean stop.

The driver never touches records: on Ray it only passes object references between actors (the
proposals go straight from city actors to warehouse actors) and collects small per-tick stats.
At most `max_in_flight` ticks are outstanding, so memory is state plus about one batch per shard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ray_gen.actions import Interventions
from ray_gen.catalogue import build_catalogue
from ray_gen.params import SimParams
from ray_gen.shards import CityShard, WarehouseShard, split
from ray_gen.sinks import SinkSpec

SUMMED = (
    "orders",
    "inventory_events",
    "requests",
    "lost_orders",
    "lost_units",
    "stockouts",
    "revenue",
    "margin",
    "lost_revenue",
    "suppressed_requests",
    "suppressed_units",
    "suppressed_revenue",
    "substituted_requests",
    "substituted_units",
    "substituted_revenue",
    "paused_sku_minutes",
    "ad_spend_saved",
    "restock_orders",
    "restock_units",
    "restock_cost",
    "transfers",
    "transfer_units",
    "transfer_cost",
)


@dataclass
class Progress:
    """What the run did so far: records, demand served / lost / suppressed, and the closed loop's economics.

    Money in NPR at the drawn prices. Unserved demand = lost (met an empty shelf) + suppressed (never
    happened because ads were paused and no substitute was bought); net margin = served revenue x each
    product's margin rate - restock and transfer costs + ad spend saved (``net_margin``)."""

    minute: int = -1  # last simulated minute fully committed
    orders: int = 0
    inventory_events: int = 0
    requests: int = 0  # order requests that reached a warehouse (after paused ads thinned them)
    lost_orders: int = 0
    lost_units: int = 0
    stockouts: int = 0  # SKU x warehouse transitions to zero available
    stockout_minutes: int = 0  # sum over minutes of the SKU x warehouse pairs with zero available
    revenue: float = 0.0  # value of served orders
    margin: float = 0.0  # gross margin of served orders: value x the product's margin rate
    lost_revenue: float = 0.0  # value of requests that met an empty shelf
    # closed loop, paused ads: demand that did not happen (no substitute), demand that moved to a substitute
    suppressed_requests: int = 0
    suppressed_units: int = 0
    suppressed_revenue: float = 0.0
    substituted_requests: int = 0  # requests that moved to a substitute (served or not)
    substituted_units: int = 0  # of those, units served
    substituted_revenue: float = 0.0  # of those, value served (also in revenue)
    paused_sku_minutes: int = 0  # (warehouse, product) pairs with paused ads, summed over minutes
    ad_spend_saved: float = 0.0
    # closed loop, restocks the radar ordered and transfers it dispatched (units really sent)
    restock_orders: int = 0
    restock_units: int = 0
    restock_cost: float = 0.0
    transfers: int = 0
    transfer_units: int = 0
    transfer_cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def records(self) -> int:
        return self.orders + self.inventory_events

    @property
    def unserved_units(self) -> int:
        return self.lost_units + self.suppressed_units

    @property
    def unserved_revenue(self) -> float:
        return self.lost_revenue + self.suppressed_revenue

    @property
    def action_cost(self) -> float:
        return self.restock_cost + self.transfer_cost

    @property
    def net_margin(self) -> float:
        return self.margin - self.action_cost + self.ad_spend_saved

    def add(self, tick_stats: list[dict]) -> None:
        for s in tick_stats:
            for k in SUMMED:
                setattr(self, k, getattr(self, k) + s.get(k, 0))
            self.stockout_minutes += s.get("stocked_out_skus", 0)

    def as_dict(self) -> dict:
        """Every counter and the derived totals (unserved, action cost, net margin), for reports."""
        out = {k: getattr(self, k) for k in ("minute", "stockout_minutes", *SUMMED)}
        out.update(
            unserved_units=self.unserved_units,
            unserved_revenue=self.unserved_revenue,
            action_cost=self.action_cost,
            net_margin=self.net_margin,
        )
        return out


class LocalBackend:
    """Shards as plain objects in this process: the reference implementation and the unit-test path."""

    def city(self, p, k, sink):
        return CityShard(p, k, sink)

    def warehouse(self, p, k, sink):
        return WarehouseShard(p, k, sink)

    def call(self, shard, method, *args, num_returns=1):
        return getattr(shard, method)(*args)

    def get(self, values):
        return values

    def shutdown(self):
        pass


SHARD_RESOURCE = "flashsale_shard"  # a Ray node resource: nodes meant to host the simulator's shards


class RayBackend:
    """Shards as Ray actors. `address=None` starts a local Ray; otherwise joins that cluster."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, ray_env: dict | None = None):
        os.environ.update(ray_env or {})  # token auth must be configured before ray is imported
        import ray

        self.ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            kwargs = {"address": address} if address else {"num_cpus": num_cpus or 2, "include_dashboard": False}
            ray.init(log_to_driver=True, configure_logging=False, **kwargs)
        # num_cpus=0: shards are mostly waiting on each other and the sink; let them share 2 cores.
        # SPREAD over the nodes that offer the SHARD_RESOURCE (the compose Ray workers do, the head does
        # not), else over every node: never all on the driver's node
        opts: dict = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}
        if ray.cluster_resources().get(SHARD_RESOURCE):
            opts["resources"] = {SHARD_RESOURCE: 0.001}
        self._city = ray.remote(**opts)(CityShard)
        self._warehouse = ray.remote(**opts)(WarehouseShard)

    def city(self, p, k, sink):
        return self._city.remote(p, k, sink)

    def warehouse(self, p, k, sink):
        return self._warehouse.remote(p, k, sink)

    def call(self, shard, method, *args, num_returns=1):
        return getattr(shard, method).options(num_returns=num_returns).remote(*args)

    def get(self, refs):
        return self.ray.get(refs)

    def shutdown(self):
        if self._started:
            self.ray.shutdown()


def run(
    p: SimParams,
    sink: SinkSpec,
    backend=None,
    speed: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    max_in_flight: int = 3,
    should_stop: Callable[[], bool] = lambda: False,
    interventions: Callable[[int], Interventions | None] | None = None,
) -> tuple[Progress, dict, bool]:
    """Simulate p.minutes minutes. speed=None: fast-forward; speed=N: N simulated minutes per wall minute.

    ``interventions(minute)`` (closed-loop backtests): the radar's actions handed to every shard before
    the minute is drawn (None: nothing changes). Returns (progress, per-shard write counts merged by
    collection, interrupted).
    """
    backend = backend or LocalBackend()
    build_catalogue(p)  # fail fast on the driver, before any actor starts
    cities = [backend.city(p, k, sink) for k in range(p.city_shards)]
    warehouses = [backend.warehouse(p, k, sink) for k in range(p.warehouse_shards)]
    cat = build_catalogue(p)
    wh_shard_of = {int(w): k for k, ws in enumerate(split(p.n_warehouses, p.warehouse_shards)) for w in ws}
    city_members = split(p.n_cities, p.city_shards)
    # which warehouse shards each city shard talks to (and back): only those serving its cities; in a
    # closed loop also every warehouse of the serving warehouse's province (a reroute may send requests there)
    province = [cat.city_province[int(c)] for c in cat.warehouse_city]
    serving = [
        [w for w in range(p.n_warehouses) if province[w] == province[int(cat.city_warehouse[c])]]
        if interventions
        else [int(cat.city_warehouse[c])]
        for c in range(p.n_cities)
    ]
    deps = [sorted({wh_shard_of[w] for c in cs for w in serving[int(c)]}) for cs in city_members]
    feeders = [[k for k, d in enumerate(deps) if w in d] for w in range(p.warehouse_shards)]

    snapshots = backend.get([backend.call(w, "snapshot") for w in warehouses])
    progress = Progress()
    in_flight: list[tuple[int, list]] = []
    interrupted = False
    wall_start = time.monotonic()

    def drain(keep: int) -> None:
        while len(in_flight) > keep:
            minute, refs = in_flight.pop(0)
            progress.add(backend.get(refs))
            progress.minute = minute
            if on_progress:
                on_progress(progress)

    try:
        for minute in range(p.minutes):
            if should_stop():
                interrupted = True
                break
            if speed:  # real time: minute m may start only at wall_start + m * 60 / speed
                delay = wall_start + minute * 60.0 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            iv = interventions(minute) if interventions else None
            if iv is not None:  # actor calls run in submission order: in force before this minute's draws
                for s in cities:
                    backend.call(s, "intervene", minute, iv)
                sent = [backend.call(w, "intervene", minute, iv) for w in warehouses]
                if len(iv.transfers):  # units leave the donors now; every receiver books its arrivals
                    for w in warehouses:
                        backend.call(w, "receive", minute, *sent)
            proposals = [
                backend.call(c, "propose", minute, *[snapshots[w] for w in deps[k]]) for k, c in enumerate(cities)
            ]
            results = [
                backend.call(w, "reserve", minute, *[proposals[k] for k in feeders[j]], num_returns=3)
                for j, w in enumerate(warehouses)
            ]
            served = [r[0] for r in results]
            snapshots = [r[1] for r in results]
            commits = [backend.call(c, "commit", minute, *[served[w] for w in deps[k]]) for k, c in enumerate(cities)]
            # real time: every minute goes to the store as soon as it is simulated (fast-forward batches up)
            flushes = [backend.call(s, "flush") for s in cities + warehouses] if speed else []
            in_flight.append((minute, commits + [r[2] for r in results] + flushes))
            drain(max_in_flight)
    except KeyboardInterrupt:
        interrupted = True  # stop issuing ticks; what was generated is still flushed below
    finally:
        drain_ok = True
        try:
            drain(0)
        except KeyboardInterrupt:
            drain_ok = False
        counts = _merge(backend.get([backend.call(s, "close") for s in cities + warehouses])) if drain_ok else {}
    return progress, counts, interrupted


def _merge(per_shard: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for shard in per_shard:
        for coll, c in shard.items():
            acc = out.setdefault(coll, {})
            for k, v in c.items():
                acc[k] = acc.get(k, 0) + v
    return out
