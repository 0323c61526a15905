"""Shared fixtures, and the tiers. Service tests run against the real stack (cluster profile), started once
per session by `flashsale stack up` and stopped at the end if this session started it.

Tiers are folders, one marker each (tests/README.md): every test under tests/<tier>/ gets
``pytest.mark.<tier>`` here, so the folder decides. Collection fails for a test file outside the tier
folders (e.g. directly in tests/) and for a test that carries another tier's marker; tests run tier by
tier. tests/unit/test_tier_guard.py proves these checks fail when they should.

Helpers stay at this level (conftest_sim.py, dashboard_services.py, dashboard_snapshots.py, jobs/,
data/) and are imported as top-level modules (``pythonpath = ["tests"]`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster import process
from cluster import stack as stack_mod
from cluster.services import SERVICES
from flashsale.settings import load_settings

PROFILE = os.environ.get("FLASHSALE_TEST_PROFILE", "cluster")
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "services", "e2e", "compose")  # the order `make test` runs them in
# compose: the Docker Compose stack for real (`make test-cluster`, tests/compose/); needs a Docker engine


@pytest.fixture(scope="session")
def stack():
    """The running stack's settings (secrets loaded). Starts the stack when it is not up."""
    s = load_settings(profile=PROFILE)
    already = all(process.live_process(s.run_dir, n) for n in s.services if n != "hotstore" or not s.external_mongo)
    stack_mod.up(s, echo=lambda *_: None)
    yield load_settings(profile=PROFILE)
    if not already and any(process.live_process(s.run_dir, n) for n in SERVICES):
        stack_mod.down(s, echo=lambda *_: None)


# ---------------------------------------------------------------- tiers: one folder, one marker
def tier_of(path: Path) -> str | None:
    """The tier folder a path under tests/ sits in (None: directly in tests/, or not in a tier folder)."""
    try:
        parts = Path(path).resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "compose: tests/compose/: the Docker Compose stack, built and run (make test-cluster)"
    )


def pytest_collection(session):
    """A test file outside the tier folders fails every run that loads this conftest (`make test-unit`
    too), whatever paths were given: it would otherwise never run, or run without a tier."""
    loose = sorted(
        str(path.relative_to(TESTS.parent))
        for pattern in ("test_*.py", "*_test.py")
        for path in TESTS.rglob(pattern)
        if tier_of(path) is None and "__pycache__" not in path.parts
    )
    if loose:
        raise pytest.UsageError(
            f"test files live in one tier folder, tests/{{{','.join(TIERS)}}}/ (tests/README.md); "
            f"move these there: {', '.join(loose)}"
        )


def pytest_itemcollected(item):
    tier = tier_of(item.path)
    if tier is not None:
        item.add_marker(getattr(pytest.mark, tier))  # as each item is collected: before `-m` selects


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        tier = tier_of(item.path)
        marked = {m.name for m in item.iter_markers() if m.name in TIERS}
        if tier is None or marked != {tier}:
            wrong.append(f"  {item.nodeid}: folder {tier or 'none'}, tier markers {sorted(marked)}")
    if wrong:
        raise pytest.UsageError(
            "a test's tier is its folder (tests/<tier>/, one marker each); these disagree:\n" + "\n".join(wrong)
        )
    # tier by tier, cheapest first, however the paths were given (`pytest`, `pytest tests`): a stable sort,
    # so each module's tests stay together and in their order
    rank = {tier: i for i, tier in enumerate(TIERS)}
    items.sort(key=lambda item: rank.get(tier_of(item.path) or "", len(TIERS)))


# ---------------------------------------------------------------- tiers: where the time went
_TIER_SECONDS: dict[str, float] = {}
_TIER_TESTS: dict[str, int] = {}


def pytest_runtest_logreport(report):
    tier = tier_of(Path(str(report.fspath))) or "other"
    _TIER_SECONDS[tier] = _TIER_SECONDS.get(tier, 0.0) + report.duration  # setup + call + teardown
    if report.when == "call":
        _TIER_TESTS[tier] = _TIER_TESTS.get(tier, 0) + 1


def pytest_terminal_summary(terminalreporter):
    """One line per tier: tests run and seconds spent (fixtures included), so each tier's cost is on record."""
    if _TIER_SECONDS:
        parts = [
            f"{t} {_TIER_TESTS.get(t, 0)} tests {_TIER_SECONDS[t]:.0f} s"
            for t in (*TIERS, "other")
            if t in _TIER_SECONDS
        ]
        terminalreporter.write_line("tier times: " + "; ".join(parts))
