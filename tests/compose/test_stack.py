"""The Docker Compose stack, run for real (`make test-cluster`): docker-compose.yml + the no-Docker-Hub
override, built images, every service up; then what a user of it relies on. Each phase prints its time.

Needs a Docker engine and the images (`make test-cluster` starts dockerd if none runs and builds them).
The override publishes no host port: the test reaches the containers on the project's bridge network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from flashsale.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.timeout(3000)
PROJECT = "flashsale"
ENV_FILE = Path(os.environ.get("FLASHSALE_COMPOSE_ENV", PROJECT_ROOT / ".run" / "docker" / "test.env"))
COMPOSE = [
    str(PROJECT_ROOT / ".venv" / "bin" / "docker-compose"),
    "--env-file",
    str(ENV_FILE),
    "-f",
    str(PROJECT_ROOT / "docker-compose.yml"),
    "-f",
    str(PROJECT_ROOT / "docker-compose.nohub.yml"),
]
ONE_SHOT = {"hadoop-conf", "mongo-init", "airflow-init", "simulator"}
INCLUSTER = Path(__file__).parent / "incluster.py"  # checks piped into airflow-scheduler's Python
HIST = "hist"  # run id of the cold hour the test generates for the archival run
T0 = time.monotonic()


def phase(name: str, since: float) -> float:
    now = time.monotonic()
    print(f"[test-cluster] {name}: {now - since:.0f} s (total {now - T0:.0f} s)", flush=True)
    return now


def dc(*args: str, timeout: float = 900, check: bool = True, stdin: str | None = None) -> str:
    out = subprocess.run([*COMPOSE, *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and out.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def ip_of(container: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container).strip()


def containers(service: str) -> list[str]:
    return dc("ps", "-q", service).split()


def http_json(url: str, headers: dict | None = None, timeout: float = 10) -> dict:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return json.loads(r.read())


def wait(predicate, timeout: float, what: str, poll: float = 5.0, detail=None):
    """Poll ``predicate`` until it returns a true value; on timeout fail with ``detail()`` (what was seen)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # a service still starting answers with errors: keep polling
            value, last = None, exc
        if value:
            return value
        time.sleep(poll)
    try:
        seen = f"; last seen: {detail()}" if detail else ""
    except Exception as exc:  # the message must still say what timed out
        seen = f"; (describing what was seen failed: {exc!r})"
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r}){seen}")


def incluster(*args: str) -> dict:
    """Run tests/compose/incluster.py with ``args`` in airflow-scheduler; its last line (JSON)."""
    out = dc("exec", "-T", "airflow-scheduler", "python", "-", *args, stdin=INCLUSTER.read_text(), timeout=600)
    return json.loads(out.strip().splitlines()[-1])


def secrets() -> dict[str, str]:
    return dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)


def all_up() -> list[dict]:
    rows = [json.loads(line) for line in dc("ps", "-a", "--format", "json").splitlines() if line.strip()]
    for row in rows:
        if row["Service"] in ONE_SHOT:
            if not (row["State"] == "exited" and row["ExitCode"] == 0):
                return []
        elif not (row["State"] == "running" and row["Health"] == "healthy"):
            return []
    return rows


