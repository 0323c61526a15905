"""The minute KPI job: one spark-submit entry point for --master local[*] and yarn (`flashsale kpi`).

    spark-submit ... spark/kpi_job.py [--as-of ISO] [--window-minutes N] [--profile P]
                     [--mongo-db DB] [--namespace NS] [--archive-root URL] [--submitted-at EPOCH]

Flow (where the time goes is printed as the last line, ``KPI_RESULT {json}``):
1. While the SparkSession starts, a thread reads the window from the hot store (indexed time filter,
   flashsale/hot_store.py), the dims, the carried Redis state and the archive baseline, and quarantines
   malformed documents (flashsale/contracts.validate_batch, column-wise from the contracts).
2. Spark SQL aggregates early (product x warehouse x minute, WHERE/GROUP BY/HAVING), takes the latest
   inventory per pair, joins warehouses/cities/baseline, and runs the pure KPI functions per product
   group (cogroup().applyInPandas(product_group_kpis)).
3. The driver rolls up (warehouse overload, geo risk, series), applies the alert hysteresis and
   writes the snapshot, trend and state to Redis in one MULTI/EXEC (flashsale/redis_keys.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flashsale.job_args import KPI_RESULT_PREFIX, add_settings_args, settings_from_args

if TYPE_CHECKING:  # the driver imports these lazily, after the JVM has started
    import pandas as pd
    import pyarrow as pa

    from flashsale.settings import Settings
    from kpi.rules import KpiParams

PRODUCT_BUCKETS = 4  # Python calls of the per-product KPI functions per cycle (each gets whole products)


@dataclass
class KpiInputs:
    """The job's input: everything one cycle reads from the stores, validated (facts and dims as Arrow
    tables in the contracts' schemas, the cold baseline as a pandas frame)."""

    orders: pa.Table
    inventory: pa.Table
    dims: dict[str, pa.Table]  # products_dim / warehouses_dim / cities_dim
    baseline: pd.DataFrame  # kpi.baseline.BASELINE_COLUMNS
    window_start: datetime
    inv_state: Any = None  # carried latest inventory per pair (redis_keys.inventory_state_schema), or None
    alert_state: dict[str, dict] = field(default_factory=dict)  # carried alert hysteresis
    head: dict | None = None  # the published head the carried state belongs to (its data_as_of)
    known_ids: dict[str, set[int]] = field(default_factory=dict)
    dq: dict[str, dict] = field(default_factory=dict)  # per contract: valid / quarantined counts and reasons
    baseline_info: dict = field(default_factory=dict)
    baseline_read_at: float = 0.0  # epoch s of the archive baseline's read
    timings: dict[str, float] = field(default_factory=dict)
    inv_start: datetime | None = None
    collections_read: list[str] = field(default_factory=list)
    # per fact, what the window read took from each bucket: a running app's next cycle reads only changes
    window_reads: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class KpiFrames:
    """The Spark part's output: per-SKU KPIs and the small aggregates the driver rolls up."""

    skus: pd.DataFrame  # kpi.rules.SKU_COLUMNS + warehouse_name
    per_minute: pd.DataFrame  # minute_idx, orders, units
    wh_load: pd.DataFrame  # warehouse_id, minute_idx, orders
    warehouses: pd.DataFrame  # warehouse_id, warehouse_name, city, province, capacity, fulfillment_delay
    latest_inventory: pd.DataFrame  # the newest inventory row per pair (carried to the next cycle)
    pairs_without_inventory: int
    run_params: KpiParams  # the params with this run's as-of, measured lifts and units per order


def _parse_args(argv):
    ap = argparse.ArgumentParser("kpi_job")
    ap.add_argument("--as-of", default=None, help="window end (ISO-8601 UTC); default: now")
    add_settings_args(ap)  # --profile, --mongo-db, --namespace, --window-minutes, ... (flashsale/job_args.py)
    ap.add_argument("--no-archive", action="store_true", help="skip the archive baseline")
    ap.add_argument("--submitted-at", type=float, default=None, help="epoch seconds when spark-submit was called")
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="after the first cycle keep refreshing (new data, new as-of) until settings.kpi_refresh_for_seconds "
        "after submission (the minute DAG's mode)",
    )
    return ap.parse_args(argv)


