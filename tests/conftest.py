"""Shared fixtures. Service tests run against the real stack (cluster profile), started once per
session by `flashsale stack up` and stopped at the end if this session started it."""

from __future__ import annotations

import os

import pytest

from cluster import process
from cluster import stack as stack_mod
from cluster.services import SERVICES
from flashsale.settings import load_settings

PROFILE = os.environ.get("FLASHSALE_TEST_PROFILE", "cluster")


@pytest.fixture(scope="session")
def stack():
    """The running stack's settings (secrets loaded). Starts the stack when it is not up."""
    s = load_settings(profile=PROFILE)
    already = all(process.live_process(s.run_dir, n) for n in s.services if n != "hotstore" or not s.external_mongo)
    stack_mod.up(s, echo=lambda *_: None)
    yield load_settings(profile=PROFILE)
    if not already and any(process.live_process(s.run_dir, n) for n in SERVICES):
        stack_mod.down(s, echo=lambda *_: None)
