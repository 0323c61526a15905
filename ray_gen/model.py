"""The statistical model: pure, vectorized numpy. No Ray, no store, no clock.

One simulated minute for one city: orders ~ Poisson(lambda), each picks a product with probability
proportional to popularity x discount multiplier x scarcity multiplier, buys 1 + Poisson units at a
log-normal price around the discounted base price. A warehouse then serves the minute's requests in
(city, seq) order while its stock lasts; the rest is lost demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ray_gen.catalogue import Catalogue
from ray_gen.params import FlashCurve, SimParams


def flash_intensity(curve: FlashCurve, minute: np.ndarray | int) -> np.ndarray:
    """Warm-up ramp to 1.0 at the spike, then 1 + peak * exp(-(t - t0)/decay), plus later waves."""
    t = np.asarray(minute, dtype=np.float64)
    t0 = curve.spike_minute
    ramp = np.where(t < t0, curve.warmup_level + (1.0 - curve.warmup_level) * (t / t0 if t0 else 1.0), 1.0)
    level = ramp + np.where(t >= t0, curve.spike_peak * np.exp(-(t - t0) / curve.spike_decay_minutes), 0.0)
    for at, peak, decay in curve.waves:
        level = level + np.where(t >= at, peak * np.exp(-(t - at) / decay), 0.0)
    return level


def warehouse_pressure(load: np.ndarray, p: SimParams) -> np.ndarray:
    """Demand multiplier for a warehouse's cities: overloaded warehouses promise slow delivery, buyers hesitate.

    ``load`` is the warehouse's SMOOTHED load (``smooth_load``: what the simulator keeps as state and
    publishes in its snapshot), not last minute's orders / capacity."""
    return 1.0 / (1.0 + p.pressure_sensitivity * np.maximum(0.0, load - 1.0))


def smooth_load(smoothed: np.ndarray, load: np.ndarray, p: SimParams) -> np.ndarray:
    """EWMA of orders / capacity: weight 1 / ``load_smoothing_minutes`` on the newest minute.

    Buyers react to the delivery promise, which follows the backlog over several minutes, not last
    minute's count: reacting to the raw load makes demand and load chase each other (period-2 ringing
    after a spike). With weight a and the pressure's slope g, a deviation decays by 1 - a(1 + g) a
    minute: no sign flip while a(1 + g) < 1."""
    return smoothed + (load - smoothed) / p.load_smoothing_minutes


def initial_load(cat: Catalogue, p: SimParams) -> np.ndarray:
    """The smoothed load a warehouse starts with: its expected orders at minute 0 over its capacity."""
    return float(flash_intensity(p.flash, 0)) * cat.warehouse_orders / cat.warehouse_capacity


def fulfillment_delay(load: np.ndarray, p: SimParams) -> np.ndarray:
    """Minutes from reservation to shipping at the smoothed load: base x (1 + load + max(0, load - 1)^2).

    At capacity (load 1) that is 2 x base (30 min by default, the KPI's overload threshold)."""
    over = np.maximum(0.0, load - 1.0)
    return np.minimum(p.base_fulfillment_minutes * (1.0 + load + over**2), p.max_fulfillment_minutes)


def city_lambda(p: SimParams, cat: Catalogue, minute: int, pressure_by_warehouse: np.ndarray) -> np.ndarray:
    """Expected orders this minute for every city."""
    intensity = float(flash_intensity(p.flash, minute))
    return (
        p.base_orders_per_city_minute
        * intensity
        * cat.discount_effect
        * cat.city_demand
        * pressure_by_warehouse[cat.city_warehouse]
    )


def scarcity_multiplier(available: np.ndarray, p: SimParams) -> np.ndarray:
    """'Only 3 left!': a SKU draws more clicks as its stock runs down (sold-out SKUs still draw clicks: lost demand)."""
    return 1.0 + p.scarcity_boost * np.exp(-np.maximum(available, 0) / p.scarcity_scale_units)


def choice_cdf(cat: Catalogue, p: SimParams, available: np.ndarray) -> np.ndarray:
    """Cumulative choice weights over products for one warehouse's stock (last entry = total)."""
    return np.cumsum(cat.choice_weight * scarcity_multiplier(available, p))


