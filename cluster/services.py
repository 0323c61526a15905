"""The real services of the stack: how each is prepared, started and judged healthy.

Every service is described by data (command, env, ports, health probe); ``cluster.stack`` does the
supervising. Addresses and credentials come from the settings (Hadoop's from hadoop-conf/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from flashsale.settings import PROJECT_ROOT, Settings, hadoop_property, required_secret

BIN = Path(sys.executable).parent  # the project's virtualenv: ray, airflow, spark-submit


class PrerequisiteError(RuntimeError):
    """A missing prerequisite; the message is one line and names the fix."""


@dataclass
class Service:
    name: str
    ports: Callable[[Settings], list[int]]
    command: Callable[[Settings], list[str]]
    health: Callable[[Settings], str]  # returns a short detail or raises
    env: Callable[[Settings], dict[str, str]] = lambda s: {}
    prepare: Callable[[Settings], None] = lambda s: None
    memory_mb: int = 256
    start_timeout: float = 90.0
    needs: list[str] = field(default_factory=list)  # programs that must be installed

    def address(self, s: Settings) -> str:
        return f"{s.bind_host}:{self.ports(s)[0]}"


# ---------------------------------------------------------------- helpers
def http_json(url: str, timeout: float = 3.0, headers: dict | None = None) -> dict:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read().decode())


def http_status(url: str, timeout: float = 3.0, headers: dict | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def java_home() -> str:
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise PrerequisiteError(
            "Java 17 is not installed: run `make install` (apt-get install openjdk-17-jre-headless)"
        )
    return str(Path(os.path.realpath(java)).parents[1])


def ferretdb_binary(s: Settings) -> Path:
    return s.tools_dir / "bin" / "ferretdb"


def hadoop_lib(s: Settings) -> Path:
    return s.tools_dir / "hadoop" / "lib"


# ---------------------------------------------------------------- hot store
def _hotstore_command(s: Settings) -> list[str]:
    mongod = shutil.which("mongod")
    if mongod:  # a real MongoDB when one is installed
        return [
            mongod,
            "--bind_ip",
            s.bind_host,
            "--port",
            str(s.mongo_port),
            "--dbpath",
            str(s.run_dir / "hotstore" / "mongod"),
            "--auth",
        ]
    binary = ferretdb_binary(s)
    if not binary.exists():
        raise PrerequisiteError(f"FerretDB is not built ({binary}): run `make install` (needs Go)")
    return [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{s.run_dir / 'hotstore' / 'sqlite'}/",
        f"--state-dir={s.run_dir / 'hotstore'}",
        f"--listen-addr={s.bind_host}:{s.mongo_port}",
        f"--debug-addr={s.bind_host}:{s.mongo_port + 1000}",  # its default (8088) is YARN's web port
        "--telemetry=disable",
        "--log-level=WARN",
        # SCRAM users stored by FerretDB itself; the first user is created at start-up
        "--test-enable-new-auth",
        f"--setup-database={s.mongo_db}",
    ]


def _hotstore_env(s: Settings) -> dict[str, str]:
    # credentials through the environment, never on a command line that `ps` shows
    return {
        "FERRETDB_SETUP_USERNAME": s.mongo_user,
        "FERRETDB_SETUP_PASSWORD": required_secret(s.mongo_password, "FLASHSALE_MONGO_PASSWORD"),
    }


def _hotstore_prepare(s: Settings) -> None:
    (s.run_dir / "hotstore" / "sqlite").mkdir(parents=True, exist_ok=True)
    (s.run_dir / "hotstore" / "mongod").mkdir(parents=True, exist_ok=True)


def _hotstore_health(s: Settings) -> str:
    from flashsale.stores import mongo_client

    with mongo_client(s, timeout_ms=2000) as client:
        info = client.admin.command("buildInfo")
        client[s.mongo_db].command("ping")
    if "ferretdbVersion" in info:
        return f"FerretDB {info['ferretdbVersion']} (MongoDB {info.get('version')} wire protocol)"
    return f"MongoDB {info.get('version')}"


# ---------------------------------------------------------------- redis
def _redis_prepare(s: Settings) -> None:
    conf = s.run_dir / "redis" / "redis.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        "\n".join(
            [
                f"bind {s.bind_host}",
                f"port {s.redis_port}",
                "protected-mode yes",
                f"requirepass {required_secret(s.redis_password, 'FLASHSALE_REDIS_PASSWORD')}",
                'save ""',  # a cache of derived KPIs: no persistence
                "appendonly no",
                f"dir {conf.parent}",
                "daemonize no",
                "maxmemory 512mb",
                "maxmemory-policy volatile-ttl",
            ]
        )
        + "\n"
    )


def _redis_health(s: Settings) -> str:
    import redis

    client = redis.Redis.from_url(s.redis_url, socket_timeout=2)
    info = client.info("server")
    return f"Redis {info['redis_version']}"


# ---------------------------------------------------------------- hadoop
HADOOP_MAINS = {
    "namenode": "org.apache.hadoop.hdfs.server.namenode.NameNode",
    "datanode": "org.apache.hadoop.hdfs.server.datanode.DataNode",
    "resourcemanager": "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager",
    "nodemanager": "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
}


def hadoop_java(s: Settings, main: str, heap_mb: int | None = None) -> list[str]:
    lib = hadoop_lib(s)
    if not lib.is_dir() or not any(lib.glob("hadoop-hdfs-*.jar")):
        raise PrerequisiteError(f"Hadoop jars are missing ({lib}): run `make install` (needs Maven)")
    return [
        str(Path(java_home()) / "bin" / "java"),
        f"-Xmx{heap_mb or s.daemon_heap_mb}m",
        "-XX:+UseSerialGC",
        f"-Dflashsale.run.dir={s.run_dir}",
        f"-Dhadoop.log.dir={s.run_dir / 'logs'}",
        "-Dhadoop.root.logger=INFO,console",
        "-cp",
        f"{s.hadoop_conf_dir}:{lib}/*",
        main,
    ]


def hadoop_env(s: Settings) -> dict[str, str]:
    return {"JAVA_HOME": java_home(), "HADOOP_CONF_DIR": str(s.hadoop_conf_dir)}


def _namenode_prepare(s: Settings) -> None:
    if (s.run_dir / "hdfs" / "name" / "current" / "VERSION").exists():
        return
    (s.run_dir / "hdfs").mkdir(parents=True, exist_ok=True)
    cmd = hadoop_java(s, HADOOP_MAINS["namenode"]) + ["-format", "-nonInteractive", "-force"]
    out = subprocess.run(cmd, env={**os.environ, **hadoop_env(s)}, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"HDFS format failed: {out.stderr[-500:]}")


def _namenode_health(s: Settings) -> str:
    beans = http_json(f"{s.namenode_http}/jmx?qry=Hadoop:service=NameNode,name=NameNodeStatus")["beans"]
    state = beans[0]["State"]
    if state != "active":
        raise RuntimeError(f"NameNode state {state}")
    return "NameNode active"


def _datanode_health(s: Settings) -> str:
    beans = http_json(f"{s.namenode_http}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")["beans"]
    live = beans[0]["NumLiveDataNodes"]
    if live < 1:
        raise RuntimeError("no live DataNode registered")
    safemode = http_json(f"{s.namenode_http}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")["beans"][0]["Safemode"]
    if safemode:
        raise RuntimeError("HDFS in safe mode")
    return f"{live} live DataNode(s)"


def _resourcemanager_health(s: Settings) -> str:
    info = http_json(f"{s.resourcemanager_http}/ws/v1/cluster/info")["clusterInfo"]
    if info["state"] != "STARTED":
        raise RuntimeError(f"ResourceManager {info['state']}")
    return f"ResourceManager {info['resourceManagerVersion']}"


def _nodemanager_health(s: Settings) -> str:
    metrics = http_json(f"{s.resourcemanager_http}/ws/v1/cluster/metrics")["clusterMetrics"]
    if metrics["activeNodes"] < 1:
        raise RuntimeError("no active NodeManager")
    return f"{metrics['activeNodes']} active NodeManager(s), {metrics['totalMB']} MB"


def _hadoop_service(
    name: str,
    ports: Callable[[Settings], list[int]],
    health: Callable[[Settings], str],
    prepare: Callable[[Settings], None] = lambda s: None,
    memory_mb: int = 600,
) -> Service:
    main = HADOOP_MAINS[name]
    return Service(
        name=name,
        ports=ports,
        command=lambda s: hadoop_java(s, main),
        env=hadoop_env,
        health=health,
        prepare=prepare,
        memory_mb=memory_mb,
        needs=["java"],
    )


def _hdfs_port(s: Settings) -> int:
    return urlparse(s.hdfs_url).port or 8020


# ---------------------------------------------------------------- airflow
def airflow_env(s: Settings) -> dict[str, str]:
    from flashsale.connections import airflow_connection_env

    home = s.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_admin_user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_password_file(s)),
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://{s.bind_host}:{s.airflow_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{s.bind_host}:{s.airflow_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s.airflow_worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(s.airflow_trigger_log_port),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "FLASHSALE_RUN_DIR": str(s.run_dir),
        "FLASHSALE_PROFILE": s.profile,
        **airflow_connection_env(s),
    }


def airflow_password_file(s: Settings) -> Path:
    return s.airflow_home / "admin_password.json"


def _airflow_health(s: Settings) -> str:
    health = http_json(f"http://{s.bind_host}:{s.airflow_port}/api/v2/monitor/health")
    bad = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") not in (None, "healthy")]
    if bad:
        raise RuntimeError(f"unhealthy: {', '.join(bad)}")
    return "api-server, scheduler, dag-processor, triggerer healthy"


# ---------------------------------------------------------------- ray
def ray_temp_dir(s: Settings) -> Path:
    # Ray's unix sockets live under its temp dir and must stay under ~107 characters
    import hashlib

    return Path("/tmp") / f"flashsale-ray-{hashlib.sha1(str(s.run_dir).encode()).hexdigest()[:8]}"


def _ray_command(s: Settings) -> list[str]:
    cpus = s.ray_num_cpus or os.cpu_count() or 2
    return [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={s.bind_host}",
        f"--port={s.ray_port}",
        f"--dashboard-host={s.bind_host}",
        f"--dashboard-port={s.ray_dashboard_port}",
        f"--ray-client-server-port={s.ray_client_port}",
        f"--dashboard-agent-listen-port={s.ray_dashboard_agent_port}",
        "--include-dashboard=true",
        f"--num-cpus={cpus}",
        f"--temp-dir={ray_temp_dir(s)}",
        "--disable-usage-stats",
    ]


def _ray_health(s: Settings) -> str:
    url = f"http://{s.bind_host}:{s.ray_dashboard_port}/api/version"
    token = s.ray_token_file.read_text().strip()
    info = http_json(url, headers={"Authorization": f"Bearer {token}"})
    return f"Ray {info.get('ray_version')} (token auth)"


# ---------------------------------------------------------------- the table
SERVICES: dict[str, Service] = {
    svc.name: svc
    for svc in [
        Service(
            "hotstore",
            ports=lambda s: [s.mongo_port],
            command=_hotstore_command,
            env=_hotstore_env,
            prepare=_hotstore_prepare,
            health=_hotstore_health,
            memory_mb=300,
            start_timeout=60,
        ),
        Service(
            "redis",
            ports=lambda s: [s.redis_port],
            command=lambda s: [shutil.which("redis-server") or "redis-server", str(s.run_dir / "redis" / "redis.conf")],
            prepare=_redis_prepare,
            health=_redis_health,
            memory_mb=64,
            start_timeout=20,
            needs=["redis-server"],
        ),
        _hadoop_service(
            "namenode",
            lambda s: [_hdfs_port(s), _port_of(hadoop_property("hdfs-site", "dfs.namenode.http-address"))],
            _namenode_health,
            prepare=_namenode_prepare,
        ),
        _hadoop_service(
            "datanode", lambda s: [_port_of(hadoop_property("hdfs-site", "dfs.datanode.address"))], _datanode_health
        ),
        _hadoop_service(
            "resourcemanager",
            lambda s: [
                _port_of(hadoop_property("yarn-site", "yarn.resourcemanager.address")),
                _port_of(hadoop_property("yarn-site", "yarn.resourcemanager.webapp.address")),
            ],
            _resourcemanager_health,
        ),
        _hadoop_service(
            "nodemanager",
            lambda s: [_port_of(hadoop_property("yarn-site", "yarn.nodemanager.webapp.address"))],
            _nodemanager_health,
        ),
        Service(
            "airflow",
            ports=lambda s: [s.airflow_port, s.airflow_worker_log_port, s.airflow_trigger_log_port],
            command=lambda s: [str(BIN / "airflow"), "standalone"],
            env=airflow_env,
            health=_airflow_health,
            memory_mb=1200,
            start_timeout=240,
        ),
        Service(
            "ray",
            ports=lambda s: [s.ray_port, s.ray_dashboard_port, s.ray_client_port, s.ray_dashboard_agent_port],
            command=_ray_command,
            env=lambda s: s.ray_env(),
            health=_ray_health,
            memory_mb=700,
            start_timeout=90,
        ),
    ]
}
