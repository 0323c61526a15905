"""Processes the dashboard's browser tests start and always stop: a throw-away redis-server and a
streamlit server. Nothing here touches the shared stack's services."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from dashboard.serve import command

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PROJECT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class PrivateRedis:
    """redis-server on loopback, a free port, a random password, no persistence. stop()/start() reuse them."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="fsr-dash-redis-"))
        self.conf = self.dir / "redis.conf"
        self.conf.write_text(
            f'bind 127.0.0.1\nport {self.port}\nrequirepass {self.password}\nsave ""\n'
            f"appendonly no\ndir {self.dir}\nprotected-mode yes\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_port(self.port, self.proc, 10, "redis-server")
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {"FLASHSALE_REDIS_PORT": str(self.port), "FLASHSALE_REDIS_PASSWORD": self.password}


class DashboardServer:
    """`streamlit run dashboard/app.py` (the same command as `flashsale dashboard`) with extra env."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="fsr-dash-streamlit-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            command(self.port), cwd=PROJECT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            _wait_port(self.port, self.proc, 60, "streamlit")
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        _stop(self.proc)
        self.log.close()

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


def queue_table_rows(url: str, timeout_ms: int) -> list[str]:
    """The rows of the dashboard's first table (the action queue) as Chromium shows them at 1440x900."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            page.wait_for_selector('[data-testid="stTable"] tbody tr', timeout=timeout_ms)
            return page.locator('[data-testid="stTable"]').first.locator("tbody tr").all_inner_texts()
        finally:
            browser.close()


def caption_with(url: str, text: str, timeout_ms: int) -> str:
    """The dashboard caption line holding ``text`` as Chromium shows it at 1440x900."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            line = page.locator('[data-testid="stCaptionContainer"]', has_text=text).first
            line.wait_for(timeout=timeout_ms)
            return line.inner_text()
        finally:
            browser.close()


def first_action_shown(url: str, snapshot: dict, timeout_ms: int, top: int = 1) -> tuple[bool, object]:
    """Whether Chromium shows what the operator must act on first: one of the queue's ``top`` items in its
    table, or, with no stockout left to prevent, the costliest empty shelf in the out-of-stock line.
    (shown, what was read) for the assertion message."""
    if snapshot["queue"]:
        ids = {str(q["product_id"]) for q in snapshot["queue"][:top]}
        rows = queue_table_rows(url, timeout_ms=timeout_ms)
        return any(f"#{pid} " in row for row in rows for pid in ids), rows[:3]
    empty = snapshot["queue_summary"]["out_of_stock"]["items"]
    line = caption_with(url, "Out of stock now", timeout_ms)
    return f"#{empty[0]['product_id']} at " in line, line


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            "scripts/install.sh does this when FLASHSALE_BROWSER_TESTS=1"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
