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
