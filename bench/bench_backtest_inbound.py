"""Does counting inbound restocks in p_stockout help the radar? The backtest's scores along a threshold
sweep, with and without `kpi_inbound_in_risk`, on the same simulated sale (in-process, no services).

    .venv/bin/python -m bench.bench_backtest_inbound [--products 2000] [--minutes 480]

Each point: watch_p = w (an alert opens), exit_p = w / 2, high_p = max(w, the default). Writes
bench/results/backtest/inbound_sweep.json and prints one line per point. Several minutes per point.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import typer

RESULTS = Path(__file__).parent / "results" / "backtest"
SCORED = ("recall_at_15min", "recall_any_lead", "median_lead_min", "true_positives", "false_positives", "precision")


def main(products: int = typer.Option(2_000), minutes: int = typer.Option(480), seed: int = typer.Option(1111),
         watch: str = typer.Option("0.05,0.1,0.2,0.35,0.6", help="watch_p values, comma-separated")):
    from flashsale.settings import load_settings
    from ray_gen.params import make_params
    from spark.backtest import history_baseline, score, simulate
    from spark.kpi_rules import KpiParams

    p = make_params(minutes=minutes, seed=seed, run_id=f"bt{seed}", n_products=products, city_shards=1,
                    warehouse_shards=1)
    default = KpiParams.from_settings(load_settings(profile="local"))
    baseline = history_baseline(p, 24)
    points = []
    for inbound in (False, True):
        for w in (float(x) for x in watch.split(",")):
            params = replace(default, watch_p=w, exit_p=w / 2, high_p=max(w, default.high_p), inbound_in_risk=inbound)
            t0 = time.monotonic()
            sale = simulate(p, params, baseline=baseline)
            r = score(sale.radar, sale.truth, sale.progress.minute + 1, params.horizon_minutes)
            points.append({"inbound_in_risk": inbound, "watch_p": w, "seconds": round(time.monotonic() - t0, 1),
                           **{k: r[k] for k in SCORED}})
            print(json.dumps(points[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "products": products,
           "minutes": minutes, "seed": seed, "pairs": products * p.n_warehouses, "points": points}
    (RESULTS / "inbound_sweep.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
