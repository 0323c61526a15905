"""Random streams keyed by (seed, purpose, entity, minute), never by shard or call order.

That is what makes a run reproducible whatever the number of actors: city 7's orders at minute 300
come from the same stream whether city 7 lives alone in a shard or with 26 others.
"""

from __future__ import annotations

import numpy as np

CATALOGUE, CITY_ORDERS, WAREHOUSE_RESTOCK, ADS_PAUSE, HISTORY = 1, 2, 3, 4, 5
# added later, each its own stream so the draws above never shift: warehouse capacities, product margins,
# the substitutes paused-ads demand moves to, normal-day history (its day-to-day drift and its units), the
# planner's error in the published sale calendar
CAPACITY, MARGIN, SUBSTITUTE, HISTORY_DRIFT, HISTORY_UNITS, PLAN = 6, 7, 8, 9, 10, 11


def rng_for(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, purpose, *keys])))
