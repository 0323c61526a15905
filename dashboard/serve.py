"""How the dashboard server is started (used by `flashsale dashboard`, the browser tests and the bench)."""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def command(port: int, address: str = "127.0.0.1", python: str | None = None) -> list[str]:
    """`streamlit run dashboard/app.py` on loopback, headless, no telemetry, no error details in the page."""
    return [
        python or sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]
