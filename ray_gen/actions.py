"""How the simulated world responds to the radar's actions (closed-loop backtests, `flashsale backtest --act`).

Pure, vectorized functions; the shards (ray_gen/shards.py) call them only when a run is given
Interventions, so a plain run draws exactly the same records as before.

- restock: units ordered at minute m land in the warehouse at m + ``action_restock_lead_minutes``.
- reroute: while in force, every request for the product from the cities a warehouse serves is
  fulfilled by the donor warehouse (same province) instead; the storefront shows the donor's stock.
- pause ads: while in force, each request for the product from that warehouse's cities survives with
  probability ``pause_ads_demand_factor`` (Poisson thinning: that SKU's demand rate is scaled, the
  other SKUs' demand and random draws are untouched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _rows(cols: int) -> np.ndarray:
    return np.zeros((0, cols), dtype=np.int64)


@dataclass(frozen=True)
class Interventions:
    """The radar's instructions, effective from the minute they are handed to the shards.

    ``reroutes`` and ``pauses`` are the complete tables in force (each replaces the previous one);
    ``restocks`` are new orders placed at that minute.
    """

    restocks: np.ndarray = field(default_factory=lambda: _rows(3))  # rows (warehouse, product, units)
    reroutes: np.ndarray = field(default_factory=lambda: _rows(3))  # rows (warehouse, product, donor warehouse)
    pauses: np.ndarray = field(default_factory=lambda: _rows(2))  # rows (warehouse, product)

    def __post_init__(self):
        for name, cols in (("restocks", 3), ("reroutes", 3), ("pauses", 2)):
            a = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1, cols)
            object.__setattr__(self, name, a)
        if (self.restocks[:, 2] <= 0).any():
            raise ValueError("restocks: units must be positive")
        if (self.reroutes[:, 0] == self.reroutes[:, 2]).any():
            raise ValueError("reroutes: a warehouse cannot be its own donor")


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
    """Position of each key in table_keys, -1 where absent (table keys are unique)."""
    if len(table_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    order = np.argsort(table_keys)
    sorted_keys = table_keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, order[pos], -1)


def route(home: np.ndarray, product: np.ndarray, reroutes: np.ndarray, n_products: int) -> np.ndarray:
    """Fulfilling warehouse per request: the donor for rerouted (home warehouse, product) pairs, else home."""
    if len(reroutes) == 0 or len(home) == 0:
        return home
    hit = _lookup(home * n_products + product, reroutes[:, 0] * n_products + reroutes[:, 1])
    return np.where(hit >= 0, reroutes[np.maximum(hit, 0), 2], home)


def storefront(available: dict[int, np.ndarray], warehouse: int, reroutes: np.ndarray) -> np.ndarray:
    """The stock the buyers of a warehouse's cities see: the donor's for rerouted products."""
    mine = reroutes[reroutes[:, 0] == warehouse]
    if len(mine) == 0:
        return available[warehouse]
    shelf = available[warehouse].copy()
    for donor in np.unique(mine[:, 2]):
        products = mine[mine[:, 2] == donor, 1]
        shelf[products] = available[int(donor)][products]
    return shelf


def kept_after_pause(
    u: np.ndarray, home: np.ndarray, product: np.ndarray, pauses: np.ndarray, factor: float, n_products: int
) -> np.ndarray:
    """Which requests still happen with ads paused: all unpaused ones, paused ones iff u < factor.

    ``u`` is one uniform draw per request from its own stream, so thinning never shifts other draws."""
    if len(pauses) == 0:
        return np.ones(len(product), dtype=bool)
    paused = _lookup(home * n_products + product, pauses[:, 0] * n_products + pauses[:, 1]) >= 0
    return ~paused | (u < factor)
