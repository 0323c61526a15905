"""Stop the Ray processes of one `ray up` node, and only those: the ones started with its --temp-dir.

`ray stop` kills every Ray process on the machine (it matches process names), and `ray down` runs a
bare `ray stop` on the head: on a machine that also runs the stack's Ray head (`flashsale stack up`)
that would stop it too. cluster/ray-cluster.yaml starts each node with its own --temp-dir
(TEMP_DIR); a process belongs to the node when one of its arguments names that directory (gcs_server,
raylet, dashboard, agents, monitors), its stdout/stderr go into it (the client server), or it
descends from such a process (workers, whose process title Ray rewrites to "ray::...", are the
raylet's children).

    python -m cluster.ray_up stop [--temp-dir DIR]     # SIGTERM, then SIGKILL after --timeout s
    python -m cluster.ray_up status [--temp-dir DIR]   # exit 1 while any of them runs
"""

from __future__ import annotations

import os

import psutil
import typer

TEMP_DIR = "/tmp/ray-flashsale-up"  # the --temp-dir of ray-cluster.yaml's `ray start` commands

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _names_dir(arg: str, temp_dir: str) -> bool:
    value = arg.split("=", 1)[-1]
    return value == temp_dir or value.startswith(temp_dir + "/")


def _logs_into(pid: int, temp_dir: str) -> bool:
    """stdout or stderr redirected into temp_dir: Ray's client server names no directory in its
    arguments, but writes to <temp_dir>/session_*/logs/ray_client_server.out."""
    for fd in (1, 2):
        try:
            if _names_dir(os.readlink(f"/proc/{pid}/fd/{fd}"), temp_dir):
                return True
        except OSError:
            pass
    return False


def node_processes(temp_dir: str = TEMP_DIR) -> list[psutil.Process]:
    """The node's processes: those naming temp_dir in an argument or logging into it, and their descendants."""
    temp_dir = os.path.normpath(temp_dir)
    me = psutil.Process()
    spare = {me.pid, *(p.pid for p in me.parents())}  # this command (its arguments name the directory too)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.pid not in spare and (
            any(_names_dir(a, temp_dir) for a in cmdline[1:]) or _logs_into(proc.pid, temp_dir)
        ):
            found[proc.pid] = proc
            try:
                found.update((c.pid, c) for c in proc.children(recursive=True) if c.pid not in spare)
            except psutil.NoSuchProcess:
                pass
    return sorted(found.values(), key=lambda p: p.pid)


def _describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:120]}"
    except psutil.Error:
        return f"{p.pid} (gone)"


@app.command()
def stop(temp_dir: str = typer.Option(TEMP_DIR, "--temp-dir"), timeout: float = typer.Option(15.0, "--timeout")):
    """Stop the node's Ray processes: SIGTERM, then SIGKILL for any still alive after --timeout s."""
    from cluster.process import end_processes

    procs = node_processes(temp_dir)
    alive = end_processes(procs, timeout)
    typer.echo(f"stopped {len(procs)} Ray process(es) of {temp_dir}" + (f" ({len(alive)} killed)" if alive else ""))


@app.command()
def status(temp_dir: str = typer.Option(TEMP_DIR, "--temp-dir")):
    """List the node's Ray processes; exit 1 while any runs."""
    procs = node_processes(temp_dir)
    for p in procs:
        typer.echo(_describe(p))
    typer.echo(f"{len(procs)} Ray process(es) of {temp_dir}")
    raise typer.Exit(1 if procs else 0)


if __name__ == "__main__":
    app()
