"""Each metric of backtest/metrics.py on a hand-made case with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import metrics as M


def test_brier_and_skill():
    p, y = np.array([0.9, 0.2, 0.5]), np.array([1, 0, 1])
    assert M.brier(p, y) == pytest.approx((0.01 + 0.04 + 0.25) / 3)
    ref = np.full(3, 0.5)  # 0.25 each
    assert M.brier_skill(p, ref, y) == pytest.approx(1 - 0.1 / 0.25)
    assert M.brier_skill(ref, ref, y) == 0.0 and M.brier([], []) is None


def test_ece_is_the_bin_weighted_gap():
    # bin 0.0-0.1: 4 cases at p 0.05, 1 positive (gap 0.2); bin 0.8-0.9: 2 cases at 0.85, 2 positive (gap 0.15)
    p = np.array([0.05] * 4 + [0.85] * 2)
    y = np.array([1, 0, 0, 0, 1, 1])
    assert M.ece(p, y) == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.15)
    rel = M.reliability(p, y)
    assert rel.loc[0, "count"] == 4 and rel.loc[8, "observed"] == 1.0 and np.isnan(rel.loc[5, "mean_p"])
    assert M.ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0  # p = 1 lands in the last bin


def test_pr_auc_is_average_precision_with_ties_against_the_forecaster():
    p = np.array([0.9, 0.8, 0.7, 0.6])
    y = np.array([1, 0, 1, 0])
    assert M.pr_auc(p, y) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # a tie between a positive and a negative counts the negative first
    assert M.pr_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert M.pr_auc(p, np.zeros(4)) is None


def test_queue_precision_and_episodes():
    assert M.queue_precision(np.array([True, False, True, True])) == 0.75 and M.queue_precision([]) is None
    rows = pd.DataFrame({"pair": [1, 1, 1, 2, 1], "minute": [3, 4, 5, 4, 9]})
    eps = M.episodes(rows)
    assert eps.values.tolist() == [[1, 3, 5], [1, 9, 9], [2, 4, 4]]


def test_false_episodes_look_until_end_plus_horizon_and_skip_the_unjudged():
    eps = pd.DataFrame({"pair": [1, 2, 3, 4], "start": [10, 10, 10, 95], "end": [20, 20, 20, 96]})
    stockouts = pd.DataFrame({"pair": [1, 2], "minute": [25, 10]})  # pair 2 was out before: not a hit
    # pair 1: out at 25 in (10, 20 + 10] -> right; pair 2, 3: wrong; pair 4: 96 + 10 > 99, not judged
    assert M.false_episodes(eps, stockouts, horizon=10, last_minute=99) == 2


def test_weighted_recall_needs_the_actions_lead_and_weighs_by_lost_revenue():
    stockouts = pd.DataFrame(
        {"pair": [1, 2, 3, 4], "minute": [60, 60, 60, 60], "back": [0, 0, 0, 50], "lost_revenue": [100, 300, 50, 50]}
    )
    queue = pd.DataFrame(
        {
            "pair": [1, 2, 3, 4],
            "minute": [40, 30, 50, 40],
            "action": ["pause_ads", "restock", "reroute", "reroute"],
        }
    )
    lead = {"pause_ads": 15, "reroute": 15, "restock": 45}
    rec, caught = M.weighted_recall(stockouts, queue, lead, 15)
    # pair 1: lead 20 >= 15 caught; pair 2: restock 30 < 45 missed; pair 3: 10 < 15 missed;
    # pair 4: queued at 40, before it was back in stock at 50 (a previous episode): missed
    assert caught.tolist() == [True, False, False, False] and rec == pytest.approx(100 / 500)


def test_mean_ci95_is_a_t_interval():
    from scipy import stats

    x = np.array([0.1, 0.3, 0.2, 0.4, 0.0])
    m, (lo, hi) = M.mean_ci95(x)
    h = stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert m == pytest.approx(0.2) and lo == pytest.approx(0.2 - h) and hi == pytest.approx(0.2 + h)
    assert M.mean_ci95(np.array([0.5]))[1] == [None, None]
