"""A private FerretDB for simulator tests that must stop the store (never the shared one).

Same binary and flags as the stack's hot store (cluster.services), its own port and data dir, the
same user and password (so settings with mongo_port overridden connect). Import explicitly:
``from conftest_sim import PrivateHotStore``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from cluster.services import ferretdb_binary
from flashsale.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateHotStore:
    def __init__(self, base: Settings, data_dir: Path):
        self.base, self.data_dir = base, data_dir
        self.port, self.debug_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "ferretdb.log"

    @property
    def settings(self) -> Settings:
        return load_settings(profile=self.base.profile, mongo_port=self.port)

    @property
    def overrides(self) -> dict:
        return {"profile": self.base.profile, "mongo_port": self.port}

    def start(self, timeout: float = 30.0) -> None:
        s = self.base
        (self.data_dir / "sqlite").mkdir(parents=True, exist_ok=True)
        cmd = [
            str(ferretdb_binary(s)),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir / 'sqlite'}/",
            f"--state-dir={self.data_dir}",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--debug-addr=127.0.0.1:{self.debug_port}",
            "--telemetry=disable",
            "--log-level=WARN",
            "--test-enable-new-auth",
            f"--setup-database={s.mongo_db}",
        ]
        env = {
            **os.environ,
            "FERRETDB_SETUP_USERNAME": s.mongo_user,
            "FERRETDB_SETUP_PASSWORD": s.mongo_password.get_secret_value(),
        }
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        from flashsale.stores import mongo_client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with mongo_client(self.settings, timeout_ms=1000) as c:
                    c[self.base.mongo_db].command("ping")
                return
            except Exception as exc:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"private FerretDB did not start; see {self.log}") from exc
                time.sleep(0.3)

    def kill(self) -> None:
        """The store goes away: the process dies (its data dir survives)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
