"""The sustained bench's figures from what it sampled (pure functions: no service), and the pipeline
benches' reading of task logs (one bad line must not cost the run its figures)."""

import json

import pytest

from bench.bench_pipeline import id_tally, result_lines
from bench.bench_sustained import (
    archive_runs,
    default_spike_minute,
    last_half,
    minute_weight,
    next_rate,
    projection,
    publications,
    published_share,
    scaled_rate,
    slope_per_min,
    visibility,
    weighted_quantile,
    write_time,
)

T0 = 1_800_000_000.0  # a whole minute (divisible by 60)


def test_publications_keep_only_newer_data_in_publish_order():
    points = [(T0 + 70, T0 + 60), (T0 + 10, T0), (T0 + 40, T0), (T0 + 100, T0 + 50), (T0 + 130, T0 + 120)]
    # the refresh at +40 carries no newer data; the one at +100 is older than what +70 published
    assert publications(points) == [(T0 + 10, T0), (T0 + 70, T0 + 60), (T0 + 130, T0 + 120)]


def test_published_share_counts_whole_minutes_after_the_first_snapshot():
    pubs = [(T0 + 30, T0), (T0 + 65, T0 + 60), (T0 + 130, T0 + 120), (T0 + 250, T0 + 240)]
    share = published_share(pubs, end=T0 + 300)
    # minutes from T0+60 (the first whole minute after the first snapshot) to T0+300: 4 minutes
    assert share["minutes"] == 4
    assert share["published"] == 3  # T0+180..240 had none
    assert share["share"] == 0.75
    assert len(share["missed_minutes"]) == 1


def test_published_share_without_snapshots():
    assert published_share([], end=T0 + 600)["share"] is None


def test_weighted_quantile():
    assert weighted_quantile([1, 2, 3, 4], [1, 1, 1, 1], 0.5) == 2
    assert weighted_quantile([1, 2, 3, 4], [0, 0, 0, 1], 0.5) == 4
    assert weighted_quantile([5, 1, 3], [1, 1, 1], 1.0) == 5
    assert weighted_quantile([1, 2], [0, 0], 0.5) is None


def test_visibility_uniform_in_time():
    # a publication every minute with data up to its minute's start, 30 s after it
    pubs = [(T0 + 60 * k + 30, T0 + 60 * k) for k in range(1, 11)]
    v = visibility(pubs, lo=T0 + 60, hi=T0 + 600, end=T0 + 700, refresh_s=0)
    # an order at ts waits for the next as-of >= ts: as-of T0+60k covers ts in (T0+60(k-1), T0+60k]
    # latency = 60k + 30 - (60(k-1) + x) for x in (0, 60]: 30..90 s
    assert v["seconds"] == 540
    assert v["not_visible_by_end"] == 0
    assert v["p50"] == pytest.approx(60, abs=1.5)
    assert v["max"] == pytest.approx(90, abs=1)
    with_refresh = visibility(pubs, lo=T0 + 60, hi=T0 + 600, end=T0 + 700, refresh_s=5)
    assert with_refresh["p50"] == pytest.approx(v["p50"] + 5)


def test_visibility_uses_the_earliest_covering_publication():
    # a later publication with older data does not help: the first one whose as-of >= ts counts
    pubs = [(T0 + 100, T0 + 90), (T0 + 50, T0 + 40)]
    v = visibility(pubs, lo=T0 + 10, hi=T0 + 11, end=T0 + 200, refresh_s=0)
    assert v["max"] == pytest.approx(40)


def test_visibility_of_data_published_ahead_of_its_event_time_is_zero():
    pubs = [(T0 + 10, T0 + 60)]  # a whole minute written (and published) at its start
    v = visibility(pubs, lo=T0, hi=T0 + 60, end=T0 + 100, refresh_s=5)
    assert v["max"] == pytest.approx(15)  # ts = T0: 10 s
    assert v["p50"] == 5  # ts >= T0 + 10: on the dashboard before it happened
    assert v["published_before_event_share"] == pytest.approx(50 / 60, abs=0.02)
    # from the write (the minute's start, T0): 10 s for every order of the minute
    written = write_time(sim_start=T0, wall_start=T0)
    w = visibility(pubs, lo=T0, hi=T0 + 60, end=T0 + 100, refresh_s=5, origin=written)
    assert w["p50"] == w["max"] == 15
    assert written(T0 + 59) == T0 and written(T0 + 61) == T0 + 60


