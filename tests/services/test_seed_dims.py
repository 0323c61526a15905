"""Dimension seeding against the real hot store: a concurrent reader never sees a partial table while the
catalogue changes, re-seeding the same catalogue writes nothing, and the seeding DAG seeds the running
pipeline's catalogue (read from its pipeline.env when the task runs). In databases of their own.

(The catalogue settings and `flashsale seed`'s defaults without a server: tests/unit/test_pipeline.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from cluster.services import airflow_env
from flashsale.contracts import DIMS, to_document
from flashsale.settings import load_settings
from flashsale.stores import mongo_client
from radar import pipeline
from ray_gen.catalogue import build_catalogue, dimension_records
from ray_gen.params import make_params
from ray_gen.runner import seed_dimensions

# two catalogues that share ids but differ in every attribute (another seed and size), as when the
# simulator's default 20,000 products are followed by `make run`'s 2,000
OLD = make_params(seed=1, n_products=600, n_cities=30, city_shards=1, warehouse_shards=1)
NEW = make_params(seed=2, n_products=200, n_cities=27, city_shards=1, warehouse_shards=1)


def documents(p) -> dict[str, dict]:
    """Per dimension: _id -> document, as seeded."""
    dims = dimension_records(build_catalogue(p))
    return {c.name: {r[c.key]: to_document(c, r) for r in dims[c.name]} for c in DIMS}


@pytest.fixture
def scratch(stack, request):
    s = load_settings(profile=stack.profile, mongo_db=f"flashsale_test_seed_{request.node.name[:20]}")
    s = load_settings(profile=stack.profile, mongo_db=s.mongo_db, mongo_auth_source=stack.mongo_db)
    with mongo_client(s) as c:
        c.drop_database(s.mongo_db)
    yield s
    with mongo_client(s) as c:
        c.drop_database(s.mongo_db)


class StateChecker:
    """Reads every dimension through its own connection and records each state that is not whole: an id both
    catalogues hold is missing (orders of either would be quarantined as unknown_id), an id neither holds, or
    a document that is neither catalogue's."""

    def __init__(self, s, old: dict, new: dict):
        self.s, self.old, self.new = s, old, new
        self.reads = 0
        self.bad: list[str] = []

    def check(self, db) -> None:
        for name in self.old:
            docs = {d["_id"]: d for d in db[name].find({})}
            both = self.old[name].keys() & self.new[name].keys()
            if missing := both - docs.keys():
                self.bad.append(f"{name}: {len(missing)} of {len(both)} shared ids missing")
            if foreign := docs.keys() - self.old[name].keys() - self.new[name].keys():
                self.bad.append(f"{name}: {len(foreign)} ids of neither catalogue")
            if mixed := [k for k, d in docs.items() if d not in (self.old[name].get(k), self.new[name].get(k))]:
                self.bad.append(f"{name}: {len(mixed)} documents of neither catalogue")
        self.reads += 1


