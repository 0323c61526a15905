"""How the simulated world responds to the radar's actions (closed-loop backtests, `flashsale backtest --act`).

Pure, vectorized functions; the shards (ray_gen/shards.py) call them only when a run is given
Interventions, so a plain run draws exactly the same records as before. Every action has its effect
and its cost (SimParams; tallied in ray_gen.engine.Progress):

- restock (warehouse, product, units), an order placed at minute m: the units land at
  m + ``action_restock_lead_minutes``; cost ``restock_cost_fixed`` + ``restock_cost_per_unit`` x units.
- reroute (warehouse, product, donor, units), a transfer dispatched at minute m: the donor's sellable
  stock drops at once by what it can give (at most its available units), those units are announced as
  inbound at the receiver and land there at m + ``transfer_minutes``; cost ``transfer_cost_fixed`` +
  ``transfer_cost_per_unit`` x units sent (nothing if the donor had nothing to send).
  Legacy 3-column rows (warehouse, product, donor) are a table in force instead: while it holds, every
  request for the product from the cities the warehouse serves is fulfilled by the donor (the storefront
  shows the donor's stock), no units move and nothing is charged.
- pause ads (warehouse, product), a table in force: each request for the product from that
  warehouse's cities survives with probability ``pause_ads_demand_factor`` (Poisson thinning, its own
  stream ``ADS_PAUSE``); a share ``pause_ads_substitution`` of the thinned requests buys a substitute
  instead (same category, in stock on the same storefront, not itself paused, chosen by choice weight,
  its own stream ``SUBSTITUTE``); the rest is suppressed demand (unserved). Each paused pair saves
  ``ad_spend_per_sku_minute`` per minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _rows(cols: int) -> np.ndarray:
    return np.zeros((0, cols), dtype=np.int64)


def _reroute_rows(value) -> np.ndarray:
    """4-column transfer rows; a 2-D 3-column table (the legacy demand reroute) is kept as it is."""
    a = np.asarray(value, dtype=np.int64)
    if a.ndim == 2 and a.shape[1] == 3:
        return a
    if a.ndim == 1 and a.size % 4 and a.size % 3 == 0:
        return a.reshape(-1, 3)
    return a.reshape(-1, 4)


@dataclass(frozen=True)
class Interventions:
    """The radar's instructions, effective from the minute they are handed to the shards.

    ``restocks`` and 4-column ``reroutes`` (transfers) are new orders placed at that minute (hand each
    once); ``pauses`` and a legacy 3-column ``reroutes`` are the complete tables in force (each replaces
    the previous one; None for a minute leaves them in force).
    """

    restocks: np.ndarray = field(default_factory=lambda: _rows(3))  # rows (warehouse, product, units)
    # rows (warehouse, product, donor warehouse, units): transfers; or legacy (warehouse, product, donor)
    reroutes: np.ndarray = field(default_factory=lambda: _rows(4))
    pauses: np.ndarray = field(default_factory=lambda: _rows(2))  # rows (warehouse, product)

    def __post_init__(self):
        for name, cols in (("restocks", 3), ("pauses", 2)):
            a = np.asarray(getattr(self, name), dtype=np.int64).reshape(-1, cols)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "reroutes", _reroute_rows(self.reroutes))
        if (self.restocks[:, 2] <= 0).any():
            raise ValueError("restocks: units must be positive")
        if (self.reroutes[:, 0] == self.reroutes[:, 2]).any():
            raise ValueError("reroutes: a warehouse cannot be its own donor")
        if (self.transfers[:, 3] <= 0).any():
            raise ValueError("reroutes: units must be positive")

    @property
    def transfers(self) -> np.ndarray:
        """Rows (receiver, product, donor, units) dispatched at this minute (empty for a legacy table)."""
        return self.reroutes if self.reroutes.shape[1] == 4 else _rows(4)

    @property
    def routing(self) -> np.ndarray:
        """The legacy demand-reroute table in force, rows (warehouse, product, donor) (empty for transfers)."""
        return self.reroutes if self.reroutes.shape[1] == 3 else _rows(3)


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


def pick_substitutes(
    u: np.ndarray,
    product: np.ndarray,
    category: np.ndarray,
    weight: np.ndarray,
    shelf: np.ndarray,
    blocked: np.ndarray,
) -> np.ndarray:
    """A substitute per request: same category as ``product``, stock on ``shelf`` (> 0), not ``blocked``
    (paused there), drawn by choice ``weight`` with one uniform ``u`` each; -1 where the category has none."""
    out = np.full(len(product), -1, dtype=np.int64)
    if len(product) == 0:
        return out
    cats = category[product]
    open_shelf = (shelf > 0) & ~blocked
    for c in np.unique(cats):
        candidates = np.flatnonzero(open_shelf & (category == c))
        if len(candidates) == 0:
            continue
        cdf = np.cumsum(weight[candidates])
        sel = cats == c
        pos = np.searchsorted(cdf, u[sel] * cdf[-1], side="right")
        out[sel] = candidates[np.minimum(pos, len(candidates) - 1)]
    return out


def dispatch(available: np.ndarray, flat: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Units each transfer row can really send from the donor's sellable stock (flat pair index), rows in
    order: a donor never sends more than it has, and two rows from one pair share its stock."""
    left: dict[int, int] = {}
    sent = np.zeros(len(flat), dtype=np.int64)
    for i, (k, want) in enumerate(zip(flat.tolist(), units.tolist(), strict=True)):
        have = left.get(k, max(int(available[k]), 0))
        sent[i] = min(want, have)
        left[k] = have - int(sent[i])
    return sent
