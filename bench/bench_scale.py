"""Scale: a full fast-forward run (default: 1,440 simulated minutes, ~86 M records, above the seed's
69 M) into the null or parquet sink, with the peak memory of the driver and of every shard actor.

    .venv/bin/python -m bench.bench_scale --sink null --ray local
    .venv/bin/python -m bench.bench_scale --sink parquet --out /tmp/sim --ray inline

Writes bench/results/scale_<sink>_<ray>.json and prints the summary line.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import psutil
import typer

from flashsale.settings import load_settings
from ray_gen.params import make_params
from ray_gen.runner import Target, generate
from ray_gen.sinks import SinkSpec

RESULTS = Path(__file__).parent / "results"
ACTOR_MARKERS = ("ray::CityShard", "ray::WarehouseShard")


class MemorySampler(threading.Thread):
    """Peak RSS of this process and the sum over shard actors, sampled every 0.5 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_driver = self.peak_actors = 0
        self.stop = threading.Event()

    def run(self):
        me = psutil.Process()
        while not self.stop.wait(0.5):
            self.peak_driver = max(self.peak_driver, me.memory_info().rss)
            total = 0
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    if any(m in " ".join(proc.info["cmdline"] or []) for m in ACTOR_MARKERS):
                        total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_actors = max(self.peak_actors, total)


def main(
    sink: str = typer.Option("null"),
    out: str = typer.Option(None),
    ray: str = typer.Option("local"),
    minutes: int = typer.Option(1440),
    rate: float = typer.Option(700.0),
    shards: int = typer.Option(2),
    batch_size: int = typer.Option(50_000),
):
    s = load_settings()
    p = make_params(
        minutes=minutes,
        base_orders_per_city_minute=rate,
        city_shards=shards,
        warehouse_shards=shards,
        batch_size=batch_size,
    )
    sampler = MemorySampler()
    sampler.start()
    summary = generate(p, SinkSpec(sink, path=out), s, Target(ray), show_progress=False)
    sampler.stop.set()
    sampler.join()
    result = {
        "sink": sink,
        "ray": ray,
        "shards": shards,
        "minutes": minutes,
        "rate": rate,
        "records": summary["records"],
        "seconds": summary["elapsed_seconds"],
        "records_per_s": summary["records_per_second"],
        "orders": summary["orders"],
        "inventory_events": summary["inventory_events"],
        "consistent": summary["consistent"],
        "peak_rss_driver_mb": round(sampler.peak_driver / 2**20),
        "peak_rss_actors_total_mb": round(sampler.peak_actors / 2**20),
        "load_avg_1m_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale_{sink}_{ray}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    typer.run(main)
