"""`flashsale run`'s pieces that need no running pipeline: its settings file and the generator command.
(The data clock, read from the hot store, is tests/services/test_pipeline_clock.py;
tests/e2e/test_e2e_pipeline.py runs the whole pipeline.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale.settings import load_settings, pipeline_file
from radar import pipeline


def test_pipeline_file_reaches_every_settings_load_and_goes_away(tmp_path):
    s = load_settings(run_dir=tmp_path)
    assert s.kpi_clock == "wall"
    opts = pipeline.RunOptions(settings={"mongo_db": "flashsale_other", "archive_min_age_minutes": "30"})
    pipeline.write_pipeline_env(s, opts)
    seen = load_settings(run_dir=tmp_path)
    assert (seen.kpi_clock, seen.mongo_db, seen.archive_min_age_minutes) == ("data", "flashsale_other", 30)
    pipeline_file(tmp_path).unlink()
    assert load_settings(run_dir=tmp_path).kpi_clock == "wall"


def test_a_paced_run_writes_its_own_clock_for_every_process(tmp_path):
    """The data clock's bound (Settings.data_clock_limit) comes from the run: its simulated start and pace."""
    s = load_settings(run_dir=tmp_path)
    sim_start = datetime(2025, 11, 11, 23, 45, tzinfo=UTC)
    pipeline.write_pipeline_env(s, pipeline.RunOptions(speed=20), sim_start)
    seen = load_settings(run_dir=tmp_path)
    assert (seen.data_clock_sim_start, seen.data_clock_speed) == (sim_start, 20)
    assert seen.data_clock_wall_start is not None
    limit = seen.data_clock_limit(seen.data_clock_wall_start + timedelta(minutes=3))
    assert limit == sim_start + timedelta(minutes=60, seconds=seen.kpi_future_skew_seconds)
    pipeline.write_pipeline_env(s, pipeline.RunOptions(speed=None), sim_start)  # fast-forward: no bound
    assert load_settings(run_dir=tmp_path).data_clock_limit() is None


def test_every_pipeline_process_sees_the_runs_profile(tmp_path, monkeypatch):
    """The dashboard is started without --profile: under `make run` (cluster) it must link YARN and HDFS."""
    monkeypatch.delenv("FLASHSALE_PROFILE", raising=False)
    assert load_settings(run_dir=tmp_path).profile == "local"
    pipeline.write_pipeline_env(load_settings(run_dir=tmp_path, profile="cluster"), pipeline.RunOptions())
    seen = load_settings(run_dir=tmp_path)
    assert seen.profile == "cluster" and {"yarn_resourcemanager", "hdfs_namenode"} <= set(seen.ui_urls())


def test_generator_command_paces_and_names_the_run():
    s = load_settings()
    start = datetime(2025, 11, 11, 23, 45, tzinfo=UTC)
    realtime = pipeline.generator_command(s, pipeline.RunOptions(speed=5, stock_cover=45), start)
    assert realtime[realtime.index("--speed") + 1] == "5" and "--fast" not in realtime
    assert realtime[realtime.index("--run-id") + 1] == "run202511112345"
    assert realtime[realtime.index("--stock-cover") + 1] == "45"
    assert realtime[realtime.index("--ray") + 1] == "stack"
    fast = pipeline.generator_command(s, pipeline.RunOptions(speed=None), start)
    assert "--fast" in fast and "--speed" not in fast
    assert "--rate" not in fast  # the simulator's default rate unless one is asked for
    # archival moves records out of the hot store during a pipeline run: no end-of-run store count
    assert "--no-verify-store" in fast and "--no-verify-store" in realtime
    scaled = pipeline.generator_command(s, pipeline.RunOptions(speed=None, rate=700.0), start)
    assert scaled[scaled.index("--rate") + 1] == "700.0"


