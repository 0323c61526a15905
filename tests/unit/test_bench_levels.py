"""The bounded-hot-store bench's reading of its samples (a pure function: no service)."""

from bench.bench_pipeline import hot_store_levels


def test_levels_split_by_wall_time_not_by_sample_count():
    # dense samples early (a small store counts fast), sparse late: the halves are by time
    samples = [(t, 10) for t in range(0, 100, 10)] + [(400, 50), (700, 40), (1000, 60), (1200, 45)]
    levels = hot_store_levels(samples, interval_s=600)
    assert levels["hot_peak_first_half"] == 50  # t <= 600
    assert levels["hot_peak_second_half"] == 60
    assert levels["hot_peak_per_interval"] == [50, 60, 45]


def test_levels_without_samples():
    assert hot_store_levels([], 600)["hot_peak_first_half"] is None
