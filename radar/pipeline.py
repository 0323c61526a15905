"""`flashsale run` (`make run`): the whole pipeline on one machine, and `stop`, which leaves nothing running.

Steps: stack up -> dimensions seeded -> the simulator in accelerated real time on the stack's Ray ->
Airflow's KPI and archival DAGs unpaused -> the dashboard on 127.0.0.1. Simulated time runs ahead of
the wall clock, so the run writes ``<run>/pipeline.env`` with ``FLASHSALE_KPI_CLOCK=data``: every
process that loads the settings (the Airflow task, the Spark driver) then takes the newest event time
as the KPI as-of. ``stop`` pauses the DAGs, stops the generator (SIGINT first, so it flushes), the
dashboard and every service, and removes that file.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from cluster import process, stack
from cluster.services import BIN
from flashsale.settings import PROJECT_ROOT, Settings, load_settings, pipeline_file, private_dir

if TYPE_CHECKING:
    from ray_gen.params import SimParams

KPI_DAG = "flashsale_kpi_minute"
PIPELINE_DAGS = (KPI_DAG, "flashsale_archive")
GENERATOR, DASHBOARD = "generator", "dashboard"
FIRST_ALERTS = "first_alerts.json"  # in the run dir: this run's start-up and first-alerts times (bench/bench_run.py)


@dataclass(frozen=True)
class RunOptions:
    speed: float | None = 5.0  # simulated minutes per wall-clock minute; None = fast-forward
    minutes: int = 24 * 60  # simulated minutes before the generator ends (Ctrl-C stops earlier)
    spike_minute: int = 10  # the flash spike's simulated minute (the default curve waits 2 hours)
    products: int = 20_000  # the simulator's catalogue: a running KPI app reads only new buckets (issue 19)
    cities: int = 27
    warehouses: int = 20
    stock_cover: float = 60.0  # initial stock in minutes of baseline demand (the simulator's default 180 drains slowly)
    seed: int = 1111
    rate: float | None = None  # base orders per city-minute (None: the simulator's default)
    start: datetime | None = None  # simulated start; default: now, or after the newest data already stored
    # settings every pipeline process sees (FLASHSALE_<FIELD>) on top of the data clock, e.g. a test's own database
    settings: dict[str, str] = field(default_factory=dict)


CATALOGUE_FIELDS = (
    "catalogue_seed",
    "catalogue_products",
    "catalogue_cities",
    "catalogue_warehouses",
    "catalogue_rate",
)


def catalogue_settings(opts: RunOptions) -> dict[str, object]:
    """The run's catalogue as settings (Settings.catalogue_*): what the generator draws orders from, and so
    what the dimension tables must hold."""
    return dict(zip(CATALOGUE_FIELDS, (opts.seed, opts.products, opts.cities, opts.warehouses, opts.rate), strict=True))


def catalogue_params(s: Settings) -> SimParams:
    """The simulator parameters that build the dimension tables, from the settings (the running pipeline's
    pipeline.env, else the simulator's defaults). Read when seeding, never at import."""
    from ray_gen.params import make_params

    rate = {} if s.catalogue_rate is None else {"base_orders_per_city_minute": s.catalogue_rate}
    return make_params(
        seed=s.catalogue_seed,
        n_products=s.catalogue_products,
        n_cities=s.catalogue_cities,
        n_warehouses=s.catalogue_warehouses,
        city_shards=1,
        warehouse_shards=1,
        **rate,
    )


def write_pipeline_env(s: Settings, opts: RunOptions, sim_start: datetime | None = None) -> None:
    """The settings every pipeline process sees: the data clock, the catalogue (the seeding DAG seeds the
    run's), and once the generator runs at a known pace, the run's own clock that bounds it
    (Settings.data_clock_limit)."""
    # the profile too: a process started without --profile (the dashboard, whose header links to the YARN
    # and HDFS UIs of the cluster profile) must see the run's, not the default
    catalogue = {k: v for k, v in catalogue_settings(opts).items() if v is not None}
    values: dict[str, object] = {"profile": s.profile, "kpi_clock": "data", **catalogue, **opts.settings}
    if sim_start is not None:  # the sale calendar the business publishes for this run: the KPI job reads it
        values["kpi_sale_calendar"] = sale_calendar(opts, sim_start)
    if sim_start is not None and opts.speed is not None:
        values.update(
            data_clock_sim_start=sim_start.isoformat(),
            data_clock_wall_start=datetime.now(UTC).isoformat(),
            data_clock_speed=opts.speed,
        )
    path = pipeline_file(private_dir(s.run_dir))
    path.write_text("".join(f"FLASHSALE_{k.upper()}={v}\n" for k, v in values.items()))


def sale_calendar(opts: RunOptions, sim_start: datetime) -> str:
    """The planned calendar of the sale the generator is about to run (ray_gen/sale_plan.py: the events'
    times, and their size as a planner's forecast), as the compact JSON ``kpi_sale_calendar`` takes."""
    import json

    from ray_gen.params import FlashCurve, make_params
    from ray_gen.sale_plan import planned_calendar_json

    p = make_params(
        seed=opts.seed,
        start=sim_start,
        minutes=opts.minutes,
        n_products=opts.products,
        n_cities=opts.cities,
        n_warehouses=opts.warehouses,
        flash=FlashCurve(spike_minute=opts.spike_minute),
        **({"base_orders_per_city_minute": opts.rate} if opts.rate else {}),
    )
    return json.dumps(json.loads(planned_calendar_json(p)), separators=(",", ":"))


def simulated_start(s: Settings, opts: RunOptions) -> datetime:
    """Now, but never before data already in the hot store: the data clock must move forward."""
    if opts.start is not None:
        return opts.start
    from flashsale.contracts import ORDERS_FACT
    from flashsale.hot_store import newest_event_time
    from flashsale.stores import mongo_client

    start = datetime.now(UTC)
    with mongo_client(s) as c:
        newest = newest_event_time(c.get_default_database(), ORDERS_FACT)
    if newest is not None and newest >= start:
        start = newest + timedelta(minutes=1)
    return start.replace(second=0, microsecond=0)


def generator_command(s: Settings, opts: RunOptions, start: datetime) -> list[str]:
    # a run id per start minute: ids stay deterministic for a start but never collide with an earlier run
    pace = ["--fast"] if opts.speed is None else ["--speed", str(opts.speed)]
    return [
        str(BIN / "flashsale"),
        "generate",
        "--profile",
        s.profile,
        "--ray",
        "stack",
        *pace,
        "--minutes",
        str(opts.minutes),
        "--spike-minute",
        str(opts.spike_minute),
        "--stock-cover",
        str(opts.stock_cover),
        "--products",
        str(opts.products),
        "--cities",
        str(opts.cities),
        "--warehouses",
        str(opts.warehouses),
        "--seed",
        str(opts.seed),
        "--start",
        start.isoformat(),
        "--run-id",
        f"run{start:%Y%m%d%H%M}",
        "--json",
        *(["--rate", str(opts.rate)] if opts.rate else []),
        # archival moves records out of the hot store meanwhile: the pipeline reconciles generated ==
        # hot + archived (tests, benches), the generator reports what the store acknowledged
        "--no-verify-store",
    ]


class PipelineRefused(RuntimeError):
    """`flashsale run` must not start: the message names why and the fix."""


def refusal(s: Settings) -> str | None:
    """Why a new run must not start, in one line naming the fix, or None.

    - a generator of an earlier run is alive: rewriting pipeline.env under it would drop the run's clock
      anchor (Settings.data_clock_*), and the clocks would fail open;
    - the environment or .env sets a catalogue setting: it beats pipeline.env, so the seeding DAG would
      seed another catalogue than the generator draws from."""
    gen = process.live_process(s.run_dir, GENERATOR)
    if gen is not None:
        return (
            f"a pipeline is already running in {s.run_dir} (generator pid {gen.pid}, dashboard "
            f"http://{s.bind_host}:{s.dashboard_port}): stop it first with `make stop` (flashsale stack down)"
        )
    user = Settings(_env_file=(PROJECT_ROOT / ".env",))  # type: ignore[call-arg]
    overrides = sorted(f"FLASHSALE_{k.upper()}" for k in CATALOGUE_FIELDS if k in user.model_fields_set)
    if overrides:
        return (
            f"{', '.join(overrides)} set in the environment or .env would override the run's catalogue "
            "(--products, --seed): unset it"
        )
    return None


def start(settings: Settings, opts: RunOptions, echo=print) -> tuple[Settings, datetime]:
    """Bring the whole pipeline up (idempotent for the stack); PipelineRefused (see ``refusal``) while a
    generator of an earlier run is alive.

    Returns the settings the pipeline uses and the simulated start of the generator it started."""
    from cluster import airflow_api
    from ray_gen.runner import seed_dimensions

    if refused := refusal(settings):
        raise PipelineRefused(refused)
    write_pipeline_env(settings, opts)
    s = load_settings(profile=settings.profile, run_dir=settings.run_dir)
    started: list[str] = []

    def stack_echo(line: str = "") -> None:
        if line.strip().startswith("started "):
            started.append(line.split()[1])
        echo(line)

    t = time.monotonic()
    stack.up(s, echo=stack_echo)
    _record_run(s, opts, stack_up_s=round(time.monotonic() - t, 1), services_started=started)
    s = load_settings(profile=s.profile, run_dir=s.run_dir)  # secrets may have just been generated
    counts = seed_dimensions(catalogue_params(s), s)
    echo("  seeded " + ", ".join(f"{n} ({c['documents']:,})" for n, c in counts.items()))
    sim_start = simulated_start(s, opts)
    write_pipeline_env(s, opts, sim_start)  # the run's clock, read by every KPI and archival run
    process.start(s.run_dir, GENERATOR, generator_command(s, opts, sim_start), _process_env(), cwd=s.run_dir)
    pace = "fast-forward" if opts.speed is None else f"{opts.speed:g} simulated min per minute"
    echo(f"  started generator        {pace}, spike at minute {opts.spike_minute}")
    if _start_dashboard(s):
        echo(f"  started dashboard        http://{s.bind_host}:{s.dashboard_port}")
    airflow_api.set_paused(s, PIPELINE_DAGS, paused=False)
    echo(f"  unpaused DAGs            {', '.join(PIPELINE_DAGS)}")
    # the KPI app starts now, not at the next minute's run (which then only looks: one start at a time)
    airflow_api.trigger(s, KPI_DAG)
    echo(f"  triggered                {KPI_DAG} (its app serves an hour; each minute's run looks at it)")
    return s, sim_start


def _process_env() -> dict[str, str]:
    """The environment of the pipeline's own processes: the project's tools first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _start_dashboard(s: Settings) -> bool:
    """Start the dashboard unless it runs; True if it was started."""
    if process.live_process(s.run_dir, DASHBOARD) is not None:
        return False
    from dashboard.serve import command

    process.start(s.run_dir, DASHBOARD, command(s.dashboard_port, s.bind_host), _process_env(), cwd=s.run_dir)
    return True


def _forget_kpi_launch(s: Settings) -> None:
    """The ended KPI app's start claim must not make the next start wait out its grace (a restart within
    kpi_launch_grace_seconds would otherwise look "still starting" and start nothing)."""
    from flashsale.redis_keys import keys_for
    from flashsale.stores import redis_client

    redis_client(s).delete(keys_for(s).launch)


def stop(s: Settings, echo=print, stop_stack: bool = True) -> None:
    """Pause the DAGs, stop the generator (flushing), the dashboard and the stack; nothing is left running."""
    from cluster import airflow_api

    if process.live_process(s.run_dir, "airflow") is not None:
        try:
            airflow_api.set_paused(s, PIPELINE_DAGS, paused=True)
            echo(f"  paused DAGs {', '.join(PIPELINE_DAGS)}")
            # a paused DAG's running KPI app would refresh for up to an hour more; the archive run is
            # left to finish its batch (it is crash-safe, but a clean commit is quicker to reason about)
            if ended := airflow_api.fail_active_runs(s, KPI_DAG):
                echo(f"  ended {len(ended)} running KPI run(s) and their YARN apps")
            _forget_kpi_launch(s)
        except Exception as exc:  # a half-started Airflow must not block the stop
            echo(f"  could not pause the DAGs ({type(exc).__name__}: {exc}); stopping anyway")
    with stack.lock(s):  # from here on a running `flashsale run` restarts nothing (``supervise``)
        pipeline_file(s.run_dir).unlink(missing_ok=True)
    gen = process.live_process(s.run_dir, GENERATOR)
    if gen is not None:  # SIGINT: the generator stops issuing minutes and flushes what it generated
        gen.send_signal(signal.SIGINT)
        try:
            gen.wait(timeout=60)
        except psutil.TimeoutExpired:
            pass  # still summarizing (counting a big hot store): process.stop escalates
    for name in (GENERATOR, DASHBOARD):
        if process.stop(s.run_dir, name):
            echo(f"  stopped {name}")
    if stop_stack:
        stack.down(s, echo=echo)


def _record_run(s: Settings, opts: RunOptions, **fields: object) -> None:
    """Start this run's record ``<run dir>/first_alerts.json``: its conditions and the stack's start-up."""
    record = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": s.profile,
        "services": list(s.services),
        "products": opts.products,
        "speed": opts.speed,
        "spike_minute": opts.spike_minute,
        "seed": opts.seed,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        **fields,
    }
    (s.run_dir / FIRST_ALERTS).write_text(json.dumps(record, indent=2) + "\n")


def _record_first_alerts(s: Settings, since: float, snap: dict) -> None:
    """Add the first alerts to this run's record: seconds from the command (``since``) to the snapshot."""
    path = s.run_dir / FIRST_ALERTS
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {"profile": s.profile}
    record.update(
        first_alerts_s=round(time.time() - since, 1),
        open_alerts=snap["kpis"]["open_alerts"],
        data_as_of=snap["data_as_of"],
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    path.write_text(json.dumps(record, indent=2) + "\n")


def first_alerts(
    s: Settings, since: float, timeout: float, data_since: datetime | None = None, poll: float = 2.0
) -> dict | None:
    """Wait for a snapshot computed after ``since`` (epoch) that holds at least one alert, from data at
    or after ``data_since`` (this run's simulated start: an earlier run's data in the store does not count).
    The time it took is added to the run's record (``FIRST_ALERTS`` in the run dir)."""
    from flashsale.redis_keys import keys_for, read_snapshot
    from flashsale.stores import redis_client

    r, keys = redis_client(s), keys_for(s)
    deadline = time.time() + timeout
    while time.time() < deadline:
        _raise_if_generator_failed(s)
        snap = read_snapshot(r, keys)
        if (
            snap
            and snap.get("alerts")
            and datetime.fromisoformat(snap["computed_at"]).timestamp() > since
            and (data_since is None or datetime.fromisoformat(snap["data_as_of"]) >= data_since)
        ):
            _record_first_alerts(s, since, snap)
            return snap
        time.sleep(poll)
    return None


def running(s: Settings) -> bool:
    """No `make stop` since the run started: the stop removes the run's pipeline file first. (A crashed
    service is not a stop: ``supervise`` restarts it.)"""
    return pipeline_file(s.run_dir).exists()


def supervise(s: Settings, echo=print) -> list[str]:
    """Restart the services and the dashboard that exited while the pipeline runs, as systemd or Docker's
    restart policy would: the pipeline recovers without a person. Under the stack lock, so it never races
    `make stop` (which removes the pipeline file before it takes the lock to stop the stack) or an
    operator who holds the lock to keep a service down. Returns what it restarted."""
    with stack.lock(s):
        if not running(s):
            return []
        dead = [n for n in s.services if process.live_process(s.run_dir, n) is None]
        if s.external_mongo and "hotstore" in dead:
            dead.remove("hotstore")
        if dead:
            stack.up(s, only=dead, echo=lambda *_: None, locked=True)
        if _start_dashboard(s):
            dead.append(DASHBOARD)
    if dead:
        echo(f"  restarted {', '.join(dead)} (exited while the pipeline ran)")
    return dead


def generator_summary(s: Settings) -> dict | None:
    """The JSON summary the generator printed last (its log's tail), or None if its last run printed none.
    After a stop the process record is gone, but its log stays."""
    rec = process.read_record(s.run_dir, GENERATOR)
    log = Path(rec.log) if rec is not None else process.log_file(s.run_dir, GENERATOR)
    if not log.exists():
        return None
    with open(log, "rb") as fh:
        fh.seek(max(0, os.path.getsize(log) - 64_000))  # the summary is ~1 KB; logs of long runs grow
        text = fh.read().decode(errors="replace")
    try:
        return json.loads(text[text.rindex("\n{") + 1 :])
    except ValueError:  # no summary, or a later run's output follows it
        return None


def generator_failure(s: Settings) -> str | None:
    """The end of the generator's log if it exited without a consistent summary, else None."""
    rec = process.read_record(s.run_dir, GENERATOR)
    if rec is None or process.live_process(s.run_dir, GENERATOR) is not None:
        return None
    summary = generator_summary(s)
    if summary is not None and summary["consistent"]:
        return None  # finished its minutes normally
    return "\n".join(open(rec.log, errors="replace").read()[-4000:].strip().splitlines()[-8:])


def _raise_if_generator_failed(s: Settings) -> None:
    failed = generator_failure(s)
    if failed:
        raise RuntimeError(f"the generator stopped with an error:\n{failed}")


def discard_data(s: Settings) -> None:
    """Drop what a pipeline wrote under these settings: hot-store database, Redis keys, archive root.
    For runs on their own database/namespace/archive (tests, benches); never point it at production."""
    import shutil

    from flashsale.redis_keys import keys_for
    from flashsale.stores import hdfs_client, mongo_client, redis_client

    with mongo_client(s) as c:
        c.drop_database(s.mongo_db)
    redis_client(s).delete(*keys_for(s).all())
    archive_root = s.archive_root
    assert archive_root is not None  # Settings fills archive_root from the profile
    if archive_root.startswith("file://"):
        shutil.rmtree(archive_root.removeprefix("file://"), ignore_errors=True)
        return
    try:
        hdfs_client(s).delete(archive_root.removeprefix(s.hdfs_url), True)
    except FileNotFoundError:
        pass


def status_line(s: Settings) -> str:
    from flashsale.redis_keys import keys_for, read_snapshot
    from flashsale.stores import redis_client

    _raise_if_generator_failed(s)
    try:
        snap = read_snapshot(redis_client(s), keys_for(s))
    except Exception as exc:  # noqa: BLE001 - Redis restarting: a status line, not the end of the run
        return f"KPI cache unreachable ({type(exc).__name__}); the supervisor restarts it"
    if not snap:
        return "no KPI snapshot yet"
    age = (datetime.now(UTC) - datetime.fromisoformat(snap["computed_at"])) / timedelta(seconds=1)
    k = snap["kpis"]
    return (
        f"snapshot {age:4.0f} s old, data as of {snap['data_as_of'][11:19]}: {k['open_alerts']} alerts, "
        f"{k['high_risk_sku_count']} high-risk SKUs, {k['overloaded_warehouses']} overloaded warehouses"
    )
