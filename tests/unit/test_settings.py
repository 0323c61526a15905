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
