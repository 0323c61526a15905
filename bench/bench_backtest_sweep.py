"""Which radar settings trade recall for precision best? The backtest's scores for a set of KPI setting
variants on one simulated sale (in-process, no services), and the oracle's frontier on that sale.

    .venv/bin/python -m bench.bench_backtest_sweep [--products 1000] [--minutes 480] [--variants JSON]

A variant is a dict of KpiParams fields over the settings' defaults, e.g. ``{"lift_minutes": 5}``
(the sale-wide lift), ``{"inbound_in_risk": true}``, ``{"watch_p": 0.35, "exit_p": 0.175}``. The
open-loop sale does not depend on the radar, so every variant sees the same sale and the same ground
truth. Writes bench/results/backtest/sweep.json and prints one line per variant; ~1-2 minutes per
variant at 1,000 products x 480 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import typer

RESULTS = Path(__file__).parent / "results" / "backtest"
SCORED = (
    "recall_at_15min",
    "recall_any_lead",
    "median_lead_min",
    "true_positives",
    "false_positives",
    "precision",
    "false_alarms_per_hour",
)
DEFAULT_VARIANTS = [
    {},
    {"watch_p": 0.35, "exit_p": 0.175},
    {"watch_p": 0.5, "exit_p": 0.25},
    {"clear_runs": 2},
    {"inbound_in_risk": True},
    {"inbound_in_risk": True, "watch_p": 0.05, "exit_p": 0.025},
    {"lift_minutes": 5},
    {"lift_minutes": 5, "watch_p": 0.35, "exit_p": 0.175},
    {"lift_minutes": 5, "watch_p": 0.5, "exit_p": 0.25},
    {"lift_minutes": 5, "inbound_in_risk": True},
]


def main(
    products: int = typer.Option(1_000),
    minutes: int = typer.Option(480),
    seed: int = typer.Option(1111),
    variants: str = typer.Option(json.dumps(DEFAULT_VARIANTS), help="JSON list of KpiParams overrides"),
    out: Path = typer.Option(RESULTS / "sweep.json"),
):
    from backtest.replay import DEFAULT_MIN_LEAD_MINUTES, frontier_points, history_baseline, score, simulate
    from flashsale.settings import load_settings
    from kpi.rules import KpiParams
    from ray_gen.params import make_params

    try:
        overrides = json.loads(variants)
        default = KpiParams.from_settings(load_settings(profile="local"))
        params_list = [replace(default, **v) for v in overrides]
        if not params_list:
            raise ValueError("give at least one variant ({} = the defaults)")
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(f"--variants: {exc}") from exc
    p = make_params(
        minutes=minutes, seed=seed, run_id=f"bt{seed}", n_products=products, city_shards=1, warehouse_shards=1
    )
    baseline = history_baseline(p, 24)
    points, frontier = [], None
    for v, params in zip(overrides, params_list):
        t0 = time.monotonic()
        sale = simulate(p, params, baseline=baseline)
        n = sale.progress.minute + 1
        r = score(sale.radar, sale.truth, n, params.horizon_minutes)
        if frontier is None:  # the oracle does not depend on the radar's settings (only high_p, swept here)
            frontier = frontier_points(sale, n, params.horizon_minutes, DEFAULT_MIN_LEAD_MINUTES)
            naive = score(sale.naive, sale.truth, n, params.horizon_minutes)
            print(json.dumps({"oracle_frontier": frontier, "naive": {k: naive[k] for k in SCORED}}), flush=True)
        points.append(
            {
                "variant": v,
                "seconds": round(time.monotonic() - t0, 1),
                "stockouts": r["stockouts"],
                **{k: r[k] for k in SCORED},
            }
        )
        print(json.dumps(points[-1]), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "products": products,
        "minutes": minutes,
        "seed": seed,
        "pairs": products * p.n_warehouses,
        "defaults": default.as_dict(),
        "naive": {k: naive[k] for k in SCORED},
        "oracle_frontier": frontier,
        "points": points,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
