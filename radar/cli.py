"""The `flashsale` command. Each subcommand imports its component lazily so `--help` stays fast."""

from __future__ import annotations

import functools
import signal
import sys
from datetime import UTC
from pathlib import Path
from typing import NoReturn

import typer

from flashsale.settings import load_settings

app = typer.Typer(help="Flash Sale Stockout Radar", no_args_is_help=True, add_completion=False)
stack_app = typer.Typer(help="Start, check and stop the real services (127.0.0.1 only).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")

ProfileOpt = typer.Option(None, "--profile", "-p", help="local or cluster (default: FLASHSALE_PROFILE or local)")


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr naming the problem (and the fix), then a non-zero exit."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code) from None


def _settings_error(exc) -> str:
    """A pydantic ValidationError of the settings as one line: which setting, what was wrong, what is allowed."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err.get("loc", ())) or "settings"
        parts.append(f"{field}: {err.get('msg')} (got {err.get('input')!r})")
    return "; ".join(parts)


def friendly_errors(fn):
    """Known failures become one line naming the fix, not a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        from cluster.services import PrerequisiteError
        from flashsale.settings import MissingSecretError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:  # click's Exit is a RuntimeError: let a deliberate exit code through unchanged
            raise
        except ValidationError as exc:  # e.g. --profile staging: the settings name the field and the choices
            _fail(_settings_error(exc))
        except (PrerequisiteError, MissingSecretError) as exc:
            _fail(str(exc))
        except RuntimeError as exc:
            _fail(str(exc), code=1)

    return wrapper


def _settings(profile: str | None):
    return load_settings(profile=profile) if profile else load_settings()


def _aware_time(value: str | None, option: str) -> str | None:
    """An ISO 8601 time with a UTC offset, as given (a naive or malformed time is refused in one line)."""
    from datetime import datetime

    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        ts = None
    if ts is None or ts.tzinfo is None:
        _fail(f"{option}: expected ISO 8601 with a UTC offset (e.g. 2025-11-11T00:15+00:00), got {value!r}")
    return value


def _require_hot_store(s) -> None:
    """Fail within seconds, in one line, when nothing answers at the hot store. (The writers' long retry is
    for a server that goes away mid-run, not for one that was never started.)"""
    from pymongo.errors import ConnectionFailure, PyMongoError

    from cluster.services import SERVICES

    where = "MONGO_URI" if s.external_mongo else f"{s.bind_host}:{s.mongo_port}"
    try:
        SERVICES["hotstore"].health(s)  # the stack's own health probe of the hot store
    except ConnectionFailure as exc:
        _fail(f"the hot store at {where} does not answer ({type(exc).__name__}): start it with `flashsale stack up`")
    except PyMongoError as exc:  # it answers but refuses: credentials, permissions
        _fail(f"the hot store at {where} refused the check ({exc}): check the FLASHSALE_MONGO_* settings")


def _require_ray_head(s) -> None:
    from cluster.process import port_open

    host, port = s.ray_address.rsplit(":", 1)
    if not port_open(host, int(port), timeout=3):
        _fail(f"--ray stack: no Ray head at {s.ray_address}: start it with `flashsale stack up`")


def _run_settings(pairs: list[str], profile: str | None) -> dict[str, str]:
    """`--setting KEY=VALUE` pairs, checked against the settings (an unknown key or a bad value is one line)."""
    from pydantic import ValidationError

    from flashsale.settings import Settings

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lower()
        if not sep or key not in Settings.model_fields:
            _fail(f"--setting: expected KEY=VALUE with KEY a setting (e.g. mongo_db=flashsale_trial), got {pair!r}")
        if key == "profile":
            _fail("--setting: choose the profile with --profile")
        out[key] = value
    try:
        load_settings(**({"profile": profile} if profile else {}), **out)
    except ValidationError as exc:
        _fail(f"--setting: {_settings_error(exc)}")
    return out


