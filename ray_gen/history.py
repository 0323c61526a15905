"""Normal days before the sale: the archive history the KPI baseline reads (no sale, no simulator internals).

A normal day has no sale discounts (choice by popularity alone, no sale-wide discount lift) and no flash
curve (intensity 1), and each product's popularity drifts from day to day (a log-normal multiplier per
product per calendar day, mean 1, sigma ``history_drift_sigma``). So a baseline built from it knows the
catalogue's normal demand, not the sale's exact per-pair mix. Orders per (warehouse, product, hour) are
Poisson; units = orders + Poisson(``extra_units_mean`` x orders), as in the sale.

Random streams are keyed by calendar day (drift) and by hour (units) since the epoch, never by how many
hours were asked for: the same archived hour always holds the same units.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from ray_gen.catalogue import build_catalogue
from ray_gen.params import SimParams
from ray_gen.streams import HISTORY_DRIFT, HISTORY_UNITS, rng_for


def normal_day_order_rate(p: SimParams) -> np.ndarray:
    """Expected orders per minute per (warehouse, product) on a normal day, before the day's drift."""
    cat = build_catalogue(p)
    city_rate = p.base_orders_per_city_minute * cat.city_demand  # no discount effect, intensity 1
    wh_orders = np.bincount(cat.city_warehouse, weights=city_rate, minlength=cat.n_warehouses)
    share = cat.popularity / cat.popularity.sum()  # no discount multiplier
    return wh_orders[:, None] * share[None, :]


def day_drift(p: SimParams, day: int) -> np.ndarray:
    """Popularity multiplier per product on calendar day ``day`` (a date's ordinal): log-normal, mean 1."""
    s = p.history_drift_sigma
    return rng_for(p.seed, HISTORY_DRIFT, day).lognormal(-0.5 * s * s, s, p.n_products)


def normal_day_units(p: SimParams, hours: int, end: datetime | None = None) -> pa.Table:
    """Units sold per (warehouse, product) in each of the ``hours`` whole hours before ``end`` (default:
    the sale's start, ``p.start``), simulated as normal days.

    Returns an Arrow table with one row per (hour, pair) that sold something: ``product_id``,
    ``warehouse_id``, ``order_qty`` (units in that hour), ``date`` ("YYYY-MM-DD") and ``hour`` ("HH"):
    the columns kpi.baseline.baseline_from_table reads (the archive's layout, summed per hour)."""
    end = end or p.start
    end = end.replace(minute=0, second=0, microsecond=0)
    rate = normal_day_order_rate(p)
    n_products = rate.shape[1]
    drift: dict[int, np.ndarray] = {}
    parts: dict[str, list] = {k: [] for k in ("product_id", "warehouse_id", "order_qty", "date", "hour")}
    for h in range(hours, 0, -1):
        start = end - timedelta(hours=h)
        day = start.date().toordinal()
        if day not in drift:
            drift[day] = day_drift(p, day)
        rng = rng_for(p.seed, HISTORY_UNITS, int(start.timestamp()) // 3600)
        orders = rng.poisson((rate * drift[day][None, :] * 60.0).reshape(-1))
        units = orders + rng.poisson(p.extra_units_mean * orders)
        pair = np.flatnonzero(units)
        parts["product_id"].append(pair % n_products)
        parts["warehouse_id"].append(pair // n_products)
        parts["order_qty"].append(units[pair])
        parts["date"].append(np.full(len(pair), start.date().isoformat(), dtype=object))
        parts["hour"].append(np.full(len(pair), f"{start.hour:02d}", dtype=object))
    types = {"product_id": pa.int64(), "warehouse_id": pa.int64(), "order_qty": pa.int64()}
    return pa.table(
        {
            k: pa.array(np.concatenate(v) if v else np.zeros(0, dtype=object), types.get(k, pa.string()))
            for k, v in parts.items()
        }
    )
