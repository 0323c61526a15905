"""Hand-built scenario with known answers (tests) and a scalable peak-window generator (bench).

The scenario (window W minutes ending at ``as_of``; every minute has the same sales, so the EWMA
velocity equals the per-minute units exactly):

=========  =========  ========  ============  =========  ==============================================
product    warehouse  province  units/min     available  expected
=========  =========  ========  ============  =========  ==============================================
1          10 (A)     P1        2             10         high risk -> reroute from 11 (500 idle units)
1          11 (B)     P1        0             500        low (donor)
2          20 (C)     P2        1             20         high, pessimistic ETA < 45 -> pause_ads
3          20 (C)     P2        1             58         high, pessimistic ETA >= 45 -> restock
4          10 (A)     P1        1             63         watch -> monitor
4          11 (B)     P1        6 (6 orders)  10000      low; warehouse 11 (capacity 5/min) overloaded
=========  =========  ========  ============  =========  ==============================================

Orders per minute: 10 (units 11). Plus malformed documents, one per quarantine reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from flashsale.contracts import CITIES_DIM, INVENTORY_FACT, ORDERS_FACT, PRODUCTS_DIM, WAREHOUSES_DIM, to_document
from flashsale.hot_store import ensure_time_index

CITIES = [
    {"city_id": 1, "city": "CityA", "province": "P1", "demand_factor": 1.0},
    {"city_id": 2, "city": "CityB", "province": "P1", "demand_factor": 0.8},
    {"city_id": 3, "city": "CityC", "province": "P2", "demand_factor": 1.2},
]
WAREHOUSES = [
    {"warehouse_id": 10, "warehouse_name": "WH-A", "city_id": 1, "capacity": 100},
    {"warehouse_id": 11, "warehouse_name": "WH-B", "city_id": 2, "capacity": 5},
    {"warehouse_id": 20, "warehouse_name": "WH-C", "city_id": 3, "capacity": 100},
]
PRODUCTS = [
    {
        "product_id": p,
        "category": "cat" + str(p % 2),
        "base_price": 10.0 * p,
        "seller_id": 1,
        "popularity": 1.0,
        "discount_pct": 0.2,
    }
    for p in (1, 2, 3, 4)
]
# (product, warehouse): (orders per minute, qty per order, available)
SCENARIO = {
    (1, 10): (1, 2, 10),
    (1, 11): (0, 0, 500),
    (2, 20): (1, 1, 20),
    (3, 20): (1, 1, 58),
    (4, 10): (1, 1, 63),
    (4, 11): (6, 1, 10000),
}
EXPECTED_ACTION = {(1, 10): "reroute", (2, 20): "pause_ads", (3, 20): "restock", (4, 10): "monitor"}
MALFORMED_ORDERS = 5  # one per reason: missing, wrong_type, out_of_bounds, unknown_id, future_ts
MALFORMED_INVENTORY = 1  # out_of_bounds


def scenario(as_of: datetime, window: int = 15, run: str = "t") -> dict[str, list[dict]]:
    start = as_of - timedelta(minutes=window)
    orders, inv = [], []
    seq = 0
    for (p, w), (n, qty, avail) in SCENARIO.items():
        inv.append(
            {
                "inventory_event_id": f"i-{run}-{p}-{w}-0",
                "product_id": p,
                "warehouse_id": w,
                "inventory_on_hand": avail + 1000,
                "reserved_stock": 0,
                "fulfillment_delay": 5.0,
                "inventory_ts": start + timedelta(seconds=10),
                "inbound_units": 0,
                "inbound_due_minutes": 0.0,
            }
        )
        inv.append(
            {
                "inventory_event_id": f"i-{run}-{p}-{w}-1",
                "product_id": p,
                "warehouse_id": w,
                "inventory_on_hand": avail + 3,
                "reserved_stock": 3,
                "fulfillment_delay": 40.0 if w == 11 else 5.0,
                "inventory_ts": as_of - timedelta(seconds=30),
                "inbound_units": 0,
                "inbound_due_minutes": 0.0,
            }
        )
        city = next(x["city_id"] for x in WAREHOUSES if x["warehouse_id"] == w)
        for m in range(window):
            for k in range(n):
                seq += 1
                orders.append(
                    {
                        "order_id": f"o-{run}-{seq}",
                        "product_id": p,
                        "seller_id": 1,
                        "warehouse_id": w,
                        "city_id": city,
                        "order_qty": qty,
                        "order_value": 10.0 * qty,
                        "order_ts": start + timedelta(minutes=m, seconds=5 + k),
                    }
                )
    good = dict(orders[0])
    bad = []
    for i, (field, val) in enumerate(
        [
            ("order_qty", None),
            ("order_qty", "3"),
            ("order_qty", -1),
            ("product_id", 999),
            ("order_ts", as_of + timedelta(hours=1)),
        ]
    ):
        d = dict(good, order_id=f"bad-{run}-{i}")
        if val is None:
            d.pop(field)
        else:
            d[field] = val
        bad.append(d)
    inv_bad = dict(inv[0], inventory_event_id=f"ibad-{run}", inventory_on_hand=-5)
    return {
        CITIES_DIM.name: [to_document(CITIES_DIM, r) for r in CITIES],
        WAREHOUSES_DIM.name: [to_document(WAREHOUSES_DIM, r) for r in WAREHOUSES],
        PRODUCTS_DIM.name: [to_document(PRODUCTS_DIM, r) for r in PRODUCTS],
        ORDERS_FACT.name: [to_document(ORDERS_FACT, r) for r in orders + bad],
        INVENTORY_FACT.name: [to_document(INVENTORY_FACT, r) for r in inv + [inv_bad]],
    }


def bucketed(docs: dict[str, list[dict]], bucket_minutes: int) -> dict[str, list[dict]]:
    """Facts routed to their time-bucket collections (flashsale/hot_layout.py); dims unchanged.
    A document without a usable timestamp goes to the first bucket of its batch (it stays malformed)."""
    from flashsale.contracts import CONTRACTS, FACTS
    from flashsale.hot_layout import collection_for

    out: dict[str, list[dict]] = {}
    facts = {f.name for f in FACTS}
    for name, rows in docs.items():
        if name not in facts:
            out[name] = rows
            continue
        c = CONTRACTS[name]
        stamps = [r.get(c.time_column) for r in rows]
        first = next((ts for ts in stamps if isinstance(ts, datetime) and ts.tzinfo), None)
        fallback = collection_for(c, first, bucket_minutes) if first is not None else None
        for r, ts in zip(rows, stamps):
            coll = collection_for(c, ts, bucket_minutes) if isinstance(ts, datetime) and ts.tzinfo else fallback
            if coll is None:
                raise ValueError(f"{name}: no document of the batch has a usable {c.time_column}")
            out.setdefault(coll, []).append(r)
    return out


def load(db, docs: dict[str, list[dict]], bucket_minutes: int, drop: bool = True) -> None:
    """Write a scenario the way the simulator does: facts into time-bucket collections."""
    from flashsale.contracts import FACTS

    if drop:
        for name in db.list_collection_names():
            db[name].drop()
    for name, rows in bucketed(docs, bucket_minutes).items():
        if rows:
            db[name].insert_many(rows, ordered=False)
            fact = next((f for f in FACTS if name.startswith(f.name)), None)
            if fact is not None:
                ensure_time_index(db, name, fact)


def peak(
    as_of: datetime,
    *,
    minutes: int,
    orders_per_min: int,
    products: int = 200,
    warehouses: int = 10,
    cities: int = 5,
    inventory_every_min: int = 5,
    offset_minutes: int = 0,
    run: str = "b",
    seed: int = 7,
):
    """A flash-sale peak: ``orders_per_min`` orders over ``minutes`` minutes ending ``offset_minutes``
    before ``as_of`` (offset > window = history outside the window). Zipf-like product popularity."""
    rng = np.random.default_rng(seed + offset_minutes)
    end = as_of - timedelta(minutes=offset_minutes)
    start = end - timedelta(minutes=minutes)
    dims = {
        CITIES_DIM.name: [
            to_document(CITIES_DIM, {"city_id": c, "city": f"City{c}", "province": f"P{c % 3}", "demand_factor": 1.0})
            for c in range(cities)
        ],
        WAREHOUSES_DIM.name: [
            to_document(
                WAREHOUSES_DIM, {"warehouse_id": w, "warehouse_name": f"WH{w}", "city_id": w % cities, "capacity": 150}
            )
            for w in range(warehouses)
        ],
        PRODUCTS_DIM.name: [
            to_document(
                PRODUCTS_DIM,
                {
                    "product_id": p,
                    "category": f"c{p % 8}",
                    "base_price": 9.9,
                    "seller_id": p % 17,
                    "popularity": 1.0,
                    "discount_pct": 0.3,
                },
            )
            for p in range(products)
        ],
    }
    n = minutes * orders_per_min
    pop = 1.0 / np.arange(1, products + 1)
    pop /= pop.sum()
    pid = rng.choice(products, size=n, p=pop)
    wid = rng.integers(0, warehouses, size=n)
    qty = rng.integers(1, 4, size=n)
    secs = np.sort(rng.uniform(0, minutes * 60, size=n))
    orders = [
        {
            "_id": f"o-{run}-{offset_minutes}-{i}",
            "order_id": f"o-{run}-{offset_minutes}-{i}",
            "product_id": int(pid[i]),
            "seller_id": int(pid[i] % 17),
            "warehouse_id": int(wid[i]),
            "city_id": int(wid[i] % cities),
            "order_qty": int(qty[i]),
            "order_value": float(qty[i] * 9.9),
            "order_ts": start + timedelta(seconds=float(secs[i])),
        }
        for i in range(n)
    ]
    inv = []
    for m in range(0, minutes, inventory_every_min):
        ts = start + timedelta(minutes=m, seconds=1)
        for p in range(products):
            for w in range(warehouses):
                eid = f"i-{run}-{offset_minutes}-{m}-{p}-{w}"
                inv.append(
                    {
                        "_id": eid,
                        "inventory_event_id": eid,
                        "product_id": p,
                        "warehouse_id": w,
                        "inventory_on_hand": int(rng.integers(0, 400)),
                        "reserved_stock": int(rng.integers(0, 5)),
                        "fulfillment_delay": float(rng.uniform(1, 40)),
                        "inventory_ts": ts,
                        "inbound_units": int(rng.integers(0, 3)) * 50,
                        "inbound_due_minutes": float(rng.integers(0, 60)),
                    }
                )
    return {**dims, ORDERS_FACT.name: orders, INVENTORY_FACT.name: inv}
