"""KPI cycle time (submit -> snapshot in Redis) at a flash-sale peak window, on local[*] and yarn,
then the same window with N x more history in the hot store (goal: ratio <= 1.2: no full scan).

    .venv/bin/python -m bench.bench_kpi [--orders-per-min 1000] [--history-x 10] [--masters local[*],yarn]

Uses its own Mongo database (flashsale_bench_kpi) and Redis namespace; JSON into bench/results/.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cluster.spark_apps import run_kpi
from flashsale import hot_store
from flashsale.contracts import FACTS, ORDERS_FACT
from flashsale.redis_keys import keys_for, read_snapshot
from flashsale.settings import load_settings
from flashsale.stores import mongo_client, redis_client
from kpi import scenarios as synthetic

RESULTS = Path(__file__).parent / "results"


def _insert(db, docs: dict, bucket_minutes: int, batch: int = 5000) -> float:
    t0 = time.perf_counter()
    n = 0
    for name, rows in synthetic.bucketed(docs, bucket_minutes).items():
        if name.split("__")[0] in {f.name for f in FACTS}:
            db[name].create_index([(next(f for f in FACTS if name.startswith(f.name)).time_column, 1)])
        for i in range(0, len(rows), batch):
            db[name].insert_many(rows[i : i + batch], ordered=False)
            n += len(rows[i : i + batch])
    return n / (time.perf_counter() - t0)


def _cycle(s, master: str, as_of: datetime) -> dict:
    res = run_kpi(s, master=master, as_of=as_of.isoformat(), no_archive=False)
    snap = read_snapshot(redis_client(s), keys_for(s))
    assert snap is not None and snap["run_id"] == res["run_id"], "snapshot not in Redis after the run"
    return {
        "master": master,
        "submit_to_snapshot_s": res["timings_s"].get("submit_to_snapshot_s"),
        "wall_s": res["wall_s"],
        "orders_read": res["rows"]["orders"],
        "inventory_read": res["rows"]["inventory"],
        "timings_s": res["timings_s"],
        "kpis": res["kpis"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders-per-min", type=int, default=1000)
    ap.add_argument("--window", type=int, default=15)
    ap.add_argument("--products", type=int, default=100)
    ap.add_argument("--warehouses", type=int, default=10)
    ap.add_argument("--history-x", type=int, default=10)
    ap.add_argument("--masters", default="local[*],yarn")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--warm",
        action="store_true",
        help="steady state: an unmeasured cycle first carries the inventory state, as the minute DAG does",
    )
    a = ap.parse_args()
    masters = a.masters.split(",")
    base = load_settings()
    ns = f"fsr:bench:{uuid.uuid4().hex[:6]}"
    settings = {
        m: load_settings(
            profile="cluster" if m == "yarn" else "local",
            mongo_db="flashsale_bench_kpi",
            mongo_auth_source=base.mongo_db,
            kpi_redis_namespace=ns,
            kpi_window_minutes=a.window,
        )
        for m in masters
    }
    s0 = next(iter(settings.values()))
    as_of = datetime.now(UTC).replace(second=0, microsecond=0)
    out: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "params": vars(a),
        "as_of": as_of.isoformat(),
        "phases": {},
    }
    gen = dict(minutes=a.window, orders_per_min=a.orders_per_min, products=a.products, warehouses=a.warehouses)
    bm = s0.hot_bucket_minutes
    with mongo_client(s0) as c:
        db = c.get_default_database()
        for name in db.list_collection_names():
            db[name].drop()
        docs = synthetic.peak(as_of, **gen)
        bm = s0.hot_bucket_minutes
        out["insert_docs_per_s_window"] = round(_insert(db, docs, bm))
        out["phases"]["window_only"] = {"hot_collections": len(db.list_collection_names())}
        start = as_of - timedelta(minutes=a.window)
        first = hot_store.window_collections(db.list_collection_names(), ORDERS_FACT, start, bm)[0]
        out["explain_window_query"] = hot_store.explain_window(db, first, ORDERS_FACT, start)
    for phase in ("window_only", "history"):
        if phase == "history":
            with mongo_client(s0) as c:
                db = c.get_default_database()
                rates = []
                for k in range(1, a.history_x):  # (history_x - 1) more windows, all older than the KPI window
                    hist = synthetic.peak(as_of, offset_minutes=k * a.window + 1, run=f"h{k}", **gen)
                    rates.append(_insert(db, {f.name: hist[f.name] for f in FACTS}, bm))
                out["insert_docs_per_s_history"] = round(sum(rates) / len(rates))
                out["phases"]["history"] = {"hot_collections": len(db.list_collection_names())}
        runs = []
        for m in masters:
            for _ in range(a.repeats):
                redis_client(settings[m]).delete(*keys_for(settings[m]).all())  # same starting state each run
                if a.warm:
                    _cycle(settings[m], m, as_of)  # the previous minute's run: leaves the carried state
                runs.append(_cycle(settings[m], m, as_of))
                print(phase, m, runs[-1]["submit_to_snapshot_s"], runs[-1]["timings_s"], flush=True)
        out["phases"][phase]["runs"] = runs
    out["ratio_history_vs_window"] = {}
    for m in masters:
        w = [r["submit_to_snapshot_s"] for r in out["phases"]["window_only"]["runs"] if r["master"] == m]
        h = [r["submit_to_snapshot_s"] for r in out["phases"]["history"]["runs"] if r["master"] == m]
        rw = [r["timings_s"]["read_facts_s"] for r in out["phases"]["window_only"]["runs"] if r["master"] == m]
        rh = [r["timings_s"]["read_facts_s"] for r in out["phases"]["history"]["runs"] if r["master"] == m]
        out["ratio_history_vs_window"][m] = {
            "cycle": round(min(h) / min(w), 3),
            "read_facts": round(min(rh) / min(rw), 3),
        }
    redis_client(s0).delete(*keys_for(s0).all())
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"kpi_{'warm_' if a.warm else ''}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out["ratio_history_vs_window"]), "->", path)


if __name__ == "__main__":
    main()