def _choice(value: str, option: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        _fail(f"{option}: unknown value {value!r} (choose from {', '.join(allowed)})")
    return value


@stack_app.command("up")
@friendly_errors
def stack_up(
    profile: str | None = ProfileOpt,
    service: list[str] = typer.Option(None, "--service", "-s", help="only these services (repeatable)"),
):
    """Start (or keep) every service of the profile and wait until all are healthy."""
    from cluster import stack

    statuses = stack.up(_settings(profile), only=service or None, echo=typer.echo)
    _print_table(statuses)


@stack_app.command("down")
@friendly_errors
def stack_down():
    """Stop the pipeline (generator, dashboard, DAGs paused) and every service; fails if a port still listens."""
    from radar import pipeline

    pipeline.stop(load_settings(), echo=typer.echo)


@stack_app.command("status")
@friendly_errors
def stack_status(profile: str | None = ProfileOpt, as_json: bool = typer.Option(False, "--json")):
    """Each service with its address, pid and health. Exit code 1 if any is unhealthy."""
    from cluster import stack

    statuses = stack.status(_settings(profile))
    if as_json:
        typer.echo(stack.status_json(statuses))
    else:
        _print_table(statuses)
    if not all(x.healthy for x in statuses):
        raise typer.Exit(1)


@app.command("kpi")
@friendly_errors
def kpi(
    profile: str | None = ProfileOpt,
    master: str | None = typer.Option(None, "--master", help="override the profile's Spark master (local[*] or yarn)"),
    window_minutes: int | None = typer.Option(
        None, "--window-minutes", min=1, help="default: settings.kpi_window_minutes"
    ),
    as_of: str | None = typer.Option(None, "--as-of", help="window end, ISO-8601 UTC (default: now)"),
    no_archive: bool = typer.Option(False, "--no-archive", help="skip the archive baseline"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Run one KPI cycle (spark-submit spark/kpi_job.py), write the Redis snapshot, print where time went."""
    import json

    from cluster.spark_apps import run_kpi

    as_of = _aware_time(as_of, "--as-of")
    s = _settings(profile)
    if window_minutes and window_minutes >= s.archive_min_age_minutes:
        _fail(f"--window-minutes {window_minutes}: must be below archive_min_age_minutes ({s.archive_min_age_minutes})")
    res = run_kpi(s, master=master, as_of=as_of, window_minutes=window_minutes, no_archive=no_archive)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    k = res["kpis"]
    if res["superseded"]:
        typer.secho(
            f"not published: the snapshot in Redis holds newer data than {res['data_as_of']}; nothing changed",
            fg="yellow",
        )
    typer.echo(
        f"run {res['run_id']} on {res['master']}: data as of {res['data_as_of']}, "
        f"{res['rows']['orders']} orders / {res['rows']['inventory']} inventory events read, "
        f"snapshot {res['snapshot_bytes']} bytes"
    )
    typer.echo(
        f"  high-risk SKUs {k['high_risk_sku_count']}, open alerts {k['open_alerts']}, "
        f"overloaded warehouses {k['overloaded_warehouses']}, quarantined docs {k['quarantined_docs']}"
    )
    typer.echo(f"  wall {res['wall_s']:.1f} s; where the time went:")
    for name, sec in res["timings_s"].items():
        typer.echo(f"    {name:<26} {sec:8.2f} s")


@app.command("dashboard")
@friendly_errors
def dashboard(
    profile: str | None = ProfileOpt,
    port: int | None = typer.Option(None, "--port", help="default: settings.dashboard_port"),
):
    """Start the tactical dashboard (Streamlit) on 127.0.0.1; it reads only the Redis KPI snapshot."""
    import os

    from dashboard.serve import command

    s = _settings(profile)
    s.redis_url  # noqa: B018 - fail here, with the fix named, when the Redis secret is missing
    env = {**os.environ, **({"FLASHSALE_PROFILE": profile} if profile else {})}
    cmd = command(port or s.dashboard_port, s.bind_host)
    typer.echo(f"dashboard on http://{s.bind_host}:{port or s.dashboard_port} (Ctrl-C to stop)", err=True)
    os.execvpe(cmd[0], cmd, env)  # become the streamlit server: signals and exit code are its own


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SUPERVISE_SECONDS = 5  # how often `flashsale run` looks for a crashed service to restart


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, `make stop`'s peers) and SIGHUP (the terminal went away)


def _quiet_echo(message: str = "") -> None:
    """Echo that never fails: at shutdown the terminal or the pipe (`make run | tee run.log`) may be gone,
    and a failed write must not stop the shutdown half way."""
    try:
        typer.echo(message)
    except (OSError, ValueError):  # BrokenPipeError, EIO from a hung-up terminal, a closed stream
        pass


@app.command("run")
@friendly_errors
def run(
    profile: str | None = ProfileOpt,
    speed: float = typer.Option(5.0, "--speed", help="simulated minutes per wall-clock minute"),
    minutes: int = typer.Option(24 * 60, "--minutes", help="simulated minutes the generator runs"),
    spike_minute: int = typer.Option(10, "--spike-minute", help="simulated minute of the flash spike"),
    stock_cover: float = typer.Option(
        60, "--stock-cover", help="initial stock in minutes of baseline demand: lower drains sooner"
    ),
    products: int = typer.Option(20_000, "--products", help="catalogue size (the simulator's default)"),
    seed: int = typer.Option(1111, "--seed"),
    alert_timeout: float = typer.Option(180, "--alert-timeout", help="seconds to wait for the first alerts"),
    setting: list[str] = typer.Option(
        None,
        "--setting",
        help="KEY=VALUE (repeatable): a setting every process of this run sees, e.g. mongo_db=flashsale_trial "
        "to run a sale in a database of its own",
    ),
):
    """The whole pipeline: stack, seeded dims, simulator, KPI + archival DAGs, dashboard. Ctrl-C stops all."""
    import time

    from radar import pipeline

    t0 = time.time()
    s = _settings(profile)
    opts = pipeline.RunOptions(
        speed=speed,
        minutes=minutes,
        spike_minute=spike_minute,
        products=products,
        seed=seed,
        stock_cover=stock_cover,
        settings=_run_settings(setting or [], profile),
    )
    if refused := pipeline.refusal(s):  # before the try: its shutdown would stop the running pipeline
        _fail(refused)
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        s, sim_start = pipeline.start(s, opts, echo=typer.echo)
        typer.echo("\nUIs (127.0.0.1 only):")
        for name, url in s.ui_urls().items():
            typer.echo(f"  {name:<22} {url}")
        typer.echo(f"  Airflow login: {s.airflow_admin_user} / password in {s.airflow_home / 'admin_password.json'}")
        typer.echo("\nwaiting for the first KPI snapshot with alerts (the KPI DAG runs every minute) ...")
        snap = pipeline.first_alerts(
            s, since=t0, timeout=max(1.0, alert_timeout - (time.time() - t0)), data_since=sim_start
        )
        if snap is None:
            typer.secho(
                f"no alerts within {alert_timeout:.0f} s of the command; still running (see .run/logs/)", fg="yellow"
            )
        else:
            typer.secho(
                f"alerts on the dashboard {time.time() - t0:.0f} s after the command: "
                f"{snap['kpis']['open_alerts']} open, data as of {snap['data_as_of']}",
                fg="green",
            )
        typer.echo("Ctrl-C (or `make stop` elsewhere) stops everything.")
        next_status = 0.0
        while pipeline.running(s):  # until Ctrl-C, or `make stop` from another terminal
            pipeline.supervise(s, echo=typer.echo)  # a crashed service comes back within seconds
            if time.time() >= next_status:
                typer.echo(f"  [{time.strftime('%H:%M:%S')}] {pipeline.status_line(s)}")
                next_status = time.time() + 30
            time.sleep(SUPERVISE_SECONDS)
        typer.echo("the pipeline was stopped elsewhere (`make stop`)")
    except (KeyboardInterrupt, BrokenPipeError):
        _quiet_echo("\nstopping ...")
    finally:
        # the shutdown runs to its end: further signals are ignored and output errors swallowed
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            pipeline.stop(s, echo=_quiet_echo)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _add_bench_commands() -> None:
    """`flashsale bench scale|freshness|bounded|faults|sustained`: bench/bench_pipeline.py and bench_sustained.py
    (long runs; faults also runs in CI)."""
    from bench.bench_pipeline import app as bench
    from bench.bench_sustained import sustained

    bench.command("sustained")(sustained)  # bench/bench_sustained.py: real time at the seed's volume
    app.add_typer(
        bench,
        name="bench",
        help="Pipeline benchmarks: scale (~69 M records), freshness (order to dashboard), "
        "bounded (hot-store size with archival on), faults (the reliability table), "
        "sustained (an hour in real time at the seed's volume).",
    )


_add_bench_commands()


def _print_table(statuses) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("service", "address", "pid", "health", "detail")
    for x in statuses:
        table.add_row(
            x.name, x.address, str(x.pid or "-"), "[green]healthy[/]" if x.healthy else "[red]down[/]", x.detail
        )
    Console(file=sys.stdout).print(table)


# ---------------------------------------------------------------- simulator (ray_gen)
SeedOpt = typer.Option(1111, "--seed", help="random seed: same seed and parameters, same records and ids")
ProductsOpt = typer.Option(20_000, "--products", help="catalogue size")
CitiesOpt = typer.Option(27, "--cities")
WarehousesOpt = typer.Option(20, "--warehouses")


def _sim_start(value: str | None, realtime: bool):
    """--start as an aware datetime; real-time runs default to now so event times track the wall clock."""
    from datetime import datetime

    if value is None and not realtime:
        return None  # the parameters' default: 11.11, two hours before midnight
    if value is None or value == "now":
        return datetime.now(UTC).replace(second=0, microsecond=0)
    return datetime.fromisoformat(_aware_time(value, "--start (or 'now')") or "")


def _sim_params(**values):
    from ray_gen.params import ParamsError, make_params

    try:
        return make_params(**{k: v for k, v in values.items() if v is not None})
    except ParamsError as exc:
        _fail(str(exc))


CatalogueOpt = "default: the running pipeline's catalogue (settings.catalogue_*), else the simulator's"


@app.command("seed")
@friendly_errors
def seed(
    seed: int | None = typer.Option(None, "--seed", help=f"random seed ({CatalogueOpt}: 1111)"),
    products: int | None = typer.Option(None, "--products", help=f"catalogue size ({CatalogueOpt}: 20,000)"),
    cities: int | None = typer.Option(None, "--cities", help=f"({CatalogueOpt}: 27)"),
    warehouses: int | None = typer.Option(None, "--warehouses", help=f"({CatalogueOpt}: 20)"),
    db: str | None = typer.Option(None, "--db", help="database (default: settings.mongo_db)"),
    profile: str | None = ProfileOpt,
):
    """Write products_dim, warehouses_dim and cities_dim to the hot store (idempotent; a changed catalogue
    replaces documents in place, so a reader never sees a partial table). Without options it seeds the
    catalogue of the running `flashsale run` (its pipeline.env), as the seeding DAG does."""
    from radar.pipeline import catalogue_params
    from ray_gen.params import ParamsError
    from ray_gen.runner import seed_dimensions

    s = _settings(profile)
    try:
        given = {"seed": seed, "n_products": products, "n_cities": cities, "n_warehouses": warehouses}
        p = catalogue_params(s).replace(**{k: v for k, v in given.items() if v is not None})
    except ParamsError as exc:
        _fail(str(exc))
    _require_hot_store(s)
    for name, c in seed_dimensions(p, s, database=db).items():
        typer.echo(
            f"{name}: {c['documents']:,} documents ({c['inserted']:,} inserted, "
            f"{c['replaced']:,} replaced, {c['deleted']:,} deleted)"
        )


@app.command("generate")
@friendly_errors
def generate(
    minutes: int = typer.Option(24 * 60, "--minutes", help="simulated minutes to generate"),
    fast: bool = typer.Option(False, "--fast", help="fast-forward: as fast as the sink accepts"),
    speed: float | None = typer.Option(None, "--speed", help="real time: N simulated minutes per wall-clock minute"),
    sink: str = typer.Option("mongo", "--sink", help="mongo, parquet or null"),
    out: str | None = typer.Option(None, "--out", help="output directory for --sink parquet"),
    ray: str = typer.Option(
        "local", "--ray", help="local (in-process Ray), stack (the stack's Ray head) or inline (no Ray)"
    ),
    city_shards: int = typer.Option(2, "--city-shards"),
    warehouse_shards: int = typer.Option(2, "--warehouse-shards"),
    rate: float | None = typer.Option(None, "--rate", help="base orders per city-minute (before the flash curve)"),
    spike_minute: int | None = typer.Option(
        None, "--spike-minute", help="simulated minute of the flash spike (default 120)"
    ),
    stock_cover: float | None = typer.Option(
        None, "--stock-cover", help="initial stock in minutes of baseline demand (default 180)"
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="records per sink write"),
    seed: int = SeedOpt,
    products: int = ProductsOpt,
    cities: int = CitiesOpt,
    warehouses: int = WarehousesOpt,
    run_id: str | None = typer.Option(None, "--run-id", help="id prefix of this run's records (default r<seed>)"),
    start: str | None = typer.Option(
        None,
        "--start",
        help="simulated start, ISO 8601 with offset, or 'now' "
        "(default: 2025-11-10T22:00Z with --fast, now with --speed)",
    ),
    db: str | None = typer.Option(None, "--db", help="database (default: settings.mongo_db)"),
    verify_store: bool = typer.Option(
        True,
        "--verify-store/--no-verify-store",
        help="count this run's records in the sink at the end (off: trust the store's "
        "acknowledgements; the pipeline's archival moves records meanwhile)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    profile: str | None = ProfileOpt,
):
    """Run the Ray flash-sale simulator into the hot store (or parquet/null) with a live progress bar."""
    from ray_gen.params import FlashCurve
    from ray_gen.runner import Target, print_summary
    from ray_gen.runner import generate as run_generate
    from ray_gen.sinks import SinkSpec

    if fast == (speed is not None):
        _fail("choose exactly one of --fast or --speed N")
    _choice(ray, "--ray", ("local", "stack", "inline"))
    overrides = {"profile": profile} if profile else {}
    s = load_settings(**overrides)
    p = _sim_params(
        minutes=minutes,
        seed=seed,
        run_id=run_id or f"r{seed}",
        start=_sim_start(start, realtime=speed is not None),
        n_products=products,
        n_cities=cities,
        n_warehouses=warehouses,
        city_shards=city_shards,
        warehouse_shards=warehouse_shards,
        base_orders_per_city_minute=rate,
        batch_size=batch_size,
        flash=None if spike_minute is None else FlashCurve(spike_minute=spike_minute),
        stock_cover_minutes=stock_cover,
    )
    try:
        spec = SinkSpec(kind=sink, path=out, database=db, settings_overrides=overrides)
    except ValueError as exc:
        _fail(str(exc))
    if sink == "mongo":
        _require_hot_store(s)
    if ray == "stack":
        _require_ray_head(s)
    summary = run_generate(p, spec, s, Target(ray), speed=speed, show_progress=not as_json, verify_store=verify_store)
    print_summary(summary, as_json)
    if not summary["consistent"]:
        raise typer.Exit(1)


# ---------------------------------------------------------------- archival (spark/archive_job.py)
@app.command("archive")
@friendly_errors
def archive(
    profile: str | None = ProfileOpt,
    master: str | None = typer.Option(None, "--master", help="override the profile's Spark master"),
    now: str | None = typer.Option(
        None, "--now", help="data clock, ISO-8601 UTC (default: end of the newest hot bucket)"
    ),
    max_batches: int = typer.Option(0, "--max-batches", min=0, help="0 = every eligible hour"),
    force: bool = typer.Option(False, "--force", help="archive eligible hours even below the thresholds"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Move cold hours from the hot store to the archive (Parquet by date/hour), verified, exactly once."""
    import json

    from cluster.spark_apps import run_archive

    now = _aware_time(now, "--now")
    s = _settings(profile)
    res = run_archive(s, master=master, now=now, max_batches=max_batches, force=force)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"archive to {s.archive_root}: {res['trigger']}")
    for line in res["log"]:
        typer.echo(f"  {line}")
    if not res["batches"]:
        typer.echo("  nothing to archive")


# ---------------------------------------------------------------- backtest (backtest/replay.py)
@app.command("backtest")
@friendly_errors
def backtest(
    minutes: int = typer.Option(300, "--minutes", help="simulated minutes of the judged sale (spike at minute 120)"),
    seed: int = SeedOpt,
    shape: str = typer.Option("spike", "--shape", help="sale shape: spike | waves | normal"),
    products: int = typer.Option(2_000, "--products", help="catalogue size"),
    cities: int = CitiesOpt,
    warehouses: int = WarehousesOpt,
    rate: float | None = typer.Option(None, "--rate", help="base orders per city-minute (before the flash curve)"),
    history_hours: int = typer.Option(
        24, "--history-hours", help="normal-day hours in the archive the KPI baseline reads (0: none)"
    ),
    loop_seeds: int = typer.Option(
        5, "--loop-seeds", help="closed loop: paired runs (acting on the queue vs not) on seeds seed..seed+N-1; 0: skip"
    ),
    eval_every: int = typer.Option(5, "--eval-every", help="minutes between the forecast-quality cases"),
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        help="Parquet file of every prediction, queue item and stockout behind the figures; an existing file is "
        "read instead of simulating, and its figures are recomputed",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="directory for backtest.json and backtest.png (default bench/results/backtest)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    profile: str | None = ProfileOpt,
):
    """Judge the radar's advice on simulated sales (in-process, no services): calibration, the operator's queue,
    revenue-weighted recall, a naive baseline and an oracle, a normal day, and the closed loop over seeds."""
    import json
    import os

    from rich.console import Console

    from backtest.replay import SHAPES, figures, jsonable
    from backtest.replay import backtest as run_backtest
    from backtest.report import print_report, save
    from flashsale.settings import PROJECT_ROOT
    from kpi.rules import KpiParams
    from ray_gen.runner import _progress_bar

    con = Console(stderr=as_json)
    if predictions is not None and predictions.is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(predictions)
        frame = table.to_pandas()
        meta = (table.schema.metadata or {}).items()
        frame.attrs.update({k.decode().removeprefix("fsr."): v.decode() for k, v in meta if k.startswith(b"fsr.")})
        figs = figures(frame)
        typer.echo(json.dumps(jsonable(figs), indent=1) if as_json else figs)
        return
    if history_hours < 0 or loop_seeds < 0 or eval_every < 1:
        _fail("--history-hours and --loop-seeds must be >= 0, --eval-every >= 1")
    shape = _choice(shape, "--shape", SHAPES)
    p = _sim_params(
        minutes=minutes,
        seed=seed,
        run_id=f"bt{seed}",
        n_products=products,
        n_cities=cities,
        n_warehouses=warehouses,
        base_orders_per_city_minute=rate,
        city_shards=1,
        warehouse_shards=1,
    )
    params = KpiParams.from_settings(_settings(profile))
    out = out or PROJECT_ROOT / "bench" / "results" / "backtest"
    try:  # before the run, not after it: a bad --out must not cost a whole backtest
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError(f"{out} is not writable")
    except OSError as exc:
        _fail(f"--out: cannot write the results: {exc}")

    def bar(label: str):
        con.print(f"[bold]{label}[/]: the KPI job replayed after every simulated minute")
        return _progress_bar(p, not as_json)

    seeds = list(range(seed, seed + loop_seeds))
    result, frame = run_backtest(
        p, params, shape=shape, history_hours=history_hours, seeds=seeds, eval_every=eval_every, progress=bar
    )
    json_path, png_path = save(result, out)
    if predictions is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {f"fsr.{k}".encode(): str(v).encode() for k, v in frame.attrs.items()}
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), predictions)
    if as_json:
        typer.echo(json.dumps(jsonable(result), indent=1))
        return
    print_report(result, con)
    con.print(f"wrote {json_path} and {png_path} ({result['elapsed_s']} s)")


if __name__ == "__main__":
    app()
