"""Where facts live in the hot store: one collection per fact per time bucket.

Why: the KPI job reads the last 15 minutes every minute, and that read must not grow with history.
MongoDB would answer a range filter on an indexed timestamp from the index, but FerretDB 1.24 (our
local hot store) pushes no range filter down to SQLite or PostgreSQL: `explain` shows a full SCAN.
Bucketing each fact into time-partition collections (``orders_fact__20261111_0005`` holds
00:05 <= order_ts < 00:10 for 5-minute buckets) makes the window read touch only the few buckets
that overlap it, on any server, and lets archival move and drop whole buckets. Inside a bucket the
timestamp index still serves the exact range on MongoDB.

Every writer, reader and the archiver use these functions; nothing else builds a bucket name.

Sealed buckets: archival renames an hour's buckets to ``<bucket>__sealed`` (``sealed_name``) before it
reads them, so a late write (a writer retries for minutes) lands in a fresh bucket with the original
name instead of in a bucket that is being archived and then dropped. A sealed name is not a bucket
name (``parse_bucket`` returns None): writers never see it, readers that must (the KPI window read,
the archiver) ask ``existing_sealed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from flashsale.contracts import Contract

SEPARATOR = "__"
SEALED = "__sealed"
_SUFFIX = re.compile(r"^(\d{8})_(\d{4})$")


def _check(bucket_minutes: int) -> None:
    if bucket_minutes <= 0 or 60 % bucket_minutes:
        raise ValueError(f"hot_bucket_minutes must divide 60, got {bucket_minutes}")


def bucket_start(ts: datetime, bucket_minutes: int) -> datetime:
    _check(bucket_minutes)
    if ts.tzinfo is None:
        raise ValueError("bucket_start needs a timezone-aware timestamp")
    ts = ts.astimezone(UTC)
    return ts.replace(minute=ts.minute - ts.minute % bucket_minutes, second=0, microsecond=0)


def bucket_name(contract: Contract, start: datetime) -> str:
    return f"{contract.name}{SEPARATOR}{start.astimezone(UTC):%Y%m%d_%H%M}"


def collection_for(contract: Contract, ts: datetime, bucket_minutes: int) -> str:
    """The collection a fact with event time ``ts`` is written to."""
    return bucket_name(contract, bucket_start(ts, bucket_minutes))


def parse_bucket(contract: Contract, name: str) -> datetime | None:
    """The bucket start of a collection name of this contract, or None if it is not one."""
    prefix = contract.name + SEPARATOR
    if not name.startswith(prefix):
        return None
    m = _SUFFIX.match(name[len(prefix) :])
    if not m:
        return None
    return datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M").replace(tzinfo=UTC)


def buckets_overlapping(contract: Contract, start: datetime, end: datetime, bucket_minutes: int) -> list[str]:
    """Names of every bucket that can hold a fact with start <= ts < end (existing or not)."""
    names, t = [], bucket_start(start, bucket_minutes)
    while t < end:
        names.append(bucket_name(contract, t))
        t += timedelta(minutes=bucket_minutes)
    return names


def existing_buckets(contract: Contract, collection_names: Iterable[str]) -> list[tuple[datetime, str]]:
    """(bucket start, name) of the contract's buckets among ``collection_names``, oldest first."""
    found = [(parse_bucket(contract, n), n) for n in collection_names]
    return sorted((t, n) for t, n in found if t is not None)


def sealed_name(bucket: str) -> str:
    """The name archival renames a bucket to before reading it (see the module docstring)."""
    return bucket + SEALED


def unsealed_name(sealed: str) -> str:
    return sealed.removesuffix(SEALED)


def parse_sealed(contract: Contract, name: str) -> datetime | None:
    """The bucket start of a sealed bucket of this contract, or None if ``name`` is not one."""
    return parse_bucket(contract, name[: -len(SEALED)]) if name.endswith(SEALED) else None


def existing_sealed(contract: Contract, collection_names: Iterable[str]) -> list[tuple[datetime, str]]:
    """(bucket start, name) of the contract's sealed buckets among ``collection_names``, oldest first."""
    found = [(parse_sealed(contract, n), n) for n in collection_names]
    return sorted((t, n) for t, n in found if t is not None)


def split_by_bucket(
    contract: Contract, rows: pa.Table | pa.RecordBatch, bucket_minutes: int
) -> dict[str, pa.Table | pa.RecordBatch]:
    """A batch of facts split by destination bucket, vectorized (a batch spans one or two buckets)."""
    import pyarrow.compute as pc

    _check(bucket_minutes)
    starts = pc.floor_temporal(rows[contract.time_column], multiple=bucket_minutes, unit="minute")
    return {
        bucket_name(contract, start): rows.filter(pc.equal(starts, pa.scalar(start, starts.type)))
        for start in pc.unique(starts).to_pylist()
    }
