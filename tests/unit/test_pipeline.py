"""`flashsale run`'s pieces that need no running pipeline: its settings file, the generator command, the
data clock. (tests/test_e2e_pipeline.py runs the whole pipeline.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flashsale import hot_layout
from flashsale.contracts import ORDERS_FACT
from flashsale.hot_store import newest_event_time
from flashsale.settings import load_settings, pipeline_file
from flashsale.stores import mongo_client
from radar import pipeline


def test_pipeline_file_reaches_every_settings_load_and_goes_away(tmp_path):
    s = load_settings(run_dir=tmp_path)
    assert s.kpi_clock == "wall"
    opts = pipeline.RunOptions(settings={"mongo_db": "flashsale_other", "archive_min_age_minutes": "30"})
    pipeline.write_pipeline_env(s, opts)
    seen = load_settings(run_dir=tmp_path)
    assert (seen.kpi_clock, seen.mongo_db, seen.archive_min_age_minutes) == ("data", "flashsale_other", 30)
    pipeline_file(tmp_path).unlink()
    assert load_settings(run_dir=tmp_path).kpi_clock == "wall"


def test_generator_command_paces_and_names_the_run():
    s = load_settings()
    start = datetime(2025, 11, 11, 23, 45, tzinfo=UTC)
    realtime = pipeline.generator_command(s, pipeline.RunOptions(speed=5, stock_cover=45), start)
    assert realtime[realtime.index("--speed") + 1] == "5" and "--fast" not in realtime
    assert realtime[realtime.index("--run-id") + 1] == "run202511112345"
    assert realtime[realtime.index("--stock-cover") + 1] == "45"
    assert realtime[realtime.index("--ray") + 1] == "stack"
    fast = pipeline.generator_command(s, pipeline.RunOptions(speed=None), start)
    assert "--fast" in fast and "--speed" not in fast
    assert "--rate" not in fast  # the simulator's default rate unless one is asked for
    # archival moves records out of the hot store during a pipeline run: no end-of-run store count
    assert "--no-verify-store" in fast and "--no-verify-store" in realtime
    scaled = pipeline.generator_command(s, pipeline.RunOptions(speed=None, rate=700.0), start)
    assert scaled[scaled.index("--rate") + 1] == "700.0"


@pytest.mark.services
def test_data_clock_is_the_newest_event_and_the_next_run_starts_after_it(stack):
    s = load_settings(profile=stack.profile, mongo_db="flashsale_test_clock", mongo_auth_source=stack.mongo_db)
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)  # accelerated runs write ahead of the wall
    with mongo_client(s) as c:
        c.drop_database(s.mongo_db)
        db = c.get_default_database()
        try:
            assert newest_event_time(db, ORDERS_FACT) is None
            for ts in (future - timedelta(minutes=7), future, future - timedelta(minutes=1)):
                db[hot_layout.collection_for(ORDERS_FACT, ts, s.hot_bucket_minutes)].insert_one(
                    {"_id": ts.isoformat(), "order_ts": ts}
                )
            assert newest_event_time(db, ORDERS_FACT) == future
            start = pipeline.simulated_start(s, pipeline.RunOptions())
            assert start == (future + timedelta(minutes=1)).replace(second=0)
        finally:
            c.drop_database(s.mongo_db)
