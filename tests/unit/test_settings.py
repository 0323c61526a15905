"""Profiles differ only in settings; env overrides; missing secrets give a clear error."""

import pytest

from flashsale.settings import MissingSecretError, Settings, load_settings


def test_profiles_differ_in_settings_not_code(tmp_path):
    local = load_settings(profile="local", run_dir=tmp_path)
    cluster = load_settings(profile="cluster", run_dir=tmp_path)
    assert local.spark_master == "local[*]" and cluster.spark_master == "yarn"
    assert local.archive_root == f"file://{tmp_path / 'archive'}"
    assert cluster.archive_root.startswith("hdfs://127.0.0.1:")
    assert set(local.services) < set(cluster.services)
    assert {"namenode", "datanode", "resourcemanager", "nodemanager"} == set(cluster.services) - set(local.services)


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASHSALE_REDIS_PORT", "7000")
    monkeypatch.setenv("FLASHSALE_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("FLASHSALE_REDIS_PASSWORD", "s3cret/with:chars")
    s = load_settings(profile="cluster", run_dir=tmp_path)
    assert s.redis_port == 7000 and s.spark_master == "local[2]"
    assert s.redis_url == "redis://:s3cret%2Fwith%3Achars@127.0.0.1:7000/0"
    assert "s3cret" not in repr(s)  # secrets never show in reprs or logs


def test_generated_secrets_file_is_read(tmp_path):
    (tmp_path / "secrets.env").write_text("FLASHSALE_MONGO_PASSWORD=abc\n")
    s = load_settings(run_dir=tmp_path)
    assert ":abc@" in s.mongo_url


def test_missing_secret_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASHSALE_REDIS_PASSWORD", raising=False)
    s = Settings(_env_file=None, run_dir=tmp_path)  # no .env, no generated secrets
    with pytest.raises(MissingSecretError, match="FLASHSALE_REDIS_PASSWORD.*flashsale stack up"):
        _ = s.redis_url


def test_mongo_uri_points_at_an_external_server(monkeypatch, tmp_path):
    monkeypatch.setenv("MONGO_URI", "mongodb://u:p@mongos:27017/flashsale")
    s = load_settings(run_dir=tmp_path)
    assert s.external_mongo and s.mongo_url == "mongodb://u:p@mongos:27017/flashsale"


def test_bounds_are_validated(tmp_path):
    with pytest.raises(ValueError, match="archive_min_age_minutes"):
        load_settings(run_dir=tmp_path, archive_min_age_minutes=5)


def test_archival_must_not_reach_into_the_kpi_window(tmp_path):
    with pytest.raises(ValueError, match="must exceed kpi_window_minutes"):
        load_settings(run_dir=tmp_path, kpi_window_minutes=30, archive_min_age_minutes=30)
    assert load_settings(run_dir=tmp_path, kpi_window_minutes=30, archive_min_age_minutes=31)


def test_the_data_clock_is_bounded_by_the_runs_own_clock(tmp_path):
    from datetime import UTC, datetime, timedelta

    wall = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    skew = timedelta(seconds=load_settings(run_dir=tmp_path).kpi_future_skew_seconds)
    assert load_settings(run_dir=tmp_path, kpi_clock="wall").data_clock_limit(wall) == wall + skew
    assert load_settings(run_dir=tmp_path, kpi_clock="data").data_clock_limit(wall) is None  # no anchor: unbounded
    sim0 = datetime(2025, 11, 11, 0, 0, tzinfo=UTC)
    s = load_settings(
        run_dir=tmp_path,
        kpi_clock="data",
        data_clock_sim_start=sim0.isoformat(),
        data_clock_wall_start=(wall - timedelta(minutes=10)).isoformat(),
        data_clock_speed=5,
    )
    # 10 wall minutes at 5 simulated minutes per minute
    assert s.data_clock_limit(wall) == sim0 + timedelta(minutes=50) + skew


def test_the_archivers_now_never_passes_the_clock(tmp_path):
    from datetime import UTC, datetime, timedelta

    from spark.archive_job import archive_now

    wall = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    s = load_settings(run_dir=tmp_path, kpi_clock="wall", hot_bucket_minutes=5)
    buckets = [wall - timedelta(minutes=30), wall - timedelta(minutes=5)]
    assert archive_now(s, buckets, wall) == wall  # the newest bucket's end
    # a bucket pre-created a day ahead would have made every hour before it "old enough"
    assert archive_now(s, [*buckets, wall + timedelta(days=1)], wall) == wall + timedelta(
        seconds=s.kpi_future_skew_seconds
    )
    assert archive_now(s, [], wall) == wall
