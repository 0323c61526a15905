"""Supervise detached service processes: start, remember, find again, stop without leftovers.

Each service runs in its own session (process group) with its output in ``<run>/logs/<name>.log``;
``<run>/state/<name>.json`` remembers the pid and its start time so a recycled pid is never taken
for our process. The start time compared is the kernel's, in clock ticks since boot: psutil's
``create_time()`` is boot time + ticks, and Linux recomputes boot time from the wall clock on every
read, so an NTP step or a VM resume moves it by seconds and a live service looked dead (then `up`
found its port taken by "another process"). Stopping signals the whole group and every recorded
descendant, then escalates.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    command: list[str]
    log: str
    start_ticks: int | None = None  # /proc/<pid>/stat starttime; None off Linux or in old records


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (immune to wall-clock changes), Linux only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the command name, which may itself hold spaces and parentheses; starttime is field 22
    return int(stat.rsplit(")", 1)[1].split()[19])


def log_file(run_dir: Path, name: str) -> Path:
    """Where a process's output goes; it outlives the process (the record does not)."""
    return run_dir / "logs" / f"{name}.log"


def state_path(run_dir: Path, name: str) -> Path:
    return run_dir / "state" / f"{name}.json"


def read_record(run_dir: Path, name: str) -> ProcessRecord | None:
    path = state_path(run_dir, name)
    if not path.exists():
        return None
    try:
        return ProcessRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def live_process(run_dir: Path, name: str) -> psutil.Process | None:
    """The recorded process if it still runs (same pid *and* same start time), else None."""
    rec = read_record(run_dir, name)
    if rec is None:
        return None
    try:
        proc = psutil.Process(rec.pid)
        ticks = start_ticks(rec.pid) if rec.start_ticks is not None else None
        same = ticks == rec.start_ticks if ticks is not None else abs(proc.create_time() - rec.create_time) < 1.0
        if same and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.Error, ValueError, IndexError):
        pass
    return None


def start(run_dir: Path, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> ProcessRecord:
    log_path = log_file(run_dir, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    state_path(run_dir, name).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd or run_dir),
            start_new_session=True,
        )
    rec = ProcessRecord(
        name, proc.pid, psutil.Process(proc.pid).create_time(), command, str(log_path), start_ticks(proc.pid)
    )
    state_path(run_dir, name).write_text(json.dumps(asdict(rec)))
    return rec


def end_processes(procs: list[psutil.Process], grace_seconds: float) -> list[psutil.Process]:
    """SIGTERM each process, then SIGKILL those still alive after ``grace_seconds`` (0: SIGKILL at once).
    Returns the processes that had to be killed."""
    if grace_seconds > 0:
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_seconds)
    else:
        alive = procs
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return alive


def stop(run_dir: Path, name: str, grace_seconds: float = 20.0) -> bool:
    """Stop a service and all its descendants. Returns True if something was running."""
    proc = live_process(run_dir, name)
    state_path(run_dir, name).unlink(missing_ok=True)
    if proc is None:
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        family = [proc]
    _signal_group(proc.pid, signal.SIGTERM)
    for p in family:
        _send(p, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=grace_seconds)
    if alive:
        _signal_group(proc.pid, signal.SIGKILL)
        for p in alive:
            _send(p, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _send(p: psutil.Process, sig: int) -> None:
    try:
        p.send_signal(sig)
    except psutil.Error:
        pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listener(port: int) -> psutil.Process | None:
    """The process listening on a TCP port, if any and if we may see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                return psutil.Process(c.pid)
            except psutil.Error:
                return None
    return None


def listener_of(port: int) -> str | None:
    """Describe the process listening on a TCP port, if any (for clear 'port in use' errors)."""
    proc = listener(port)
    if proc is None:
        return None
    try:
        return f"pid {proc.pid} ({proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"
