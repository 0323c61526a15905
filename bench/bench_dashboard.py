"""Dashboard benchmarks: Redis snapshot read latency, browser-measured refresh, server memory soak.

    .venv/bin/python -m bench.bench_dashboard [--reads 2000] [--updates 10] [--soak-seconds 600] [--out PATH]

1. read: ``read_snapshot`` (the dashboard's one MULTI/EXEC round trip) of a full-size snapshot (capped
   tables: 200 alerts, 200 SKU rows, 60 trend points) on the shared Redis, in a private namespace.
   Reports p50/p99 and the socket writes per read (one round trip = 1). Also the pure view-model build.
2. refresh: a streamlit server (refresh 1 s) + headless Chromium; time from writing a new snapshot to the
   new value in the DOM (it includes waiting for the next tick: expected <= refresh + render).
3. soak: the same server with one open page refreshing every 1 s for --soak-seconds while a new snapshot
   is written every 5 s; RSS of the server sampled every 5 s; least-squares slope in MB/min.
JSON into bench/results/dashboard.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboard.view_model import Fetch, resolve
from flashsale.redis_keys import SNAPSHOT_SCHEMA, keys_for, read_snapshot, write_snapshot
from flashsale.settings import load_settings
from flashsale.stores import redis_client

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
NS = "fsr:bench:dash"


def full_snapshot(as_of: datetime, run: int, rows: int = 200, warehouses: int = 20, cities: int = 27) -> dict:
    """A snapshot at the contract's caps (what a flash-sale peak produces)."""
    whs = [
        {
            "warehouse_id": w,
            "warehouse_name": f"Warehouse {w}",
            "city": f"City {w % cities}",
            "province": f"Province {w % 8}",
            "capacity": 50,
            "load_per_min": 40.0 + w,
            "peak_per_min": 70,
            "load_ratio": (40.0 + w) / 50,
            "fulfillment_delay": 10.0 + w,
            "overloaded": w % 4 == 0,
            "reason": "load >= 1 x capacity" if w % 4 == 0 else "",
        }
        for w in range(warehouses)
    ]
    skus, alerts = [], []
    for i in range(rows):
        p = round(1.0 - i / rows, 4)
        wid = i % warehouses
        skus.append(
            {
                "product_id": 1000 + i,
                "category": f"Category {i % 12}",
                "warehouse_id": wid,
                "warehouse_name": f"Warehouse {wid}",
                "city": f"City {wid % cities}",
                "province": f"Province {wid % 8}",
                "available": 10 + i,
                "velocity": 2.0,
                "baseline_velocity": 1.5,
                "eta_median_min": 5.0 + i,
                "eta_pessimistic_min": 3.0 + i,
                "p_stockout": p,
                "risk": "high" if p >= 0.5 else "watch",
            }
        )
        action = ("pause_ads", "restock", "reroute", "monitor")[i % 4] if p >= 0.5 else "monitor"
        alerts.append(
            {
                "alert_id": f"{1000 + i}:{wid}",
                "product_id": 1000 + i,
                "warehouse_id": wid,
                "action": action,
                "reason": f"high risk (p={p:.2f}); pessimistic ETA {3.0 + i:.1f} min < restock lead time 45 min",
                "numbers": {
                    "available": 10 + i,
                    "velocity": 2.0,
                    "eta_median_min": 5.0 + i,
                    "eta_pessimistic_min": 3.0 + i,
                    "p_stockout": p,
                    "restock_lead_time_min": 45.0,
                    "horizon_min": 60.0,
                    "suggested_units": 100 + i,
                    "reroute_from_warehouse_id": 3,
                    "surplus_units": 40,
                },
                "status": "open",
                "first_seen": as_of.isoformat(),
                "runs_open": 3,
            }
        )
    start = as_of - timedelta(minutes=15)
    return {
        "schema": SNAPSHOT_SCHEMA,
        "run_id": f"bench-{run}",
        "computed_at": as_of.isoformat(),
        "data_as_of": as_of.isoformat(),
        "window_start": start.isoformat(),
        "window_minutes": 15,
        "master": "local[*]",
        "kpis": {
            "orders_last_minute": 1000 + run,
            "orders_per_minute_avg": 1000.0,
            "units_in_window": 30000,
            "high_risk_sku_count": 100,
            "high_risk_pairs": 100,
            "watch_pairs": 60,
            "expected_stockouts": 80.5,
            "overloaded_warehouses": 5,
            "open_alerts": rows,
            "quarantined_docs": 2,
            "pairs_without_inventory": 0,
        },
        "orders_per_minute": [
            {"minute": (start + timedelta(minutes=i)).isoformat(), "orders": 900 + i, "units": 1400} for i in range(15)
        ],
        "sku_risk": skus,
        "warehouses": whs,
        "geo_city": [
            {
                "city": f"City {c}",
                "pairs": 10,
                "high_risk_pairs": c % 5,
                "watch_pairs": 2,
                "expected_stockouts": float(c),
                "max_p_stockout": 0.9,
                "units_per_min": 3.0,
            }
            for c in range(cities)
        ],
        "geo_province": [
            {
                "province": f"Province {p}",
                "pairs": 30,
                "high_risk_pairs": p,
                "watch_pairs": 4,
                "expected_stockouts": float(p),
                "max_p_stockout": 0.9,
                "units_per_min": 9.0,
            }
            for p in range(8)
        ],
        "alerts": alerts,
        "alerts_total": rows,
        "data_quality": {},
        "baseline": {"pairs": 0, "source": "none"},
        "params": {},
        "timings_s": {},
    }


