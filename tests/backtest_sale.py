"""The small sale both backtest test modules use (tests/unit/test_backtest.py, the local-Spark
tests/integration/test_backtest_spark.py): its parameters and its records written by the Parquet sink."""

from __future__ import annotations

import pyarrow.dataset as ds

from flashsale.settings import load_settings
from kpi.rules import KpiParams
from ray_gen.engine import run
from ray_gen.sinks import SinkSpec

# the spike at minute 120 empties shelves from ~minute 130 on
SMALL = dict(n_products=150, n_warehouses=8, minutes=170, city_shards=1, warehouse_shards=1, batch_size=50_000)
SETTINGS_PARAMS = KpiParams.from_settings(load_settings())  # what the KPI job runs with


def run_tables(tmp_path, name, p, interventions=None):
    """Run the sale into Parquet under tmp_path/name: (progress, {fact: table sorted by its id})."""
    out = tmp_path / name
    progress, _, _ = run(p, SinkSpec("parquet", path=str(out)), interventions=interventions)
    return progress, {
        c: ds.dataset(out / c, format="parquet").to_table().sort_by(k)
        for c, k in (("orders_fact", "order_id"), ("inventory_fact", "inventory_event_id"))
    }
