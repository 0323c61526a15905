"""Ingest: the generator into the hot store against a plain pymongo insert_many loop of the same
documents into the same store, in the same run.

    .venv/bin/python -m bench.bench_ingest [--minutes 60] [--rate 60] [--shards 2] [--rounds 3]
        [--ceiling-batch-sizes 1000,5000,20000] [--ceiling-threads 1,2,4] [--label L]

Needs the stack's hot store and, with --ray stack (the default), its Ray head:
`flashsale stack up -s hotstore -s ray` (--ray local starts a local Ray instead).

The ceiling: the generator's own records (same seed, parquet sink), turned into documents first and
routed to the same time-bucket collections the generator writes (flashsale/hot_layout.py), then
inserted with plain unordered insert_many; only the inserts are timed. A ceiling is the best plain
insert_many can do, so it is a sweep: every batch size of --ceiling-batch-sizes times every number of
client threads of --ceiling-threads (the batches spread over a thread pool sharing one client), each
in every round; a round's ceiling is its best configuration, and the sweep's medians per
configuration are reported. A ratio above 1 would mean the sweep missed the ceiling.

The generator: what `flashsale generate --fast` runs, on the stack's Ray head (--shards city +
warehouse shards, each bulk-writing its own batches of --batch-size), timed like `generate` times
itself: from actor creation to the last batch stored. Its start-up (until every actor is up and has
published its first snapshot) is reported apart, so the streaming rate can be compared too.

The store (FerretDB) and the 2 cores are shared with other users, so its speed swings by 2x within
minutes: the two writers alternate for --rounds rounds and the figures are medians of the per-round
rates and ratios. Writes bench/results/ingest_shards<N>[_<label>].json and prints a table. Uses
scratch databases and drops them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import typer

from flashsale.contracts import FACTS
from flashsale.hot_layout import collection_for
from flashsale.settings import load_settings
from flashsale.stores import mongo_client
from ray_gen.engine import run
from ray_gen.params import make_params
from ray_gen.runner import Target, fact_collections
from ray_gen.sinks import SinkSpec

RESULTS = Path(__file__).parent / "results"


def _generator(p, sink: SinkSpec, settings, ray: str) -> dict:
    """One generator run as `generate` runs it; the backend's first get() returns once the actors are up."""
    backend = Target(ray).backend(settings)
    ready: list[float] = []
    get = backend.get

    def timed_get(refs):
        out = get(refs)
        if not ready:
            ready.append(time.monotonic())
        return out

    backend.get = timed_get
    started = time.monotonic()
    try:
        progress, counts, _ = run(p, sink, backend)
    finally:
        backend.shutdown()
    elapsed = time.monotonic() - started
    return {
        "records": progress.records,
        "seconds": round(elapsed, 2),
        "startup_seconds": round(ready[0] - started, 2),
        "records_per_s": round(progress.records / elapsed),
        "streaming_records_per_s": round(progress.records / (elapsed - (ready[0] - started))),
        "written": sum(c.get("written", 0) for c in counts.values()),
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _plain_insert_many(db, docs: dict[str, list[dict]], batch_size: int, threads: int) -> float:
    """Plain unordered insert_many of every document into its bucket collection, in batches of
    ``batch_size`` spread over ``threads`` client threads; returns the seconds it took."""
    tasks = [
        (name, ds_docs[i : i + batch_size])
        for name, ds_docs in docs.items()
        for i in range(0, len(ds_docs), batch_size)
    ]
    t = time.perf_counter()
    for name in docs:
        contract = next(c for c in FACTS if name.startswith(c.name))
        assert contract.time_column is not None  # every fact has one
        db[name].create_index(contract.time_column)  # the generator indexes each new bucket too

    def insert(task: tuple[str, list[dict]]) -> None:
        name, batch = task  # (documents with an _id are not modified)
        db[name].insert_many(batch, ordered=False)

    if threads == 1:
        for task in tasks:
            insert(task)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(insert, tasks))
    return time.perf_counter() - t