def write(client, keys, snap: dict) -> int:
    size = write_snapshot(client, keys, snap, ttl_seconds=900, trend_max_points=60)
    assert size is not None  # only a compare-and-set write (expect_head) can be refused
    return size


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def bench_read(s, reads: int) -> dict:
    r, keys = redis_client(s), keys_for(s)
    for i in range(60):  # a full trend
        size = write(r, keys, full_snapshot(datetime.now(UTC), i))
    sends = {"n": 0}
    conn = r.connection_pool.get_connection()
    orig = conn.send_packed_command

    def counting(*a, **kw):
        sends["n"] += 1
        return orig(*a, **kw)

    conn.send_packed_command = counting
    r.connection_pool.release(conn)
    read_snapshot(r, keys, trend_points=60)  # warm
    sends["n"] = 0
    lat, build = [], []
    now = datetime.now(UTC)
    for _ in range(reads):
        t0 = time.perf_counter()
        snap = read_snapshot(r, keys, trend_points=60)
        t1 = time.perf_counter()
        resolve(Fetch(snapshot=snap), None, now, 120, 5)
        t2 = time.perf_counter()
        lat.append((t1 - t0) * 1000)
        build.append((t2 - t1) * 1000)
    writes_per_read = sends["n"] / reads
    raw = []  # the same MULTI/EXEC round trip without JSON decoding: network + Redis only
    for _ in range(reads):
        t0 = time.perf_counter()
        pipe = r.pipeline(transaction=True)
        pipe.get(keys.snapshot)
        pipe.lrange(keys.trend, -60, -1)
        pipe.execute()
        raw.append((time.perf_counter() - t0) * 1000)
    r.delete(*keys.all())
    return {
        "reads": reads,
        "snapshot_bytes": size,
        "trend_points": 60,
        "round_trip_only_ms": {"p50": round(pct(raw, 0.5), 3), "p99": round(pct(raw, 0.99), 3)},
        "read_ms": {
            "p50": round(pct(lat, 0.5), 3),
            "p99": round(pct(lat, 0.99), 3),
            "max": round(max(lat), 3),
            "mean": round(statistics.fmean(lat), 3),
        },
        "socket_writes_per_read": writes_per_read,
        "view_model_ms": {"p50": round(pct(build, 0.5), 3), "p99": round(pct(build, 0.99), 3)},
        "goal": "p99 <= 5 ms on loopback, one round trip per refresh",
    }


def _server(s, refresh: float):
    sys.path.insert(0, str(ROOT / "tests"))
    from dashboard_services import DashboardServer  # the same launcher as the browser tests

    return DashboardServer(
        {"FLASHSALE_KPI_REDIS_NAMESPACE": s.kpi_redis_namespace, "FLASHSALE_DASHBOARD_REFRESH_SECONDS": str(refresh)}
    )


TILE = """() => (Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
                  .map(e => e.innerText).find(t => t.startsWith('Orders / min')) || '')"""


def _open_page(p, url: str):
    from dashboard_services import launch_chromium

    browser = launch_chromium(p)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('[data-testid="stTable"] tbody tr', timeout=60_000)
    return browser, page, time.perf_counter() - t0


