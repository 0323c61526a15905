"""cluster.process finds its services again by pid + kernel start ticks, whatever the wall clock does,
and never adopts a recycled pid. Real processes (`sleep`), no services needed."""

from __future__ import annotations

import json
import shutil
import sys

import psutil
import pytest

from cluster import process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def sleeper(tmp_path):
    rec = process.start(tmp_path, "sleeper", SLEEPER, env={})
    yield tmp_path, rec
    process.stop(tmp_path, "sleeper", grace_seconds=2)


def _rewrite(run_dir, **changes):
    path = process.state_path(run_dir, "sleeper")
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_started_process_is_found_with_its_kernel_start_time(sleeper):
    run_dir, rec = sleeper
    assert rec.start_ticks == process.start_ticks(rec.pid) and rec.start_ticks > 0
    assert process.live_process(run_dir, "sleeper").pid == rec.pid


def test_wall_clock_step_does_not_lose_a_live_service(sleeper):
    # what an NTP step or a VM resume does to psutil's create_time (boot time + ticks)
    run_dir, rec = sleeper
    _rewrite(run_dir, create_time=rec.create_time - 7.0)
    assert process.live_process(run_dir, "sleeper") is not None


def test_recycled_pid_is_not_taken_for_the_service(sleeper):
    run_dir, rec = sleeper
    _rewrite(run_dir, start_ticks=rec.start_ticks - 1)
    assert process.live_process(run_dir, "sleeper") is None


def test_record_without_ticks_falls_back_to_create_time(sleeper):
    run_dir, rec = sleeper
    _rewrite(run_dir, start_ticks=None)
    assert process.live_process(run_dir, "sleeper") is not None
    _rewrite(run_dir, create_time=rec.create_time - 7.0)
    assert process.live_process(run_dir, "sleeper") is None


def test_stop_leaves_nothing_and_forgets_the_record(sleeper):
    run_dir, rec = sleeper
    assert process.stop(run_dir, "sleeper", grace_seconds=2)
    assert not psutil.pid_exists(rec.pid) or psutil.Process(rec.pid).status() == psutil.STATUS_ZOMBIE
    assert process.read_record(run_dir, "sleeper") is None
    assert process.stop(run_dir, "sleeper") is False


def test_command_name_with_parentheses_and_spaces_parses(tmp_path):
    # /proc/<pid>/stat puts the command name in parentheses; a name may hold both
    odd = tmp_path / "a) b (c"
    odd.symlink_to(shutil.which("sleep"))
    rec = process.start(tmp_path, "odd", [str(odd), "30"], env={})
    try:
        assert psutil.Process(rec.pid).name() == "a) b (c"
        assert process.start_ticks(rec.pid) == rec.start_ticks
        assert process.live_process(tmp_path, "odd") is not None
    finally:
        process.stop(tmp_path, "odd", grace_seconds=2)
