"""Which radar settings give the best advice? The backtest's figures (backtest/metrics.py) for a set of KPI
setting variants on one simulated spike sale (in-process, no services), with the naive baseline and the oracle
judged on the same sale.

    .venv/bin/python -m bench.bench_backtest_sweep [--products 1000] [--minutes 480] [--variants JSON]

A variant is a dict of KpiParams fields over the settings' defaults, e.g. ``{"lift_minutes": 5}``
(the measured lift), ``{"prior_minutes": 30}``, ``{"watch_p": 0.35, "exit_p": 0.175}``. The
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
from typing import Any

import typer

RESULTS = Path(__file__).parent / "results" / "backtest"
SCORED = (
    "brier_skill",
    "ece",
    "ece_active",
    "pr_auc",
    "queue_precision",
    "false_actionable_per_hour",
    "recall_weighted",
    "recall_weighted_top5",
)
DEFAULT_VARIANTS = [
    {},
    {"prior_minutes": 30.0},
    {"prior_minutes": 480.0},
    {"lift_minutes": 5},
    {"alpha": 0.15},
    {"inbound_in_risk": False},
    {"calendar": []},  # no planned calendar: what the radar gives without the business's sale plan
]


def main(
    products: int = typer.Option(1_000),
    minutes: int = typer.Option(300),
    seed: int = typer.Option(1111),
    variants: str = typer.Option(json.dumps(DEFAULT_VARIANTS), help="JSON list of KpiParams overrides"),
    out: Path = typer.Option(RESULTS / "sweep.json"),
):
    from backtest.replay import history_baseline, planned_calendar, score_forecasters, shaped, simulate
    from flashsale.settings import load_settings
    from kpi.rules import KpiParams
    from ray_gen.params import make_params

    p = shaped(
        make_params(
            minutes=minutes, seed=seed, run_id=f"bt{seed}", n_products=products, city_shards=1, warehouse_shards=1
        ),
        "spike",
    )
    try:
        overrides = json.loads(variants)
        default = replace(KpiParams.from_settings(load_settings(profile="local")), calendar=planned_calendar(p))
        # the one list-valued field: a JSON list becomes the (empty) tuple of planned events
        fields: list[dict[str, Any]] = [
            {k: tuple(v) if k == "calendar" else v for k, v in o.items()} for o in overrides
        ]
        params_list = [replace(default, **f) for f in fields]
        if not params_list:
            raise ValueError("give at least one variant ({} = the defaults)")
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(f"--variants: {exc}") from exc
    baseline = history_baseline(p, 24)
    points, naive, oracle = [], None, None
    for v, params in zip(overrides, params_list):
        t0 = time.monotonic()
        sale = simulate(p, params, baseline=baseline)
        figs, _ = score_forecasters(sale, p, params)
        if naive is None:  # the naive baseline and the oracle do not depend on the radar's settings
            naive, oracle = ({k: figs[n][k] for k in SCORED} for n in ("naive", "oracle"))
            print(json.dumps({"naive": naive, "oracle": oracle}), flush=True)
        points.append(
            {
                "variant": v,
                "seconds": round(time.monotonic() - t0, 1),
                "stockouts": figs["cases"]["stockouts"],
                **{k: figs["radar"][k] for k in SCORED},
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
        "defaults": {k: v for k, v in default.as_dict().items() if k != "calendar"},
        "naive": naive,
        "oracle": oracle,
        "points": points,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
