"""`flashsale stack up|down|status`: the real services as processes on 127.0.0.1.

Idempotent: a service already running (same pid and start time as recorded) is left alone, so `up`
twice is a no-op; `down` stops every service the run directory knows, whatever the profile, and
then checks that none of their ports still listens. `up` and `down` hold the run directory's stack lock
(``lock``), so two of them never interleave (a supervisor restarting a crashed service, a `make stop`
in another terminal, an operator keeping a service down for maintenance).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from cluster import process
from cluster.services import BIN, SERVICES, PrerequisiteError, Service, airflow_password_file
from flashsale.settings import Settings, load_settings, private_dir, secrets_file


@dataclass
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str


# ---------------------------------------------------------------- secrets
def ensure_secrets(s: Settings) -> Settings:
    """Generate the credentials nobody has set yet into <run>/secrets.env (0600); reload settings."""
    private_dir(s.run_dir)
    path = secrets_file(s.run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = {}
    if s.mongo_password is None and not s.external_mongo:
        wanted["FLASHSALE_MONGO_PASSWORD"] = secrets.token_urlsafe(24)
    if s.redis_password is None:
        wanted["FLASHSALE_REDIS_PASSWORD"] = secrets.token_urlsafe(24)
    if wanted:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as fh:
            for key, value in wanted.items():
                fh.write(f"{key}={value}\n")
    token = s.ray_token_file
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(token, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
            fh.write(secrets.token_hex(32))
    return load_settings(profile=s.profile, run_dir=s.run_dir) if wanted else s


def _ensure_airflow_password(s: Settings) -> str | None:
    """Create the Airflow admin password once; return it only when it was just created."""
    path = airflow_password_file(s)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:
        json.dump({s.airflow_admin_user: password}, fh)
    return password


# ---------------------------------------------------------------- checks
def service_env(s: Settings, svc: Service) -> dict[str, str]:
    env = {**os.environ, **svc.env(s)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def check_prerequisites(s: Settings, to_start: list[Service]) -> None:
    for svc in to_start:
        for prog in svc.needs:
            if not shutil.which(prog):
                raise PrerequisiteError(f"{prog} is not installed (needed by {svc.name}): run `make install`")
        for port in svc.ports(s):
            if process.port_open(s.bind_host, port):
                who = process.listener_of(port) or "another process"
                if _our_listener(s, port):
                    raise PrerequisiteError(
                        f"port {port} (for {svc.name}) is held by {who}, an orphan of this stack: "
                        "run `flashsale stack down`, then up again"
                    )
                raise PrerequisiteError(
                    f"port {port} (for {svc.name}) is in use by {who}: stop it, or change the port in .env"
                )
    need_mb = sum(svc.memory_mb for svc in to_start)
    free_mb = psutil.virtual_memory().available // 2**20
    if to_start and free_mb < need_mb + s.min_free_memory_mb // 2:
        raise PrerequisiteError(
            f"only {free_mb} MB of memory available, the stack needs about {need_mb + s.min_free_memory_mb // 2} MB: "
            "stop other programs or use --profile local"
        )


def probe(s: Settings, svc: Service) -> tuple[bool, str]:
    try:
        return True, svc.health(s)
    except Exception as exc:  # health probes report, never raise
        return False, f"{type(exc).__name__}: {exc}"[:200]


def _wait_healthy(s: Settings, svc: Service) -> tuple[bool, str]:
    deadline = time.monotonic() + svc.start_timeout
    ok, detail = False, "not started"
    while time.monotonic() < deadline:
        if process.live_process(s.run_dir, svc.name) is None:
            log = s.run_dir / "logs" / f"{svc.name}.log"
            return False, f"exited during start-up; see {log}: {_tail(log)}"
        ok, detail = probe(s, svc)
        if ok:
            return ok, detail
        time.sleep(1.0)
    return False, f"not healthy after {svc.start_timeout:.0f}s: {detail}"


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-400:]
    except OSError:
        return ""


# ---------------------------------------------------------------- commands
@contextlib.contextmanager
def lock(s: Settings) -> Iterator[None]:
    """The run directory's stack lock (an flock: released when its holder dies, even by SIGKILL)."""
    path = private_dir(s.run_dir) / "stack.lock"
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(settings: Settings, only: list[str] | None = None, echo=print, locked: bool = False) -> list[ServiceStatus]:
    """Start what is not running and wait until every wanted service is healthy. ``locked``: the caller
    already holds ``lock``."""
    if not locked:
        with lock(settings):
            return up(settings, only, echo, locked=True)
    started_at = time.monotonic()
    s = ensure_secrets(settings)
    names = [n for n in s.services if not only or n in only]
    if s.external_mongo and "hotstore" in names:
        names.remove("hotstore")  # MONGO_URI points at a server we do not manage
    wanted = [SERVICES[n] for n in names]
    to_start = [svc for svc in wanted if process.live_process(s.run_dir, svc.name) is None]
    check_prerequisites(s, to_start)

    new_password = _ensure_airflow_password(s) if any(svc.name == "airflow" for svc in to_start) else None
    for svc in to_start:
        svc.prepare(s)
        process.start(s.run_dir, svc.name, svc.command(s), service_env(s, svc))
        echo(f"  started {svc.name:<16} {svc.address(s)}")

    with ThreadPoolExecutor(max_workers=max(1, len(wanted))) as pool:
        results = dict(zip([svc.name for svc in wanted], pool.map(lambda svc: _wait_healthy(s, svc), wanted)))
    failed = {n: d for n, (ok, d) in results.items() if not ok}
    if failed:
        raise RuntimeError("; ".join(f"{n}: {d}" for n, d in failed.items()))

    if s.profile == "cluster" and (not only or "namenode" in only):
        from cluster.spark_submit import ensure_spark_archives

        ensure_spark_archives(s, echo=echo)
    if new_password:
        echo(
            f"Airflow admin login: {s.airflow_admin_user} / {new_password}  "
            f"(shown once; kept in {airflow_password_file(s)})"
        )
    elapsed = time.monotonic() - started_at
    echo(f"stack ({s.profile}) healthy in {elapsed:.1f}s" + ("" if to_start else " (already running: nothing to do)"))
    return status(s)


