"""The fault suite (`flashsale bench faults`, and tests/services/test_faults.py): one real `flashsale run`
on the cluster stack, and while it runs, one fault at a time:

1. the hot store killed for 30 s mid-generation;    2. Redis killed (10 s);
3. the NodeManager killed during a KPI run;         4. the KPI DAG stopped for longer than the window;
5. one record stamped a day ahead;                  6. the NameNode killed during an archival batch;
7. late records written into an hour being archived; 8. `flashsale run` SIGKILLed, then `make stop`.

A killed service is kept down for its outage (the suite holds the stack lock), then `flashsale run`'s
supervisor must restart it by itself (radar.pipeline.supervise); nothing is done by hand. Archival runs are triggered
(what the 10-minute schedule does) so the suite need not wait for the clock. Measured per fault: when
the dashboard showed "stale" (a real Chromium page for the KPI stop), how long until a new snapshot
with newer data (recovered), and what a check of that fault found. At the end, with everything stopped
and started again: every record the generator wrote (regenerated from its seed) plus every record the
faults wrote is in the hot store or the HDFS archive exactly once, by id.

The run uses its own database, Redis namespace and archive root (``--setting``), so it never touches a
user's data; it needs the cluster stack up and leaves it up (stopped and started again by fault 8).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import psutil

from cluster import airflow_api, process, stack, yarn
from cluster.services import BIN, SERVICES
from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, Contract
from flashsale.hot_layout import collection_for, existing_buckets, existing_sealed
from flashsale.redis_keys import keys_for, read_snapshot
from flashsale.settings import PROJECT_ROOT, Settings, load_settings
from flashsale.stores import hdfs_filesystem, mongo_client, redis_client
from radar import pipeline

FACTS = (ORDERS_FACT, INVENTORY_FACT)
SPEED = 20.0  # simulated minutes per wall minute: an hour becomes archivable every 3 wall minutes
STALE_LIMIT_S = 120  # the promise: "stale" on the dashboard within 2 minutes of the KPI stopping
HOT_STORE_OUTAGE_S = 30


def suite_settings(stack_settings: Settings) -> dict[str, str]:
    """What every process of the suite's run sees: its own data, and hours archivable 16 minutes after
    they end (the KPI window is 15) so two archival faults fit a short run."""
    return {
        "mongo_db": "flashsale_faults",
        "mongo_auth_source": stack_settings.mongo_db,
        "kpi_redis_namespace": "fsr:faults",
        "archive_root": f"{stack_settings.hdfs_url}/flashsale/faults",
        "archive_min_age_minutes": "16",
    }


class FaultFailed(AssertionError):
    pass


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass(eq=False)  # a Thread must stay hashable
class Observer(threading.Thread):
    """Reads the snapshot the dashboard reads, every second: when each new one was first seen."""

    s: Settings
    seen: list[dict] = field(default_factory=list)  # {"seen", "computed_at", "data_as_of", "snap"}
    redis_errors: int = 0

    def __post_init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()

    def run(self):
        keys, last = keys_for(self.s), None
        while not self.halt.wait(1.0):
            try:
                snap = read_snapshot(redis_client(self.s), keys)
            except Exception:  # noqa: BLE001 - Redis down is one of the faults
                self.redis_errors += 1
                continue
            if snap and snap.get("computed_at") != last:
                last = snap["computed_at"]
                self.seen.append(
                    {
                        "seen": time.time(),
                        "computed_at": _epoch(snap["computed_at"]),
                        "data_as_of": datetime.fromisoformat(snap["data_as_of"]),
                        "snap": snap,
                    }
                )

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without a new snapshot between wall times ``start`` and ``end`` (what the
        dashboard's stale limit is compared with)."""
        times = [start] + [x["computed_at"] for x in self.seen if start < x["computed_at"] < end] + [end]
        before = [x["computed_at"] for x in self.seen if x["computed_at"] <= start]
        if before:
            times[0] = before[-1]
        return round(max(b - a for a, b in zip(times, times[1:], strict=False)), 1)

    def latest(self) -> dict | None:
        return self.seen[-1] if self.seen else None

    def fresh_after(self, t: float, timeout: float) -> dict:
        """The first snapshot computed after wall time ``t`` with data newer than any before ``t``."""
        before = max((x["data_as_of"] for x in self.seen if x["computed_at"] <= t), default=None)
        deadline = time.time() + timeout
        while time.time() < deadline:
            for x in self.seen:
                if x["computed_at"] > t and (before is None or x["data_as_of"] > before):
                    return x
            time.sleep(1.0)
        raise FaultFailed(f"no new snapshot within {timeout:.0f} s")


