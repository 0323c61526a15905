"""The hot store goes away for 30 s mid-run: the generator backs off, resumes, loses and duplicates nothing.

A private FerretDB (tests/conftest_sim.py) is killed and restarted on the same data dir; the shared
one is never touched. Shards run as actors on the stack's Ray head, in real-time mode so the run
spans the outage.
"""

from __future__ import annotations

import threading
import time

import pyarrow.dataset as ds
import pytest
from conftest_sim import PrivateHotStore  # tests/ is on sys.path (pythonpath in pyproject.toml)

from flashsale.contracts import FACTS
from flashsale.stores import mongo_client
from ray_gen.engine import run
from ray_gen.params import make_params
from ray_gen.runner import Target, fact_collections, generate
from ray_gen.sinks import SinkSpec

OUTAGE_SECONDS = 30


@pytest.fixture
def private_store(stack, tmp_path):
    store = PrivateHotStore(stack, tmp_path / "ferretdb")
    store.start()
    yield store
    store.stop()


def test_thirty_second_store_outage_loses_and_duplicates_nothing(stack, private_store, tmp_path):
    p = make_params(n_products=1_500, minutes=40, city_shards=2, warehouse_shards=2, batch_size=500, run_id="outage")
    sink = SinkSpec("mongo", database="sim_outage", settings_overrides=private_store.overrides)
    events = {}

    def outage():
        time.sleep(6)  # let the run get going
        events["down"] = time.monotonic()
        private_store.kill()
        time.sleep(OUTAGE_SECONDS)
        private_store.start()
        events["up"] = time.monotonic()

    chaos = threading.Thread(target=outage, daemon=True)
    chaos.start()
    # 40 simulated minutes at 60/wall-minute: ~40 s of generation, the outage sits in the middle
    summary = generate(p, sink, stack, Target("stack"), speed=60.0, show_progress=False)
    chaos.join(60)
    print("outage run summary:", summary)  # visible with -s: retries and already-stored counts
    assert "up" in events and events["up"] - events["down"] >= OUTAGE_SECONDS

    assert not summary["interrupted"] and summary["simulated_minutes"] == p.minutes
    retries = sum(c["retries"] for c in summary["collections"].values())
    assert retries > 0, "the outage was not noticed: the test did not test anything"
    for name, c in summary["collections"].items():
        assert c["generated"] == c["stored"] == c["written"] + c["already_stored"], name

    # the store holds exactly the records of an undisturbed run of the same seed: none lost, none doubled
    run(p.replace(city_shards=1, warehouse_shards=1), SinkSpec("parquet", path=str(tmp_path / "reference")))
    with mongo_client(private_store.settings) as client:
        db = client["sim_outage"]
        for contract in FACTS:
            name, key = contract.name, contract.key
            expected = (
                ds.dataset(tmp_path / "reference" / name, format="parquet").to_table(columns=[key])[key].to_pylist()
            )
            stored = [d["_id"] for coll in fact_collections(db, contract) for d in db[coll].find({}, {"_id": 1})]
            assert len(stored) == len(set(stored)) == len(expected)
            assert set(stored) == set(expected)
