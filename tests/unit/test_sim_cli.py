"""`flashsale generate` as users run it, in a fresh process: the JSON summary of an in-process run
(`--ray inline`, Parquet sink) and one-line refusals of bad input. No Ray, no service.

(This test took the `stack` fixture in tests/test_sim_services.py without using it: `--ray inline` with a
Parquet sink touches no service.)
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_cli_generate_prints_a_json_summary_and_rejects_bad_input(tmp_path):
    cli = [sys.executable, "-m", "radar.cli"]
    out = subprocess.run(
        cli
        + [
            "generate",
            "--fast",
            "--minutes",
            "5",
            "--products",
            "500",
            "--sink",
            "parquet",
            "--out",
            str(tmp_path),
            "--ray",
            "inline",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["simulated_minutes"] == 5 and summary["consistent"]
    assert summary["collections"]["orders_fact"]["stored"] == summary["orders"] > 0

    bad = subprocess.run(
        cli + ["generate", "--fast", "--minutes", "0", "--sink", "null", "--ray", "inline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "minutes" in bad.stderr
    both = subprocess.run(
        cli + ["generate", "--fast", "--speed", "5", "--sink", "null"], capture_output=True, text=True, timeout=120
    )
    assert both.returncode == 2 and "--fast or --speed" in both.stderr
