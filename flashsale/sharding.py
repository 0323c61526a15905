"""The sharding plan of the hot store on a real MongoDB sharded cluster, derived from the contracts.

One definition for the compose init job (``cluster/mongo_init.py``), the bucket keeper that shards
the next buckets before the writer reaches them, and any writer that creates a bucket itself
(``ensure_sharded``). Pure functions return the exact server commands; ``apply`` runs them.

Shard key: ``{_id: "hashed"}`` on every fact collection (flat ``orders_fact`` / ``inventory_fact``
and each time bucket ``orders_fact__YYYYMMDD_HHMM``). A fact's ``_id`` is its deterministic key
(``o-<run>-<shard>-<seq>``: increasing within a generator shard), so a range key on it, or on the
event time, would send a flash sale's whole write stream to the one chunk holding "now". Hashing
spreads every second's inserts over all shards, an empty collection is pre-split across the shards
at ``shardCollection`` time (no balancer migrations), and because the shard key is ``_id`` the
server still enforces ``_id`` uniqueness cluster-wide, so a retried batch is refused as duplicates.

Reads stay targeted by collection, not by shard key: the KPI job's 15-minute read names only the 4
bucket collections overlapping the window (``flashsale.hot_layout``), each holding 5 minutes of
data; inside each bucket every shard answers ``{<time_column>: {$gte: start}}`` from the time index
created here (an IXSCAN per shard, in parallel). History never enters the read, and archival drops
whole buckets (a ``drop`` of a sharded collection, no chunk deletes).

Dimensions stay unsharded (tens of thousands of rows, read whole) on the database's primary shard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flashsale.contracts import DIMS, FACTS, Contract
from flashsale.hot_layout import bucket_name, bucket_start, parse_bucket

SHARD_KEY_FIELD = "_id"
SHARD_KEY: dict[str, Any] = {SHARD_KEY_FIELD: "hashed"}
APP_ROLE = "flashsaleWriter"  # readWrite + sharding its own new buckets, on the app database only


@dataclass(frozen=True)
class CollectionPlan:
    name: str
    contract: Contract
    shard_key: dict[str, Any]
    indexes: tuple[dict[str, Any], ...]  # createIndexes specs


def fact_for(name: str) -> Contract | None:
    """The fact contract a collection holds (flat name or time bucket), or None."""
    for contract in FACTS:
        if name == contract.name or parse_bucket(contract, name) is not None:
            return contract
    return None


def time_index(contract: Contract) -> dict[str, Any]:
    # the same key pattern flashsale/hot_store.py's ensure_time_index creates, so names match
    return {"key": {contract.time_column: 1}, "name": f"{contract.time_column}_1"}


def collection_plan(name: str) -> CollectionPlan:
    contract = fact_for(name)
    if contract is None:
        raise ValueError(f"{name!r} is not a fact collection (flat or time bucket): only facts are sharded")
    return CollectionPlan(name, contract, dict(SHARD_KEY), (time_index(contract),))


def collection_commands(db: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(database, command) pairs that shard one fact collection and create its indexes; idempotent."""
    plan = collection_plan(name)
    return [
        ("admin", {"shardCollection": f"{db}.{name}", "key": plan.shard_key}),
        (db, {"createIndexes": name, "indexes": list(plan.indexes)}),
    ]


def upcoming_buckets(now: datetime, bucket_minutes: int, ahead: int = 3, behind: int = 0) -> list[str]:
    """Bucket names of every fact from ``behind`` buckets before ``now``'s to ``ahead`` after it."""
    start = bucket_start(now, bucket_minutes)
    steps = range(-behind, ahead + 1)
    return [bucket_name(c, start + timedelta(minutes=i * bucket_minutes)) for c in FACTS for i in steps]


def cluster_commands(db: str, collections: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """enableSharding on the app database, then each fact collection's commands."""
    cmds: list[tuple[str, dict[str, Any]]] = [("admin", {"enableSharding": db})]
    for name in collections:
        cmds += collection_commands(db, name)
    return cmds


def initial_collections(now: datetime, bucket_minutes: int, ahead: int = 3) -> list[str]:
    """What the init job shards: the flat facts (legacy writers) and the buckets around now."""
    return [c.name for c in FACTS] + upcoming_buckets(now, bucket_minutes, ahead=ahead, behind=1)


def app_role(db: str) -> dict[str, Any]:
    """The writer's role: create and shard its own bucket collections and their indexes, nothing else."""
    return {
        "createRole": APP_ROLE,
        "privileges": [
            {"resource": {"db": db, "collection": ""}, "actions": ["enableSharding", "createCollection", "createIndex"]}
        ],
        "roles": [{"role": "readWrite", "db": db}],
    }


def app_user(db: str, user: str, password: str) -> dict[str, Any]:
    return {
        "createUser": user,
        "pwd": password,
        "roles": [{"role": APP_ROLE, "db": db}],
        "mechanisms": ["SCRAM-SHA-256"],
    }


def unsharded() -> list[str]:
    return [c.name for c in DIMS]


# ---------------------------------------------------------------- running the plan
_ALREADY = {
    "enableSharding": (),  # idempotent on MongoDB >= 6
    "shardCollection": ("AlreadyInitialized",),  # same key again is ok; a different key raises
    "createIndexes": (),
}


def apply(client, commands: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Run commands through a mongos client; return a line per command. Re-running is a no-op."""
    from pymongo.errors import OperationFailure

    done = []
    for db, cmd in commands:
        verb = next(iter(cmd))
        try:
            client[db].command(cmd)
            done.append(f"{verb} {cmd[verb]}")
        except OperationFailure as exc:
            if exc.details and exc.details.get("codeName") in _ALREADY.get(verb, ()):
                done.append(f"{verb} {cmd[verb]} (already)")
                continue
            raise
    return done


def ensure_sharded(db, name: str, _known: set[str] | None = None) -> None:
    """For a writer: shard a fact collection before its first insert (cheap when already done).

    ``db`` is a pymongo Database on a mongos. A non-sharded server (FerretDB, a plain mongod)
    answers shardCollection with an error that is ignored: buckets then simply stay unsharded.
    """
    from pymongo.errors import OperationFailure

    if _known is not None and name in _known:
        return
    try:
        apply(db.client, collection_commands(db.name, name))
    except OperationFailure as exc:
        if exc.code not in (59, 13, 20, 72):  # CommandNotFound, Unauthorized, IllegalOperation, InvalidOptions
            raise
        db[name].create_index([(collection_plan(name).contract.time_column, 1)])
    if _known is not None:
        _known.add(name)
