"""A real round trip through each service of the running stack (cluster profile)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pymongo
import pytest
import redis

from cluster import stack as stack_mod
from cluster.services import BIN, airflow_env, airflow_password_file, http_json, http_status
from cluster.spark_submit import submit_command
from flashsale.settings import PROJECT_ROOT
from flashsale.stores import hdfs_client, hdfs_filesystem, mongo_client, redis_client

ROOT = PROJECT_ROOT


def test_status_json_reports_every_service_healthy(stack):
    out = subprocess.run(
        [str(BIN / "flashsale"), "stack", "status", "--profile", stack.profile, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = {svc["name"] for svc in report["services"]}
    assert set(stack.services) <= names
    for svc in report["services"]:
        assert svc["healthy"] and svc["pid"] > 0, svc
        assert svc["address"].startswith("127.0.0.1:")
    assert report["healthy"] is True


def test_hot_store_round_trip(stack):
    coll_name = f"roundtrip_{uuid.uuid4().hex[:8]}"
    t0 = datetime(2026, 11, 11, tzinfo=UTC)
    docs = [
        {"_id": f"o{i}", "city_id": i % 3, "order_qty": 1 + i % 2, "order_ts": t0 + timedelta(minutes=i)}
        for i in range(60)
    ]
    with mongo_client(stack) as client:
        coll = client[stack.mongo_db][coll_name]
        try:
            result = coll.insert_many(docs, ordered=False)
            assert len(result.inserted_ids) == 60
            assert coll.create_index("order_ts") == "order_ts_1"
            window = list(
                coll.find({"order_ts": {"$gte": t0 + timedelta(minutes=45), "$lt": t0 + timedelta(minutes=60)}})
            )
            assert sorted(d["_id"] for d in window) == sorted(f"o{i}" for i in range(45, 60))
            assert window[0]["order_ts"].tzinfo is not None  # tz-aware, as the contracts require
            groups = coll.aggregate(
                [
                    {"$match": {"order_ts": {"$gte": t0 + timedelta(minutes=30)}}},
                    {"$group": {"_id": "$city_id", "qty": {"$sum": "$order_qty"}}},
                    {"$sort": {"_id": 1}},
                ]
            )
            expected = {}
            for d in docs[30:]:
                expected[d["city_id"]] = expected.get(d["city_id"], 0) + d["order_qty"]
            assert {g["_id"]: g["qty"] for g in groups} == expected
            # a retried batch cannot duplicate: deterministic _id, unordered insert
            with pytest.raises(pymongo.errors.BulkWriteError) as dup:
                coll.insert_many(docs[:5], ordered=False)
            assert {e["code"] for e in dup.value.details["writeErrors"]} == {11000}
            assert coll.count_documents({}) == 60
        finally:
            coll.drop()


def test_hot_store_refuses_unauthenticated_and_wrong_password(stack):
    if stack.external_mongo:
        pytest.skip("MONGO_URI points at an external server")
    anon = pymongo.MongoClient(f"mongodb://{stack.bind_host}:{stack.mongo_port}/", serverSelectionTimeoutMS=3000)
    with pytest.raises(pymongo.errors.OperationFailure, match="requires authentication"):
        anon[stack.mongo_db]["x"].insert_one({"a": 1})
    wrong = pymongo.MongoClient(
        stack.mongo_url.replace(stack.mongo_password.get_secret_value(), "wrong"), serverSelectionTimeoutMS=3000
    )
    with pytest.raises(pymongo.errors.OperationFailure, match="Authentication failed"):
        wrong[stack.mongo_db].command("ping")


def test_redis_round_trip_requires_auth(stack):
    client = redis_client(stack)
    key = f"test:roundtrip:{uuid.uuid4().hex}"
    client.set(key, "42", ex=30)
    assert client.get(key) == b"42"
    client.delete(key)
    anon = redis.Redis(host=stack.bind_host, port=stack.redis_port, socket_timeout=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anon.get(key)
    wrong = redis.Redis(host=stack.bind_host, port=stack.redis_port, password="wrong", socket_timeout=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()


def test_hdfs_parquet_write_list_read(stack):
    fs = hdfs_filesystem(stack)
    base = f"/tmp/flashsale-test-{uuid.uuid4().hex[:8]}"
    table = pa.table({"product_id": list(range(100)), "qty": [i % 7 for i in range(100)]})
    try:
        pq.write_table(table, f"{base}/part-0.parquet", filesystem=fs)
        listed = [Path(p).name for p in fs.ls(base, detail=False)]
        assert listed == ["part-0.parquet"]
        assert pq.read_table(f"{base}/part-0.parquet", filesystem=fs).equals(table)
    finally:
        hdfs_client(stack).delete(base, recursive=True)


def test_yarn_has_one_active_nodemanager(stack):
    nodes = http_json(f"{stack.resourcemanager_http}/ws/v1/cluster/nodes")["nodes"]["node"]
    running = [n for n in nodes if n["state"] == "RUNNING"]
    assert len(running) == 1 and running[0]["nodeHostName"] in ("127.0.0.1", "localhost")


@pytest.mark.parametrize("master", ["local[*]", "yarn"])
def test_tiny_pyspark_job(stack, master):
    argv, env = submit_command(
        stack, str(ROOT / "tests" / "jobs" / "tiny_job.py"), ["1000"], master=master, name="flashsale-tiny"
    )
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TINY_JOB_SUM=499500" in out.stdout
    if master == "yarn":
        app_id = re.search(r"application_\d+_\d+", out.stderr).group(0)
        app = http_json(f"{stack.resourcemanager_http}/ws/v1/cluster/apps/{app_id}")["app"]
        assert (app["state"], app["finalStatus"]) == ("FINISHED", "SUCCEEDED")


def _airflow_token(stack, password: str) -> str | None:
    from cluster.airflow_api import token

    return token(stack, password)


def test_airflow_healthy_with_generated_admin_password(stack):
    health = http_json(f"http://{stack.bind_host}:{stack.airflow_port}/api/v2/monitor/health")
    assert {k: v["status"] for k, v in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    password = json.loads(airflow_password_file(stack).read_text())[stack.airflow_admin_user]
    assert password != "admin" and len(password) >= 16
    assert _airflow_token(stack, "admin") is None  # never admin/admin
    token = _airflow_token(stack, password)
    assert token
    errors = http_json(
        f"http://{stack.bind_host}:{stack.airflow_port}/api/v2/importErrors",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert errors["total_entries"] == 0, errors
    assert http_status(f"http://{stack.bind_host}:{stack.airflow_port}/api/v2/dags") == 401


def python_in_airflow_env(stack, code: str, timeout: float = 180) -> str:
    """Run Python with the stack's Airflow environment; return its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **airflow_env(stack)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_dags_folder_parses_without_import_errors(stack):
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        "import json; bag = DagBag()  # dags_folder and load_examples=False come from the env\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': {k: str(v) for k, v in bag.import_errors.items()}}))"
    )
    result = json.loads(python_in_airflow_env(stack, code).strip().splitlines()[-1])
    assert result["errors"] == {}


