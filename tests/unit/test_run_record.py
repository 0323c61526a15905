"""`flashsale run` keeps its own start-up and first-alerts times in <run dir>/first_alerts.json, which
bench/bench_run.py copies to bench/results/run_first_alerts.json (no service: the record's writing only)."""

from __future__ import annotations

import json
import time

from flashsale.settings import load_settings
from radar import pipeline


def test_the_run_records_its_stack_start_up_and_first_alerts(tmp_path):
    s = load_settings(profile="cluster", run_dir=tmp_path)
    pipeline._record_run(s, pipeline.RunOptions(products=2_000), stack_up_s=31.4, services_started=["redis"])
    pipeline._record_first_alerts(
        s, since=time.time() - 120, snap={"kpis": {"open_alerts": 263}, "data_as_of": "2026-12-07T05:10:00+00:00"}
    )
    record = json.loads((tmp_path / pipeline.FIRST_ALERTS).read_text())
    assert record["profile"] == "cluster" and record["services"] == list(s.services)
    assert record["products"] == 2_000 and record["speed"] == 5.0 and record["stack_up_s"] == 31.4
    assert 119 <= record["first_alerts_s"] <= 125 and record["open_alerts"] == 263
    assert record["measured_at"] and len(record["load_average_1_5_15"]) == 3


def test_first_alerts_without_a_start_record_still_records_the_time(tmp_path):
    s = load_settings(profile="local", run_dir=tmp_path)
    pipeline._record_first_alerts(s, since=time.time() - 3, snap={"kpis": {"open_alerts": 1}, "data_as_of": "x"})
    record = json.loads((tmp_path / pipeline.FIRST_ALERTS).read_text())
    assert record["profile"] == "local" and 2 <= record["first_alerts_s"] <= 10
