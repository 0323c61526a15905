"""The Redis KPI cache contract: every key, its type, its lifetime and each snapshot field, in one place.

Redis holds only pre-aggregated KPIs (and the small derived state the KPI job carries between runs).
The dashboard reads it with :func:`read_snapshot`; the KPI job writes it with :func:`write_snapshot`.
Both take a :class:`Keys` built from ``settings.kpi_redis_namespace`` (tests use their own namespace).

Keys (``<ns>`` = ``settings.kpi_redis_namespace``, default ``fsr:kpi:v1``; bump the ``v`` on a breaking change)

=========================  ======  ==========================================================  ===================
key                        type    content                                                     lifetime
=========================  ======  ==========================================================  ===================
``<ns>:snapshot``          string  JSON: the latest complete KPI snapshot (fields below)       EX snapshot_ttl
``<ns>:trend``             list    JSON points, oldest first, one per run (RPUSH + LTRIM)      EX trend ttl, capped
``<ns>:state:alerts``      string  JSON: hysteresis state of open alerts (KPI-internal)        EX state ttl
``<ns>:state:inventory``   string  Arrow IPC stream (zstd): latest inventory per (product,    EX state ttl
                                   warehouse), carried between runs so a run reads only its
                                   window (KPI-internal; 400k pairs at 20,000 products: binary,
                                   ~100x cheaper per cycle than the JSON it replaced)
``<ns>:head``              string  JSON: ``run_id``, ``data_as_of``, ``app_started_at``,        EX state ttl
                                   ``app_deadline``, ``published_at`` of the run that wrote
                                   the keys above (KPI-internal: hand-over, app supervision)
``<ns>:launch``            string  JSON: ``submitted_at`` of a KPI app being started by the     EX launch grace
                                   minute DAG (KPI-internal: one start at a time)
=========================  ======  ==========================================================  ===================

Atomicity: one run writes all five keys in ONE ``MULTI/EXEC`` transaction, so a reader never sees a
new snapshot with an old trend (or half a snapshot: the snapshot is one value). :func:`read_snapshot`
reads snapshot + trend in one ``MULTI/EXEC`` round trip, so its pair is always from the same run.

Hand-over: the minute DAG's Spark apps overlap (each keeps refreshing until the next one has
published), so a scheduled run writes with a compare-and-set (``expect_head``): only if no other run
published since it read the carried state and its data is not older than the published one. A
superseded write changes nothing and returns None; an app stops refreshing once the head names an app
started after it (:func:`read_head`).

Supervision: one scheduled KPI app serves for ``kpi_refresh_for_seconds`` (an hour), refreshing the
snapshot on its warm SparkSession. Every minute the DAG only looks (:func:`kpi_app_decision`): it starts
a new app when the published head is stale (the app died or hangs), when the live app ends within
the hand-over lead, or when none ever ran, unless an app it started is still starting (``launch``).
A snapshot expires (TTL) when the job stops running: a dashboard then shows "no data", never stale data
presented as fresh; it should also compare ``data_as_of`` with the wall clock.

Snapshot fields (JSON object; times are ISO-8601 UTC strings; every table is capped)
-------------------------------------------------------------------------------------
- ``schema``: ``"fsr.kpi.snapshot/1"``. ``run_id``: unique id of the run that wrote it.
- ``computed_at``: when the job finished computing. ``data_as_of``: the as-of time of the data (the
  window end). ``window_start``, ``window_minutes``. ``master``: Spark master of the run.
- ``kpis``: headline numbers: ``orders_last_minute`` (orders in the last complete minute),
  ``orders_per_minute_avg``, ``units_in_window``, ``high_risk_sku_count`` (distinct products with a
  high-risk warehouse), ``high_risk_pairs`` ((product, warehouse) pairs at high risk), ``watch_pairs``,
  ``overloaded_warehouses``, ``open_alerts``, ``quarantined_docs`` (the data-quality KPI),
  ``pairs_without_inventory`` (sold but no inventory state known: no ETA possible).
- ``orders_per_minute``: list of ``{minute, orders, units}``, one per window minute, oldest first
  (zeros included).
- ``sku_risk``: top ``max_table_rows`` (product, warehouse) rows by ``p_stockout``: ``product_id``,
  ``category``, ``warehouse_id``, ``warehouse_name``, ``city``, ``province``, ``available`` (on hand
  minus reserved), ``inbound_units`` (restocks on the way), ``velocity`` (smoothed units/min),
  ``baseline_velocity`` (archive, null if none),
  ``eta_median_min`` / ``eta_pessimistic_min`` (minutes to stock out: Gamma median and early quantile;
  null = no demand), ``p_stockout`` (within the action horizon), ``risk`` (``high``/``watch``/``low``).
- ``warehouses``: every warehouse: ``warehouse_id``, ``warehouse_name``, ``city``, ``province``,
  ``capacity`` (orders/min), ``load_per_min`` (mean orders/min over the window), ``peak_per_min``,
  ``load_ratio``, ``fulfillment_delay`` (latest mean, minutes), ``overloaded`` (bool), ``reason``.
- ``geo_city`` / ``geo_province``: ``city``/``province``, ``pairs``, ``high_risk_pairs``,
  ``watch_pairs``, ``expected_stockouts`` (sum of p_stockout), ``max_p_stockout``, ``units_per_min``.
- ``alerts``: open alerts, most urgent first, capped at ``max_alert_rows``: ``alert_id``
  (``<product>:<warehouse>``, stable across runs: dedup), ``product_id``, ``warehouse_id``, ``action``
  (``restock`` / ``pause_ads`` / ``reroute`` / ``monitor``), ``reason`` (the rule that fired, in
  words), ``numbers`` (the inputs of the rule: available, inbound_units, inbound_in_min, velocity, eta_median_min,
  eta_pessimistic_min, p_stockout, restock_lead_time_min, horizon_min, suggested_units, and
  reroute_from_warehouse_id / surplus_units for a reroute), ``status`` (``new``, ``open``,
  ``clearing``), ``first_seen``, ``runs_open``.
- ``alerts_total``: open alerts before the cap. ``data_quality``: per fact ``{read, valid,
  quarantined, by_reason}`` where by_reason counts ``missing``, ``wrong_type``, ``out_of_bounds``,
  ``unknown_id``, ``future_ts``. ``baseline``: ``{pairs, source}`` of the archive baseline.
- ``params``: thresholds used (horizon, lead time, probabilities). ``timings_s``: where time went.

Trend point (``<ns>:trend`` element): ``run_id``, ``computed_at``, ``data_as_of``, ``high_risk_sku_count``,
``high_risk_pairs``, ``watch_pairs``, ``open_alerts``, ``expected_stockouts``, ``orders_last_minute``,
``quarantined_docs``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from redis.exceptions import WatchError

SNAPSHOT_SCHEMA = "fsr.kpi.snapshot/1"
MAX_SNAPSHOT_BYTES = 2 * 2**20  # a snapshot larger than this is refused (tables are capped well below)
STATE_TTL_SECONDS = 24 * 3600
TREND_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Keys:
    namespace: str

    @property
    def snapshot(self) -> str:
        return f"{self.namespace}:snapshot"

    @property
    def trend(self) -> str:
        return f"{self.namespace}:trend"

    @property
    def alert_state(self) -> str:
        return f"{self.namespace}:state:alerts"

    @property
    def inventory_state(self) -> str:
        return f"{self.namespace}:state:inventory"

    @property
    def head(self) -> str:
        return f"{self.namespace}:head"

    @property
    def launch(self) -> str:
        return f"{self.namespace}:launch"

    def all(self) -> list[str]:
        return [self.snapshot, self.trend, self.alert_state, self.inventory_state, self.head, self.launch]


def keys_for(settings) -> Keys:
    return Keys(settings.kpi_redis_namespace)


class SnapshotTooLarge(ValueError):
    pass


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode()


def trend_point(snapshot: dict) -> dict:
    k = snapshot["kpis"]
    return {
        "run_id": snapshot["run_id"],
        "computed_at": snapshot["computed_at"],
        "data_as_of": snapshot["data_as_of"],
        **{
            f: k[f]
            for f in (
                "high_risk_sku_count",
                "high_risk_pairs",
                "watch_pairs",
                "open_alerts",
                "expected_stockouts",
                "orders_last_minute",
                "quarantined_docs",
            )
        },
    }


WRITE_ATTEMPTS = 5  # compare-and-set retries when another run publishes between our check and EXEC


def _holds_newer_data(current: dict | None, data_time: datetime) -> bool:
    """True when the published head's data is newer than ``data_time``: that run must change nothing.
    A head whose time cannot be read (a damaged key) holds nothing newer: the next run repairs it."""
    try:
        published = datetime.fromisoformat(str((current or {})["data_as_of"]))
    except (KeyError, TypeError, ValueError):
        return False
    return published > data_time


def write_snapshot(
    client,
    keys: Keys,
    snapshot: dict,
    *,
    ttl_seconds: int,
    trend_max_points: int,
    alert_state: dict | None = None,
    inventory_state: bytes | None = None,
    app_started_at: float | None = None,
    app_deadline: float | None = None,
) -> int | None:
    """Write one run in a single MULTI/EXEC; returns the snapshot size in bytes.

    Newest data wins, always: the write is a compare-and-set on the head (WATCH), and a run whose data is
    older than the published snapshot's changes nothing and gets None (overlapping minute apps, a manual
    `flashsale kpi --as-of` in the past). A run with newer data replaces the snapshot whoever published
    before it. ``app_started_at`` identifies the writing app for the hand-over (None: a one-off run, which
    never makes a scheduled app stop); ``app_deadline`` (epoch s) is when that app plans to end.
    """
    if snapshot.get("schema") != SNAPSHOT_SCHEMA:
        raise ValueError(f"snapshot schema must be {SNAPSHOT_SCHEMA}")
    try:
        data_time = datetime.fromisoformat(snapshot["data_as_of"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"snapshot data_as_of must be an ISO 8601 time, got {snapshot.get('data_as_of')!r}") from None
    blob = _dumps(snapshot)
    if len(blob) > MAX_SNAPSHOT_BYTES:
        raise SnapshotTooLarge(f"snapshot is {len(blob)} bytes > {MAX_SNAPSHOT_BYTES}")
    head = {
        "run_id": snapshot["run_id"],
        "data_as_of": snapshot["data_as_of"],
        "app_started_at": app_started_at,
        "app_deadline": app_deadline,
        "published_at": time.time(),
    }
    for _ in range(WRITE_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(keys.head)
            raw = pipe.get(keys.head)
            if _holds_newer_data(json.loads(raw) if raw else None, data_time):
                pipe.unwatch()
                return None
            pipe.multi()
            pipe.set(keys.snapshot, blob, ex=ttl_seconds)
            pipe.rpush(keys.trend, _dumps(trend_point(snapshot)))
            pipe.ltrim(keys.trend, -trend_max_points, -1)
            pipe.expire(keys.trend, max(TREND_TTL_SECONDS, ttl_seconds))
            if alert_state is not None:
                pipe.set(keys.alert_state, _dumps(alert_state), ex=STATE_TTL_SECONDS)
            if inventory_state is not None:
                pipe.set(keys.inventory_state, inventory_state, ex=STATE_TTL_SECONDS)  # encode_inventory_state
            pipe.set(keys.head, _dumps(head), ex=STATE_TTL_SECONDS)
            try:
                pipe.execute()
            except WatchError:  # a run published between our check and EXEC: check its data again
                continue
        return len(blob)
    return None  # the head kept changing under us: this run did not publish


def read_snapshot(client, keys: Keys, trend_points: int | None = None) -> dict | None:
    """The latest snapshot with its risk trend (``snapshot["trend"]``, oldest first), in one round trip.

    Returns None when no snapshot exists (never run, or expired). The snapshot and the trend are read
    inside one MULTI/EXEC, so the trend's last point is always this snapshot's run.
    """
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.snapshot)
    pipe.lrange(keys.trend, -(trend_points or 0) if trend_points else 0, -1)
    raw, trend = pipe.execute()
    if raw is None:
        return None
    snap = orjson.loads(raw)  # same result as json.loads, several times faster on a 100+ KB snapshot
    snap["trend"] = [orjson.loads(x) for x in trend]
    return snap


def inventory_state_schema() -> pa.Schema:
    """The carried inventory: inventory_fact's columns without the event id (one row per pair)."""
    from flashsale.contracts import INVENTORY_FACT, arrow_schema

    schema = arrow_schema(INVENTORY_FACT)
    return schema.remove(schema.get_field_index(INVENTORY_FACT.key))