def test_airflow_connections_come_from_settings(stack):
    code = (
        "from airflow.sdk import BaseHook\n"
        "for cid in ('spark_local', 'spark_yarn', 'flashsale_mongo', 'flashsale_redis'):\n"
        "    c = BaseHook.get_connection(cid); print(cid, c.conn_type, c.host, c.port)\n"
    )
    lines = dict(line.split(" ", 1) for line in python_in_airflow_env(stack, code).strip().splitlines())
    assert lines["spark_local"].startswith("spark local[*]")
    assert lines["spark_yarn"].startswith("spark yarn")
    assert lines["flashsale_redis"] == f"redis {stack.bind_host} {stack.redis_port}"


def test_ray_reports_cpus_and_requires_token(stack):
    code = (
        "import ray, json\n"
        f"ray.init(address={stack.ray_address!r}, logging_level='ERROR')\n"
        "print(json.dumps(ray.cluster_resources())); ray.shutdown()\n"
    )
    env = {**os.environ, **stack.ray_env()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    resources = json.loads(out.stdout.strip().splitlines()[-1])
    assert resources["CPU"] >= 1
    url = f"http://{stack.bind_host}:{stack.ray_dashboard_port}/api/version"
    assert http_status(url) == 401
    assert http_status(url, headers={"Authorization": "Bearer wrong-token"}) in (401, 403)


def test_up_twice_is_a_no_op(stack):
    before = {x.name: x.pid for x in stack_mod.status(stack)}
    lines: list[str] = []
    stack_mod.up(stack, echo=lines.append)
    after = {x.name: x.pid for x in stack_mod.status(stack)}
    assert before == after
    assert any("nothing to do" in line for line in lines)