def bench_refresh(s, updates: int, refresh: float = 1.0) -> dict:
    from playwright.sync_api import sync_playwright

    r, keys = redis_client(s), keys_for(s)
    write(r, keys, full_snapshot(datetime.now(UTC), 0))
    server = _server(s, refresh)
    lat = []
    try:
        with sync_playwright() as p:
            browser, page, first_paint = _open_page(p, server.url)
            try:
                for i in range(1, updates + 1):
                    value = f"{7000 + i:,}"
                    snap = full_snapshot(datetime.now(UTC), i)
                    snap["kpis"]["orders_last_minute"] = 7000 + i
                    t0 = time.perf_counter()
                    write(r, keys, snap)
                    page.wait_for_function(f"({TILE})().includes('{value}')", timeout=30_000, polling="raf")
                    lat.append(time.perf_counter() - t0)
                    time.sleep(0.37 * (i % 3))  # land the writes at different phases of the refresh tick
            finally:
                browser.close()
    finally:
        server.close()
        r.delete(*keys.all())
    return {
        "refresh_seconds": refresh,
        "updates": updates,
        "first_paint_s": round(first_paint, 3),
        "write_to_visible_s": {
            "p50": round(pct(lat, 0.5), 3),
            "max": round(max(lat), 3),
            "min": round(min(lat), 3),
            "all": [round(x, 3) for x in lat],
        },
        "note": "includes waiting for the next fragment tick (0..refresh s); min approximates the render time",
    }


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    xs, ys = [t / 60 for t, _ in samples], [m for _, m in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def bench_soak(s, seconds: float, refresh: float = 1.0) -> dict:
    import psutil
    from playwright.sync_api import sync_playwright

    r, keys = redis_client(s), keys_for(s)
    write(r, keys, full_snapshot(datetime.now(UTC), 0))
    server = _server(s, refresh)
    proc = psutil.Process(server.proc.pid)
    samples: list[tuple[float, float]] = []
    try:
        with sync_playwright() as p:
            browser, page, _ = _open_page(p, server.url)
            try:
                t0 = time.monotonic()
                i = 0
                while (el := time.monotonic() - t0) < seconds:
                    i += 1
                    write(r, keys, full_snapshot(datetime.now(UTC), i))
                    samples.append((el, proc.memory_info().rss / 2**20))
                    page.wait_for_timeout(5000)  # keeps the page's event loop serviced while waiting
                ok = page.locator(".st-key-fsr_body_live").count() == 1
            finally:
                browser.close()
    finally:
        server.close()
        r.delete(*keys.all())
    warm = [x for x in samples if x[0] >= 60] or samples  # the first minute is import/warm-up growth
    return {
        "seconds": seconds,
        "refresh_seconds": refresh,
        "samples": len(samples),
        "snapshots_written": i,
        "rss_mb": {
            "start": round(samples[0][1], 1),
            "after_1_min": round(warm[0][1], 1),
            "end": round(samples[-1][1], 1),
            "max": round(max(m for _, m in samples), 1),
        },
        "slope_mb_per_min_after_warmup": round(slope_mb_per_min(warm), 4),
        "slope_mb_per_min_all": round(slope_mb_per_min(samples), 4),
        "page_live_at_end": ok,
        "series": [(round(t, 1), round(m, 2)) for t, m in samples],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--soak-seconds", type=float, default=600)
    ap.add_argument("--only", default="read,refresh,soak", help="comma list of read, refresh, soak")
    ap.add_argument("--out", default=str(RESULTS / "dashboard.json"))
    a = ap.parse_args()
    s = load_settings(kpi_redis_namespace=NS)
    only = set(a.only.split(","))
    out: dict = {"when": datetime.now(UTC).isoformat(), "redis": f"{s.bind_host}:{s.redis_port}"}
    if "read" in only:
        out["read"] = bench_read(s, a.reads)
        print(json.dumps(out["read"]), flush=True)
    if "refresh" in only:
        out["refresh"] = bench_refresh(s, a.updates)
        print(json.dumps(out["refresh"]), flush=True)
    if "soak" in only and a.soak_seconds > 0:
        out["soak"] = bench_soak(s, a.soak_seconds)
        print(json.dumps({k: v for k, v in out["soak"].items() if k != "series"}), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"results in {a.out}")


if __name__ == "__main__":
    main()
