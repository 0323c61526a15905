"""What `flashsale seed` and `flashsale generate` call: dims seeding, a generation run, its summary."""

from __future__ import annotations

import json
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from flashsale.contracts import DIMS, FACTS, to_document, validate
from flashsale.settings import Settings
from ray_gen.catalogue import build_catalogue, dimension_records
from ray_gen.engine import LocalBackend, Progress, RayBackend, run
from ray_gen.params import SimParams
from ray_gen.sinks import SinkSpec


def seed_dimensions(p: SimParams, settings: Settings, database: str | None = None) -> dict[str, dict[str, int]]:
    """Write products_dim, warehouses_dim, cities_dim idempotently; return per-dimension change counts.

    A concurrent reader (the KPI job, every minute) never sees a partial table: an id is never deleted and
    re-inserted. Per dimension, in this order: insert the ids the table lacks, replace each changed document
    in place (one single-document replace each, atomic), delete the ids the catalogue no longer has. So every
    id the old and the new catalogue share is present at every instant, and no order is quarantined as
    `unknown_id` mid-seed (tests/services/test_seed_dims.py checks every state between two writes).
    Not a staging collection renamed onto the live name: FerretDB 1.24 refuses renameCollection with
    dropTarget: true (NotImplemented), and drop + rename leaves a moment with no table. No bulk replaces
    or upserts: FerretDB 1.24 (SQLite) hangs on a multi-statement bulk of ReplaceOne (with or without
    upsert) and then blocks the whole database. A second run with the same parameters writes nothing.
    """
    from flashsale.stores import mongo_client

    dims = dimension_records(build_catalogue(p))
    report = {}
    with mongo_client(settings, socket_timeout_ms=120_000) as client:
        db = client[database or settings.mongo_db]
        for contract in DIMS:
            wanted = {}
            for r in dims[contract.name]:
                validate(contract, r)
                wanted[r[contract.key]] = to_document(contract, r)
            coll = db[contract.name]
            existing = {d["_id"]: d for d in coll.find({})}
            missing = [d for k, d in wanted.items() if k not in existing]
            changed = [d for k, d in wanted.items() if k in existing and existing[k] != d]
            stale = [k for k in existing if k not in wanted]
            for i in range(0, len(missing), 5000):
                coll.insert_many(missing[i : i + 5000], ordered=False)
            for d in changed:  # one by one: FerretDB 1.24 hangs on a bulk of replaces
                coll.replace_one({"_id": d["_id"]}, d)
            for i in range(0, len(stale), 5000):
                coll.delete_many({"_id": {"$in": stale[i : i + 5000]}})
            report[contract.name] = {
                "documents": coll.count_documents({}),
                "inserted": len(missing),
                "replaced": len(changed),
                "deleted": len(stale),
            }
    return report  # fact indexes are made per time bucket by the writer (ray_gen.sinks.MongoSink)


@dataclass
class Target:
    """Where shards run: 'local' (in-process Ray with num_cpus), 'stack' (the stack's Ray head), 'inline' (no Ray)."""

    kind: str = "local"
    num_cpus: int = 2

    def backend(self, settings: Settings):
        if self.kind == "inline":
            return LocalBackend()
        if self.kind == "stack":
            return RayBackend(address=settings.ray_address, ray_env=settings.ray_env())
        if self.kind == "local":
            return RayBackend(num_cpus=self.num_cpus, ray_env=settings.ray_env())
        raise ValueError(f"ray: unknown target {self.kind!r} (choose local, stack or inline)")


def generate(
    p: SimParams,
    sink: SinkSpec,
    settings: Settings,
    target: Target,
    speed: float | None = None,
    show_progress: bool = True,
    verify_store: bool = True,
) -> dict:
    """One generation run with a live progress bar; returns the summary. ``verify_store``: count what the
    sink holds for this run at the end (see ``summarize``)."""
    backend = target.backend(settings)
    stop = {"requested": False}

    def on_sigint(signum, frame):  # first Ctrl-C: stop issuing minutes, flush; second: hard stop
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    started = time.monotonic()
    try:
        with _progress_bar(p, show_progress) as update:
            progress, counts, interrupted = run(
                p, sink, backend, speed=speed, on_progress=update, should_stop=lambda: stop["requested"]
            )
    finally:
        signal.signal(signal.SIGINT, previous)
        backend.shutdown()
    elapsed = time.monotonic() - started
    return summarize(p, sink, settings, progress, counts, interrupted or stop["requested"], elapsed, verify_store)