def _read_inputs(
    s: Settings, as_of: datetime, params: KpiParams, use_archive: bool, reuse: KpiInputs | None = None
) -> KpiInputs:
    """Everything the run needs from the stores (runs in a thread while the JVM starts).

    ``reuse``: the previous cycle's inputs of the same app (refresh cycles): its dims and archive
    baseline are kept, and of the window only the buckets whose count changed are read again
    (flashsale.hot_store.read_buckets); a new app reads it all.
    """
    from flashsale import hot_store
    from flashsale.contracts import (
        CITIES_DIM,
        INVENTORY_FACT,
        ORDERS_FACT,
        PRODUCTS_DIM,
        WAREHOUSES_DIM,
        validate_batch,
    )
    from flashsale.redis_keys import keys_for, read_state
    from flashsale.stores import mongo_client, redis_client
    from kpi.baseline import empty_baseline, read_archive_baseline

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    r = redis_client(s)
    alert_state, inv_state, head = read_state(r, keys_for(s))
    start = as_of - timedelta(minutes=params.window_minutes)
    inv_start = inventory_read_start(s, params, as_of, inv_state, head)
    with mongo_client(s) as c:
        db = c.get_default_database()
        dims_raw = hot_store.read_dims(db) if reuse is None else None
        t["read_dims_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        names = db.list_collection_names()
        window_reads: dict[str, dict[str, Any]] = {}
        fact_docs: dict[str, list[dict]] = {}
        cols: list[str] = []
        for fact, fact_start in ((ORDERS_FACT, start), (INVENTORY_FACT, inv_start)):
            # a refresh reads only the buckets that changed since the app's last cycle
            previous = reuse.window_reads.get(fact.name) if reuse else None
            reads, read = hot_store.read_buckets(db, fact, fact_start, s.hot_bucket_minutes, names, previous)
            window_reads[fact.name] = reads
            fact_docs[fact.name] = hot_store.window_documents(reads, fact, fact_start)
            cols += read
        orders_raw, inv_raw = fact_docs[ORDERS_FACT.name], fact_docs[INVENTORY_FACT.name]
        t["read_facts_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    if reuse is None:
        dq: dict[str, dict] = {}
        dims: dict[str, pa.Table] = {}
        assert dims_raw is not None  # read above whenever reuse is None
        for d in (PRODUCTS_DIM, WAREHOUSES_DIM, CITIES_DIM):
            checked = validate_batch(d, dims_raw[d.name])
            dims[d.name], dq[d.name] = checked.valid, checked.quality(dims_raw[d.name])
        known = {
            "product_id": set(dims[PRODUCTS_DIM.name]["product_id"].to_pylist()),
            "warehouse_id": set(dims[WAREHOUSES_DIM.name]["warehouse_id"].to_pylist()),
            "city_id": set(dims[CITIES_DIM.name]["city_id"].to_pylist()),
        }
    else:
        dims, known = reuse.dims, reuse.known_ids
        dq = {d.name: reuse.dq[d.name] for d in (PRODUCTS_DIM, WAREHOUSES_DIM, CITIES_DIM)}
    facts = {}
    for fact, raw in ((ORDERS_FACT, orders_raw), (INVENTORY_FACT, inv_raw)):
        checked = validate_batch(
            fact, raw, known_ids=known, as_of=as_of, future_skew_seconds=params.future_skew_seconds
        )
        facts[fact.name], dq[fact.name] = checked.valid, checked.quality(raw)
    orders, inv = facts[ORDERS_FACT.name], facts[INVENTORY_FACT.name]
    t["validate_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    stale = reuse is not None and time.time() - reuse.baseline_read_at >= s.kpi_baseline_refresh_seconds
    if reuse is not None and not (use_archive and stale):
        baseline, binfo, read_at = reuse.baseline, reuse.baseline_info, reuse.baseline_read_at
    elif use_archive:
        baseline, binfo = read_archive_baseline(s.archive_root, as_of, s.kpi_baseline_days)
        read_at = time.time()  # an hour-long app re-reads it every kpi_baseline_refresh_seconds (newly archived hours)
    else:
        baseline, binfo, read_at = empty_baseline(), {"source": None, "pairs": 0}, time.time()
    t["read_archive_s"] = time.perf_counter() - t3
    return KpiInputs(
        orders=orders,
        inventory=inv,
        dims=dims,
        baseline=baseline,
        window_start=start,
        inv_state=inv_state,
        alert_state=alert_state,
        head=head,
        known_ids=known,
        dq=dq,
        baseline_info=binfo,
        baseline_read_at=read_at,
        timings=t,
        inv_start=inv_start,
        collections_read=cols,
        window_reads=window_reads,
    )


def inventory_read_start(
    s: Settings, params: KpiParams, as_of: datetime, inv_state: Any, head: dict | None
) -> datetime:
    """Where this cycle reads inventory events from.

    With carried state (the latest inventory per pair as of the last published run), from the older
    of the window start and that run's data time: after a gap longer than the window (failed runs
    under load), the events of the gap still reach the pairs they drained. Without state, a bootstrap
    look-back."""
    start = as_of - timedelta(minutes=params.window_minutes)
    if inv_state is None or not len(inv_state):
        return as_of - timedelta(minutes=max(s.kpi_inventory_bootstrap_minutes, params.window_minutes))
    carried_as_of = datetime.fromisoformat(head["data_as_of"]).astimezone(UTC) if head else start
    return min(start, carried_as_of)


def _carried_inventory_table(inv_state):
    """The carried latest inventory per pair as inventory_fact rows (one definition of the schema)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from flashsale.contracts import INVENTORY_FACT, arrow_schema
    from flashsale.redis_keys import inventory_state_schema

    schema = arrow_schema(INVENTORY_FACT)
    if inv_state is None:
        inv_state = inventory_state_schema().empty_table()
    pair = pc.binary_join_element_wise(
        pc.cast(inv_state["product_id"], pa.string()), pc.cast(inv_state["warehouse_id"], pa.string()), ":"
    )
    ids = pc.binary_join_element_wise(pa.scalar("carried"), pair, ":") if len(inv_state) else pa.array([], pa.string())
    return inv_state.append_column(INVENTORY_FACT.key, ids).select(schema.names).cast(schema)


def _utc(times):
    """Inventory times as UTC timestamps, whether they came naive (Spark's collect) or zoned (Arrow)."""
    import pandas as pd

    ts = pd.to_datetime(times)
    return ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")


def _inventory_state(latest) -> bytes:
    """The newest inventory row per pair (a pandas frame from Spark) as the carried state's bytes."""
    import pyarrow as pa

    from flashsale.redis_keys import encode_inventory_state, inventory_state_schema

    ts = _utc(latest["inventory_ts"])
    columns = {c: latest[c] for c in inventory_state_schema().names if c != "inventory_ts"}
    table = pa.table({**columns, "inventory_ts": ts})
    return encode_inventory_state(table)


def _default_as_of(s) -> datetime:
    """Now, or with the data clock the newest order time (+1 ms so that order is inside the window).

    The data clock never passes the run's own clock (Settings.data_clock_limit): an order stamped in the
    future (a skewed writer) is ignored here and quarantined as ``future_ts`` by the window read."""
    if s.kpi_clock == "data":
        from flashsale.contracts import ORDERS_FACT
        from flashsale.hot_store import newest_event_time
        from flashsale.stores import mongo_client

        limit = s.data_clock_limit()
        with mongo_client(s) as c:
            newest = newest_event_time(c.get_default_database(), ORDERS_FACT, not_after=limit)
        if newest is not None:
            return newest.astimezone(UTC) + timedelta(milliseconds=1)
    return datetime.now(UTC)


def build_spark(app_name: str = "flashsale-kpi"):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def newest_per_pair(inventory, end_ms: int):
    """The newest inventory row per (product, warehouse) before ``end_ms`` (ties: the larger event id), as
    pandas with the columns the KPI state needs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = [
        "product_id",
        "warehouse_id",
        "inventory_on_hand",
        "reserved_stock",
        "fulfillment_delay",
        "inventory_ts",
        "inbound_units",
        "inbound_due_minutes",
    ]
    before = pc.less(inventory["inventory_ts"], pa.scalar(end_ms, pa.timestamp("ms", tz="UTC")))
    df = inventory.filter(before).to_pandas()
    df = df.sort_values(["inventory_ts", "inventory_event_id"], ascending=False, kind="stable")
    return df.drop_duplicates(["product_id", "warehouse_id"], keep="first")[cols].reset_index(drop=True)


def pair_state(latest, dims: dict, baseline, end_ms: int):
    """The KPI functions' per-pair state (kpi.rules.STATE_COLUMNS): the newest inventory row per pair joined
    with its warehouse's city, its product and its archive baseline (inner joins on the dims, pandas frames
    here: a pair whose warehouse, city or product is unknown gets no KPIs; left join on the baseline)."""
    import numpy as np
    import pandas as pd

    wh = dims["warehouses_dim"][["warehouse_id", "city_id"]]
    cities = dims["cities_dim"][["city_id", "city", "province"]]
    products = dims["products_dim"][["product_id", "category", "base_price", "discount_pct"]]
    st = latest.merge(wh, on="warehouse_id").merge(cities, on="city_id").merge(products, on="product_id")
    st = st.merge(
        baseline[["product_id", "warehouse_id", "baseline_velocity"]], on=["product_id", "warehouse_id"], how="left"
    )
    discount = st["discount_pct"].astype(float) / 100.0
    ts = _utc(st["inventory_ts"]).dt.as_unit("ms")
    age_min = (end_ms - ts.astype("int64").to_numpy()) / 60000.0  # ms since the epoch, whatever the source unit
    return pd.DataFrame(
        {
            "product_id": st["product_id"].astype("int64"),
            "warehouse_id": st["warehouse_id"].astype("int64"),
            "available": np.maximum(st["inventory_on_hand"] - st["reserved_stock"], 0).astype("int64"),
            "inbound_units": st["inbound_units"].astype("int64"),
            "inbound_in_min": np.maximum(st["inbound_due_minutes"].to_numpy(dtype=float) - age_min, 0.0),
            "category": st["category"],
            "city": st["city"],
            "province": st["province"],
            "unit_price": st["base_price"] * (1 - discount),
            "discount": discount,
            "baseline_velocity": st["baseline_velocity"].astype(float),
        }
    )


def compute(spark, inputs: KpiInputs, params: KpiParams, as_of: datetime) -> KpiFrames:
    """Spark aggregates the window (product x warehouse x minute; the newest inventory per pair), the driver
    runs the pure KPI functions on those aggregates. Returns pandas frames."""

    import pyarrow as pa

    from kpi.rules import product_group_kpis, run_params

    start = inputs.window_start
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(as_of.timestamp() * 1000)
    dims = {name: table.to_pandas() for name, table in inputs.dims.items()}  # once a cycle, for every join below
    spark.createDataFrame(inputs.orders).createOrReplaceTempView("orders")
    base = inputs.baseline

    # 1. Spark aggregates the window early: product x warehouse x minute (WHERE, GROUP BY, HAVING)
    order_minutes = spark.sql(f"""
        SELECT product_id, warehouse_id,
               CAST(FLOOR((unix_millis(order_ts) - {start_ms}) / 60000) AS INT) AS minute_idx,
               SUM(order_qty) AS units, COUNT(*) AS orders
        FROM orders
        WHERE order_ts >= timestamp_millis({start_ms}) AND order_ts < timestamp_millis({end_ms})
        GROUP BY product_id, warehouse_id, CAST(FLOOR((unix_millis(order_ts) - {start_ms}) / 60000) AS INT)
        HAVING SUM(order_qty) > 0""")
    # 2. the two aggregates go to the driver once: every extra Spark job costs ~0.5-1.5 s of scheduling on
    #    a one-executor YARN app, and at 20,000 products x 20 warehouses shipping 400k pairs to a Python
    #    worker and their KPIs back (the former cogroup/applyInPandas) cost 30-45 s a cycle, against ~3 s
    #    for the same pure functions on the driver (issue 19)
    minutes_pd = order_minutes.toPandas()
    # the newest inventory per pair is a reduction of the carried state (one row per pair: 400k at 20,000
    # products) and the window's events: on the driver, vectorized (~1 s), because shipping the carried
    # rows to a YARN executor every cycle cost ~35 s there (issue 19's sustained run)
    latest_pd = newest_per_pair(
        pa.concat_tables([inputs.inventory, _carried_inventory_table(inputs.inv_state)]), end_ms
    )
    # 3. the pure KPI functions over all products at once (all warehouses of a product: the reroute rule
    #    needs them). The sale-wide lift is one number over all pairs, from the minute aggregate.
    products = dims["products_dim"].set_index("product_id")
    this_run = run_params(params, as_of, minutes_pd, base, products["category"], products["discount_pct"] / 100.0)
    state = pair_state(latest_pd, dims, base, end_ms)
    skus = product_group_kpis(minutes_pd, state, this_run)
    names = dims["warehouses_dim"][["warehouse_id", "warehouse_name"]]
    skus = skus.merge(names, on="warehouse_id", how="inner")
    # nullable integer columns as Spark's Arrow collect gave them (float, NaN for null): assemble's contract
    skus = skus.astype({c: "float64" for c, t in skus.dtypes.items() if str(t) == "Int64"})
    # 4. the rollups come from the same two aggregates
    per_minute = minutes_pd.groupby("minute_idx", as_index=False)[["orders", "units"]].sum()
    wh_load = minutes_pd.groupby(["warehouse_id", "minute_idx"], as_index=False)["orders"].sum()
    wh_load = wh_load[wh_load["orders"] > 0]
    delay = latest_pd.groupby("warehouse_id")["fulfillment_delay"].mean()
    warehouses = (
        dims["warehouses_dim"][["warehouse_id", "warehouse_name", "city_id", "capacity"]]
        .merge(dims["cities_dim"][["city_id", "city", "province"]], on="city_id")
        .drop(columns="city_id")
    )
    warehouses["fulfillment_delay"] = warehouses["warehouse_id"].map(delay)
    pairs = set(zip(minutes_pd["product_id"], minutes_pd["warehouse_id"]))
    no_inv = len(pairs - set(zip(latest_pd["product_id"], latest_pd["warehouse_id"])))
    wh_cols = ["warehouse_id", "warehouse_name", "city", "province", "capacity", "fulfillment_delay"]
    return KpiFrames(
        skus=skus,
        per_minute=per_minute,
        wh_load=wh_load,
        warehouses=warehouses[wh_cols],
        latest_inventory=latest_pd,
        pairs_without_inventory=int(no_inv),
        run_params=this_run,
    )


def assemble(
    s: Settings,
    params: KpiParams,
    inputs: KpiInputs,
    out: KpiFrames,
    as_of: datetime,
    run_id: str,
    master: str,
    timings: dict,
) -> tuple[dict, dict, bytes]:
    """Driver-side rollups, hysteresis and the snapshot dict (pure given its inputs)."""
    from flashsale.redis_keys import SNAPSHOT_SCHEMA
    from kpi import rules as R

    now_iso = datetime.now(UTC).isoformat()
    skus = out.skus.sort_values(["expected_loss", "p_stockout"], ascending=[False, False]).reset_index(drop=True)
    series = R.orders_series(out.per_minute, inputs.window_start, params.window_minutes)
    normal = R.warehouse_normal(inputs.baseline, out.run_params.units_per_order)
    wh = R.warehouse_status(out.wh_load, out.warehouses, out.run_params, normal).sort_values("warehouse_id")
    # hysteresis counts minutes of data: the run's as-of, not the wall clock of the computation
    alerts, alert_state = R.update_alerts(skus, inputs.alert_state, as_of.isoformat(), params)
    queue, queue_summary = R.action_queue(alerts, params.queue_size)
    quarantined = sum(v["quarantined"] for v in inputs.dq.values())
    kpis = R.headline(skus, series, wh, alerts, quarantined, out.pairs_without_inventory)
    kpis["queue_items"] = len(queue)
    kpis["queue_expected_loss"] = round(sum(a["numbers"].get("expected_loss") or 0.0 for a in queue), 2)
    inv_state = _inventory_state(out.latest_inventory)
    sku_cols = [
        "product_id",
        "category",
        "warehouse_id",
        "warehouse_name",
        "city",
        "province",
        "available",
        "inbound_units",
        "velocity",
        "baseline_velocity",
        "eta_median_min",
        "eta_pessimistic_min",
        "p_stockout",
        "expected_loss",
        "risk",
    ]
    snapshot = {
        "schema": SNAPSHOT_SCHEMA,
        "run_id": run_id,
        "computed_at": now_iso,
        "data_as_of": as_of.isoformat(),
        "window_start": inputs.window_start.isoformat(),
        "window_minutes": params.window_minutes,
        "master": master,
        "kpis": kpis,
        "orders_per_minute": series,
        "sku_risk": R.records(skus[sku_cols], s.kpi_max_table_rows),
        "warehouses": R.records(
            wh[
                [
                    "warehouse_id",
                    "warehouse_name",
                    "city",
                    "province",
                    "capacity",
                    "load_per_min",
                    "peak_per_min",
                    "load_ratio",
                    "fulfillment_delay",
                    "overloaded",
                    "reason",
                ]
            ],
            s.kpi_max_table_rows,
        ),
        "geo_city": R.records(R.geo_risk(skus, "city"), s.kpi_max_table_rows),
        "geo_province": R.records(R.geo_risk(skus, "province"), s.kpi_max_table_rows),
        "queue": queue,
        "queue_summary": queue_summary,
        "alerts": alerts[: s.kpi_max_alert_rows],
        "alerts_total": len(alerts),
        "data_quality": {k: {kk: vv for kk, vv in v.items() if kk != "examples"} for k, v in inputs.dq.items()},
        "baseline": inputs.baseline_info,
        "params": out.run_params.as_dict(),
        "timings_s": timings,
    }
    return snapshot, alert_state, inv_state


def run_cycle(
    spark,
    s: Settings,
    params: KpiParams,
    as_of: datetime,
    inputs: KpiInputs,
    timings: dict,
    app_started_at: float | None = None,
) -> dict:
    """One KPI cycle on a running SparkSession from inputs already read: compute, assemble, write Redis.

    Newest data wins (flashsale.redis_keys.write_snapshot): when the published snapshot holds newer data
    this cycle changes nothing and ``superseded`` is True. ``app_started_at``: the scheduled app's start,
    for the hand-over between overlapping apps.
    """
    from flashsale.redis_keys import keys_for, write_snapshot
    from flashsale.stores import redis_client

    timings.update(inputs.timings)
    master = spark.sparkContext.master
    t2 = time.perf_counter()
    out = compute(spark, inputs, params, as_of)
    timings["spark_compute_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    run_id = f"{as_of.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    snapshot, alert_state, inv_state = assemble(s, params, inputs, out, as_of, run_id, master, timings)
    timings["assemble_s"] = time.perf_counter() - t3
    t4 = time.perf_counter()
    size = write_snapshot(
        redis_client(s),
        keys_for(s),
        snapshot,
        ttl_seconds=s.kpi_snapshot_ttl_seconds,
        trend_max_points=s.kpi_trend_max_points,
        alert_state=alert_state,
        inventory_state=inv_state,
        app_started_at=app_started_at,
        app_deadline=app_started_at + s.kpi_refresh_for_seconds if app_started_at is not None else None,
    )
    timings["redis_write_s"] = time.perf_counter() - t4
    return {
        "run_id": run_id,
        "master": master,
        "data_as_of": snapshot["data_as_of"],
        "snapshot_bytes": size,
        "superseded": size is None,
        "kpis": snapshot["kpis"],
        "rows": {"orders": inputs.orders.num_rows, "inventory": inputs.inventory.num_rows},
        "collections_read": inputs.collections_read,
        "data_quality": snapshot["data_quality"],
    }


def main(argv=None) -> int:
    t_main = time.time()
    a = _parse_args(sys.argv[1:] if argv is None else argv)
    from kpi.rules import KpiParams

    s = settings_from_args(a)
    params = KpiParams.from_settings(s)
    as_of = datetime.fromisoformat(a.as_of).astimezone(UTC) if a.as_of else _default_as_of(s)
    timings: dict = {}
    if a.submitted_at:
        timings["submit_to_python_s"] = t_main - a.submitted_at
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(_read_inputs, s, as_of, params, not a.no_archive)
        t0 = time.perf_counter()
        spark = build_spark()
        timings["spark_session_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        inputs = fut.result()
        timings["wait_for_read_s"] = time.perf_counter() - t1
    t_cycle = time.time()
    app_started_at = (a.submitted_at or t_main) if a.refresh else None
    result = run_cycle(spark, s, params, as_of, inputs, timings, app_started_at)
    if a.submitted_at:
        timings["submit_to_snapshot_s"] = time.time() - a.submitted_at
    result["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    print(KPI_RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    if a.refresh and not a.as_of:
        assert app_started_at is not None  # set whenever a.refresh
        _refresh(spark, s, params, inputs, app_started_at, time.time() - t_cycle, use_archive=not a.no_archive)
    spark.stop()
    return 0


def _refresh(
    spark, s: Settings, params: KpiParams, inputs: KpiInputs, app_started_at: float, estimate: float, use_archive: bool
) -> None:
    """Keep the snapshot fresh while this app's JVM and YARN containers are paid for.

    The app refreshes (new data, new as-of, at most once per kpi_refresh_min_interval_seconds, reading
    only the hot-store buckets that changed) until kpi_refresh_for_seconds after its submission, or until
    an app started after it has published (the hand-over: the minute DAG starts the successor
    kpi_handover_lead_seconds before this app's end, so its YARN start-up leaves no gap in snapshots).
    """
    from flashsale.redis_keys import keys_for, read_head
    from flashsale.stores import redis_client
    from spark.executor_spread import rebalance

    deadline = app_started_at + s.kpi_refresh_for_seconds
    keys, r = keys_for(s), redis_client(s)
    last_move: dict | None = None
    while time.time() + 1.5 * estimate <= deadline:  # margin: load varies
        head = read_head(r, keys) or {}
        if (head.get("app_started_at") or 0) > app_started_at:
            print(
                "KPI_HANDOVER " + json.dumps({"to_run": head["run_id"], "data_as_of": head["data_as_of"]}), flush=True
            )
            return
        move = rebalance(spark)  # executors sharing a node while another has room: move one
        if move and move != last_move:  # an error that repeats every cycle is logged once
            print("KPI_SPREAD " + json.dumps(move, default=str), flush=True)
        last_move = move
        c0 = time.time()
        t: dict[str, float] = {}
        refresh_as_of = _default_as_of(s)
        inputs = _read_inputs(s, refresh_as_of, params, use_archive, reuse=inputs)
        res = run_cycle(spark, s, params, refresh_as_of, inputs, t, app_started_at)
        estimate = time.time() - c0
        t["cycle_s"] = estimate
        res["timings_s"] = {k: round(v, 3) for k, v in t.items()}
        print("KPI_REFRESH " + json.dumps(res, default=str), flush=True)
        time.sleep(max(0.0, min(s.kpi_refresh_min_interval_seconds - estimate, deadline - time.time())))


if __name__ == "__main__":
    sys.exit(main())
