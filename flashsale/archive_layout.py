"""Archival planning and bookkeeping (pure): which hours to move, where they go, what proves them.

A batch is one fact's one UTC hour: the hot-store buckets of that hour (flashsale/hot_layout.py)
become one Parquet partition ``<root>/<fact>/date=YYYY-MM-DD/hour=HH/`` compacted to a few files.
The protocol that makes a crash at any step safe to re-run:

1. write the partition (overwrite: a half-written earlier attempt is replaced);
2. verify: row count and content checksum of the written files equal the source's;
3. record ``<root>/metadata/<batch_id>.json`` (the commit point), once an exact count of the hot
   buckets, taken after the read, still adds up to what was archived and quarantined;
4. drop the hot buckets, each only if its count still equals the manifest's.

A batch with a manifest is never rewritten; one without is redone from the hot store, which still
holds every record until step 4. Readers trust only partitions that have a manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from flashsale.contracts import Contract

STEPS = ("plan", "write", "verify", "commit", "delete")


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

    def to_json(self) -> dict:
        return asdict(self)


def manifest_path(root: str, batch_id: str) -> str:
    return f"{root.rstrip('/')}/metadata/{batch_id}.json"


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