def encode_inventory_state(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, inventory_state_schema(), options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table.select(inventory_state_schema().names).cast(inventory_state_schema()))
    return sink.getvalue().to_pybytes()


def decode_inventory_state(raw: bytes | None) -> pa.Table | None:
    """The carried inventory, or None when absent or unreadable (a state written by an older job, in
    JSON): the KPI job then bootstraps it from the hot store's inventory events, as after its TTL."""
    if not raw:
        return None
    try:
        table = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
    except pa.ArrowInvalid:
        return None
    return table if table.schema.equals(inventory_state_schema()) else None


def read_state(client, keys: Keys) -> tuple[dict, pa.Table | None, dict | None]:
    """(alert_state, inventory_state, head) carried from the previous run, read atomically; an empty
    dict, None and None when absent."""
    pipe = client.pipeline(transaction=True)
    pipe.get(keys.alert_state)
    pipe.get(keys.inventory_state)
    pipe.get(keys.head)
    a, i, h = pipe.execute()
    return (json.loads(a) if a else {}), decode_inventory_state(i), (json.loads(h) if h else None)


def read_head(client, keys: Keys) -> dict | None:
    """The last published run: ``run_id``, ``data_as_of``, ``app_started_at`` (None if none)."""
    raw = client.get(keys.head)
    return json.loads(raw) if raw else None


