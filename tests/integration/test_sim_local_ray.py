"""The simulator on a local Ray (`flashsale generate --ray local`): its own Ray head, no stack.

Its records are compared with the in-process reference run (shards as plain objects); the stack's Ray
head is tests/services/test_sim_services.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from cluster.stack import ensure_secrets
from flashsale.settings import load_settings
from ray_gen.engine import run
from ray_gen.params import make_params
from ray_gen.sinks import SinkSpec

SMALL = dict(n_products=1_500, minutes=15, batch_size=5_000)  # as in tests/services/test_sim_services.py


def read_parquet(path, name, key):
    return ds.dataset(path / name, format="parquet").to_table().sort_by(key)


@pytest.fixture
def private_run_dir(tmp_path):
    """A run directory of this test's own, holding the Ray auth token `flashsale stack up` generates (the
    same cluster.stack.ensure_secrets). A local Ray head runs with token auth and needs nothing else from
    the stack: this test used to take the `stack` fixture only for that token in .run/."""
    run_dir = tmp_path / "run"
    s = ensure_secrets(load_settings(run_dir=run_dir))
    assert s.ray_token_file.is_file()
    return run_dir


def test_local_ray_runs_the_same_simulation(private_run_dir, tmp_path):
    """`flashsale generate --ray local` (its own Ray, 2+2 shards) gives the records of the in-process run.

    Run as the CLI in a fresh process, as users run it: starting a local Ray head forks its daemons
    with a preexec_fn, which can deadlock in a process that already holds other threads (this pytest
    process has py4j's and gRPC's from earlier tests).
    """
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "radar.cli",
            "generate",
            "--fast",
            "--ray",
            "local",
            "--sink",
            "parquet",
            "--out",
            str(tmp_path / "local"),
            "--minutes",
            str(SMALL["minutes"]),
            "--products",
            str(SMALL["n_products"]),
            "--batch-size",
            str(SMALL["batch_size"]),
            "--city-shards",
            "2",
            "--warehouse-shards",
            "2",
            "--seed",
            "1111",
            "--run-id",
            "lr",
            "--json",
        ],
        env={**os.environ, "FLASHSALE_RUN_DIR": str(private_run_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["consistent"]
    run(
        make_params(**SMALL, city_shards=1, warehouse_shards=1, seed=1111, run_id="lr"),
        SinkSpec("parquet", path=str(tmp_path / "ref")),
    )
    for name, key in (("orders_fact", "order_id"), ("inventory_fact", "inventory_event_id")):
        local, ref = read_parquet(tmp_path / "local", name, key), read_parquet(tmp_path / "ref", name, key)
        assert ref.num_rows > 0 and local.equals(ref), name
