"""Thin edge to the hot store: the window read (bucket collections + indexed time filter) and the dims.

Facts live in time-bucket collections (flashsale/hot_layout.py: ``orders_fact__YYYYMMDD_HHMM``). A
window read lists the collection names once, keeps only the buckets that end after the window start
(so the read does not grow with history on any server: FerretDB 1.24 pushes no range filter down),
and inside each bucket sends ``{<time_column>: {"$gte": start}}`` on the bucket's time index (an
IXSCAN on MongoDB). No upper bound: events after as-of are read so future timestamps can be
quarantined and counted (they would be invisible with ``$lt``). The un-bucketed ``orders_fact``
collection, if a legacy writer still fills it, is read with the same filter and reported.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flashsale.contracts import DIMS, Contract
from flashsale.hot_layout import existing_buckets


def window_filter(contract: Contract, start: datetime) -> dict:
    """The one filter every fact read uses."""
    if contract.time_column is None:
        raise ValueError(f"{contract.name} has no time column")
    return {contract.time_column: {"$gte": start}}


def projection(contract: Contract) -> dict:
    return {"_id": 0, **{c: 1 for c in contract.column_names}}


def window_collections(collection_names, contract: Contract, start: datetime, bucket_minutes: int) -> list[str]:
    """Bucket collections that can hold an event at or after ``start`` (plus a legacy flat collection)."""
    names = list(collection_names)
    keep = [n for t, n in existing_buckets(contract, names) if t + timedelta(minutes=bucket_minutes) > start]
    return keep + ([contract.name] if contract.name in names else [])


def ensure_time_index(db, collection: str, contract: Contract) -> str:
    return db[collection].create_index([(contract.time_column, 1)])


def read_window(
    db, contract: Contract, start: datetime, bucket_minutes: int, collection_names=None, batch_size: int = 10_000
) -> tuple[list[dict], list[str]]:
    names = collection_names if collection_names is not None else db.list_collection_names()
    cols = window_collections(names, contract, start, bucket_minutes)
    docs: list[dict] = []
    # Reads never create indexes: the writers do (flashsale.sharding.ensure_sharded). A create_index
    # here on a bucket archival dropped after the listing re-created it empty, and the archive's
    # resumed drop then found "0 documents, manifest says N".
    for name in cols:
        docs.extend(db[name].find(window_filter(contract, start), projection(contract), batch_size=batch_size))
    return docs, cols


def refresh_window(
    db,
    contract: Contract,
    start: datetime,
    read_from: datetime,
    previous: list[dict],
    bucket_minutes: int,
    collection_names=None,
) -> tuple[list[dict], list[str]]:
    """The window [start, ...) for a refresh: documents before ``read_from`` come from ``previous`` (the
    last cycle's read of this window, which covered ``start``), only those at or after it from the store.

    A document written after the last read with an event time before ``read_from`` is missed, so the
    caller keeps ``read_from`` a lateness margin before the last as-of. ``previous`` holds only dated
    events: the store's ``$gte`` never returns a document whose time is missing or not a date.
    """
    fresh, cols = read_window(db, contract, read_from, bucket_minutes, collection_names)
    t = contract.time_column
    return [d for d in previous if start <= d[t] < read_from] + fresh, cols


def explain_window(db, collection: str, contract: Contract, start: datetime) -> dict:
    """The store's plan for the window query on one collection."""
    return db.command(
        "explain",
        {"find": collection, "filter": window_filter(contract, start), "projection": projection(contract)},
        verbosity="queryPlanner",
    )


def newest_event_time(
    db, contract: Contract, collection_names=None, not_after: datetime | None = None
) -> datetime | None:
    """The newest event time in the hot store (the "data clock"): one sorted query on the newest bucket.

    ``not_after``: ignore events stamped later (a skewed writer, a pre-created bucket): one record from
    the future must not move the clock (Settings.data_clock_limit)."""
    names = collection_names if collection_names is not None else db.list_collection_names()
    col = contract.time_column
    flt = {col: {"$lte": not_after}} if not_after is not None else {}
    for start, name in reversed(existing_buckets(contract, names)):
        if not_after is not None and start > not_after:
            continue  # a bucket that starts after the limit holds only future events
        doc = db[name].find_one(flt, {"_id": 0, col: 1}, sort=[(col, -1)])
        if doc and isinstance(doc.get(contract.time_column), datetime):
            return doc[contract.time_column]
    return None


def read_dims(db) -> dict[str, list[dict]]:
    return {c.name: list(db[c.name].find({}, projection(c))) for c in DIMS}