class _progress_bar:
    def __init__(self, p: SimParams, enabled: bool):
        self.p, self.enabled = p, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda progress: None
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("[bold]sim[/] {task.fields[clock]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} min"),
            TextColumn("{task.fields[records]:>12,} records"),
            TextColumn("{task.fields[rate]:>10,.0f} rec/s"),
            TextColumn("{task.fields[stockouts]:>7,} stockouts"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task("generate", total=self.p.minutes, clock="-", records=0, rate=0.0, stockouts=0)

        def update(progress: Progress) -> None:
            from datetime import timedelta

            elapsed = max(time.monotonic() - progress.started, 1e-9)
            clock = (self.p.start + timedelta(minutes=progress.minute + 1)).strftime("%m-%d %H:%M")
            self.bar.update(
                self.task,
                completed=progress.minute + 1,
                clock=clock,
                records=progress.records,
                rate=progress.records / elapsed,
                stockouts=progress.stockouts,
            )

        return update

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False


def stored_counts(p: SimParams, sink: SinkSpec, settings: Settings) -> dict[str, int]:
    """What the sink really holds for this run (not what the writers think they wrote)."""
    if sink.kind == "mongo":
        from flashsale.settings import load_settings
        from flashsale.stores import mongo_client

        settings = load_settings(**sink.settings_overrides) if sink.settings_overrides else settings
        with mongo_client(settings) as client:
            db = client[sink.database or settings.mongo_db]
            prefixes = {"orders_fact": "o", "inventory_fact": "i"}
            # ids are "<o|i>-<run>-...": a range on _id counts exactly this run ('.' sorts right after '-')
            return {
                c.name: sum(
                    db[coll].count_documents(
                        {"_id": {"$gte": f"{prefixes[c.name]}-{p.run_id}-", "$lt": f"{prefixes[c.name]}-{p.run_id}."}}
                    )
                    for coll in fact_collections(db, c)
                )
                for c in FACTS
            }
    if sink.kind == "parquet":
        import pyarrow.parquet as pq

        assert sink.path is not None  # SinkSpec refuses a parquet sink without a path
        return {
            c.name: sum(
                pq.ParquetFile(f).metadata.num_rows for f in sorted((Path(sink.path) / c.name).glob("*.parquet"))
            )
            for c in FACTS
        }
    return {}


def fact_collections(db, contract) -> list[str]:
    """The time-bucket collections (flashsale/hot_layout.py) holding a fact, oldest first."""
    from flashsale.hot_layout import existing_buckets

    return [name for _, name in existing_buckets(contract, db.list_collection_names())]


def summarize(
    p, sink, settings, progress: Progress, counts: dict, interrupted: bool, elapsed: float, verify_store: bool = True
) -> dict:
    """``stored``: what the sink holds for this run, counted at the end. Without ``verify_store`` (the
    pipeline: archival moves records out of the hot store while the generator runs, and counting a big
    hot store scans it) it is what the store acknowledged, written + already stored; the pipeline then
    reconciles generated == hot + archived instead."""
    stored = stored_counts(p, sink, settings) if sink.kind != "null" and verify_store else {}
    collections = {}
    for c in FACTS:
        w = counts.get(c.name, {})
        acknowledged = w.get("written", 0) + w.get("already_stored", 0)
        collections[c.name] = {
            "generated": w.get("generated", 0),
            "written": w.get("written", 0),
            "already_stored": w.get("already_stored", 0),
            "retries": w.get("retries", 0),
            "stored": stored.get(c.name, acknowledged),
        }
    records = progress.records
    return {
        "run_id": p.run_id,
        "seed": p.seed,
        "sink": sink.kind,
        "interrupted": interrupted,
        "simulated_minutes": progress.minute + 1,
        "elapsed_seconds": round(elapsed, 2),
        "records": records,
        "records_per_second": round(records / elapsed, 1) if elapsed else None,
        "orders": progress.orders,
        "inventory_events": progress.inventory_events,
        "lost_orders": progress.lost_orders,
        "lost_units": progress.lost_units,
        "stockouts": progress.stockouts,
        "collections": collections,
        "store_counted": bool(stored),
        "consistent": all(v["generated"] == v["stored"] for v in collections.values()),
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("collection", "generated", "stored", "already stored", "retries")
    for name, c in summary["collections"].items():
        t.add_row(name, f"{c['generated']:,}", f"{c['stored']:,}", f"{c['already_stored']:,}", f"{c['retries']:,}")
    con = Console()
    con.print(t)
    con.print(
        f"{summary['records']:,} records in {summary['elapsed_seconds']}s ({summary['records_per_second']:,} rec/s); "
        f"{summary['simulated_minutes']} simulated minutes; {summary['stockouts']:,} stockouts; "
        f"{summary['lost_orders']:,} orders lost to empty shelves"
        + ("; [yellow]interrupted (flushed)[/]" if summary["interrupted"] else "")
        + ("" if summary["consistent"] else "; [red]generated != stored[/]")
    )