def test_visibility_counts_a_stall_until_the_end():
    pubs = [(T0 + 20, T0 + 10)]  # nothing after: orders after T0+10 are never visible
    v = visibility(pubs, lo=T0, hi=T0 + 100, end=T0 + 300, refresh_s=0)
    assert v["not_visible_by_end"] == 89  # T0+11 .. T0+99
    assert v["max"] == pytest.approx(289)  # the order at T0+11: at least until the end
    assert v["p50"] > 200


def test_visibility_weighted_by_orders():
    pubs = [(T0 + 70, T0 + 60), (T0 + 300, T0 + 120)]  # the second minute waited long
    weight = minute_weight({T0: 1000.0, T0 + 60: 1.0})
    by_orders = visibility(pubs, lo=T0, hi=T0 + 120, end=T0 + 400, refresh_s=0, weight=weight)
    uniform = visibility(pubs, lo=T0, hi=T0 + 120, end=T0 + 400, refresh_s=0)
    assert by_orders["p95"] < uniform["p95"]  # almost every order is in the first, fast minute


def test_minute_weight_fills_a_minute_no_snapshot_counted():
    weight = minute_weight({T0: 600.0, T0 + 120: 1200.0})
    assert weight(T0 + 30) == 10
    assert weight(T0 + 90) == pytest.approx(900 / 60)  # the mean of the known minutes


def test_slope_and_last_half():
    samples = [(t, 100.0 + 2.0 * t) for t in range(0, 600, 10)]  # +2 per second = +120 per minute
    assert slope_per_min(samples) == pytest.approx(120)
    half = last_half(samples)
    assert half[0][0] >= 295 and half[-1][0] == 590
    assert slope_per_min([(0, 1.0)]) is None
    assert slope_per_min([(5, 1.0), (5, 2.0)]) is None


def test_slope_of_a_sawtooth_that_levels_off_is_near_zero():
    saw = [(t, 1000.0 + (t % 600) * 10) for t in range(0, 3600, 10)]  # archived every 10 minutes
    assert abs(slope_per_min(last_half(saw)) or 0) < 100  # vs +600/min within a tooth


def test_projection_to_24_hours():
    samples = [(t * 60.0, 1000.0 + 50 * t) for t in range(61)]  # 60 minutes, +50 per minute
    p = projection(samples, horizon_min=1440)
    assert p["last"] == 4000
    assert p["slope_per_min_last_half"] == pytest.approx(50)
    assert p["at_horizon"] == 4000 + 50 * (1440 - 60)
    assert projection([])["at_horizon"] is None
    falling = [(t * 60.0, 1000.0 - 10 * t) for t in range(61)]
    assert projection(falling)["at_horizon"] == 0  # a size never projects below 0


def test_archive_runs_from_task_logs():
    attempts = [
        {"result": {"skipped": True, "batches": []}, "task_s": 40},
        {
            "result": {
                "batches": [{"rows": 9000, "quarantined": 0}, {"rows": 900, "quarantined": 100, "supplement": 1}],
                "seconds": {"plan": 1, "spark_start": 20, "batches": 30},
            },
            "task_s": 100,
        },
        {"result": {"batches": ["not a batch"]}, "task_s": 30},
    ]
    a = archive_runs(attempts)
    assert a["runs"] == 3 and a["runs_that_archived"] == 1
    assert a["records"] == 10_000 and a["batches"] == 2
    assert a["records_per_task_s"] == 100.0
    assert a["app_s"] == 51
    no_times = archive_runs([{"result": {"batches": [{"rows": 500}], "seconds": {"batches": 5}}, "task_s": None}])
    assert no_times["records_per_task_s"] == 100.0


def test_rate_calibration_scales_linearly():
    assert scaled_rate(100, 50_000, 100_000) == 200
    assert scaled_rate(100, 0, 100_000) == 200  # nothing generated: try more
    assert default_spike_minute(60) == 20
    # records = 42,000 fixed + 1,800 per unit of rate (the first minute's inventory does not scale)
    trials = [(103.45, 42_000 + 1_800 * 103.45)]
    trials.append((next_rate(trials, 45_000), 42_000 + 1_800 * next_rate(trials, 45_000)))
    assert next_rate(trials, 45_000) == pytest.approx(3_000 / 1_800)
    assert next_rate([(1.0, 50_000), (0.5, 49_000)], 10_000) == pytest.approx(0.01)  # unreachable: the floor
    assert default_spike_minute(2) == 1


def _record(event: str, ts: str = "2026-12-07T01:00:00Z") -> str:
    return json.dumps({"timestamp": ts, "level": "info", "event": event})