def _wait(predicate: Callable[[], object], timeout: float, what: str, poll: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(poll)
    raise FaultFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_service(s: Settings, name: str) -> int:
    """SIGKILL a stack service (a crash: no shutdown hook runs). Returns its pid."""
    proc = process.live_process(s.run_dir, name)
    if proc is None:
        raise FaultFailed(f"{name} is not running")
    proc.kill()
    proc.wait(30)
    return proc.pid


def outage(s: Settings, name: str, seconds: float) -> dict:
    """Kill a service and keep it down for ``seconds`` (holding the stack lock, as an operator would);
    then `flashsale run`'s supervisor must bring it back by itself."""
    with stack.lock(s):
        t_down = time.time()
        kill_service(s, name)
        time.sleep(seconds)
        t_released = time.time()
    _wait(lambda: process.live_process(s.run_dir, name), 180, f"the supervisor to restart {name}")
    _wait(lambda: stack.probe(s, SERVICES[name])[0], 180, f"{name} to be healthy again")
    t_up = time.time()
    return {"t_up": t_up, "down_s": round(t_up - t_down, 1), "restarted_after_s": round(t_up - t_released, 1)}


# ------------------------------------------------------------------ the run and its data
@dataclass
class Run:
    s: Settings
    proc: subprocess.Popen
    log: Path
    observer: Observer
    injected: dict[str, set[str]] = field(default_factory=lambda: {c.name: set() for c in FACTS})
    generator_cmd: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._client = contextlib.ExitStack()
        self.client = self._client.enter_context(mongo_client(self.s))  # reconnects after a restart

    def db(self):
        return self.client.get_default_database()

    def close(self) -> None:
        self._client.close()

    def data_now(self) -> datetime:
        latest = self.observer.latest()
        if latest is None:
            raise FaultFailed("no snapshot yet")
        return latest["data_as_of"]


def start_run(stack_settings: Settings, out: Path, products: int, seed: int) -> Run:
    overrides = suite_settings(stack_settings)
    s = load_settings(profile=stack_settings.profile, **overrides)
    pipeline.discard_data(s)
    log = out / "flashsale_run.log"
    cmd = [
        str(BIN / "flashsale"),
        "run",
        "--profile",
        s.profile,
        "--speed",
        str(SPEED),
        "--minutes",
        "1200",  # longer than the suite: fault 8 ends it
        "--spike-minute",
        "8",
        "--products",
        str(products),
        "--seed",
        str(seed),
        *[arg for k, v in overrides.items() for arg in ("--setting", f"{k}={v}")],
    ]
    if refused := pipeline.refusal(stack_settings):
        raise FaultFailed(f"a pipeline is already running: {refused}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
    observer = Observer(s)
    observer.start()
    return Run(s, proc, log, observer)


def wait_until_running(run: Run) -> None:
    def first_snapshot():
        if run.proc.poll() is not None:
            raise FaultFailed(f"`flashsale run` ended ({run.proc.returncode}): {run.log.read_text()[-600:]}")
        return run.observer.latest()

    _wait(first_snapshot, 420, "the run's first snapshot", poll=2)
    gen = _wait(lambda: process.live_process(run.s.run_dir, pipeline.GENERATOR), 60, "the generator")
    run.generator_cmd = gen.cmdline()


def _template(run: Run, contract: Contract) -> dict:
    db = run.db()
    buckets = existing_buckets(contract, db.list_collection_names())
    doc = db[buckets[-1][1]].find_one({})
    if doc is None:
        raise FaultFailed(f"no {contract.name} document to copy")
    return doc


def write_order(run: Run, order_id: str, ts: datetime) -> None:
    """A valid order (a copy of a real one) with its own id and event time, where a writer puts it."""
    doc = {**_template(run, ORDERS_FACT), "_id": order_id, ORDERS_FACT.key: order_id, ORDERS_FACT.time_column: ts}
    run.db()[collection_for(ORDERS_FACT, ts, run.s.hot_bucket_minutes)].insert_one(doc)
    run.injected[ORDERS_FACT.name].add(order_id)


# ------------------------------------------------------------------ the faults
def hot_store_outage(run: Run) -> dict:
    s = run.s
    out = outage(s, "hotstore", HOT_STORE_OUTAGE_S)
    t_up = out.pop("t_up")
    fresh = run.observer.fresh_after(t_up, 300)
    alive = process.live_process(s.run_dir, pipeline.GENERATOR) is not None
    if not alive:
        raise FaultFailed(f"the generator died during the outage: {pipeline.generator_failure(s)}")
    return {**out, "recovered_s": round(fresh["seen"] - t_up, 1), "generator_alive": alive}


def redis_outage(run: Run) -> dict:
    s = run.s
    errors = run.observer.redis_errors
    out = outage(s, "redis", 10)
    t_up = out.pop("t_up")
    fresh = run.observer.fresh_after(t_up, 300)
    return {
        **out,
        "recovered_s": round(fresh["seen"] - t_up, 1),
        "failed_reads_while_down": run.observer.redis_errors - errors,
    }


def nodemanager_kill(run: Run) -> dict:
    s = run.s
    app = _wait(
        lambda: next((a for a in yarn.apps(s, states="RUNNING") if a["name"] == "flashsale-kpi"), None),
        180,
        "a running KPI application",
    )
    out = outage(s, "nodemanager", 5)
    t_up = out.pop("t_up")
    fresh = run.observer.fresh_after(t_up, 300)
    return {
        "killed_during": app["id"],
        **out,
        "recovered_s": round(fresh["seen"] - t_up, 1),
    }


def _stale_banner(page) -> bool:
    return "Stale data" in page.inner_text("body")


def kpi_dag_stopped(run: Run) -> dict:
    """The KPI DAG paused (and its running apps ended) for longer than the window; the real dashboard in
    Chromium must say "stale" within 2 minutes of the last snapshot, and recover by itself after."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from dashboard_services import launch_chromium

    s = run.s
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"http://{s.bind_host}:{s.dashboard_port}")
            page.wait_for_selector('[data-testid="stMetric"]', timeout=90_000)  # the tiles: a snapshot is shown
            t_stop = time.time()
            airflow_api.set_paused(s, [pipeline.KPI_DAG], paused=True)
            airflow_api.fail_active_runs(s, pipeline.KPI_DAG)
            data_at_stop = run.data_now()
            _wait(lambda: not [a for a in yarn.apps(s) if a["name"] == "flashsale-kpi"], 120, "the KPI apps to end")
            last = run.observer.latest()
            assert last is not None
            _wait(lambda: _stale_banner(page), STALE_LIMIT_S + 60, 'the dashboard\'s "stale" banner', poll=1)
            t_stale = time.time()
            window_wall_s = s.kpi_window_minutes * 60 / SPEED
            time.sleep(max(0.0, t_stop + window_wall_s + 10 - time.time()))  # longer than the window, in data
            t_restart = time.time()
            airflow_api.set_paused(s, [pipeline.KPI_DAG], paused=False)
            fresh = run.observer.fresh_after(t_restart, 300)
            _wait(lambda: not _stale_banner(page), 60, "the stale banner to clear", poll=1)
            t_clear = time.time()
        finally:
            browser.close()
    return {
        "stopped_s": round(t_restart - t_stop, 1),
        "data_minutes_missed": round((fresh["data_as_of"] - data_at_stop).total_seconds() / 60, 1),
        "stale_shown_s": round(t_stale - last["computed_at"], 1),  # from the KPI's last publication
        "recovered_s": round(fresh["seen"] - t_restart, 1),
        "banner_cleared_s": round(t_clear - t_restart, 1),
    }


def future_record(run: Run) -> dict:
    """One order stamped a day ahead (a skewed writer): the KPI's as-of must not jump to it."""
    now = run.data_now()
    ts = now + timedelta(days=1)
    t_write = time.time()
    write_order(run, "fault-future-1", ts)
    after = run.observer.fresh_after(t_write, 300)
    later = run.observer.fresh_after(after["computed_at"] + 0.5, 300)  # a whole cycle that saw it
    moved = (later["data_as_of"] - now).total_seconds() / 60
    if later["data_as_of"] >= ts - timedelta(hours=12):
        raise FaultFailed(f"the KPI as-of jumped to {later['data_as_of']} (the record is stamped {ts})")
    return {"stamped": ts.isoformat(), "as_of_moved_min": round(moved, 1), "recovered_s": 0.0}


def _archivable_hour(run: Run) -> datetime:
    """The oldest hour with hot order buckets, once the data clock makes it archivable."""
    db = run.db()
    hours = sorted({t.replace(minute=0) for t, _ in existing_buckets(ORDERS_FACT, db.list_collection_names())})
    if not hours:
        raise FaultFailed("no hot order buckets")
    hour = hours[0]
    ready = hour + timedelta(hours=1, minutes=run.s.archive_min_age_minutes + 1)
    _wait(lambda: run.data_now() >= ready, 600, f"hour {hour:%H}:00 to become archivable", poll=2)
    return hour


def _sealed(run: Run) -> list[str]:
    names = run.db().list_collection_names()
    return [n for c in FACTS for _, n in existing_sealed(c, names)]


def _archive_until_done(run: Run, hour: datetime, timeout: float = 900) -> list[str]:
    """Trigger archival runs (what the schedule does every 10 minutes) until ``hour`` has no hot bucket."""
    s, runs = run.s, list[str]()
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = run.db().list_collection_names()
        if not [n for c in FACTS for t, n in existing_buckets(c, names) if t.replace(minute=0) == hour]:
            if not _sealed(run):
                return runs
        run_id = airflow_api.trigger(s, "flashsale_archive")
        runs.append(run_id)
        state = airflow_api.wait_for_run(s, "flashsale_archive", run_id, timeout=max(60, deadline - time.time()))
        runs[-1] += f":{state}"
    raise FaultFailed(f"hour {hour:%H}:00 still hot after {timeout:.0f} s of archival runs ({runs})")


def namenode_kill_during_archive(run: Run) -> dict:
    s = run.s
    hour = _archivable_hour(run)
    run_id = airflow_api.trigger(s, "flashsale_archive")
    _wait(lambda: _sealed(run), 300, "an archival batch in progress (sealed buckets)", poll=0.5)
    out = outage(s, "namenode", 10)
    t_up = out.pop("t_up")
    # the batch's task fails or retries by itself (retries=2); the next runs finish the hour
    first = airflow_api.wait_for_run(s, "flashsale_archive", run_id, timeout=900)
    later = _archive_until_done(run, hour)
    t_done = time.time()
    fresh = run.observer.fresh_after(t_up, 300)
    return {
        "hour": f"{hour:%Y-%m-%dT%H}",
        **out,
        "interrupted_run": first,
        "later_runs": later,
        "archived_after_s": round(t_done - t_up, 1),
        "recovered_s": round(fresh["seen"] - t_up, 1),
    }


def late_records_during_archive(run: Run) -> dict:
    """A writer keeps sending records of the hour being archived (a retrying writer does): none may be
    dropped with the sealed buckets; the next run archives them as a supplement of that hour."""
    hour = _archivable_hour(run)
    stop, written, during_seal = threading.Event(), [], []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            sealed = bool(_sealed(run))
            oid = f"fault-late-{i}"
            write_order(run, oid, hour + timedelta(minutes=7, milliseconds=i))
            written.append(oid)
            if sealed:
                during_seal.append(oid)
            time.sleep(0.3)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    t0 = time.time()
    try:
        run_id = airflow_api.trigger(run.s, "flashsale_archive")
        first = airflow_api.wait_for_run(run.s, "flashsale_archive", run_id, timeout=900)
    finally:
        stop.set()
        thread.join(30)
    later = _archive_until_done(run, hour)  # the supplement
    if not during_seal:
        raise FaultFailed("no late record was written while the hour was sealed: the fault tested nothing")
    return {
        "hour": f"{hour:%Y-%m-%dT%H}",
        "late_written": len(written),
        "written_while_sealed": len(during_seal),
        "first_run": first,
        "later_runs": later,
        "recovered_s": round(time.time() - t0, 1),
    }


def _pipeline_processes(s: Settings) -> list[str]:
    """Processes of a pipeline still running: anything started in the run directory (services, Spark
    drivers, Ray), the generator, the dashboard, a `flashsale run`. Other `flashsale` commands on the
    machine (a backtest, a test run) are not the pipeline's."""
    from dashboard.serve import APP  # a containerized dashboard elsewhere on the machine is not ours

    markers = (str(s.run_dir), f"{BIN / 'flashsale'} generate", f"{BIN / 'flashsale'} run", str(APP))
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] != os.getpid() and any(m in cmd for m in markers):
            out.append(f"{p.info['pid']}: {cmd[:120]}")
    return out


def sigkill_run_then_stop(run: Run) -> dict:
    s = run.s
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(30)
    run.observer.halt.set()
    t0 = time.time()
    stop = subprocess.run(["make", "-s", "stop"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    t_stopped = time.time()
    if stop.returncode != 0:
        raise FaultFailed(f"make stop failed ({stop.returncode}): {stop.stderr.strip()[-400:]}")
    listening = [
        f"{svc.name}:{port}"
        for svc in SERVICES.values()
        for port in svc.ports(s)
        if process.port_open(s.bind_host, port)
    ]
    left = _pipeline_processes(s)
    if listening or left:
        raise FaultFailed(f"left after make stop: listening {listening}, processes {left[:5]}")
    return {"stop_s": round(t_stopped - t0, 1), "left_running": 0}


# ------------------------------------------------------------------ reconciliation by id
def reference_ids(run: Run, minutes: int, out: Path) -> dict[str, set[str]]:
    """The generator's records, regenerated from its own command line (same seed, catalogue, start and run
    id) without Ray or a server, for the minutes it simulated."""
    return regenerated_ids(run.generator_cmd, minutes, out)


def regenerated_ids(generator_cmd: list[str], minutes: int, out: Path, timeout: float = 900) -> dict[str, set[str]]:
    """The records of the generator started with ``generator_cmd`` (a `flashsale generate` command line),
    regenerated without Ray or a server for ``minutes`` simulated minutes: their ids per fact."""
    import pyarrow.dataset as ds

    cmd = [str(BIN / "flashsale"), *generator_cmd[generator_cmd.index("generate") :]]
    drop = {"--ray": 1, "--speed": 1, "--minutes": 1, "--no-verify-store": 0, "--json": 0, "--profile": 1}
    kept: list[str] = []
    i = 0
    while i < len(cmd):
        if cmd[i] in drop:
            i += 1 + drop[cmd[i]]
            continue
        kept.append(cmd[i])
        i += 1
    ref = out / "reference"
    args = [*kept, "--fast", "--ray", "inline", "--sink", "parquet", "--out", str(ref), "--minutes", str(minutes)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise FaultFailed(f"regenerating the reference failed: {done.stderr.strip()[-400:]}")
    return {
        c.name: set(ds.dataset(ref / c.name, format="parquet").to_table(columns=[c.key])[c.key].to_pylist())
        for c in FACTS
    }


def hot_ids(s: Settings, contract: Contract) -> list[str]:
    """Every id of a fact in the hot store: its buckets and any sealed bucket an archival run holds."""
    return [i for chunk in iter_hot_ids(s, contract) for i in chunk]


def iter_hot_ids(s: Settings, contract: Contract) -> Iterator[list[str]]:
    """``hot_ids`` one bucket at a time (a long run's ids need not all be in memory at once)."""
    with mongo_client(s) as client:
        db = client.get_default_database()
        names = db.list_collection_names()
        buckets = existing_buckets(contract, names) + existing_sealed(contract, names)
        for _, name in buckets:
            yield [d["_id"] for d in db[name].find({}, {"_id": 1})]


def archived_ids(s: Settings, contract: Contract) -> list[str]:
    """Every id of a fact in the HDFS archive: its hour partitions and its quarantine."""
    return [i for chunk in iter_archived_ids(s, contract) for i in chunk]


def iter_archived_ids(s: Settings, contract: Contract) -> Iterator[list[str]]:
    """``archived_ids`` one Parquet file at a time."""
    import pyarrow.parquet as pq
    from bson import json_util

    fs = hdfs_filesystem(s)
    root = str(s.archive_root).removeprefix(s.hdfs_url)
    for f in fs.glob(f"{root}/{contract.name}/date=*/hour=*/*.parquet"):
        yield pq.read_table(fs.open(f, "rb"), columns=[contract.key]).column(0).to_pylist()
    for f in fs.glob(f"{root}/quarantine/{contract.name}/**/*.parquet"):
        raws = pq.read_table(fs.open(f, "rb"), columns=["_raw"]).column(0).to_pylist()
        yield [json_util.loads(r)["_id"] for r in raws]


def stored_ids(s: Settings) -> dict[str, Counter]:
    """Every fact id in hot store + archive, counted: a count of 2 is a duplicate."""
    return {c.name: Counter(hot_ids(s, c) + archived_ids(s, c)) for c in FACTS}


def reconcile(run: Run, out: Path) -> dict:
    summary = pipeline.generator_summary(run.s)
    if not summary:
        raise FaultFailed("the generator left no summary")
    expected = reference_ids(run, summary["simulated_minutes"], out)
    return compare_ids(summary, expected, stored_ids(run.s), run.injected)


def compare_ids(
    summary: dict,
    expected: dict[str, set[str]],
    stored: dict[str, Counter],
    injected: dict[str, set[str]] | None = None,
) -> dict:
    """Per fact: the expected ids (regenerated, plus any a test wrote itself) against the stored ones
    (hot store + archive, counted): lost, unexpected, duplicated; reconciled if none of them, and the
    regenerated count is the generator's own."""
    injected = injected or {c.name: set() for c in FACTS}
    result: dict = {"simulated_minutes": summary["simulated_minutes"]}
    for c in FACTS:
        want = expected[c.name] | injected[c.name]
        have = stored[c.name]
        result[c.name] = {
            "generated": len(expected[c.name]),
            "injected": len(injected[c.name]),
            "stored": sum(have.values()),
            "lost": len(want - set(have)),
            "unexpected": len(set(have) - want),
            "duplicated": sum(1 for n in have.values() if n > 1),
            "generator_reported": summary["collections"][c.name]["generated"],
        }
    result["reconciled"] = all(
        r["lost"] == r["unexpected"] == r["duplicated"] == 0 and r["generated"] == r["generator_reported"]
        for k, r in result.items()
        if isinstance(r, dict)
    )
    return result


# ------------------------------------------------------------------ the suite
FAULTS: list[tuple[str, str, Callable[[Run], dict]]] = [
    ("hot_store_outage", "hot store killed for 30 s mid-generation", hot_store_outage),
    ("redis_outage", "Redis killed (back after 10 s)", redis_outage),
    ("nodemanager_kill", "NodeManager killed during a KPI run", nodemanager_kill),
    ("kpi_dag_stopped", "KPI DAG stopped for longer than the window", kpi_dag_stopped),
    ("future_record", "one record stamped a day ahead", future_record),
    ("namenode_kill", "NameNode killed during an archival batch", namenode_kill_during_archive),
    ("late_records", "late records written into an hour being archived", late_records_during_archive),
    ("sigkill_run", "`flashsale run` SIGKILLed, then `make stop`", sigkill_run_then_stop),
]


def run_suite(stack_settings: Settings, out: Path, products: int = 2_000, seed: int = 4242, echo=print) -> dict:
    """Every fault in turn on one run; returns the figures (each fault's result or its error)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run = start_run(stack_settings, out, products, seed)
    results: dict = {"faults": [], "speed": SPEED, "products": products, "seed": seed}
    try:
        wait_until_running(run)
        results["first_snapshot_s"] = round(time.time() - t0, 1)
        echo(f"run up, first snapshot {results['first_snapshot_s']:.0f} s after the command")
        for name, what, fault in FAULTS:
            t = time.time()
            try:
                figures, error = fault(run), None
            except Exception as exc:  # noqa: BLE001 - one fault's failure is recorded; the rest still run
                figures, error = {}, f"{type(exc).__name__}: {exc}"
            gap = run.observer.longest_gap(t, time.time())
            entry = {"fault": name, "what": what, "took_s": round(time.time() - t, 1), "error": error}
            entry |= {"longest_kpi_gap_s": gap, **figures}
            results["faults"].append(entry)
            echo(json.dumps(entry))
    finally:
        run.observer.halt.set()
        run.close()
        if run.proc.poll() is None:  # the suite ended before fault 8: end the run the user's way (Ctrl-C)
            run.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(600)
        stack.up(stack_settings, echo=lambda *_: None)  # fault 8 (or Ctrl-C) stopped the stack: bring it back
    results["reconciliation"] = reconcile(run, out)
    results["snapshots"] = len(run.observer.seen)
    results["total_s"] = round(time.time() - t0, 1)
    if results["reconciliation"]["reconciled"]:
        pipeline.discard_data(run.s)
    return results


def table(results: dict) -> str:
    """The README's reliability table, from a run's results."""
    rec = results["reconciliation"]
    shown = {"fault", "what", "error", "took_s", "recovered_s", "stale_shown_s", "longest_kpi_gap_s"}
    rows = [
        "| fault | longest time without a new snapshot | dashboard said stale | recovered | what the check found |",
        "|---|---|---|---|---|",
    ]
    for f in results["faults"]:
        gap = f"{f['longest_kpi_gap_s']:.0f} s" if f["fault"] != "sigkill_run" else "(all stopped)"
        stale = f"{f['stale_shown_s']:.0f} s after the last snapshot" if "stale_shown_s" in f else "-"
        recovered = f"{f['recovered_s']:.0f} s" if "recovered_s" in f else "-"
        check = f["error"] or ", ".join(f"{k} {v}" for k, v in f.items() if k not in shown)
        rows.append(f"| {f['what']} | {gap} | {stale} | {recovered} | {check} |")
    lost = sum(rec[c.name]["lost"] for c in FACTS)
    dup = sum(rec[c.name]["duplicated"] for c in FACTS)
    total = sum(rec[c.name]["generated"] + rec[c.name]["injected"] for c in FACTS)
    rows.append(f"| all of the above, reconciled by id | | | | {total:,} records: {lost} lost, {dup} duplicated |")
    return "\n".join(rows)
