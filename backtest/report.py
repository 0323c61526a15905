"""The backtest's edges: terminal tables (rich), the JSON file and the PNG report (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path

from backtest.replay import jsonable

CONTENDERS = (("radar", "radar (KPI job)"), ("naive", "naive baseline"), ("oracle", "oracle (true state, MC)"))
ROWS = (
    ("Brier score", "brier", ""),
    ("Brier skill vs naive", "brier_skill", ""),
    ("ECE (10 bins)", "ece", ""),
    ("ECE, predictions >= 0.1", "ece_active", ""),
    ("PR-AUC", "pr_auc", ""),
    ("queue precision", "queue_precision", "pct"),
    ("false actionable alerts / h", "false_actionable_per_hour", ""),
    ("queue episodes", "queue_episodes", ""),
    ("recall, revenue-weighted, at the action's lead", "recall_weighted", "pct"),
    ("  same, top 5 % pairs by revenue", "recall_weighted_top5", "pct"),
)


def _fmt(v, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{v:.1%}"
    if isinstance(v, float):
        return f"{v:,.3f}"
    return f"{v:,}"


def _ci(value, ci) -> str:
    if value is None:
        return "-"
    lo, hi = ci
    return f"{value:+.1%}" + (f" [{lo:+.1%}, {hi:+.1%}]" if lo is not None else "")


def print_report(result: dict, console) -> None:
    from rich.table import Table

    c = result["cases"]
    t = Table(
        title=f"Advice quality, {result['shape']} sale, open loop: {result['simulated_minutes']} minutes, "
        f"{result['pairs']:,} pairs, {c['rows']:,} cases ({c['positives']:,} positive), {c['stockouts']:,} stockouts"
    )
    t.add_column("")
    for _, label in CONTENDERS:
        t.add_column(label, justify="right")
    for label, key, kind in ROWS:
        t.add_row(label, *(_fmt(result[name][key], kind) for name, _ in CONTENDERS))
    console.print(t)
    nd = result["normal_day"]
    console.print(
        f"normal day ({nd['minutes']} min, no sale): {nd['actionable_per_hour']:.1f} actionable alerts / h, "
        f"{nd['actionable_first_hour']} in the first hour"
    )
    cl = result.get("closed_loop")
    if cl:
        console.print(
            f"closed loop over seeds {[s['seed'] for s in cl['seeds']]} (mean change, 95 % CI): net margin "
            f"{_ci(cl['net_margin_change'], cl['net_margin_change_ci95'])}, unserved demand "
            f"{_ci(cl['unserved_change'], cl['unserved_change_ci95'])}"
        )
    g = result["goals"]
    console.print("goals: " + ", ".join(f"{k} {'[green]met[/]' if v else '[red]missed[/]'}" for k, v in g.items()))


def save(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "backtest.json"
    json_path.write_text(json.dumps(jsonable(result), indent=1))
    return json_path, plot(result, out_dir / "backtest.png")


def plot(result: dict, path: Path) -> Path:
    """Reliability diagram, queue precision over the sale, closed-loop change with its interval."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    colors = dict(zip((n for n, _ in CONTENDERS), ("tab:blue", "tab:orange", "tab:green")))

    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for name, label in CONTENDERS:
        rel = result[name]["reliability"]
        x, y, n = (np.asarray(rel[k], dtype=float) for k in ("mean_p", "observed", "count"))
        ok = n > 0
        ax.plot(x[ok], y[ok], "-o", ms=3, color=colors[name], label=f"{label}: ECE {result[name]['ece'] or 0:.3f}")
    ax.set_xlabel("predicted P(stockout within the horizon)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("reliability diagram (10 bins)")

    ax = axes[1]
    qp = result["series"].get("queue_precision") or {}
    for name, label in CONTENDERS:
        pts = qp.get(name) or []
        if pts:
            m, v = zip(*pts)
            ax.plot(m, v, color=colors[name], lw=1, label=f"{label}: {result[name]['queue_precision'] or 0:.2f}")
    ax.axhline(0.6, color="k", ls=":", lw=1, label="goal 0.6")
    s = result["series"]["open_loop"]
    ax2 = ax.twinx()
    ax2.plot(np.arange(len(s["orders"])), s["orders"], color="0.8", lw=0.8)
    ax2.set_ylabel("orders / min (grey)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("simulated minute")
    ax.set_ylabel("queue precision (items that were right)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"the operator's queue over the {result['shape']} sale")

    ax = axes[2]
    cl = result.get("closed_loop")
    if cl:
        keys = (("net_margin_change", "net margin"), ("unserved_change", "unserved demand"))
        for i, (k, _label) in enumerate(keys):
            v, (lo, hi) = cl[k], cl[f"{k}_ci95"]
            if v is None:
                continue
            err = [[v - lo], [hi - v]] if lo is not None else None
            ax.bar(i, v * 100, color=("tab:green" if v > 0 else "tab:red"), alpha=0.7)
            if err:
                ax.errorbar(i, v * 100, yerr=np.asarray(err) * 100, color="k", capsize=6)
            per = [s[k] * 100 for s in cl["seeds"] if s[k] is not None]
            ax.plot([i] * len(per), per, "k.", ms=5)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(keys)), [label for _, label in keys])
        ax.set_ylabel("change when acting on the queue (%)")
        ax.set_title(f"closed loop, {len(cl['seeds'])} paired seeds (bar: mean, line: 95 % CI, dots: seeds)")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "closed loop not run (--loop-seeds 0)", ha="center", va="center")
    fig.suptitle(
        f"flashsale backtest: {result['shape']} sale, seed {result['sim']['seed']}, "
        f"{result['sim']['n_products']:,} products x {result['sim']['n_warehouses']} warehouses, "
        f"{result['simulated_minutes']} minutes"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
