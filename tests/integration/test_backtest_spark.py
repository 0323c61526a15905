"""The backtest's replay (backtest/replay.py) is the Spark job: a replayed window equals
spark.kpi_job.compute() on a local[*] SparkSession over the same sale's records. Local Spark, no services;
the backtest's pure parts are tests/unit/test_backtest.py."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from backtest_sale import SETTINGS_PARAMS, SMALL, run_tables

from backtest import replay as B
from flashsale.contracts import arrow_schema
from kpi.rules import SKU_COLUMNS
from ray_gen.catalogue import build_catalogue, dimension_records
from ray_gen.params import make_params


# ---------------------------------------------------------------- the replay is the Spark job
@pytest.fixture(scope="module")
def spark():
    from cluster.services import java_home
    from spark.kpi_job import build_spark

    os.environ.setdefault("JAVA_HOME", java_home())
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the cogroup's Python workers: this venv
    session = build_spark("flashsale-backtest-test")
    yield session
    session.stop()


@pytest.mark.parametrize("lift_minutes", [0, 5], ids=["no_lift", "sale_lift"])
def test_replayed_window_equals_spark_compute(tmp_path, spark, lift_minutes):
    from spark.kpi_job import KpiInputs, compute

    p = make_params(**SMALL)
    params = replace(SETTINGS_PARAMS, lift_minutes=lift_minutes, calendar=B.planned_calendar(p))
    t = 140  # 20 minutes into the spike: shelves emptying, reroutes and pauses recommended
    baseline = B.history_baseline(p, 24)
    sale = B.simulate(p, params, baseline=baseline, snapshot_minutes=frozenset({t}))
    replayed = sale.snapshots[t]
    # the same sale's records, written by the ordinary Parquet sink, are what the job would read
    _, tables = run_tables(tmp_path, "records", p)
    as_of = p.start + timedelta(minutes=t + 1)
    dims = {
        name: pa.Table.from_pylist(rows, schema=arrow_schema(name))
        for name, rows in dimension_records(build_catalogue(p)).items()
    }
    inputs = KpiInputs(
        orders=tables["orders_fact"],
        inventory=tables["inventory_fact"],
        dims=dims,
        baseline=baseline,
        window_start=as_of - timedelta(minutes=params.window_minutes),
    )
    assert spark.sparkContext.master.startswith("local")
    out = compute(spark, inputs, params, as_of)
    job = out.skus
    # the lift is measured against the planned calendar: the sale's discounts make it > 1; per category too
    rp = out.run_params
    assert (rp.sale_lift != 1.0 and len(rp.category_lift) > 1) if lift_minutes else (rp.sale_lift == 1.0), rp
    assert rp.units_per_order > 1.1 and rp.as_of_s == as_of.timestamp()

    key = ["product_id", "warehouse_id"]
    assert len(job) == p.n_products * p.n_warehouses
    both = job.merge(replayed, on=key, how="inner", suffixes=("_job", "_replay"))
    assert len(both) == len(replayed) > 0
    risky = job[job["risk"] != "low"]
    assert (risky["risk"] == "high").sum() > 5 and risky["action"].isin(["reroute", "pause_ads", "restock"]).any()
    # every pair the job finds at risk is in the replay, and what the replay skipped the job finds low/no action
    assert set(map(tuple, risky[key].to_numpy())) <= set(map(tuple, replayed[key].to_numpy()))
    skipped = job.merge(replayed[key], on=key, how="left", indicator=True).query("_merge == 'left_only'")
    assert (skipped["risk"] == "low").all() and skipped["action"].isna().all()
    for col in SKU_COLUMNS:
        if col in key:
            continue
        a, b = both[f"{col}_job"], both[f"{col}_replay"]
        if SKU_COLUMNS[col] == "DOUBLE":
            np.testing.assert_allclose(
                a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-9, equal_nan=True, err_msg=col
            )
        elif SKU_COLUMNS[col] == "BIGINT":  # Spark gives nullable ints back as float (NaN), the replay as Int64 (NA)
            np.testing.assert_array_equal(a.astype(float).to_numpy(), b.astype(float).to_numpy(), err_msg=col)
        else:
            assert (a.isna() == b.isna()).all() and (a[a.notna()] == b[b.notna()]).all(), col
