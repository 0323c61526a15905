"""The fault suite on the real cluster stack (bench/bench_faults.py, also `flashsale bench faults`): eight
faults, one at a time, on one `flashsale run`; nothing lost or duplicated (by id), the dashboard says
"stale" within 2 minutes of the KPI stopping, and every fault recovers without a person.

The suite kills and restarts the stack's own services (fault 8 stops all of it), and brings the stack
back up before it returns."""

from __future__ import annotations

import json

import pytest

from bench.bench_faults import FACTS, STALE_LIMIT_S, run_suite, table

pytestmark = pytest.mark.timeout(2700)

RECOVERY_LIMIT_S = 300  # a new snapshot with newer data within 5 minutes of the service coming back


def test_eight_faults_lose_nothing_and_recover_by_themselves(stack, tmp_path):
    results = run_suite(stack, tmp_path / "faults")
    print(json.dumps(results["faults"], indent=1))
    print(table(results))
    by_name = {f["fault"]: f for f in results["faults"]}
    assert [f["fault"] for f in results["faults"]] == [
        "hot_store_outage",
        "redis_outage",
        "nodemanager_kill",
        "kpi_dag_stopped",
        "future_record",
        "namenode_kill",
        "late_records",
        "sigkill_run",
    ]
    assert not [f for f in results["faults"] if f["error"]], [f for f in results["faults"] if f["error"]]

    for name in ("hot_store_outage", "redis_outage", "nodemanager_kill", "kpi_dag_stopped", "namenode_kill"):
        assert 0 <= by_name[name]["recovered_s"] <= RECOVERY_LIMIT_S, by_name[name]
    assert by_name["hot_store_outage"]["down_s"] >= 30 and by_name["hot_store_outage"]["generator_alive"]
    assert by_name["redis_outage"]["failed_reads_while_down"] > 0  # the outage was seen, so it was tested

    stopped = by_name["kpi_dag_stopped"]
    assert stopped["stale_shown_s"] <= STALE_LIMIT_S, stopped  # from the KPI's last snapshot to the banner
    assert stopped["data_minutes_missed"] > 15, stopped  # longer than the KPI window, in data time
    assert stopped["banner_cleared_s"] <= RECOVERY_LIMIT_S

    assert by_name["future_record"]["as_of_moved_min"] < 240  # the as-of followed the data, not the stamp (+1440)
    assert by_name["late_records"]["written_while_sealed"] > 0
    assert by_name["sigkill_run"]["left_running"] == 0

    rec = results["reconciliation"]
    for c in FACTS:
        r = rec[c.name]
        assert r["lost"] == r["unexpected"] == r["duplicated"] == 0, (c.name, r)
        assert r["generated"] == r["generator_reported"] > 0, (c.name, r)
    assert rec["orders_fact"]["injected"] == by_name["late_records"]["late_written"] + 1  # + the future record
    assert rec["reconciled"]
