"""The backtest's edges: terminal tables (rich), the JSON file and the PNG plot (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path

from backtest.replay import jsonable

CONTENDERS = (("radar", "radar (KPI job)"), ("naive_baseline", "naive baseline"), ("oracle", "oracle (true demand)"))


def _fmt(v, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "money":
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return f"{v:,}"


def print_report(result: dict, console) -> None:
    from rich.table import Table

    lead = result["min_lead_min"]
    rk = f"recall_at_{lead}min"
    t = Table(
        title=f"Alert quality, open loop: {result['simulated_minutes']} simulated minutes, "
        f"{result['pairs']:,} product x warehouse pairs, {result['history_hours']} h of archive"
    )
    t.add_column("")
    for _, label in CONTENDERS:
        t.add_column(label, justify="right")
    rows = [
        ("stockout events", "stockouts", ""),
        ("detected before the stockout", "detected", ""),
        (f"recall, lead >= {lead} min", rk, "pct"),
        ("recall, any lead", "recall_any_lead", "pct"),
        ("median lead (min)", "median_lead_min", ""),
        ("alert episodes", "alert_episodes", ""),
        ("  reactive (shelf already empty)", "reactive_episodes", ""),
        ("  true positives", "true_positives", ""),
        ("  false positives", "false_positives", ""),
        ("  pending at the end", "pending_episodes", ""),
        ("precision", "precision", "pct"),
        ("precision, stockout within H of opening", "precision_strict", "pct"),
        ("false alarms per hour", "false_alarms_per_hour", ""),
    ]
    for label, key, kind in rows:
        t.add_row(label, *(_fmt(result[c][key], kind) for c, _ in CONTENDERS))
    console.print(t)
    if result.get("oracle_frontier"):
        f = Table(title="Oracle frontier: alerting while the true P(stockout within H) >= threshold")
        for col in ("threshold", f"recall, lead >= {lead} min", "recall, any lead", "precision", "false alarms / h"):
            f.add_column(col, justify="right")
        for pt in result["oracle_frontier"]:
            f.add_row(
                f"{pt['p_threshold']:g}",
                _fmt(pt[rk], "pct"),
                _fmt(pt["recall_any_lead"], "pct"),
                _fmt(pt["precision"], "pct"),
                _fmt(pt["false_alarms_per_hour"]),
            )
        console.print(f)
    g = result["goals"]
    console.print("goals: " + ", ".join(f"{k} {'[green]met[/]' if v else '[red]missed[/]'}" for k, v in g.items()))
    if "closed_loop" in result:
        o, c, ch = result["open_loop"], result["closed_loop"], result["closed_loop_change"]
        t2 = Table(title="Closed loop, same seed: acting on the radar's alerts vs not")
        for col in ("", "without acting", "acting", "change"):
            t2.add_column(col, justify="right" if col else "left")
        for label, key, kind in (
            ("stockout events", "stockout_events", ""),
            ("stockout-minutes", "stockout_minutes", ""),
            ("lost revenue (NPR)", "lost_revenue", "money"),
            ("lost orders", "lost_orders", ""),
            ("demand suppressed by paused ads (NPR)", "suppressed_revenue", "money"),
            ("unserved demand: lost + suppressed (NPR)", "unserved_revenue", "money"),
            ("revenue (NPR)", "revenue", "money"),
        ):
            t2.add_row(label, _fmt(o[key], kind), _fmt(c[key], kind), _fmt(ch.get(key), "pct") if key in ch else "")
        a = c["actions"]
        t2.add_row("radar restocks ordered (units)", "", f"{a['restock_orders']:,} ({a['restock_units']:,})", "")
        t2.add_row("reroute / paused-ads pair-minutes", "", f"{a['reroute_minutes']:,} / {a['pause_minutes']:,}", "")
        console.print(t2)


def save(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "backtest.json"
    json_path.write_text(json.dumps(jsonable(result), indent=1))
    return json_path, plot(result, out_dir / "backtest.png")


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    lead = result["min_lead_min"]
    s = result["series"]["open_loop"]
    closed = result["series"].get("closed_loop")
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    minute = np.arange(len(s["orders"]))

    ax = axes[0, 0]
    ax.plot(minute, s["orders"], color="0.6", lw=0.8, label="orders / min")
    ax.set_xlabel("simulated minute")
    ax.set_ylabel("orders / min")
    ax2 = ax.twinx()
    ax2.plot(minute, s["stocked_out_pairs"], color="tab:red", lw=1.2, label="pairs out of stock")
    ax2.plot(minute, s["radar_alerts"], color="tab:blue", lw=1.0, label="radar open alerts")
    ax2.plot(minute, s["naive_alerts"], color="tab:orange", lw=0.8, alpha=0.8, label="naive alerting pairs")
    ax2.set_ylabel("pairs")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    ax.set_title("the sale: demand, stockouts and alerts (open loop)")

    ax = axes[0, 1]
    top = max([max(result[c]["leads_min"], default=0) for c, _ in CONTENDERS] + [lead + 1])
    bins = np.arange(0, min(top, 240) + 5, 5)
    for (c, label), color in zip(CONTENDERS, ("tab:blue", "tab:orange", "tab:green")):
        ax.hist(
            np.minimum(result[c]["leads_min"], bins[-1]),
            bins=bins,
            histtype="step",
            lw=1.5,
            color=color,
            label=f"{label}: median {result[c]['median_lead_min'] or 0:g} min",
        )
    ax.axvline(lead, color="k", ls="--", lw=1)
    ax.set_xlabel("lead time before the stockout (min)")
    ax.set_ylabel("stockout events")
    ax.legend(fontsize=8)
    ax.set_title(f"lead time of detected stockouts (dashed: {lead} min)")

    ax = axes[1, 0]
    rk = f"recall_at_{lead}min"
    frontier = result.get("oracle_frontier") or []
    if frontier:
        fx = [pt[rk] or 0 for pt in frontier]
        fy = [pt["precision"] or 0 for pt in frontier]
        ax.plot(fx, fy, "-o", color="tab:green", ms=3, lw=1, label="oracle, threshold swept")
        for pt, x_, y_ in zip(frontier, fx, fy):
            ax.annotate(f"{pt['p_threshold']:g}", (x_, y_), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for (c, label), color in zip(CONTENDERS, ("tab:blue", "tab:orange", "tab:green")):
        ax.plot(
            [result[c][rk] or 0],
            [result[c]["precision"] or 0],
            "s" if c != "oracle" else "D",
            color=color,
            ms=8,
            label=f"{label}: {result[c][rk] or 0:.2f} / {result[c]['precision'] or 0:.2f}",
        )
    ax.add_patch(
        plt.Rectangle(
            (0.9, 0.8), 0.1, 0.2, color="tab:purple", alpha=0.15, label="goal: recall >= 0.9, precision >= 0.8"
        )
    )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"recall, lead >= {lead} min")
    ax.set_ylabel("precision")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("recall vs precision (shaded: the goal)")

    ax = axes[1, 1]
    if closed:
        ax.plot(minute, s["stocked_out_pairs"], color="tab:red", lw=1, label="pairs out of stock, not acting")
        ax.plot(
            minute[: len(closed["stocked_out_pairs"])],
            closed["stocked_out_pairs"],
            color="tab:green",
            lw=1,
            label="pairs out of stock, acting on the radar",
        )
        ax.set_ylabel("pairs out of stock")
        ax2 = ax.twinx()
        ax2.plot(
            minute,
            np.asarray(s["lost_revenue_cum"]) / 1e6,
            color="tab:red",
            ls="--",
            lw=1,
            label="lost revenue, not acting",
        )
        ax2.plot(
            minute[: len(closed["lost_revenue_cum"])],
            np.asarray(closed["lost_revenue_cum"]) / 1e6,
            color="tab:green",
            ls="--",
            lw=1,
            label="lost revenue, acting",
        )
        ax2.set_ylabel("cumulative lost revenue (M NPR)")
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
        ax.set_xlabel("simulated minute")
        ax.set_title("closed loop: same seed, acting vs not")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "closed loop not run (flashsale backtest --act)", ha="center", va="center")
    fig.suptitle(
        f"flashsale backtest: seed {result['sim']['seed']}, {result['sim']['n_products']:,} products x "
        f"{result['sim']['n_warehouses']} warehouses, {result['simulated_minutes']} minutes"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