def kpi_app_decision(
    head: dict | None, launch: dict | None, now: float, *, stale_s: float, lead_s: float, grace_s: float
) -> tuple[bool, str]:
    """(start a new scheduled KPI app?, why): the minute DAG's look at the app serving the snapshot.

    ``head``: the published head; ``launch``: the last start the DAG claimed (``<ns>:launch``). A start
    counts as pending until its app has published (the head's ``app_started_at`` reaches it) or
    ``grace_s`` has passed."""
    head = head or {}
    started = float(head.get("app_started_at") or 0)
    pending = launch is not None and float(launch.get("submitted_at") or 0) > started
    if pending and now - float(launch.get("submitted_at") or 0) < grace_s:  # type: ignore[union-attr]
        return False, f"an app submitted {now - float(launch['submitted_at']):.0f} s ago is starting"  # type: ignore[index]
    published = head.get("published_at")
    if not started or published is None:
        return True, "no scheduled app has published"
    age = now - float(published)
    if age > stale_s:
        return True, f"the last snapshot was published {age:.0f} s ago (> {stale_s:.0f} s): the app is gone or stuck"
    left = float(head.get("app_deadline") or 0) - now
    if left < lead_s:
        return True, f"the serving app ends in {left:.0f} s: its successor starts now (hand-over)"
    return False, f"the app started at {started:.0f} serves (published {age:.0f} s ago, ends in {left:.0f} s)"


def claim_launch(client, keys: Keys, submitted_at: float, grace_s: float, seen: dict | None) -> bool:
    """Record a KPI app start, if the launch key still holds what the decision saw (``seen``, from
    :func:`read_launch`); False when another start was claimed meanwhile (WATCH/MULTI)."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.launch)
            raw = pipe.get(keys.launch)
            if (json.loads(raw) if raw else None) != seen:
                return False
            pipe.multi()
            pipe.set(keys.launch, _dumps({"submitted_at": submitted_at}), ex=max(1, int(grace_s)))
            pipe.execute()
            return True
        except WatchError:
            return False


def read_launch(client, keys: Keys) -> dict | None:
    raw = client.get(keys.launch)
    return json.loads(raw) if raw else None


__all__ = [
    "Keys",
    "MAX_SNAPSHOT_BYTES",
    "SNAPSHOT_SCHEMA",
    "SnapshotTooLarge",
    "claim_launch",
    "decode_inventory_state",
    "encode_inventory_state",
    "inventory_state_schema",
    "keys_for",
    "kpi_app_decision",
    "read_launch",
    "read_head",
    "read_snapshot",
    "read_state",
    "trend_point",
    "write_snapshot",
]
