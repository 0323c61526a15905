"""In-process shards a driver can look into after every simulated minute (backtests, no Ray, no store).

`ray_gen.engine.run(p, SinkSpec("null"), ObservedBackend(), max_in_flight=0, on_progress=...)` calls
on_progress right after each minute is committed; there `take_facts()` returns exactly that minute's
orders_fact and inventory_fact records (what the hot store would have received) and `available()` the
warehouses' true sellable stock (the ground truth, read from the simulator's state, not from records).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from flashsale.contracts import FACTS, arrow_schema
from ray_gen.engine import LocalBackend
from ray_gen.sinks import WriteCounts


class MemorySink:
    """Keeps each batch until the driver takes it (the driver takes every minute, so memory stays one minute)."""

    def __init__(self) -> None:
        self.batches: dict[str, list[pa.RecordBatch]] = {}
        self.counts: dict[str, WriteCounts] = {}

    def write(self, collection: str, batch: pa.RecordBatch) -> None:
        self.batches.setdefault(collection, []).append(batch)
        self.counts.setdefault(collection, WriteCounts()).written += batch.num_rows

    def take(self, collection: str) -> list[pa.RecordBatch]:
        return self.batches.pop(collection, [])

    def close(self) -> None:
        pass


class ObservedBackend(LocalBackend):
    """LocalBackend whose shards write to MemorySinks and stay reachable from the driver."""

    def __init__(self) -> None:
        self.cities: list = []
        self.warehouses: list = []

    def city(self, p, k, sink):
        shard = _capture(super().city(p, k, sink))
        self.cities.append(shard)
        return shard

    def warehouse(self, p, k, sink):
        shard = _capture(super().warehouse(p, k, sink))
        self.warehouses.append(shard)
        return shard

    def take_facts(self) -> dict[str, pa.Table]:
        """Every fact record written since the last call, per fact (flushes the shards' write buffers)."""
        out = {}
        for contract in FACTS:
            batches = []
            for shard in self.cities + self.warehouses:
                shard.writer.flush(contract.name)
                batches += shard.writer.sink.take(contract.name)
            out[contract.name] = pa.Table.from_batches(batches, schema=arrow_schema(contract))
        return out

    def available(self) -> np.ndarray:
        """True sellable stock (on hand - reserved), shape (warehouse, product); shards hold contiguous warehouses."""
        return np.concatenate([w.on_hand - w.reserved for w in self.warehouses])

    def load(self) -> np.ndarray:
        """Each warehouse's smoothed load (EWMA of orders / capacity, ray_gen.model.smooth_load): what sets
        the pressure its cities see next minute (``ray_gen.model.warehouse_pressure(load, p)``) and its
        fulfilment delay."""
        return np.concatenate([w.smoothed_load for w in self.warehouses])

    def last_minute_load(self) -> np.ndarray:
        """Each warehouse's served orders / capacity in the last minute (unsmoothed)."""
        return np.concatenate([w.load for w in self.warehouses])


def _capture(shard):
    # the shard was built with a (picklable) SinkSpec; in-process its sink object can be swapped for one
    # that keeps the batches for the driver
    shard.writer.sink = MemorySink()
    return shard
