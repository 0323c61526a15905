"""Known KPI snapshots for the dashboard tests, written through the contract's own writer."""

from __future__ import annotations

from datetime import datetime, timedelta

from flashsale.redis_keys import SNAPSHOT_SCHEMA, Keys, write_snapshot
from kpi.rules import action_queue

WAREHOUSES = [
    {
        "warehouse_id": 1,
        "warehouse_name": "Dhaka North DC",
        "city": "Dhaka",
        "province": "Dhaka Division",
        "capacity": 50,
        "load_per_min": 71.0,
        "peak_per_min": 90,
        "load_ratio": 1.42,
        "fulfillment_delay": 12.0,
        "overloaded": True,
        "reason": "load >= 1 x capacity",
    },
    {
        "warehouse_id": 2,
        "warehouse_name": "Chittagong Port WH",
        "city": "Chittagong",
        "province": "Chittagong Division",
        "capacity": 40,
        "load_per_min": 20.0,
        "peak_per_min": 31,
        "load_ratio": 0.5,
        "fulfillment_delay": 41.0,
        "overloaded": True,
        "reason": "fulfillment delay >= 30 min",
    },
    {
        "warehouse_id": 3,
        "warehouse_name": "Sylhet Hub",
        "city": "Sylhet",
        "province": "Sylhet Division",
        "capacity": 30,
        "load_per_min": 5.0,
        "peak_per_min": 9,
        "load_ratio": 0.17,
        "fulfillment_delay": 8.0,
        "overloaded": False,
        "reason": "",
    },
]


def _alert(pid, wid, action, p, eta_med, eta_pess, status="open", **extra) -> dict:
    numbers = {
        "available": 17,
        "velocity": 2.5,
        "eta_median_min": eta_med,
        "eta_pessimistic_min": eta_pess,
        "p_stockout": p,
        "restock_lead_time_min": 45.0,
        "horizon_min": 60.0,
        "suggested_units": None,
        "reroute_from_warehouse_id": None,
        "surplus_units": None,
        **extra,
    }
    return {
        "alert_id": f"{pid}:{wid}",
        "product_id": pid,
        "warehouse_id": wid,
        "action": action,
        "reason": f"rule for {action} fired (p={p:.2f})",
        "numbers": numbers,
        "status": status,
        "first_seen": "2026-01-01T00:00:00+00:00",
        "runs_open": 3,
    }


def snapshot(
    as_of: datetime,
    run: str = "r1",
    *,
    orders_last_minute: int = 1234,
    high_risk: int = 7,
    empty: bool = False,
    empty_shelves: bool = False,
) -> dict:
    """A contract-shaped snapshot. The alerts are deliberately NOT in urgency order. ``empty_shelves``: two
    more actionable alerts on pairs already out of stock (listed apart from the queue)."""
    start = as_of - timedelta(minutes=15)
    opm = [
        {"minute": (start + timedelta(minutes=i)).isoformat(), "orders": 900 + 20 * i, "units": 1500 + 30 * i}
        for i in range(15)
    ]
    opm[-1]["orders"] = orders_last_minute
    alerts = (
        []
        if empty
        else [
            _alert(11, 3, "monitor", 0.31, 140.0, 75.0, expected_loss=40.0),
            _alert(42, 1, "pause_ads", 0.97, 22.0, 9.5, expected_loss=5200.0),
            _alert(7, 2, "restock", 0.88, 50.0, 47.0, suggested_units=120, expected_loss=9100.0),
            _alert(
                99, 1, "reroute", 0.97, 30.0, 18.0, reroute_from_warehouse_id=3, surplus_units=35, expected_loss=3100.0
            ),
            _alert(5, 3, "restock", 0.12, None, None, status="clearing", expected_loss=10.0),
        ]
    )
    if empty_shelves:
        alerts += [
            _alert(78, 1, "pause_ads", 1.0, 0.0, 0.0, available=0, expected_loss=2100.0),
            _alert(77, 2, "restock", 1.0, 0.0, 0.0, available=0, suggested_units=80, expected_loss=6400.0),
        ]
    queue, queue_summary = action_queue(alerts, 20)  # the KPI job's own ranking (kpi/rules.py)
    sku = (
        []
        if empty
        else [
            {
                "product_id": 42,
                "category": "Phones",
                "warehouse_id": 1,
                "warehouse_name": "Dhaka North DC",
                "city": "Dhaka",
                "province": "Dhaka Division",
                "available": 17,
                "velocity": 2.5,
                "baseline_velocity": None,
                "eta_median_min": 22.0,
                "eta_pessimistic_min": 9.5,
                "p_stockout": 0.97,
                "risk": "high",
            },
            {
                "product_id": 7,
                "category": "Sneakers",
                "warehouse_id": 2,
                "warehouse_name": "Chittagong Port WH",
                "city": "Chittagong",
                "province": "Chittagong Division",
                "available": 30,
                "velocity": 1.0,
                "baseline_velocity": 0.8,
                "eta_median_min": 50.0,
                "eta_pessimistic_min": 47.0,
                "p_stockout": 0.88,
                "risk": "high",
            },
        ]
    )
    geo_city = (
        []
        if empty
        else [
            {
                "city": "Dhaka",
                "pairs": 10,
                "high_risk_pairs": 2,
                "watch_pairs": 1,
                "expected_stockouts": 2.4,
                "max_p_stockout": 0.97,
                "units_per_min": 20.0,
            },
            {
                "city": "Chittagong",
                "pairs": 5,
                "high_risk_pairs": 1,
                "watch_pairs": 0,
                "expected_stockouts": 0.9,
                "max_p_stockout": 0.88,
                "units_per_min": 4.0,
            },
            {
                "city": "Sylhet",
                "pairs": 4,
                "high_risk_pairs": 0,
                "watch_pairs": 1,
                "expected_stockouts": 0.5,
                "max_p_stockout": 0.31,
                "units_per_min": 2.0,
            },
        ]
    )
    return {
        "schema": SNAPSHOT_SCHEMA,
        "run_id": run,
        "computed_at": as_of.isoformat(),
        "data_as_of": as_of.isoformat(),
        "window_start": start.isoformat(),
        "window_minutes": 15,
        "master": "local[*]",
        "kpis": {
            "orders_last_minute": orders_last_minute,
            "orders_per_minute_avg": 1050.0,
            "units_in_window": 25000,
            "high_risk_sku_count": 0 if empty else high_risk,
            "high_risk_pairs": 0 if empty else high_risk + 2,
            "watch_pairs": 0 if empty else 4,
            "expected_stockouts": 0.0 if empty else 3.8,
            "overloaded_warehouses": 2,
            "open_alerts": len(alerts),
            "quarantined_docs": 3,
            "pairs_without_inventory": 0,
        },
        "orders_per_minute": opm,
        "sku_risk": sku,
        "warehouses": WAREHOUSES,
        "geo_city": geo_city,
        "geo_province": [],
        "queue": queue,
        "queue_summary": queue_summary,
        "alerts": alerts,
        "alerts_total": len(alerts),
        "data_quality": {},
        "baseline": {"pairs": 0, "source": "none"},
        "params": {},
        "timings_s": {},
    }


def write(client, keys: Keys, snap: dict) -> None:
    write_snapshot(client, keys, snap, ttl_seconds=900, trend_max_points=60)
