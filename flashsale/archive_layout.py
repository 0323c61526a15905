"""Archival planning and bookkeeping (pure): which hours to move, where they go, what proves them.

A batch is one fact's one UTC hour: the hot-store buckets of that hour (flashsale/hot_layout.py)
become one Parquet partition ``<root>/<fact>/date=YYYY-MM-DD/hour=HH/`` compacted to a few files.
The protocol that makes a crash at any step safe to re-run, and a late write impossible to lose:

0. seal: rename each of the hour's buckets to its sealed name (``hot_layout.sealed_name``; only
   where that name is free). Nothing writes to a sealed name, so what is read is what is dropped;
   a late write lands in a fresh bucket with the original name, archived by a later batch;
1. write the partition from the sealed buckets (overwrite: a half-written earlier attempt is replaced);
2. verify: row count, distinct ids, id checksum and content checksum of the written files equal the
   source's;
3. record ``<root>/metadata/<batch_id>.json`` (the commit point);
4. drop the sealed buckets.

Once an hour is committed, its sealed buckets (late records, or what a crash after the commit left)
are a **supplement**: only the ids not already in the partition or its quarantine are appended (an
anti-join by id), every sealed id must then be found there, and the files no manifest names are
recorded in ``<root>/metadata/<batch_id>.late-<n>.json`` before the sealed buckets are dropped.
A batch with a manifest is never rewritten; one without is redone from the sealed buckets, which
hold every record until step 4. Readers trust only partitions whose hour has a manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from flashsale.contracts import Contract
from flashsale.hot_layout import sealed_name

STEPS = ("plan", "seal", "write", "verify", "commit", "delete")


@dataclass(frozen=True)
class Batch:
    fact: str
    hour: datetime  # UTC hour start
    buckets: tuple[str, ...]
    rows: int  # hot-store count when planned

    @property
    def batch_id(self) -> str:
        return f"{self.fact}-{self.hour:%Y%m%dT%H}"

    def partition(self, root: str) -> str:
        return f"{root.rstrip('/')}/{self.fact}/date={self.hour:%Y-%m-%d}/hour={self.hour:%H}"

    def quarantine_partition(self, root: str) -> str:
        return f"{root.rstrip('/')}/quarantine/{self.fact}/date={self.hour:%Y-%m-%d}/hour={self.hour:%H}"


@dataclass
class Manifest:
    batch_id: str
    fact: str
    hour: str
    buckets: list[str]
    rows: int
    quarantined: int
    checksum: str
    files: list[str]
    bucket_counts: dict[str, int] = field(default_factory=dict)
    committed_at: str = ""
    quarantine_files: list[str] = field(default_factory=list)
    supplement: int = 0  # 0: the hour's batch; n: its n-th supplement (late records)

    def to_json(self) -> dict:
        return asdict(self)


def manifest_path(root: str, batch_id: str) -> str:
    return f"{root.rstrip('/')}/metadata/{batch_id}.json"


def supplement_manifest_path(root: str, batch_id: str, n: int) -> str:
    return f"{root.rstrip('/')}/metadata/{batch_id}.late-{n}.json"


def supplement_number(batch_id: str, metadata_names) -> int:
    """The number the next supplement of ``batch_id`` gets, given the file names in metadata/."""
    prefix = f"{batch_id}.late-"
    taken = [
        int(n[len(prefix) : -len(".json")])
        for n in (str(x).rsplit("/", 1)[-1] for x in metadata_names)
        if n.startswith(prefix) and n.endswith(".json") and n[len(prefix) : -len(".json")].isdigit()
    ]
    return max(taken, default=0) + 1


def unclaimed(files, manifests: list[dict], key: str = "files") -> list[str]:
    """Files of a partition that no manifest of its hour names (compared by file name): what a crashed
    supplement wrote, to be claimed by the next one. A manifest without ``key`` (written before
    supplements existed) claims every file."""
    names = {str(f).rsplit("/", 1)[-1]: f for f in files}
    if any(key not in m for m in manifests):
        return []
    claimed = {str(f).rsplit("/", 1)[-1] for m in manifests for f in m[key]}
    return sorted(f for n, f in names.items() if n not in claimed)


def seal_renames(live: list[str], existing) -> list[tuple[str, str]]:
    """(bucket, sealed name) for each live bucket whose sealed name is free. A bucket whose sealed name
    is taken (an earlier batch of its hour is not finished) stays live until that one is dropped."""
    taken = set(existing)
    return [(b, sealed_name(b)) for b in sorted(live) if sealed_name(b) not in taken]


def plan(
    contract: Contract, bucket_counts: list[tuple[datetime, str, int]], now: datetime, min_age_minutes: int
) -> list[Batch]:
    """Hours to archive, oldest first: every hour whose end is older than ``min_age_minutes``.

    Younger hours are never taken, whatever the hot store's size: the KPI window still reads them
    (settings keep min_age above the window). ``bucket_counts``: (bucket start, collection, documents).
    """
    hours: dict[datetime, list[tuple[str, int]]] = {}
    for start, name, count in bucket_counts:
        hours.setdefault(start.replace(minute=0), []).append((name, count))
    cutoff = now - timedelta(minutes=min_age_minutes)
    return [
        Batch(contract.name, h, tuple(sorted(n for n, _ in hours[h])), sum(c for _, c in hours[h]))
        for h in sorted(hours)
        if h + timedelta(hours=1) <= cutoff
    ]


def should_archive(
    total_hot_records: int, oldest_bucket: datetime | None, now: datetime, max_hot_records: int, max_age_minutes: int
) -> tuple[bool, str]:
    """The archival DAG's trigger: the hot store crossed the record-count or the age threshold."""
    if total_hot_records > max_hot_records:
        return True, f"{total_hot_records} hot records > {max_hot_records}"
    if oldest_bucket is not None and now - oldest_bucket > timedelta(minutes=max_age_minutes + 60):
        return True, f"oldest hot data from {oldest_bucket:%Y-%m-%d %H:%M} is older than {max_age_minutes} min + 1 h"
    return False, f"{total_hot_records} hot records, nothing old enough"