def test_the_run_directory_is_private(tmp_path):
    """It holds the hot store's files, the logs and the generated secrets: owner only (0700)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    run_dir.chmod(0o755)
    pipeline.write_pipeline_env(load_settings(run_dir=run_dir), pipeline.RunOptions())
    assert run_dir.stat().st_mode & 0o777 == 0o700


def test_the_airflow_password_never_reaches_container_logs(tmp_path, monkeypatch, capsys):
    import json

    from cluster import containers
    from cluster.services import airflow_password_file

    monkeypatch.setenv("FLASHSALE_RUN_DIR", str(tmp_path))
    containers.main(["airflow-password"])
    s = load_settings(run_dir=tmp_path)
    (password,) = json.loads(airflow_password_file(s).read_text()).values()
    out = capsys.readouterr().out
    assert "Airflow admin login" in out and str(airflow_password_file(s)) in out and password not in out


# ---------------------------------------------------------------- the run's catalogue, seen by the seeding DAG
def test_settings_catalogue_defaults_are_the_simulators():
    """No pipeline running: `flashsale seed` (and the DAG) seed what `flashsale generate` draws from by default."""
    from flashsale.settings import Settings
    from ray_gen.params import SimParams

    seen = pipeline.catalogue_params(Settings())
    default = SimParams(city_shards=1, warehouse_shards=1)
    assert seen == default


def test_the_runs_catalogue_reaches_every_settings_load(tmp_path):
    """pipeline.env carries the run's catalogue: a process loading the settings (the DAG's `flashsale seed`)
    builds exactly the dimension tables the generator draws from."""
    from ray_gen.catalogue import build_catalogue, dimension_records
    from ray_gen.params import make_params

    assert pipeline.catalogue_params(load_settings(run_dir=tmp_path)).n_products == 20_000  # no pipeline
    opts = pipeline.RunOptions(products=300, seed=7, cities=9, warehouses=4, rate=40.0)
    pipeline.write_pipeline_env(load_settings(run_dir=tmp_path), opts)
    seen = pipeline.catalogue_params(load_settings(run_dir=tmp_path))
    generator = make_params(
        seed=7,
        n_products=300,
        n_cities=9,
        n_warehouses=4,
        base_orders_per_city_minute=40.0,
        city_shards=1,
        warehouse_shards=1,
    )
    assert seen == generator
    # and the generator is told the same catalogue
    cmd = pipeline.generator_command(load_settings(run_dir=tmp_path), opts, datetime(2025, 11, 11, tzinfo=UTC))
    flags = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
    assert (flags["--products"], flags["--seed"], flags["--cities"], flags["--warehouses"], flags["--rate"]) == (
        "300",
        "7",
        "9",
        "4",
        "40.0",
    )
    dims = dimension_records(build_catalogue(seen))
    assert [len(dims[n]) for n in ("products_dim", "warehouses_dim", "cities_dim")] == [300, 4, 9]
    # the rate is part of the catalogue: it sets warehouse capacity
    other_rate = dimension_records(build_catalogue(seen.replace(base_orders_per_city_minute=20.0)))
    assert other_rate["warehouses_dim"] != dims["warehouses_dim"]


def test_the_catalogue_is_read_when_seeding_not_before(tmp_path):
    """The DAG reads the settings at run time: a pipeline started after the DAG was parsed still counts."""
    s = load_settings(run_dir=tmp_path)
    pipeline.write_pipeline_env(s, pipeline.RunOptions(products=2_000))
    assert pipeline.catalogue_params(load_settings(run_dir=tmp_path)).n_products == 2_000
    pipeline.write_pipeline_env(s, pipeline.RunOptions(products=20_000))
    assert pipeline.catalogue_params(load_settings(run_dir=tmp_path)).n_products == 20_000


def _live_generator(run_dir):
    """A generator record naming this very process: live_process() finds it alive."""
    import json
    import os

    import psutil

    from cluster import process

    me = os.getpid()
    rec = {"name": "generator", "pid": me, "create_time": psutil.Process(me).create_time(), "command": ["x"]}
    process.state_path(run_dir, "generator").parent.mkdir(parents=True, exist_ok=True)
    rec.update(log=str(run_dir / "gen.log"), start_ticks=process.start_ticks(me))
    process.state_path(run_dir, "generator").write_text(json.dumps(rec))


def test_a_second_run_while_a_generator_lives_is_refused_and_keeps_the_clock(tmp_path):
    """Rewriting pipeline.env under a live generator would drop the run's clock anchor (the clocks fail open)."""
    import pytest

    s = load_settings(run_dir=tmp_path)
    sim_start = datetime(2025, 11, 11, 23, 45, tzinfo=UTC)
    pipeline.write_pipeline_env(s, pipeline.RunOptions(speed=20), sim_start)
    before = pipeline_file(tmp_path).read_text()
    assert pipeline.refusal(s) is None
    _live_generator(tmp_path)
    refused = pipeline.refusal(s)
    assert refused and "already running" in refused and "make stop" in refused and "\n" not in refused
    with pytest.raises(pipeline.PipelineRefused, match="already running"):
        pipeline.start(s, pipeline.RunOptions(products=5), echo=lambda *_: None)
    assert pipeline_file(tmp_path).read_text() == before  # the anchor is still there
    assert load_settings(run_dir=tmp_path).data_clock_limit() is not None


def test_flashsale_run_refuses_in_one_line_and_stops_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from radar.cli import app

    monkeypatch.setenv("FLASHSALE_RUN_DIR", str(tmp_path))
    _live_generator(tmp_path)
    stopped = []
    monkeypatch.setattr(pipeline, "stop", lambda *a, **k: stopped.append(True))
    monkeypatch.setattr(pipeline, "start", lambda *a, **k: stopped.append("started"))
    result = CliRunner().invoke(app, ["run", "--profile", "local"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0] and "make stop" in lines[0], result.output
    assert stopped == []  # the running pipeline is left alone


def test_a_catalogue_setting_in_the_environment_is_refused(tmp_path, monkeypatch):
    """It would beat pipeline.env: the DAG would seed another catalogue than the generator draws from."""
    monkeypatch.setenv("FLASHSALE_CATALOGUE_PRODUCTS", "500")
    refused = pipeline.refusal(load_settings(run_dir=tmp_path))
    assert refused and "FLASHSALE_CATALOGUE_PRODUCTS" in refused and "unset it" in refused


def test_flashsale_seed_seeds_the_running_pipelines_catalogue(tmp_path, monkeypatch):
    """What the seeding DAG runs: `flashsale seed` without options takes the run's catalogue; options win."""
    from typer.testing import CliRunner

    import radar.cli
    import ray_gen.runner
    from radar.cli import app

    monkeypatch.setenv("FLASHSALE_RUN_DIR", str(tmp_path))
    pipeline.write_pipeline_env(load_settings(run_dir=tmp_path), pipeline.RunOptions(products=2_000, seed=9))
    seeded = []
    monkeypatch.setattr(radar.cli, "_require_hot_store", lambda s: None)
    monkeypatch.setattr(ray_gen.runner, "seed_dimensions", lambda p, s, database=None: seeded.append(p) or {})
    assert CliRunner().invoke(app, ["seed"]).exit_code == 0
    assert CliRunner().invoke(app, ["seed", "--products", "50"]).exit_code == 0
    assert [(p.n_products, p.seed) for p in seeded] == [(2_000, 9), (50, 9)]
    assert seeded[0] == pipeline.catalogue_params(load_settings(run_dir=tmp_path))