def _stored(db) -> int:
    return sum(db[n].count_documents({}) for c in FACTS for n in fact_collections(db, c))


def _interrupt_keeps_rounds() -> None:
    """Ctrl-C or SIGTERM raise KeyboardInterrupt, so the finished rounds are saved (a round of a long run
    takes minutes). Set again after every generator run: ray.init installs its own SIGTERM handler, and a
    background start (`nohup ... &`) ignores SIGINT."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(
    minutes: int = typer.Option(60),
    rate: float = typer.Option(60.0, help="base orders per city-minute"),
    products: int = typer.Option(5_000),
    batch_size: int = typer.Option(1_000, help="the generator's records per sink write"),
    shards: int = typer.Option(2, help="city shards = warehouse shards"),
    rounds: int = typer.Option(3, help="alternating ceiling/generator rounds; figures are medians"),
    ray: str = typer.Option("stack", help="stack or local"),
    ceiling_batch_sizes: str = typer.Option("1000,5000,20000", help="plain insert_many batch sizes swept"),
    ceiling_threads: str = typer.Option("1,2,4", help="plain insert_many client threads swept"),
    label: str = typer.Option("", help="result file ingest_shards<N>_<label>.json"),
):
    s = load_settings()
    p = make_params(
        minutes=minutes,
        base_orders_per_city_minute=rate,
        n_products=products,
        batch_size=batch_size,
        city_shards=shards,
        warehouse_shards=shards,
        run_id="bench",
    )
    gen_db, base_db = "flashsale_bench_sim_gen", "flashsale_bench_sim_plain"
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_start": os.getloadavg()[0]},
        "params": {
            "minutes": minutes,
            "rate": rate,
            "products": products,
            "batch_size": batch_size,
            "shards": shards,
            "rounds": rounds,
            "ceiling_batch_sizes": _ints(ceiling_batch_sizes),
            "ceiling_threads": _ints(ceiling_threads),
        },
    }
    configs = [(b, n) for b in _ints(ceiling_batch_sizes) for n in _ints(ceiling_threads)]
    # the same documents for the ceiling: the run's records, built before the clock starts, in the
    # pipeline's layout: each fact in its time-bucket collection (flashsale/hot_layout.py)
    with tempfile.TemporaryDirectory() as tmp:
        run(p.replace(city_shards=1, warehouse_shards=1), SinkSpec("parquet", path=tmp))
        docs: dict[str, list[dict]] = {}
        for c in FACTS:
            for r in ds.dataset(Path(tmp) / c.name, format="parquet").to_table().to_pylist():
                docs.setdefault(collection_for(c, r[c.time_column], s.hot_bucket_minutes), []).append(
                    {"_id": r[c.key], **r}
                )
    total = sum(len(v) for v in docs.values())

    per_round = []
    try:
        with mongo_client(s, socket_timeout_ms=600_000) as client:
            for _ in range(rounds):
                _interrupt_keeps_rounds()
                sweep = []
                for b, n in configs:  # the ceiling: the best configuration of plain insert_many
                    client.drop_database(base_db)
                    db = client[base_db]
                    plain_s = _plain_insert_many(db, docs, b, n)
                    sweep.append(
                        {
                            "batch_size": b,
                            "threads": n,
                            "seconds": round(plain_s, 2),
                            "records_per_s": round(total / plain_s),
                            "stored": _stored(db),
                        }
                    )
                    print(json.dumps(sweep[-1]))
                client.drop_database(base_db)
                client.drop_database(gen_db)
                best = max(sweep, key=lambda r: r["records_per_s"])
                plain = {"records": total, **best, "sweep": sweep}
                gen = _generator(p, SinkSpec("mongo", database=gen_db), s, ray)
                _interrupt_keeps_rounds()
                gdb = client[gen_db]
                gen["stored"] = _stored(gdb)
                per_round.append(
                    {
                        "plain_insert_many": plain,
                        "generator": gen,
                        "ratio": round(gen["records_per_s"] / plain["records_per_s"], 3),
                        "streaming_ratio": round(gen["streaming_records_per_s"] / plain["records_per_s"], 3),
                        "load_avg_1m": os.getloadavg()[0],
                    }
                )
                print(json.dumps(per_round[-1]))
    except KeyboardInterrupt:
        if not per_round:
            raise
        results["interrupted_after_rounds"] = len(per_round)
    finally:
        with mongo_client(s) as client:
            client.drop_database(gen_db)
            client.drop_database(base_db)
    # the same run into the null sink: what the generator costs before any store is involved
    null = None if "interrupted_after_rounds" in results else _generator(p, SinkSpec("null"), s, ray)

    def med(key, sub=None):
        return statistics.median(r[key][sub] if sub else r[key] for r in per_round)

    by_config = {
        f"{b}x{n}": [
            x["records_per_s"]
            for r in per_round
            for x in r["plain_insert_many"]["sweep"]
            if (x["batch_size"], x["threads"]) == (b, n)
        ]
        for b, n in configs
    }
    ceiling_sweep = [
        {"batch_size": b, "threads": n, "records_per_s_median": round(statistics.median(by_config[f"{b}x{n}"]))}
        for b, n in configs
        if by_config[f"{b}x{n}"]
    ]
    best_config = max(ceiling_sweep, key=lambda r: r["records_per_s_median"])
    results.update(
        {
            "per_round": per_round,
            "ceiling_sweep": ceiling_sweep,
            "ceiling_best_config": {"batch_size": best_config["batch_size"], "threads": best_config["threads"]},
            "plain_insert_many_records_per_s": round(med("plain_insert_many", "records_per_s")),
            "generator_records_per_s": round(med("generator", "records_per_s")),
            "generator_startup_seconds": med("generator", "startup_seconds"),
            "generator_streaming_records_per_s": round(med("generator", "streaming_records_per_s")),
            "generator_null_sink": null,
            "generator_vs_ceiling": med("ratio"),
            "generator_streaming_vs_ceiling": med("streaming_ratio"),
            "records": total,
            "all_stored": all(
                r["generator"]["stored"] == total and all(x["stored"] == total for x in r["plain_insert_many"]["sweep"])
                for r in per_round
            ),
        }
    )
    results["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ingest_shards{shards}{'_' + label if label else ''}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    sweep_table = Table("plain insert_many batch", "threads", "rec/s (median of rounds)")
    for r in ceiling_sweep:
        sweep_table.add_row(f"{r['batch_size']:,}", str(r["threads"]), f"{r['records_per_s_median']:,}")
    Console().print(sweep_table)
    table = Table(
        "round",
        "ceiling rec/s (best of sweep)",
        "best batch x threads",
        "generator rec/s",
        "generator start-up s",
        "generator streaming rec/s",
        "ratio",
        "streaming ratio",
    )
    for k, r in enumerate(per_round, 1):
        table.add_row(
            str(k),
            f"{r['plain_insert_many']['records_per_s']:,}",
            f"{r['plain_insert_many']['batch_size']:,} x {r['plain_insert_many']['threads']}",
            f"{r['generator']['records_per_s']:,}",
            str(r["generator"]["startup_seconds"]),
            f"{r['generator']['streaming_records_per_s']:,}",
            str(r["ratio"]),
            str(r["streaming_ratio"]),
        )
    Console().print(table)
    null_rate = f"{null['records_per_s']:,} rec/s" if null else "not run (interrupted)"
    Console().print(f"{total:,} records; null sink {null_rate}; all stored: {results['all_stored']}")
    Console().print(
        f"generator / best plain insert_many, median of {len(per_round)} rounds: "
        f"{results['generator_vs_ceiling']} end to end, "
        f"{results['generator_streaming_vs_ceiling']} after start-up  (goal >= 0.8); wrote {out}"
    )


if __name__ == "__main__":
    typer.run(main)