def down(settings: Settings, echo=print) -> None:
    with lock(settings):
        _down(settings, echo)


def _down(settings: Settings, echo) -> None:
    s = settings
    # stop everything the run directory knows, whatever profile started it; dependents first
    order = list(reversed(list(SERVICES)))
    for name in order:
        if process.stop(s.run_dir, name):
            echo(f"  stopped {name}")
    # a service whose record was lost (or never written: killed between start and record) still
    # holds its port; stop those too, or the next `up` fails on "port in use"
    for svc in SERVICES.values():
        for port in svc.ports(s):
            orphan = _our_listener(s, port)
            if orphan is not None:
                family = [orphan, *orphan.children(recursive=True)]
                process.end_processes(family, grace_seconds=20)
                echo(f"  stopped an orphaned {svc.name} (pid {orphan.pid}, port {port})")
    leftovers = [
        f"{svc.name}:{port}"
        for svc in SERVICES.values()
        for port in svc.ports(s)
        if process.port_open(s.bind_host, port) and _our_listener(s, port)
    ]
    if leftovers:
        raise RuntimeError(f"still listening after stop: {', '.join(leftovers)}")
    echo("stack stopped: nothing left running")


def _our_listener(s: Settings, port: int) -> psutil.Process | None:
    """The listener on a stack port if its command line mentions our run directory or tools."""
    proc = process.listener(port)
    try:
        cmd = " ".join(proc.cmdline()) if proc is not None else ""
    except psutil.Error:
        return None
    return proc if str(s.run_dir) in cmd or str(BIN) in cmd else None


def status(s: Settings) -> list[ServiceStatus]:
    names = [n for n in SERVICES if n in s.services or process.read_record(s.run_dir, n)]
    out = []
    for name in names:
        svc = SERVICES[name]
        proc = process.live_process(s.run_dir, name)
        external = name == "hotstore" and s.external_mongo
        if proc is None and not external:
            out.append(ServiceStatus(name, svc.address(s), None, False, False, "not running"))
            continue
        ok, detail = probe(s, svc)
        out.append(ServiceStatus(name, svc.address(s), proc.pid if proc else None, True, ok, detail))
    return out


def status_json(statuses: list[ServiceStatus]) -> str:
    return json.dumps(
        {"services": [asdict(x) for x in statuses], "healthy": all(x.healthy for x in statuses)}, indent=2
    )