def test_a_catalogue_change_never_shows_a_partial_table(scratch, monkeypatch):
    """Seed OLD, then NEW while (1) every write command of the seeding is followed by a full read of the
    dimensions (deterministic: every state a reader could see between two commands) and (2) a reader thread
    reads them in a loop. The former delete + insert failed (1): shared ids vanished until re-inserted."""
    old, new = documents(OLD), documents(NEW)
    seed_dimensions(OLD, scratch)
    checker = StateChecker(scratch, old, new)
    with mongo_client(scratch) as reader:
        db = reader[scratch.mongo_db]
        checker.check(db)
        assert checker.bad == []

        def after_each_write(method):
            original = getattr(Collection, method)

            def wrapped(self, *args, **kwargs):
                result = original(self, *args, **kwargs)
                if self.name in old:
                    checker.check(db)
                return result

            monkeypatch.setattr(Collection, method, wrapped)

        for method in ("insert_one", "insert_many", "delete_one", "delete_many", "replace_one", "update_one",
                       "update_many", "bulk_write", "find_one_and_replace", "drop", "rename"):  # fmt: skip
            after_each_write(method)
        writes_before = checker.reads
        report = seed_dimensions(NEW, scratch)
        monkeypatch.undo()
        assert checker.reads - writes_before >= 3, "the seeding wrote nothing?"
        assert checker.bad == [], checker.bad[:5]
        assert report["products_dim"] == {"documents": 200, "inserted": 0, "replaced": 200, "deleted": 400}

        # (2) a real concurrent reader while the catalogue goes back and forth
        stop = threading.Event()
        thread_checker = StateChecker(scratch, old, new)

        def read_loop():
            with mongo_client(scratch) as own:
                while not stop.is_set():
                    thread_checker.check(own[scratch.mongo_db])

        t = threading.Thread(target=read_loop, daemon=True)
        t.start()
        try:
            for p in (OLD, NEW):
                seed_dimensions(p, scratch)
        finally:
            stop.set()
            t.join(60)
        assert thread_checker.reads >= 2 and thread_checker.bad == [], thread_checker.bad[:5]
        final = {c.name: {d["_id"]: d for d in db[c.name].find({})} for c in DIMS}
    assert final == new


def test_reseeding_the_same_catalogue_writes_nothing(scratch):
    first = seed_dimensions(NEW, scratch)
    again = seed_dimensions(NEW, scratch)
    assert {n: c["inserted"] for n, c in first.items()} == {n: len(d) for n, d in documents(NEW).items()}
    assert again == {
        n: {"documents": c["documents"], "inserted": 0, "replaced": 0, "deleted": 0} for n, c in first.items()
    }


def test_ferretdb_has_no_rename_with_drop_target(stack):
    """Why seeding does not swap a staging collection in with renameCollection: FerretDB 1.24 refuses
    dropTarget: true, and drop + rename would leave a moment with no table. (MongoDB has it; the seeding's
    add / replace in place / remove works on both.)"""
    with mongo_client(stack) as c:
        if "ferretdbVersion" not in c.server_info():
            pytest.skip("not FerretDB")
        db = c["flashsale_test_rename"]
        try:
            db.a.insert_one({"_id": 1})
            db.b.insert_one({"_id": 2})
            with pytest.raises(OperationFailure) as err:
                c.admin.command("renameCollection", f"{db.name}.a", to=f"{db.name}.b", dropTarget=True)
            assert err.value.code == 238  # NotImplemented
        finally:
            c.drop_database(db.name)


def test_seed_dag_seeds_the_running_pipelines_catalogue(stack, scratch, tmp_path):
    """`airflow dags test flashsale_seed_dimensions` with a pipeline.env written by `flashsale run`'s code: the
    task reads it when it runs and seeds that catalogue, not the simulator's default 20,000 products. (A run
    directory of its own, so the shared one's pipeline.env is never touched.)"""
    opts = pipeline.RunOptions(
        products=700,
        seed=4242,
        warehouses=6,
        settings={"mongo_db": scratch.mongo_db, "mongo_auth_source": stack.mongo_db},
    )
    run_dir = tmp_path / "run"
    pipeline.write_pipeline_env(load_settings(run_dir=run_dir, profile=stack.profile), opts)
    assert stack.mongo_password is not None
    env = {
        **os.environ,
        **airflow_env(stack),
        "FLASHSALE_RUN_DIR": str(run_dir),
        "FLASHSALE_MONGO_PASSWORD": stack.mongo_password.get_secret_value(),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    t0 = time.time()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", "flashsale_seed_dimensions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    seen = load_settings(run_dir=run_dir, profile=stack.profile)
    expected = documents(pipeline.catalogue_params(seen))
    assert len(expected["products_dim"]) == 700 and len(expected["warehouses_dim"]) == 6
    with mongo_client(scratch) as c:
        db = c[scratch.mongo_db]
        seeded = {name: {d["_id"]: d for d in db[name].find({})} for name in expected}
    assert seeded == expected, f"seeded {[len(v) for v in seeded.values()]} in {time.time() - t0:.0f} s"
