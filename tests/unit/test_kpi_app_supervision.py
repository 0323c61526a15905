"""The minute DAG's look at the KPI app that serves the snapshot (flashsale/redis_keys.kpi_app_decision),
without a server; the operator that acts on it runs in tests/services/test_dags_run.py."""

from __future__ import annotations

from flashsale.redis_keys import kpi_app_decision


def test_the_minute_dag_starts_an_app_only_when_needed():
    def decide(head, launch=None, now=1000.0):
        return kpi_app_decision(head, launch, now, stale_s=75, lead_s=180, grace_s=240)[0]

    live = {"app_started_at": 500.0, "published_at": 990.0, "app_deadline": 4100.0}
    assert decide(None)  # nothing ever ran
    assert not decide(live)  # it serves: the minute's run only looks
    assert decide({**live, "published_at": 900.0})  # 100 s without a snapshot: gone or stuck
    assert decide({**live, "app_deadline": 1100.0})  # ends in 100 s: its successor starts
    assert decide({"app_started_at": None, "published_at": 990.0})  # a one-off `flashsale kpi` is no app
    starting = {"submitted_at": 950.0}
    assert not decide(None, starting)  # one is starting: no second start
    assert not decide({**live, "app_deadline": 1100.0}, starting)  # the successor is starting
    assert decide(None, starting, now=950.0 + 241)  # it never published within the grace: start again
    assert decide({**live, "published_at": 900.0}, {"submitted_at": 400.0})  # an old claim is no start
