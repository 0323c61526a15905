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
from flashsale.hot_layout import SEALED, sealed_name

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
    contract: Contract,
    bucket_counts: list[tuple[datetime, str, int]],
    now: datetime,
    min_age_minutes: int,
    bucket_minutes: int,
) -> list[Batch]:
    """Batches to archive, oldest hour first: per hour, its buckets that ended ``min_age_minutes`` before
    ``now`` (and any sealed bucket, an interrupted batch's), so the hot store holds about min_age of data
    whatever the volume. An hour's first batch writes its partition; a later one of the same hour (the
    rest of the hour, or late records) is a supplement (anti-join by id, see spark/archive_job.py).

    Younger buckets are never taken, whatever the hot store's size: the KPI window still reads them
    (settings keep min_age above the window). ``bucket_counts``: (bucket start, collection, documents).
    """
    cutoff = now - timedelta(minutes=min_age_minutes)
    hours: dict[datetime, list[tuple[str, int]]] = {}
    for start, name, count in bucket_counts:
        if start + timedelta(minutes=bucket_minutes) <= cutoff or name.endswith(SEALED):
            hours.setdefault(start.replace(minute=0), []).append((name, count))
    return [
        Batch(contract.name, h, tuple(sorted(n for n, _ in hours[h])), sum(c for _, c in hours[h]))
        for h in sorted(hours)
    ]


SPIKE_BASELINE_MINUTES = 60  # the intake a spike is measured against: the last hour, not the backlog


def in_spike(bucket_counts: list[tuple[datetime, str, int]], factor: float, live_after: datetime | None) -> bool:
    """Whether the intake is in a flash spike now: the newest complete bucket holds ``factor`` times the
    median of the complete buckets of the hour before it (the newest bucket is still filling, so it is left
    out) and started at or after ``live_after`` (the clock's now less a few buckets). Older buckets are left
    out of the median: a backlog of a quieter hour (a generated or replayed cold hour waiting for archival)
    would otherwise make every live minute look like a spike and defer archival for as long as it waits.
    Data that stopped arriving, or a load with no clock (``live_after`` None: fast-forward, replay), is no
    spike: archival must not wait for intake that is not coming."""
    if live_after is None:
        return False
    live = sorted((t, c) for t, n, c in bucket_counts if not n.endswith(SEALED))[:-1]
    if not live or live[-1][0] < live_after:
        return False
    since = live[-1][0] - timedelta(minutes=SPIKE_BASELINE_MINUTES)
    recent = sorted(c for t, c in live if t >= since)
    if len(recent) < 3:
        return False
    return live[-1][1] > factor * max(recent[len(recent) // 2], 1)


def should_archive(
    total_hot_records: int, eligible_records: int, spike: bool, max_hot_records: int, spike_defer_share: float
) -> tuple[bool, str]:
    """The archival DAG's trigger: buckets older than the minimum age exist, but not during a flash spike
    (archival would take cores from the minute KPI job exactly when it matters) unless the hot store
    nears its record limit; over the limit, always."""
    if total_hot_records > max_hot_records:
        return True, f"{total_hot_records} hot records > {max_hot_records}"
    if not eligible_records:
        return False, f"{total_hot_records} hot records, nothing old enough"
    if spike and total_hot_records < spike_defer_share * max_hot_records:
        return False, f"flash spike: {eligible_records} old records wait ({total_hot_records} hot records)"
    return True, f"{eligible_records} records older than the minimum age"
