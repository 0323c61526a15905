"""`flashsale run`'s data clock: the newest event in the hot store, and the next run starts after it
(against the stack's hot store, in a database of its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale import hot_layout
from flashsale.contracts import ORDERS_FACT
from flashsale.hot_store import newest_event_time
from flashsale.settings import load_settings
from flashsale.stores import mongo_client
from radar import pipeline


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


def test_one_record_stamped_a_day_ahead_does_not_move_the_data_clock(stack):
    """A skewed writer or a pre-created bucket: the clocks stop at the run's own clock + skew."""
    s = load_settings(profile=stack.profile, mongo_db="flashsale_test_clock2", mongo_auth_source=stack.mongo_db)
    now = datetime.now(UTC).replace(microsecond=0)
    real, skewed = now - timedelta(minutes=2), now + timedelta(days=1)
    with mongo_client(s) as c:
        c.drop_database(s.mongo_db)
        db = c.get_default_database()
        try:
            for ts in (real - timedelta(minutes=6), real, skewed):
                db[hot_layout.collection_for(ORDERS_FACT, ts, s.hot_bucket_minutes)].insert_one(
                    {"_id": ts.isoformat(), "order_ts": ts}
                )
            assert newest_event_time(db, ORDERS_FACT) == skewed  # unbounded, the future record wins...
            limit = s.data_clock_limit(now)
            assert limit == now + timedelta(seconds=s.kpi_future_skew_seconds)
            assert newest_event_time(db, ORDERS_FACT, not_after=limit) == real  # ...bounded, it does not
        finally:
            c.drop_database(s.mongo_db)