def test_result_lines_skip_and_count_what_they_cannot_read():
    good = {"data_as_of": "2026-12-07T01:00:00+00:00", "timings_s": {"submit_to_snapshot_s": 30.5}}
    lines = [
        _record("INFO starting"),
        _record("KPI_RESULT " + json.dumps(good)),
        _record("KPI_RESULT " + json.dumps(good) + ' {"more": 1}'),  # Extra data: the first value counts
        _record("KPI_REFRESH " + json.dumps(good)[:20]),  # cut off
        _record("26/12/07 INFO a Spark line\nKPI_REFRESH " + json.dumps(good)),  # an event of several lines
        "KPI_RESULT {not a log record",
        "plain text",
        _record("KPI_RESULT [1, 2]"),  # not an object
    ]
    found, bad = result_lines(lines, ("KPI_RESULT ", "KPI_REFRESH "))
    assert [kind for kind, _, _ in found] == ["KPI_RESULT", "KPI_RESULT", "KPI_REFRESH"]
    assert all(res == good for _, res, _ in found)
    assert found[0][2] == "2026-12-07T01:00:00Z"
    assert bad == 3


def test_kpi_cycles_survives_a_bad_line(tmp_path):
    from types import SimpleNamespace

    from bench.bench_pipeline import kpi_cycles

    d = tmp_path / "logs" / "dag_id=flashsale_kpi_minute" / "run_id=x" / "task_id=compute_kpis"
    d.mkdir(parents=True)
    good = {"data_as_of": "2026-12-07T01:00:00+00:00", "timings_s": {"submit_to_snapshot_s": 30.5}}
    (d / "attempt=1.log").write_text(
        "\n".join(
            [
                _record("KPI_RESULT " + json.dumps(good) + " trailing"),
                _record('KPI_RESULT {"data_as_of": "x"}'),  # no timings: skipped, counted
                _record('KPI_REFRESH {"broken'),
            ]
        )
    )
    stats: dict = {}
    cycles = kpi_cycles(SimpleNamespace(airflow_home=tmp_path), since=0, stats=stats)
    assert cycles == [{"kind": "KPI_RESULT", "data_as_of": good["data_as_of"], "submit_to_snapshot_s": 30.5}]
    assert stats["unparsable_lines"] == 2


def test_id_tally_counts_distinct_duplicated_and_foreign_ids():
    chunks = [["o-run1-a", "o-run1-b"], ["o-run1-b", "o-run1-c", "o-run1-c", "o-run1-c"], ["o-run2-z"]]
    t = id_tally(iter(chunks), owned_prefix="o-run1-")
    assert t == {"stored": 7, "distinct": 4, "duplicated": 2, "foreign": 1}
    assert id_tally(iter([]))["distinct"] == 0


def test_summarize_a_sampled_run():
    from types import SimpleNamespace

    from bench.bench_sustained import summarize

    t0 = T0
    # 10 minutes of data from t0; a publication every minute 20 s after its as-of; one minute missed
    points = {
        (f"r{k}", str(k)): {"computed_at": t0 + 60 * k + 20, "data_as_of": t0 + 60 * k} for k in range(1, 11) if k != 6
    }
    samples = [
        {"t": t0 + s, "hot_records": 100 * s, "mem_used_mb": 5000, "db_bytes": 10 * s, "wal_bytes": 5, "load_1": 1.0}
        for s in range(0, 660, 10)
    ]
    sampler = SimpleNamespace(points=points, orders_per_minute={}, samples=samples, errors={})
    result = {
        "minutes": 10,
        "simulated_minutes": 10,
        "spike_minute": 3,
        "marks": {"t0": t0, "sim_start": t0, "generator_end": t0 + 600, "stop": t0 + 660},
    }
    summarize(result, sampler, t0, refresh_s=5)
    assert result["snapshots_published"] == 9
    assert result["published_share"] == pytest.approx(7 / 8)  # minutes 2..9 whole after the first; 6 missed
    assert result["freshness_p95_s"] > result["freshness_p50_s"] > 5
    assert result["freshness"]["uniform_in_time"]["not_visible_by_end"] == 0
    assert result["hot_store_slope_last_half"] == pytest.approx(6000)  # 100 per second
    assert result["projection_24h"]["hot_store_records"]["at_horizon"] > 100 * 600
    assert result["publish_minus_data_as_of_s"]["p50"] == 20
    assert result["freshness_from_write_p95_s"] is not None
    assert len(result["series"]["rows"]) == len(samples)
