"""Model output -> contract-shaped Arrow record batches (ids built in Arrow's C++ kernels, not per row)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, arrow_schema

ORDERS_SCHEMA = arrow_schema(ORDERS_FACT)
INVENTORY_SCHEMA = arrow_schema(INVENTORY_FACT)


_DECIMALS = pa.array([], pa.string())


def _decimal_strings(values: np.ndarray) -> pa.Array:
    """str(v) for non-negative ints, by lookup in a cached table (4x faster than casting every batch)."""
    global _DECIMALS
    top = int(values.max()) + 1 if len(values) else 0
    if top > len(_DECIMALS):
        _DECIMALS = pc.cast(pa.array(np.arange(max(top, 2 * len(_DECIMALS), 1 << 16))), pa.string())
    return _DECIMALS.take(pa.array(values))


def _ids(prefix: str, *parts: np.ndarray | int) -> pa.Array:
    """Deterministic ids "<prefix>-<part>-<part>...": the same record always gets the same _id."""
    cols = [pa.scalar(prefix)] + [_decimal_strings(x) if isinstance(x, np.ndarray) else pa.scalar(str(x)) for x in parts]
    return pc.binary_join_element_wise(*cols, "-")


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.astype("datetime64[ms]"), type=pa.timestamp("ms", tz="UTC"))


def orders_batch(run_id: str, minute_start_ms: int, minute: int, city, seq, product, seller, warehouse, qty, value, offset_ms) -> pa.RecordBatch:
    cols = {
        "order_id": _ids(f"o-{run_id}", city, minute, seq),
        "product_id": pa.array(product, pa.int64()),
        "seller_id": pa.array(seller, pa.int64()),
        "warehouse_id": pa.array(warehouse, pa.int64()),
        "city_id": pa.array(city, pa.int64()),
        "order_qty": pa.array(qty, pa.int64()),
        "order_value": pa.array(value, pa.float64()),
        "order_ts": _ts(minute_start_ms + offset_ms),
    }
    return pa.RecordBatch.from_arrays(list(cols.values()), schema=ORDERS_SCHEMA)


def inventory_batch(run_id: str, minute_end_ms: int, minute: int, warehouse, product, on_hand, reserved, delay) -> pa.RecordBatch:
    n = len(product)
    cols = {
        "inventory_event_id": _ids(f"i-{run_id}", warehouse, product, minute),
        "product_id": pa.array(product, pa.int64()),
        "warehouse_id": pa.array(warehouse, pa.int64()),
        "inventory_on_hand": pa.array(on_hand, pa.int64()),
        "reserved_stock": pa.array(reserved, pa.int64()),
        "fulfillment_delay": pa.array(delay, pa.float64()),
        "inventory_ts": _ts(np.full(n, minute_end_ms, dtype=np.int64)),
    }
    return pa.RecordBatch.from_arrays(list(cols.values()), schema=INVENTORY_SCHEMA)
