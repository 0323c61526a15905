"""The simulator against the real services: the stack's Ray head and the shared hot store. (A local Ray is
tests/integration/test_sim_local_ray.py; the `generate` command's JSON summary and bad input
tests/unit/test_sim_cli.py.)

Uses its own databases (flashsale_sim_it_*) and drops them afterwards.
"""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from flashsale.contracts import DIMS, ORDERS_FACT, validate
from flashsale.hot_layout import collection_for
from flashsale.stores import mongo_client
from ray_gen.catalogue import build_catalogue
from ray_gen.engine import LocalBackend, RayBackend, run
from ray_gen.params import make_params
from ray_gen.runner import Target, fact_collections, generate, seed_dimensions
from ray_gen.sinks import SinkSpec

SMALL = dict(n_products=1_500, minutes=15, batch_size=5_000)


@pytest.fixture
def scratch_db(stack, request):
    name = f"flashsale_sim_it_{request.node.name[:30]}".replace("[", "_").replace("]", "")
    yield name
    with mongo_client(stack) as client:
        client.drop_database(name)


def read_parquet(path, name, key):
    return ds.dataset(path / name, format="parquet").to_table().sort_by(key)


def test_seed_writes_the_dimensions_idempotently(stack, scratch_db):
    p = make_params(n_products=3_000)
    first = seed_dimensions(p, stack, database=scratch_db)
    second = seed_dimensions(p, stack, database=scratch_db)
    cat = build_catalogue(p)
    assert first["products_dim"]["inserted"] == cat.n_products
    assert second == {
        n: {"documents": first[n]["documents"], "inserted": 0, "replaced": 0, "deleted": 0} for n in first
    }
    with mongo_client(stack) as client:
        db = client[scratch_db]
        assert db.cities_dim.count_documents({}) == 27 and db.warehouses_dim.count_documents({}) == 20
        for contract in DIMS:
            for doc in db[contract.name].find({}).limit(200):
                validate(contract, doc)


def test_ray_head_shards_match_the_in_process_reference(stack, tmp_path):
    """1 actor per kind and 4 per kind on the stack's Ray head give the records of the plain-object run."""
    results = {}

    def on_the_head():  # built only when its turn comes: the previous backend's shutdown disconnects Ray
        return RayBackend(address=stack.ray_address, ray_env=stack.ray_env())

    for label, shards, make_backend in (
        ("inline", 1, LocalBackend),
        ("ray1", 1, on_the_head),
        ("ray4", 4, on_the_head),
    ):
        backend = make_backend()
        p = make_params(**SMALL, city_shards=shards, warehouse_shards=shards)
        try:
            run(p, SinkSpec("parquet", path=str(tmp_path / label)), backend)
        finally:
            backend.shutdown()
        results[label] = {
            "orders": read_parquet(tmp_path / label, "orders_fact", "order_id"),
            "inventory": read_parquet(tmp_path / label, "inventory_fact", "inventory_event_id"),
        }
    assert results["inline"]["orders"].num_rows > 1_000
    for label in ("ray1", "ray4"):
        for kind in ("orders", "inventory"):
            assert results[label][kind].equals(results["inline"][kind]), (label, kind)
    # each shard wrote its own files
    assert len(list((tmp_path / "ray4" / "orders_fact").glob("*.parquet"))) == 4


def test_generate_into_the_hot_store_then_rerun_duplicates_nothing(stack, scratch_db):
    p = make_params(**SMALL, city_shards=2, warehouse_shards=2, run_id="it1")
    sink = SinkSpec("mongo", database=scratch_db)
    first = generate(p, sink, stack, Target("stack"), show_progress=False)
    assert first["consistent"] and not first["interrupted"]
    for c in first["collections"].values():
        assert c["generated"] == c["written"] == c["stored"] > 0
    # the same run again (think: a retried job): every record is "already stored", nothing doubles
    again = generate(p, sink, stack, Target("stack"), show_progress=False)
    for name, c in again["collections"].items():
        assert c["written"] == 0
        assert c["already_stored"] == c["generated"] == first["collections"][name]["stored"] == c["stored"]
    with mongo_client(stack) as client:
        db = client[scratch_db]
        buckets = fact_collections(db, ORDERS_FACT)
        minutes = int(SMALL["minutes"])  # one bucket per hot_bucket_minutes of the simulated run
        assert len(buckets) == minutes // stack.hot_bucket_minutes and "orders_fact" not in db.list_collection_names()
        for name in buckets:  # every order sits in the bucket of its own event time
            for order in db[name].find({}).limit(50):
                validate("orders_fact", order)
                assert collection_for(ORDERS_FACT, order["order_ts"], stack.hot_bucket_minutes) == name
