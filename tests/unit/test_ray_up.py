"""cluster/ray_up.py stops one node's processes (found by its temp dir) and nothing else."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import yaml

from cluster import ray_up

# a parent that names the directory in an argument and starts a child that does not (like the raylet
# and its workers); SIGTERM is ignored, so stop() must fall back to SIGKILL
_PARENT = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
)


def _spawn(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _PARENT, *args], **kw)


def test_stop_ends_the_node_its_descendants_and_what_logs_there_but_spares_other_nodes(tmp_path):
    node, other = tmp_path / "ray-up", tmp_path / "ray-up-other"  # a prefix of the other's name
    (node / "session_1" / "logs").mkdir(parents=True)
    log = open(node / "session_1" / "logs" / "client_server.out", "w")
    procs = [
        _spawn(f"--temp-dir={node}"),
        _spawn("--log_dir", str(node / "session_1" / "logs")),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdout=log),
    ]  # like the client server
    spared = _spawn(f"--temp-dir={other}")
    try:
        time.sleep(1.0)  # let the parents start their children
        found = {p.pid for p in ray_up.node_processes(str(node))}
        children = {c.pid for pr in procs[:2] for c in psutil.Process(pr.pid).children()}
        assert {p.pid for p in procs} | children <= found
        assert spared.pid not in found and not ({c.pid for c in psutil.Process(spared.pid).children()} & found)

        ray_up.stop(temp_dir=str(node), timeout=1.0)
        for p in procs:
            assert p.wait(timeout=10) is not None
        assert ray_up.node_processes(str(node)) == []
        assert spared.poll() is None  # the other node is untouched
    finally:
        for p in [*procs, spared]:
            for c in psutil.Process(p.pid).children() if p.poll() is None else []:
                c.kill()
            p.kill()
        log.close()


def test_the_cluster_yaml_never_runs_ray_stop_and_keeps_off_the_stacks_ports():
    config = yaml.safe_load(open(ray_up.__file__.replace("ray_up.py", "ray-cluster.yaml")))
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "ray stop" not in commands and commands.count(f"cluster.ray_up stop --temp-dir {ray_up.TEMP_DIR}") == 2
    for port in ("--port=6380", "8265", "10001", "52365"):  # the stack's Ray head (cluster/services.py)
        assert port not in commands
    assert commands.count(f"--temp-dir={ray_up.TEMP_DIR}") == 2
