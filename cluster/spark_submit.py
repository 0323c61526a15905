"""spark-submit for both masters from one place, and the archives that make YARN submits cheap.

pip's pyspark has no $SPARK_HOME/python/lib/pyspark.zip, which YARN mode needs, and uploading its
~460 MB of jars on every submit would cost more than a KPI cycle. So we build three archives once
(jars, pyspark, py4j), upload them to HDFS once, and point spark.yarn.archive / PYSPARK_ARCHIVES_PATH
at them. Executors run on this host (colocated with the DataNode) with the project's Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from cluster.services import BIN, java_home
from flashsale.settings import Settings

# client mode: the AM (ExecutorLauncher) only asks YARN for the executors; 256m + 384m overhead -> 768 MB
YARN_AM_MEMORY = "256m"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _archive_specs(s: Settings) -> list[tuple[Path, str, Path, str]]:
    """(local zip, hdfs path, source dir, arcname prefix) for each archive."""
    import py4j

    home = spark_home()
    local = s.tools_dir / "spark"
    base = "/flashsale/spark"
    return [
        (local / "spark-jars.zip", f"{base}/spark-jars.zip", home / "jars", ""),
        (local / "pyspark.zip", f"{base}/pyspark.zip", home, "pyspark"),
        (local / "py4j.zip", f"{base}/py4j.zip", Path(py4j.__file__).parent, "py4j"),
    ]


def _build_zip(target: Path, source: Path, prefix: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    # jars are compressed already: store them; python sources compress well
    method = zipfile.ZIP_STORED if prefix == "" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(tmp, "w", method) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and (prefix or path.suffix == ".jar"):
                if prefix == "pyspark" and path.relative_to(source).parts[0] == "jars":
                    continue  # the jars travel in spark-jars.zip
                zf.write(path, str(Path(prefix) / path.relative_to(source)))
    tmp.rename(target)


def ensure_spark_archives(s: Settings, echo=print) -> None:
    """Build the archives once and upload each to HDFS unless an identical-size copy is there."""
    from flashsale.stores import hdfs_client

    client = hdfs_client(s)
    for local, remote, source, prefix in _archive_specs(s):
        if not local.exists():
            _build_zip(local, source, prefix)
        try:
            if client.get_file_info(remote).length == local.stat().st_size:
                continue
        except FileNotFoundError:
            pass
        echo(f"  uploading {local.name} ({local.stat().st_size / 2**20:.0f} MB) to HDFS {remote}")
        client.mkdirs(str(Path(remote).parent), create_parent=True)
        tmp = remote + ".uploading"
        with client.create(tmp) as out, open(local, "rb") as src:
            while chunk := src.read(8 * 2**20):
                out.write(chunk)
        client.rename(tmp, remote, overwrite=True)


def submit_conf(s: Settings, master: str) -> tuple[dict[str, str], dict[str, str]]:
    """Spark conf and extra environment for a submit to ``master`` (spark-submit and Airflow share it)."""
    python = sys.executable
    executor_python = s.spark_python or python  # compose: the NodeManager image's Python
    conf = {
        "spark.driver.host": s.spark_driver_host or s.bind_host,
        "spark.driver.bindAddress": s.bind_host,
        "spark.driver.memory": s.spark_driver_memory,
        "spark.executor.memory": s.spark_executor_memory,
        "spark.pyspark.python": executor_python,
        "spark.pyspark.driver.python": python,
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
    }
    if s.spark_java_options:
        conf["spark.driver.extraJavaOptions"] = conf["spark.executor.extraJavaOptions"] = s.spark_java_options
    env = {"JAVA_HOME": java_home(), "SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": python}
    if master == "yarn":
        specs = {Path(remote).name: s.hdfs_url + remote for _, remote, _, _ in _archive_specs(s)}
        conf.update(
            {
                "spark.yarn.archive": specs["spark-jars.zip"],
                "spark.submit.deployMode": "client",
                "spark.executor.instances": "1",
                "spark.executor.cores": "1",
                "spark.yarn.am.memory": YARN_AM_MEMORY,
                "spark.yarn.appMasterEnv.PYSPARK_PYTHON": executor_python,
                "spark.executorEnv.PYSPARK_PYTHON": executor_python,
                "spark.yarn.maxAppAttempts": "1",
            }
        )
        if s.spark_java_options:
            conf["spark.yarn.am.extraJavaOptions"] = s.spark_java_options
        env["HADOOP_CONF_DIR"] = str(s.hadoop_conf_dir)
        env["PYSPARK_ARCHIVES_PATH"] = f"{specs['pyspark.zip']},{specs['py4j.zip']}"
    return conf, env


def submit_command(
    s: Settings,
    app: str,
    app_args: list[str] | None = None,
    master: str | None = None,
    name: str = "flashsale",
    extra_conf: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The spark-submit argv and environment for this profile (or the given master)."""
    master = master or s.spark_master
    assert master is not None  # Settings fills spark_master from the profile
    conf, env = submit_conf(s, master)
    conf.update(extra_conf or {})
    argv = [str(BIN / "spark-submit"), "--master", master, "--name", name]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return argv + [app, *(app_args or [])], {**os.environ, **env}


def run_app(
    s: Settings,
    app: str,
    app_args: list[str],
    result_prefix: str,
    master: str | None = None,
    name: str = "flashsale",
    timeout: float = 900,
    env_extra: dict[str, str] | None = None,
) -> tuple[dict | None, subprocess.CompletedProcess]:
    """spark-submit an app and parse the JSON it prints after ``result_prefix`` (None if it printed none)."""
    import json
    import subprocess

    master = master or s.spark_master
    if master == "yarn":
        ensure_spark_archives(s, echo=lambda *_: None)
    argv, env = submit_command(s, app, app_args, master=master, name=name)
    proc = subprocess.run(argv, env={**env, **(env_extra or {})}, capture_output=True, text=True, timeout=timeout)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(result_prefix)), None)
    return (json.loads(line[len(result_prefix) :]) if line else None), proc
