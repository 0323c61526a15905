"""The sharding plan (flashsale/sharding.py): derived from the contracts and hot_layout, pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flashsale import sharding
from flashsale.contracts import DIMS, FACTS, INVENTORY_FACT, ORDERS_FACT
from flashsale.hot_layout import buckets_overlapping, collection_for

T = datetime(2026, 11, 11, 0, 7, 30, tzinfo=UTC)


def test_every_fact_and_each_of_its_buckets_is_sharded_on_hashed_id():
    for fact in FACTS:
        for name in (fact.name, collection_for(fact, T, 5)):
            plan = sharding.collection_plan(name)
            assert plan.contract is fact
            assert plan.shard_key == {"_id": "hashed"}  # not monotonically increasing: spreads writes


def test_the_time_index_is_the_contracts_time_column():
    plan = sharding.collection_plan("orders_fact__20261111_0005")
    assert plan.indexes == ({"key": {"order_ts": 1}, "name": "order_ts_1"},)
    assert sharding.collection_plan("inventory_fact").indexes[0]["key"] == {INVENTORY_FACT.time_column: 1}


def test_dimensions_and_strangers_are_not_sharded():
    for name in [d.name for d in DIMS] + ["orders_fact__bad", "orders_factx", "system.profile"]:
        with pytest.raises(ValueError):
            sharding.collection_plan(name)
    assert sharding.unsharded() == [d.name for d in DIMS]


def test_commands_for_one_bucket():
    assert sharding.collection_commands("flashsale", "orders_fact__20261111_0005") == [
        ("admin", {"shardCollection": "flashsale.orders_fact__20261111_0005", "key": {"_id": "hashed"}}),
        (
            "flashsale",
            {
                "createIndexes": "orders_fact__20261111_0005",
                "indexes": [{"key": {"order_ts": 1}, "name": "order_ts_1"}],
            },
        ),
    ]


def test_upcoming_buckets_follow_hot_layout_names():
    names = sharding.upcoming_buckets(T, 5, ahead=2, behind=1)
    assert names == [
        "orders_fact__20261111_0000",
        "orders_fact__20261111_0005",
        "orders_fact__20261111_0010",
        "orders_fact__20261111_0015",
        "inventory_fact__20261111_0000",
        "inventory_fact__20261111_0005",
        "inventory_fact__20261111_0010",
        "inventory_fact__20261111_0015",
    ]
    # the same names the writer and the KPI read use
    assert collection_for(ORDERS_FACT, T, 5) in names
    assert set(buckets_overlapping(ORDERS_FACT, T.replace(minute=0), T.replace(minute=20, second=0), 5)) == {
        n for n in names if n.startswith("orders_fact")
    }


def test_cluster_plan_enables_sharding_once_then_shards_flat_facts_and_buckets():
    names = sharding.initial_collections(T, 5, ahead=1)
    assert names[:2] == ["orders_fact", "inventory_fact"]
    cmds = sharding.cluster_commands("flashsale", names)
    assert cmds[0] == ("admin", {"enableSharding": "flashsale"})
    sharded = [c["shardCollection"] for db, c in cmds if "shardCollection" in c]
    assert sharded == [f"flashsale.{n}" for n in names]
    assert len(cmds) == 1 + 2 * len(names)


def test_app_user_gets_only_the_app_database():
    role = sharding.app_role("flashsale")
    assert role["roles"] == [{"role": "readWrite", "db": "flashsale"}]
    assert all(p["resource"]["db"] == "flashsale" for p in role["privileges"])
    user = sharding.app_user("flashsale", "flashsale", "pw")
    assert user["roles"] == [{"role": sharding.APP_ROLE, "db": "flashsale"}]


def test_apply_is_idempotent_on_already_sharded():
    from pymongo.errors import OperationFailure

    calls = []
    sharded = set()

    class DB:
        def __init__(self, name):
            self.name = name

        def command(self, cmd):
            calls.append((self.name, cmd))
            if "shardCollection" in cmd:
                if cmd["shardCollection"] in sharded:
                    raise OperationFailure("already", code=23, details={"codeName": "AlreadyInitialized"})
                sharded.add(cmd["shardCollection"])
            return {"ok": 1}

    class Client(dict):
        def __getitem__(self, name):
            return DB(name)

    cmds = sharding.collection_commands("flashsale", "orders_fact")
    assert sharding.apply(Client(), cmds) == ["shardCollection flashsale.orders_fact", "createIndexes orders_fact"]
    assert sharding.apply(Client(), cmds)[0].endswith("(already)")


def test_parse_replica_set_specs():
    from cluster.mongo_init import initiate_config, parse_rs

    assert parse_rs("shard1/mongo-shard1:27017") == ("shard1", ["mongo-shard1:27017"])
    with pytest.raises(ValueError):
        parse_rs("mongo-shard1:27017")
    assert initiate_config("cfgrs", ["mongo-cfg:27017"], True) == {
        "_id": "cfgrs",
        "configsvr": True,
        "members": [{"_id": 0, "host": "mongo-cfg:27017"}],
    }