@pytest.fixture(scope="module")
def stack():
    if not ENV_FILE.exists():
        pytest.fail(f"{ENV_FILE} is missing: `make test-cluster` writes it")
    t = time.monotonic()
    dc("down", "-v", "--remove-orphans", timeout=300)  # what an aborted run left (its secrets differ)
    try:
        dc("up", "-d", "--no-build", "--wait", "--wait-timeout", "900", timeout=1000)
        wait(all_up, 600, "every service running and healthy, every job done")
        phase("stack up (every service healthy)", t)
        yield
    finally:
        t = time.monotonic()
        if os.environ.get("FLASHSALE_KEEP_STACK") != "1":
            dc("down", "-v", "--remove-orphans", timeout=300)
            left = {
                kind: docker(kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
                for kind in ("container", "network", "volume")
            }
            left["container"] = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
            phase("down -v", t)
            assert not any(left.values()), f"`down -v` left {left}"


def test_the_compose_stack_does_its_job(stack):
    env = secrets()
    t = time.monotonic()

    # 1. every long-running service healthy, every job done
    rows = [json.loads(line) for line in dc("ps", "-a", "--format", "json").splitlines() if line.strip()]
    for row in rows:
        if row["Service"] in ONE_SHOT:
            assert row["State"] == "exited" and row["ExitCode"] == 0, row
        else:
            assert row["State"] == "running" and row["Health"] == "healthy", row
    assert len([r for r in rows if r["Service"] == "ray-worker"]) >= 2
    t = phase("1. services healthy", t)

    # 2. the simulator's shard actors run on both Ray workers (SPREAD, ray_gen/engine.py)
    head = ip_of(containers("ray-head")[0])
    workers = {ip_of(c) for c in containers("ray-worker")}
    auth = {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}

    def actor_nodes():
        nodes = {
            n["node_id"]: n["node_ip"]
            for n in http_json(f"http://{head}:8265/api/v0/nodes?limit=100", auth)["data"]["result"]["result"]
        }
        actors = http_json(f"http://{head}:8265/api/v0/actors?limit=1000", auth)["data"]["result"]["result"]
        on = [nodes.get(a["node_id"]) for a in actors if a["state"] == "ALIVE" and "Shard" in a["class_name"]]
        return on if workers <= set(on) else None

    on = wait(actor_nodes, 300, "shard actors on both Ray workers")
    where = {"head" if ip == head else ip: on.count(ip) for ip in set(on)}
    t = phase(f"2. shard actors on both Ray workers ({where})", t)

    # 3. the minute KPI DAG starts the KPI app on YARN (an executor on each worker) and it publishes a snapshot;
    #    the minute's other runs only look at it and succeed
    from cluster import airflow_api
    from flashsale.redis_keys import keys_for, read_snapshot
    from flashsale.stores import redis_client

    api = ip_of(containers("airflow-apiserver")[0])
    password = json.loads(
        dc("exec", "-T", "airflow-apiserver", "cat", "/var/lib/flashsale/airflow/admin_password.json")
    )
    af = Settings(_env_file=None, bind_host=api)
    jwt = wait(lambda: airflow_api.token(af, password["admin"]), 120, "an Airflow login")
    rm = ip_of(containers("resourcemanager")[0])
    nms = {w: ip_of(containers(w)[0]) for w in ("worker1", "worker2")}
    executors: dict[str, set[str]] = {w: set() for w in nms}  # of the first KPI app with one on each worker
    last: dict = {}  # what kpi_ok saw last, for the failure message

    def kpi_ok():
        apps = http_json(f"http://{rm}:8088/ws/v1/cluster/apps?states=RUNNING")["apps"] or {"app": []}
        kpi = {a["id"] for a in apps["app"] if a["name"] == "flashsale-kpi"}
        seen: dict[str, dict[str, set[str]]] = {app: {w: set() for w in nms} for app in kpi}
        for w, ip in nms.items():
            cs = http_json(f"http://{ip}:8042/ws/v1/node/containers")["containers"] or {"container": []}
            for c in cs["container"]:
                app = "application_" + "_".join(c["id"].split("_")[-4:-2])
                if app in kpi and not c["id"].endswith("_000001"):  # not the AM: an executor
                    seen[app][w].add(c["id"])
        spread = [on for on in seen.values() if all(on.values())]
        runs = airflow_api.call(af, "GET", "dags/flashsale_kpi_minute/dagRuns?order_by=-run_after&limit=20", jwt=jwt)
        ok = [r for r in runs["dag_runs"] if r["state"] == "success"]
        snapshot = read_snapshot(redis_client(snap_settings), keys_for(snap_settings))
        last.update(
            executors={app: {w: len(c) for w, c in on.items()} for app, on in seen.items()},
            runs=Counter(r["state"] for r in runs["dag_runs"]),
            snapshot=bool(snapshot),
        )
        if not (ok and spread and snapshot):
            return False
        executors.update(spread[0])
        return True

    snap_settings = Settings(
        _env_file=None, redis_host=ip_of(containers("redis")[0]), redis_password=env["FLASHSALE_REDIS_PASSWORD"]
    )

    def kpi_seen() -> str:
        rm_apps = http_json(f"http://{rm}:8088/ws/v1/cluster/apps?applicationTypes=SPARK")["apps"] or {"app": []}
        apps = [(a["id"], a["name"], a["state"], a["finalStatus"], a["diagnostics"][:200]) for a in rm_apps["app"]]
        nodes = http_json(f"http://{rm}:8088/ws/v1/cluster/nodes")["nodes"]["node"]
        mem = {n["nodeHostName"]: (n["usedMemoryMB"], n["availMemoryMB"], n["numContainers"]) for n in nodes}
        logs = dc("logs", "--tail", "40", "airflow-scheduler", check=False)
        return f"{last}; YARN apps {apps}; nodes (used MB, free MB, containers) {mem}; scheduler log:\n{logs}"

    wait(
        kpi_ok,
        900,
        "a KPI app with executors on both workers, a published snapshot and a looking run",
        poll=3,
        detail=kpi_seen,
    )
    snap = read_snapshot(redis_client(snap_settings), keys_for(snap_settings))
    assert snap and snap["master"] == "yarn", snap and snap.get("master")
    age = datetime.now(UTC) - datetime.fromisoformat(snap["computed_at"])
    assert age < timedelta(minutes=3), f"the snapshot is {age} old"
    moves = incluster("tasklog", "flashsale_kpi_minute", "*")["executor_moves"]  # KPI_SPREAD lines of every run
    placed = {w: len(c) for w, c in executors.items()}
    t = phase(f"3. minute KPI DAG on YARN (executors: {placed}; the app's own moves: {moves})", t)

    # 3b. the KPI app's rebalance (spark/executor_spread.py), exercised on purpose: a two-executor app whose
    #     executors are crowded onto one worker gets one moved back to the other
    spread = incluster("spread")
    steps = spread["steps"]
    assert len(set(steps[-2].values())) == 1 and len(set(steps[-1].values())) == 2, spread
    assert set(steps[-1].values()) == set(nms), (spread, nms)
    t = phase(f"3b. executors crowded then rebalanced: {steps} (moved {spread['moved']})", t)

    # 4. the dashboard shows the action queue's top item in Chromium (one of the top 5 of the newest snapshot:
    #    the page may render one refresh later)
    from dashboard_services import first_action_shown

    wait(
        lambda: (s := read_snapshot(redis_client(snap_settings), keys_for(snap_settings))) and s["queue"] and s,
        900,
        "an action queue (the flash spike)",
    )
    dash = ip_of(containers("dashboard")[0])
    snap = read_snapshot(redis_client(snap_settings), keys_for(snap_settings))
    shown, seen = first_action_shown(f"http://{dash}:8501", snap, timeout_ms=120_000, top=5)
    assert shown, (snap["queue"][:1], seen)
    t = phase("4. dashboard shows the top alert in Chromium", t)

    # 5. a cold hour generated on the Ray cluster, archived by the archival DAG: Parquet on HDFS with
    #    blocks on the worker DataNodes, every record exactly once in archive + hot store
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    gen = dc(
        "exec", "-T", "ray-head", "flashsale", "generate", "--ray", "stack", "--fast", "--minutes", "60",
        "--start", start.isoformat(), "--run-id", HIST, "--products", "2000", "--rate", "2", "--seed", "5",
        "--no-verify-store", "--json", timeout=900,
    )  # fmt: skip
    summary = json.loads(gen[gen.index("{") :])
    generated = {k: v["generated"] for k, v in summary["collections"].items()}
    t = phase(f"5a. cold hour generated ({generated})", t)

    def archival_run() -> dict:
        run = airflow_api.call(
            af, "POST", "dags/flashsale_archive/dagRuns", {"logical_date": None, "conf": {}}, jwt=jwt
        )
        path = f"dags/flashsale_archive/dagRuns/{quote(run['dag_run_id'], safe='')}"
        state = wait(
            lambda: (st := airflow_api.call(af, "GET", path, jwt=jwt)["state"]) in ("success", "failed") and st,
            900,
            "the archival run",
        )
        assert state == "success", state
        log = incluster("tasklog", "flashsale_archive", run["dag_run_id"])
        if (log["result"] or {}).get("batches"):
            return log
        # the schedule (every 10 minutes: buckets past their minimum age) may have archived the hour first
        recent = airflow_api.call(af, "GET", "dags/flashsale_archive/dagRuns?order_by=-run_after&limit=5", jwt=jwt)
        for other in (r for r in recent["dag_runs"] if r["state"] == "success"):
            o = incluster("tasklog", "flashsale_archive", other["dag_run_id"])
            if (o["result"] or {}).get("batches"):
                return o
        print(f"[test-cluster] archival run archived nothing: {(log['result'] or {}).get('trigger')!r}")
        return {}

    def hour_archived() -> tuple[dict, dict] | None:
        """An archival run that archived part of the cold hour, once every fact of it has been archived: a
        scheduled run may have planned while the generator was still writing (inventory before orders), and
        the live simulator's flash spike defers archival while it lasts (archive_layout.should_archive)."""
        log = archival_run()
        if not log:
            return None
        found = incluster("archive", HIST)
        if all(c["archived"] for c in found["collections"].values()):
            return log, found
        left = {n: len(c["hot"]) for n, c in found["collections"].items() if not c["archived"]}
        print(f"[test-cluster] archival so far left {left} hot with nothing archived: another run")
        return None

    arch, result = wait(hour_archived, 900, "archival runs that archived every fact of the cold hour", poll=20)
    res = arch["result"] or {}
    batches = [b.get("batch_id") for b in res.get("batches", [])]
    print(f"[test-cluster] archival: {res.get('trigger')!r}, now {res.get('now')}, batches {batches}")
    t = phase("5b. archival DAG run", t)
    for name, c in result["collections"].items():
        hot, archived = c["hot"], c["archived"]
        assert len(set(hot) | set(archived)) == len(hot) + len(archived) == generated[name], (
            name,
            len(hot),
            len(archived),
            len(set(hot) | set(archived)),
            generated[name],
        )
    block_ips = set(re.findall(r"DatanodeInfoWithStorage\[([\d.]+):\d+", result["fsck"]))
    worker_ips = set(nms.values())
    assert block_ips and block_ips <= worker_ips, (block_ips, worker_ips)
    t = phase(f"5c. archive exactly once; HDFS blocks on {sorted(block_ips)} (workers {sorted(worker_ips)})", t)

    # 6. Spark's task locality (the driver's TaskSetManager lines in the Airflow task logs): the archive
    #    read is the archival job's read-back of its Parquet (the first stage after each file-scan plan);
    #    the cold-baseline read is the next KPI app's read of the archive (kpi/baseline.py)
    reads = arch["file_reads"]
    assert reads["tasks"], f"no file-scan stage in the archival run's log ({arch['all_tasks']})"
    share = reads["locality"].get("NODE_LOCAL", 0) / reads["tasks"]
    on = f"{reads['tasks']} tasks {reads['locality']} on {reads['hosts']}"
    print(f"[test-cluster] archive read: {on}: NODE_LOCAL {share:.0%}")
    snap = wait(
        lambda: (
            (s := read_snapshot(redis_client(snap_settings), keys_for(snap_settings)))
            and (s.get("baseline") or {}).get("rows", 0) >= generated["orders_fact"]
            and s
        ),
        300,
        "a KPI snapshot whose cold baseline holds the archived hour",
    )
    runs = airflow_api.call(af, "GET", "dags/flashsale_kpi_minute/dagRuns?order_by=-run_after&limit=5", jwt=jwt)
    done = [r for r in runs["dag_runs"] if r["state"] == "success"]
    kpi = incluster("tasklog", "flashsale_kpi_minute", done[0]["dag_run_id"]) if done else {"file_reads": {"tasks": 0}}
    base = snap["baseline"]
    kreads = kpi["file_reads"]
    where = (
        f"{kreads['tasks']} Spark tasks {kreads['locality']}, NODE_LOCAL "
        f"{kreads['locality'].get('NODE_LOCAL', 0) / kreads['tasks']:.0%}"
        if kreads["tasks"]
        else "no Spark task: pyarrow in the driver (client mode, airflow-scheduler, not a DataNode), NODE_LOCAL 0%"
    )
    print(f"[test-cluster] cold-baseline read: {base['rows']} rows, {base['partitions']} partitions: {where}")
    phase("6. task locality reported", t)
