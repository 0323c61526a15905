"""Ingest: the generator into the hot store against a plain pymongo insert_many loop of the same
documents into the same store, in the same run.

    .venv/bin/python -m bench.bench_ingest [--minutes 30] [--rate 40]

The ceiling: the generator's own records (same seed, parquet sink), turned into documents first and
routed to the same time-bucket collections the generator writes (flashsale/hot_layout.py), then inserted with unordered insert_many in batches of --batch-size from one client; only the
inserts are timed. The generator: `generate --fast` on the stack's Ray head (2 city + 2 warehouse
shards, each bulk-writing its own batches), timed end to end (actor start-up included).
Writes bench/results/ingest_shards<N>.json and prints a table. Uses scratch databases and drops them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import typer

from flashsale.contracts import FACTS
from flashsale.hot_layout import collection_for
from flashsale.settings import load_settings
from flashsale.stores import mongo_client
from ray_gen.engine import run
from ray_gen.params import make_params
from ray_gen.runner import Target, fact_collections, generate
from ray_gen.sinks import SinkSpec

RESULTS = Path(__file__).parent / "results"


def main(
    minutes: int = typer.Option(30),
    rate: float = typer.Option(40.0, help="base orders per city-minute"),
    products: int = typer.Option(5_000),
    batch_size: int = typer.Option(1_000),
    shards: int = typer.Option(2, help="city shards = warehouse shards"),
    ray: str = typer.Option("stack", help="stack or local"),
):
    s = load_settings()
    p = make_params(minutes=minutes, base_orders_per_city_minute=rate, n_products=products, batch_size=batch_size,
                    city_shards=shards, warehouse_shards=shards, run_id="bench")
    gen_db, base_db = "flashsale_bench_sim_gen", "flashsale_bench_sim_plain"
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_1m_start": os.getloadavg()[0]},
                     "params": {"minutes": minutes, "rate": rate, "products": products, "batch_size": batch_size, "shards": shards}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # the same documents for the ceiling: the run's records, built before the clock starts
            run(p.replace(city_shards=1, warehouse_shards=1), SinkSpec("parquet", path=tmp))
            # same layout as the pipeline's: each fact in its time-bucket collection (flashsale/hot_layout.py)
            docs: dict[str, list[dict]] = {}
            for c in FACTS:
                for r in ds.dataset(Path(tmp) / c.name, format="parquet").to_table().to_pylist():
                    docs.setdefault(collection_for(c, r[c.time_column], s.hot_bucket_minutes), []).append({"_id": r[c.key], **r})
        total = sum(len(v) for v in docs.values())

        with mongo_client(s) as client:
            db = client[base_db]
            t = time.perf_counter()
            for name, ds_docs in docs.items():
                contract = next(c for c in FACTS if name.startswith(c.name))
                db[name].create_index(contract.time_column)  # the generator indexes each new bucket too
                for i in range(0, len(ds_docs), batch_size):
                    db[name].insert_many(ds_docs[i:i + batch_size], ordered=False)
            plain_s = time.perf_counter() - t
            stored_plain = sum(db[name].count_documents({}) for c in FACTS for name in fact_collections(db, c))
        del docs
        results["plain_insert_many"] = {"records": total, "stored": stored_plain, "seconds": round(plain_s, 2),
                                        "records_per_s": round(total / plain_s)}

        summary = generate(p, SinkSpec("mongo", database=gen_db), s, Target(ray), show_progress=False)
        results["generator"] = {
            "records": summary["records"], "stored": sum(c["stored"] for c in summary["collections"].values()),
            "seconds": summary["elapsed_seconds"], "records_per_s": summary["records_per_second"],
            "consistent": summary["consistent"],
        }
        # the same run into the null sink: what the generator costs before any store is involved
        null = generate(p, SinkSpec("null"), s, Target(ray), show_progress=False)
        results["generator_null_sink"] = {"records": null["records"], "stored": null["records"],
                                          "seconds": null["elapsed_seconds"], "records_per_s": null["records_per_second"]}
        results["generator_vs_ceiling"] = round(results["generator"]["records_per_s"] / results["plain_insert_many"]["records_per_s"], 3)
    finally:
        with mongo_client(s) as client:
            client.drop_database(gen_db)
            client.drop_database(base_db)
    results["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    results["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ingest_shards{shards}.json").write_text(json.dumps(results, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table("writer", "records", "stored", "seconds", "records/s")
    for key in ("plain_insert_many", "generator", "generator_null_sink"):
        r = results[key]
        table.add_row(key, f"{r['records']:,}", f"{r['stored']:,}", str(r["seconds"]), f"{r['records_per_s']:,}")
    Console().print(table)
    Console().print(f"generator / plain insert_many ceiling: {results['generator_vs_ceiling']}  (goal >= 0.8)")


if __name__ == "__main__":
    typer.run(main)
