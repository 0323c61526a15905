"""docs/benchmarks.md and the README's key figures are generated from bench/results/ (bench/report.py):
the committed text is what the committed files give, and the numbers of the table are in their files."""

from __future__ import annotations

import json
import math
import re

import pytest

from bench import report


def test_committed_docs_are_what_the_result_files_give():
    for path, text in report.outputs().items():
        assert path.read_text() == text, (
            f"{path.relative_to(report.ROOT)} differs from what bench/results/ gives: run `make benchmarks-doc`"
        )


def _leaves(value) -> list:
    """Every number and string a result file holds."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else []


# how a number may be shown: as is, in thousands (k), millions (M), as a percentage, in minutes, in GB of MB
SCALES = (1.0, 1e3, 1e6, 0.01, 60.0)


def in_files(token: str, files: list[report.Result]) -> bool:
    """``token`` as shown (e.g. "1.74", "+2.9", "4,074") is a number of one of ``files`` at some scale,
    rounded to the digits shown, or is written in one of its strings (a date, a note)."""
    shown = float(token.replace(",", ""))
    digits = len(token.split(".")[1]) if "." in token else 0
    tolerance = 0.5 * 10**-digits + 1e-9
    for f in files:
        for v in _leaves(f.data):
            if isinstance(v, str):
                if re.search(rf"(?<![\d.]){re.escape(token.lstrip('+'))}(?![\d])", v):
                    return True
                continue
            for scale in SCALES:
                if math.isclose(abs(v / scale), abs(shown), abs_tol=tolerance) and (v >= 0) == (shown >= 0 or v == 0):
                    return True
    return False


def test_every_number_of_the_table_and_the_notes_is_in_its_files():
    """What the table, the README's key figures and the notes show, goals, links and commands aside."""
    missing = [
        (r.what, token)
        for r in report.render_rows()
        for cell in (r.figure, r.key_figure, r.note)
        for token in report.numbers(cell)
        if not in_files(token, r.files)
    ]
    assert not missing, missing


def test_the_parquet_sink_row_is_the_files_figure():
    row = next(r for r in report.render_rows() if "Parquet sink" in r.what)
    inline, local = (
        json.loads((report.RESULTS / f).read_text())["records_per_s"]
        for f in ("scale_parquet_inline.json", "scale_parquet_local.json")
    )
    assert f"{inline / 1e6:.2f} M" in row.figure and f"{local / 1e6:.2f} M" in row.figure
    assert "1.17" not in row.figure


def test_the_checker_catches_a_number_not_in_the_file():
    files = [report.Result("scale_parquet_inline.json", "x")]
    assert in_files("0.79", files)  # 791,256 records/s in millions
    assert not in_files("1.17", files)


def test_a_missing_result_file_stops_the_generator_with_its_name_and_command(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    with pytest.raises(report.ReportError, match=r"bench/results/run_first_alerts.json is missing.*bench.bench_run"):
        report.render_doc()
    assert report.main(["--check"]) == 2


def test_a_missing_key_names_the_file_and_the_key(tmp_path, monkeypatch):
    (tmp_path / "x.json").write_text('{"a": {"b": 1}}')
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    r = report.Result("x.json", "python -m bench.x")
    assert r["a.b"] == 1
    with pytest.raises(report.ReportError, match=r"x.json has no 'a.c' \(written by `python -m bench.x`\)"):
        r["a.c"]


def test_goals_links_and_code_are_not_read_as_measurements():
    assert report.numbers("**p95 54.1 s** (goal p95 ≤ 60 s), `--minutes 6` [a](b2.json)") == ["54.1"]