@dataclass
class Orders:
    """A city-minute's order requests, in time order; `seq` is the position in that order."""

    city: np.ndarray
    seq: np.ndarray
    product: np.ndarray
    qty: np.ndarray
    unit_price: np.ndarray
    offset_ms: np.ndarray  # milliseconds into the minute

    def __len__(self) -> int:
        return len(self.product)

    def take(self, index: np.ndarray) -> Orders:
        return Orders(*(getattr(self, f)[index] for f in Orders.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Orders]) -> Orders:
        if not parts:
            return empty_orders()
        return Orders(*(np.concatenate([getattr(o, f) for o in parts]) for f in Orders.__dataclass_fields__))


def empty_orders() -> Orders:
    z = np.zeros(0, dtype=np.int64)
    return Orders(z, z, z, z, np.zeros(0), z)


def draw_orders(
    rng: np.random.Generator, city: int, lam: float, cdf: np.ndarray, cat: Catalogue, p: SimParams
) -> Orders:
    """One city-minute. The order of draws is fixed: it is part of what makes runs reproducible."""
    n = int(rng.poisson(lam))
    u = rng.random(n) * cdf[-1]
    # searching in sorted order is ~3x faster (numpy narrows each search from the previous hit);
    # writing back through the permutation gives exactly searchsorted(cdf, u)
    by_u = np.argsort(u)
    product = np.empty(n, dtype=np.int64)
    product[by_u] = np.searchsorted(cdf, u[by_u], side="right")
    product = np.minimum(product, len(cdf) - 1)  # guards the u*total == total edge
    qty = 1 + small_poisson(rng, p.extra_units_mean, n)
    z = rng.standard_normal(n)
    # < 60,000 fits 16 bits, for which numpy's stable sort is a radix sort (2x faster); same values
    offset_ms = np.sort(rng.integers(0, 60_000, n).astype(np.uint16), kind="stable").astype(np.int64)
    unit_price = np.round(cat.discounted_price()[product] * np.exp(cat.price_sigma[product] * z), 2)
    return Orders(np.full(n, city, dtype=np.int64), np.arange(n, dtype=np.int64), product, qty, unit_price, offset_ms)


def small_poisson(rng: np.random.Generator, lam: float, n: int) -> np.ndarray:
    """n draws of Poisson(lam) by inversion, one uniform each: K = #{k : P(K <= k) <= u}.

    For the small means of extra units per order (params: <= 20) this is ~2x faster than
    Generator.poisson: only the draws past P(K = 0) are searched, and those in a short table.
    """
    cdf = _poisson_cdf(float(lam))
    u = rng.random(n)
    k = np.zeros(n, dtype=np.int64)
    rest = np.flatnonzero(u >= cdf[0])
    k[rest] = np.minimum(np.searchsorted(cdf, u[rest], side="right"), len(cdf) - 1)
    return k


@lru_cache(maxsize=16)
def _poisson_cdf(lam: float) -> np.ndarray:
    """P(K <= k) for k = 0..k_max; the mass beyond k_max (12 sd + 20 past the mean) is below 1e-30."""
    if lam == 0:
        return np.ones(1)
    k = np.arange(int(lam + 12 * math.sqrt(lam)) + 21)
    log_pmf = k * math.log(lam) - lam - np.array([math.lgamma(i + 1.0) for i in k])
    cdf = np.cumsum(np.exp(log_pmf))
    cdf.flags.writeable = False
    return cdf


def serve_in_order(available: np.ndarray, key: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """First come, first served per SKU: request i is served iff the SKU's cumulative qty up to i fits.

    `key` indexes `available` (flattened warehouse x product); requests must already be in serving
    order. Once a SKU cannot cover the running total it shows as sold out for the rest of the minute.
    """
    served = np.ones(len(key), dtype=bool)
    # a SKU holding at least the whole minute's units cannot run out: only the others need the queue
    at_risk = np.flatnonzero(available[key] < qty.sum())
    if len(at_risk):
        served[at_risk] = _serve_queue(available, key[at_risk], qty[at_risk])
    return served


def _serve_queue(available: np.ndarray, key: np.ndarray, qty: np.ndarray) -> np.ndarray:
    order = np.argsort(key, kind="stable")  # stable: keeps the serving order inside each SKU
    k, q = key[order], qty[order]
    csum = np.cumsum(q)
    starts = np.r_[True, k[1:] != k[:-1]]
    base = np.maximum.accumulate(np.where(starts, csum - q, 0))
    served_sorted = (csum - base) <= available[k]
    served = np.empty_like(served_sorted)
    served[order] = served_sorted
    return served
