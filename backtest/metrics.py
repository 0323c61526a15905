"""How advice is judged: pure metric functions on plain arrays (no simulator, no KPI code).

Forecast quality, per (pair, minute) with the label "stocks out within the horizon":
- Brier score: mean (p - y)^2. Brier skill against a reference forecast: 1 - Brier / Brier_ref.
- ECE (expected calibration error): predictions in 10 equal-width bins; the bin-weighted mean
  |mean p - observed frequency|. ``ece_active`` is the same over predictions >= 0.1 only: the millions
  of near-zero, correctly-quiet pairs otherwise dominate the weights and hide miscalibration where
  decisions are made.
- PR-AUC: average precision (the step-wise area under the precision-recall curve).

The operator's queue (the top ``queue_size`` actionable items each minute):
- queue precision: of the items shown, the share whose pair stocks out within the horizon without the
  action (open loop).
- false actionable alerts per hour: queue episodes (a pair's maximal run of minutes in the queue) whose
  pair did not stock out within the horizon of any of its minutes, per simulated hour.

Stockout recall weighted by lost revenue, with the lead the action needs: a stockout is caught when
its pair was in the queue at some minute before it, at least the action's lead ahead (``required
lead``: restock = its lead time, reroute and pause = 15 min) and after the pair was last back in stock;
each stockout weighs what it lost (the revenue of the demand it turned away).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ECE_BINS = 10
ACTIVE_P = 0.1


def brier(p: np.ndarray, y: np.ndarray) -> float | None:
    p, y = np.asarray(p, float), np.asarray(y, float)
    return float(np.mean((p - y) ** 2)) if len(p) else None


def brier_skill(p: np.ndarray, ref: np.ndarray, y: np.ndarray) -> float | None:
    b, r = brier(p, y), brier(ref, y)
    return None if b is None or not r else 1.0 - b / r


def reliability(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per bin: count, mean prediction, observed frequency (the reliability diagram's points)."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    sp = np.bincount(idx, weights=p, minlength=bins)
    sy = np.bincount(idx, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "bin_low": np.arange(bins) / bins,
                "bin_high": (np.arange(bins) + 1) / bins,
                "count": n,
                "mean_p": np.where(n > 0, sp / np.maximum(n, 1), np.nan),
                "observed": np.where(n > 0, sy / np.maximum(n, 1), np.nan),
            }
        )


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float | None:
    if not len(p):
        return None
    r = reliability(p, y, bins)
    used = r["count"] > 0
    w = r.loc[used, "count"] / r.loc[used, "count"].sum()
    return float((w * (r.loc[used, "mean_p"] - r.loc[used, "observed"]).abs()).sum())


def pr_auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """Average precision: sum over the positives, in descending p, of the precision at each (ties
    broken against the forecaster: at equal p, negatives first)."""
    p, y = np.asarray(p, float), np.asarray(y, bool)
    if not y.any():
        return None
    order = np.lexsort((y, -p))  # descending p; within ties negatives (False) first
    ys = y[order]
    tp = np.cumsum(ys)
    precision = tp / np.arange(1, len(ys) + 1)
    return float(precision[ys].sum() / ys.sum())


def queue_precision(in_queue_label: np.ndarray) -> float | None:
    """Share of queue items (one row per item and minute) whose label is true."""
    y = np.asarray(in_queue_label, bool)
    return float(y.mean()) if len(y) else None


def episodes(rows: pd.DataFrame) -> pd.DataFrame:
    """(pair, minute) rows -> maximal runs of consecutive minutes per pair: pair, start, end."""
    if rows.empty:
        return pd.DataFrame({"pair": pd.Series(dtype="int64"), "start": [], "end": []}).astype("int64")
    r = rows[["pair", "minute"]].drop_duplicates().sort_values(["pair", "minute"], ignore_index=True)
    new = (r["pair"].diff() != 0) | (r["minute"].diff() != 1)
    run = new.cumsum()
    g = r.groupby(run)
    return pd.DataFrame({"pair": g["pair"].first(), "start": g["minute"].min(), "end": g["minute"].max()}).reset_index(
        drop=True
    )


def false_episodes(eps: pd.DataFrame, stockouts: pd.DataFrame, horizon: int, last_minute: int) -> int:
    """Episodes whose pair did not stock out in (start, end + horizon]; episodes whose judgement would
    need minutes past the run (end + horizon > last_minute) are not counted either way."""
    if eps.empty:
        return 0
    x = eps.reset_index(drop=True).assign(ep=lambda d: np.arange(len(d)))
    m = x.merge(stockouts[["pair", "minute"]].rename(columns={"minute": "s"}), on="pair", how="left")
    hit = ((m["s"] > m["start"]) & (m["s"] <= m["end"] + horizon)).groupby(m["ep"]).any()
    judged = (x["end"] + horizon <= last_minute).to_numpy()
    return int((~hit.to_numpy() & judged).sum())


def weighted_recall(
    stockouts: pd.DataFrame, queue: pd.DataFrame, required_lead: dict[str, int], default_lead: int
) -> tuple[float | None, np.ndarray]:
    """(recall weighted by ``lost_revenue``, caught mask). ``stockouts``: pair, minute (first minute
    out), back (first minute the pair had stock again before it, 0 for its first), lost_revenue.
    ``queue``: pair, minute, action (the queue's items each minute)."""
    if stockouts.empty:
        return None, np.zeros(0, bool)
    s = stockouts.reset_index(drop=True).assign(ev=lambda d: np.arange(len(d)))
    q = queue.rename(columns={"minute": "qm"})
    m = s.merge(q, on="pair", how="inner")
    lead = m["minute"] - m["qm"]
    need = m["action"].map(required_lead).fillna(default_lead)
    ok = (m["qm"] >= m["back"]) & (m["qm"] < m["minute"]) & (lead >= need)
    caught = np.zeros(len(s), bool)
    caught[m.loc[ok, "ev"].unique()] = True
    w = s["lost_revenue"].to_numpy(float)
    total = w.sum()
    return (float(w[caught].sum() / total) if total > 0 else None), caught


def mean_ci95(x: np.ndarray) -> tuple[float | None, list[float | None]]:
    """Mean and its 95 % t-interval (paired differences over seeds)."""
    from scipy import stats

    x = np.asarray(x, float)
    if len(x) == 0:
        return None, [None, None]
    m = float(x.mean())
    if len(x) < 2:
        return m, [None, None]
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, [m - h, m + h]
