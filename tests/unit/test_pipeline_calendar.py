"""`flashsale run` publishes its sale's planned calendar to every pipeline process (the KPI job reads it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale.calendar import parse_calendar
from flashsale.settings import load_settings
from kpi.rules import KpiParams
from radar import pipeline


def test_the_run_publishes_its_planned_calendar(tmp_path):
    s = load_settings(run_dir=tmp_path)
    start = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
    opts = pipeline.RunOptions(speed=5.0, spike_minute=10, minutes=24 * 60)
    pipeline.write_pipeline_env(s, opts, start)
    seen = load_settings(run_dir=tmp_path)
    events = parse_calendar(seen.kpi_sale_calendar)
    # the spike at minute 10 and the default waves at 360 and 720; their size is the planner's (rounded)
    assert [e.start_s for e in events] == [(start + timedelta(minutes=m)).timestamp() for m in (10, 360, 720)]
    assert events[0].lift > events[1].lift > 0 and all(e.lift * 2 == round(e.lift * 2) for e in events)
    assert KpiParams.from_settings(seen).calendar == events
    # before the generator's start is known, no calendar (a normal day's plan)
    pipeline.write_pipeline_env(s, opts)
    assert load_settings(run_dir=tmp_path).kpi_sale_calendar == ""
