"""Sustained load in wall-clock real time (`flashsale bench sustained`, issue 19): does the pipeline keep its
one-minute promise at the seed's volume for an hour (or a day)?

    flashsale bench sustained [--minutes 60] [--records-per-s 800] [--products 20000] [--warehouses 20]
                              [--seed N] [--spike-minute M] [--min-age 20] [--setting K=V ...]
                              [--label L] [--keep-stack] [--json]

What it does, in order:

1. calibrates the volume: ``--records-per-s`` (orders + inventory events, averaged over the whole run
   including the flash spike) becomes the simulator's base rate (orders per city-minute before the flash
   curve) by running the simulator itself, fast-forward into no sink, on the run's catalogue, minutes and
   spike, and scaling its rate linearly (again, until within 3 %);
2. runs the whole scheduled pipeline the way `flashsale run` does (radar.pipeline.start: cluster profile,
   the generator on the stack's Ray at speed 1, the minute KPI DAG on YARN, the archival DAG, the
   dashboard) in a database, Redis namespace and archive root of its own, for ``--minutes`` simulated =
   wall minutes; a thread samples every 10 s: the published snapshots (the Redis trend holds every
   publication: run, publish time ``computed_at``, ``data_as_of``), the hot store's record count
   ($collStats counts of the fact buckets: no scan), memory, load and the hot store's files on disk;
3. after the generator's last minute waits up to ``GRACE_S`` for that data to be published, stops the
   pipeline, lets a running archival run finish (and archives any sealed bucket it left), reconciles every
   generated id against hot store + archive by id (bench/bench_faults.py's regeneration and id readers),
   drops the run's data if it reconciled, and stops the stack (``--keep-stack`` leaves it up);
4. writes bench/results/sustained.json (``--label L``: sustained_L.json) in a ``finally``: whatever
   failed, the figures measured so far are kept, with the error.

Definitions (the pure functions below; tests/unit/test_bench_sustained.py):

- publication: a snapshot whose ``data_as_of`` is newer than every earlier one, at its ``computed_at``;
- ``published_share``: of the whole UTC wall minutes between the first publication (the warm-up ends
  there) and the generator's end, the share in which at least one publication happened (goal >= 0.95);
- freshness (order to dashboard, as bench_pipeline.freshness): for an order with event time ts, the
  publish time of the first publication with ``data_as_of >= ts``, minus ts, plus the dashboard's refresh
  interval (it polls Redis that often). Over every second of event time from the first publication to the
  generator's last minute (``freshness_*``: uniform in time, so a stall counts for as long as it lasts),
  and weighted by the orders of each minute (``freshness_by_orders``: the KPI's own per-minute counts);
  an order no publication covered by the end counts with its age at the end (a lower bound) and is
  counted in ``not_visible_by_end``. The spike (``freshness_spike``): event times from the spike minute
  for the curve's decay time (25 simulated minutes). The generator writes each simulated minute at its
  start, so much of the data is published before its event time (counted as 0,
  ``published_before_event_share``); ``freshness.from_write`` measures from the write instead: the
  pipeline's own store-to-dashboard time;
- ``archive_to_intake``: records archived per second of archival task time (Airflow task log, first to
  last line, over the runs that archived something), divided by the intake records/s;
- ``hot_store_slope_last_half``: least-squares slope of the hot-store record count over the last half of
  the run, records per minute; ``projection_24h``: each series' last value plus its last-half slope times
  the minutes left to 1,440.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import typer  # the rest is imported inside the functions: `flashsale` registers the command at start-up

RESULTS = Path(__file__).parent / "results"
SAMPLE_EVERY_S = 10.0
RUN_DIR_EVERY_S = 60.0  # walking the run directory is slower than the other samples
GRACE_S = 180.0  # after the generator's end: time for its last minutes to be published
ARCHIVE_IDLE_TIMEOUT_S = 900.0  # a running archival run may finish its batch (the DAG allows 9 minutes)
SPIKE_WINDOW_MIN = 25  # ray_gen.params.FlashCurve.spike_decay_minutes: the spike's freshness split
HORIZON_MIN = 24 * 60
CITIES = 27  # radar.pipeline.RunOptions.cities
STOCK_COVER = 60.0  # radar.pipeline.RunOptions.stock_cover
RECORDS_PER_MIN_AT_RATE_100 = 8_700.0  # first guess only (bench_pipeline.scale's per_minute); calibrated


# ---------------------------------------------------------------------------------------- pure functions
def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def publications(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """(publish time, data as-of) of every snapshot, in publish order, keeping only those whose data is
    newer than every earlier one (a refresh of the same data is not a new snapshot)."""
    out: list[tuple[float, float]] = []
    newest = -math.inf
    for t_pub, as_of in sorted(set(points)):
        if as_of > newest:
            out.append((t_pub, as_of))
            newest = as_of
    return out


def published_share(pubs: Sequence[tuple[float, float]], end: float) -> dict:
    """Of the whole wall minutes (UTC, aligned to :00) from the first publication to ``end``, how many
    had at least one publication. The first publication ends the warm-up."""
    if not pubs:
        return {"share": None, "minutes": 0, "published": 0, "missed_minutes": [], "from": None, "to": end}
    first = pubs[0][0]
    lo, hi = math.ceil(first / 60) * 60, math.floor(end / 60) * 60
    minutes = list(range(int(lo), int(hi), 60))
    hit = {int(t // 60) * 60 for t, _ in pubs}
    missed = [m for m in minutes if m not in hit]
    n = len(minutes)
    return {
        "share": round((n - len(missed)) / n, 4) if n else None,
        "minutes": n,
        "published": n - len(missed),
        "missed_minutes": [datetime.fromtimestamp(m, UTC).strftime("%H:%M") for m in missed],
        "from": lo,
        "to": hi,
    }


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of values with weights: the smallest value whose cumulative weight reaches
    q of the total (q=1: the max of the values with a weight)."""
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= q * total - 1e-9 * total:
            return v
    return pairs[-1][0]


def visibility(
    pubs: Sequence[tuple[float, float]],
    lo: float,
    hi: float,
    end: float,
    refresh_s: float,
    weight: Callable[[float], float] | None = None,
    step_s: float = 1.0,
    origin: Callable[[float], float] | None = None,
) -> dict:
    """Order-to-dashboard freshness over event times ts in [lo, hi) every ``step_s``: the publish time of
    the first publication with data_as_of >= ts, minus ts (0 if that was before ts: the generator writes a
    simulated minute at its start, so data can be published ahead of its event time; their share is
    ``published_before_event_share``), plus ``refresh_s``. A ts no publication covered by ``end`` counts as
    end - ts + refresh_s (a lower bound). ``weight(ts)``: orders per second at ts (None: uniform in time).
    ``origin(ts)``: measure from this wall time instead of ts (e.g. when the record was written)."""
    import numpy as np

    if hi <= lo:
        return {"p50": None, "p95": None, "max": None, "seconds": 0, "not_visible_by_end": 0}
    by_as_of = sorted(pubs, key=lambda p: p[1])
    as_of = np.array([a for _, a in by_as_of], dtype=float)
    t_pub = np.array([t for t, _ in by_as_of], dtype=float)
    # earliest publish time among publications with as-of >= that publication's as-of
    first_pub = np.minimum.accumulate(t_pub[::-1])[::-1] if len(t_pub) else t_pub
    ts = np.arange(lo, hi, step_s)
    idx = np.searchsorted(as_of, ts, side="left")  # the first as-of >= ts
    covered = idx < len(as_of)
    seen = np.full(len(ts), float(end))
    seen[covered] = first_pub[idx[covered]]
    late = seen > end
    seen[late] = end
    not_visible = ~covered | late
    start = ts if origin is None else np.array([origin(t) for t in ts], dtype=float)
    ahead = seen < start  # published before its event time (data written ahead of its clock): counts as 0
    latency = np.maximum(seen - start, 0.0) + refresh_s
    w = np.ones(len(ts)) if weight is None else np.array([weight(t) for t in ts], dtype=float)
    lat = latency.tolist()
    wl = w.tolist()
    return {
        "p50": _round(weighted_quantile(lat, wl, 0.50)),
        "p95": _round(weighted_quantile(lat, wl, 0.95)),
        "max": _round(weighted_quantile(lat, wl, 1.0)),
        "seconds": len(ts),
        "not_visible_by_end": int(not_visible.sum()),
        "published_before_event_share": round(float(w[ahead].sum() / w.sum()), 4) if w.sum() else None,
    }


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def write_time(sim_start: float, wall_start: float, speed: float = 1.0) -> Callable[[float], float]:
    """When the generator wrote the record of event time ts: it writes simulated minute m at once, at
    wall_start + m x 60 / speed (ray_gen/engine.py), i.e. up to a minute before its events happen."""

    def at(ts: float) -> float:
        return wall_start + math.floor((ts - sim_start) / 60) * 60 / speed

    return at


def minute_weight(orders_per_minute: dict[float, float]) -> Callable[[float], float]:
    """Orders per second at event time ts from per-minute order counts (minute start epoch -> orders); a
    minute no snapshot counted (a stall: no snapshot's window held it) gets the mean of the known ones."""
    known = [v for v in orders_per_minute.values() if v > 0]
    fill = sum(known) / len(known) if known else 1.0

    def weight(ts: float) -> float:
        return orders_per_minute.get(math.floor(ts / 60) * 60, fill) / 60

    return weight


def slope_per_min(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) samples, per minute; None under 2 distinct times."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / var * 60


def last_half(samples: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The samples in the second half of the sampled time span."""
    if not samples:
        return []
    mid = (samples[0][0] + samples[-1][0]) / 2
    return [(t, v) for t, v in samples if t >= mid]


def projection(samples: Sequence[tuple[float, float]], horizon_min: float = HORIZON_MIN) -> dict:
    """Where a series gets at ``horizon_min`` minutes from its first sample if it keeps its last-half
    slope: its last value + slope x the minutes left (never below 0: sizes and counts)."""
    if not samples:
        return {"last": None, "slope_per_min_last_half": None, "at_horizon": None}
    slope = slope_per_min(last_half(samples))
    t_last, v_last = samples[-1]
    left = max(0.0, horizon_min - (t_last - samples[0][0]) / 60)
    return {
        "last": v_last,
        "slope_per_min_last_half": _round(slope, 2),
        "at_horizon": None if slope is None else round(max(0.0, v_last + slope * left)),
    }


def archive_runs(attempts: Iterable[dict]) -> dict:
    """Archival runs from their task logs: ``attempts`` = [{"result": ARCHIVE_RESULT dict, "task_s": the
    attempt's duration}]. Records archived (rows + quarantined of every batch, supplements included) per
    second of task time of the runs that archived something (the app's own seconds where the task log's
    times cannot be read)."""
    runs = skipped = batches = records = 0
    busy_s = 0.0
    app_s = 0.0
    for a in attempts:
        res = a.get("result") or {}
        runs += 1
        done = [b for b in res.get("batches") or [] if isinstance(b, dict)]
        n = sum(int(b.get("rows") or 0) + int(b.get("quarantined") or 0) for b in done)
        if res.get("skipped") or not n:
            skipped += 1
            continue
        batches += len(done)
        records += n
        in_app = sum(float(v) for v in (res.get("seconds") or {}).values() if isinstance(v, int | float))
        app_s += in_app
        busy_s += float(a.get("task_s") or in_app)  # no task time readable: the app's own seconds
    return {
        "runs": runs,
        "runs_that_archived": runs - skipped,
        "batches": batches,
        "records": records,
        "task_s": round(busy_s, 1),
        "app_s": round(app_s, 1),
        "records_per_task_s": round(records / busy_s, 1) if busy_s else None,
    }


def scaled_rate(rate: float, records: float, target: float) -> float:
    """The rate that would give ``target`` records if records grew in proportion to the rate."""
    return rate * target / records if records > 0 else rate * 2


MIN_RATE = 0.01


def next_rate(trials: Sequence[tuple[float, float]], target: float) -> float:
    """The next rate to try for ``target`` records from the (rate, records) tried so far: linear scaling
    after one trial, then the secant through the last two (records = fixed + per-rate x rate: the first
    minute's inventory of every (product, warehouse) pair does not depend on the rate)."""
    r2, n2 = trials[-1]
    if len(trials) < 2 or trials[-2][1] == n2 or trials[-2][0] == r2:
        return max(MIN_RATE, scaled_rate(r2, n2, target))
    r1, n1 = trials[-2]
    return max(MIN_RATE, r2 + (target - n2) * (r2 - r1) / (n2 - n1))


def default_spike_minute(minutes: int) -> int:
    return max(1, minutes // 3)


# ------------------------------------------------------------------------------------------- sampling
class Sampler(threading.Thread):
    """Every ``every`` seconds: the published snapshots (the trend list holds each publication), per-minute
    order counts of the snapshot, the hot store's record count, memory, load and disk. Never raises: a
    failed read is counted in ``errors`` and the next sample tries again."""

    def __init__(self, s, every: float = SAMPLE_EVERY_S):
        super().__init__(daemon=True)
        self.s, self.every = s, every
        self.halt = threading.Event()
        self.points: dict[tuple[str, str], dict] = {}  # (run_id, computed_at) -> publication
        self.orders_per_minute: dict[float, float] = {}
        self.samples: list[dict] = []
        self.errors: dict[str, int] = {}
        self._next_dir = 0.0
        self._run_dir_bytes: int | None = None

    def _err(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def hot_store_records(self) -> int:
        from bench.bench_pipeline import hot_store_records

        return hot_store_records(self.s)

    def hot_store_files(self) -> dict[str, int]:
        """The run database's SQLite files (FerretDB's --sqlite-url directory) and the whole directory."""
        d = self.s.run_dir / "hotstore" / "sqlite"
        out = {"db_bytes": 0, "wal_bytes": 0, "dir_bytes": 0}
        for f in d.glob("*"):
            try:
                size = f.stat().st_size
            except OSError:
                continue
            out["dir_bytes"] += size
            if f.name == f"{self.s.mongo_db}.sqlite":
                out["db_bytes"] = size
            elif f.name.startswith(f"{self.s.mongo_db}.sqlite-"):  # -wal, -shm
                out["wal_bytes"] += size
        return out

    def sample(self) -> None:
        import psutil

        from flashsale.redis_keys import keys_for, read_head, read_snapshot
        from flashsale.stores import redis_client

        now = time.time()
        row: dict = {"t": round(now, 1)}
        try:
            r, keys = redis_client(self.s), keys_for(self.s)
            snap = read_snapshot(r, keys, trend_points=200)
            if snap:
                row["data_as_of"] = snap.get("data_as_of")
                row["computed_at"] = snap.get("computed_at")
                for p in snap.get("trend") or []:
                    key = (str(p.get("run_id")), str(p.get("computed_at")))
                    if key not in self.points and p.get("computed_at") and p.get("data_as_of"):
                        self.points[key] = {
                            "computed_at": epoch(p["computed_at"]),
                            "data_as_of": epoch(p["data_as_of"]),
                            "first_seen": round(now, 1),
                        }
                for m in snap.get("orders_per_minute") or []:
                    t = epoch(m["minute"])
                    self.orders_per_minute[t] = max(self.orders_per_minute.get(t, 0), float(m.get("orders") or 0))
            head = read_head(r, keys)
            if head and head.get("published_at") is not None:
                row["head_published_at"] = head["published_at"]
        except Exception:  # noqa: BLE001 - Redis restarting, a snapshot of another shape: next sample
            self._err("redis")
        try:
            t = time.monotonic()
            row["hot_records"] = self.hot_store_records()
            row["hot_count_s"] = round(time.monotonic() - t, 2)
        except Exception:  # noqa: BLE001 - a busy or restarting store: the next sample counts
            self._err("hot_store")
        try:
            vm = psutil.virtual_memory()
            row["mem_used_mb"] = round((vm.total - vm.available) / 2**20)
            row["load_1"] = round(os.getloadavg()[0], 2)
            row.update(self.hot_store_files())
            if now >= self._next_dir:
                self._next_dir = now + RUN_DIR_EVERY_S
                self._run_dir_bytes = dir_bytes(self.s.run_dir)
            row["run_dir_bytes"] = self._run_dir_bytes
        except Exception:  # noqa: BLE001
            self._err("machine")
        self.samples.append(row)

    def run(self):
        while True:
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a sampler never ends the bench
                self._err("sample")
            if self.halt.wait(self.every):
                return


def dir_bytes(path: Path) -> int:
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


# ------------------------------------------------------------------------------------------ the run
def calibrate(
    records_per_s: float, minutes: int, spike_minute: int, products: int, warehouses: int, seed: int, echo
) -> dict:
    """The base rate that makes the generator write ``records_per_s`` on average over the run, from the
    simulator itself (fast-forward, no sink, no Ray): scaled linearly, then by the secant, until at least
    the target and at most 3 % above it (at most 8 runs): a volume asked for is a floor, not a round figure."""
    import subprocess

    from cluster.services import BIN
    from flashsale.settings import PROJECT_ROOT

    target = records_per_s * minutes * 60
    rate = max(0.1, records_per_s * 60 / RECORDS_PER_MIN_AT_RATE_100 * 100)
    trials: list[dict] = []
    for _ in range(8):
        cmd = [
            str(BIN / "flashsale"),
            "generate",
            "--fast",
            "--ray",
            "inline",
            "--sink",
            "null",
            "--minutes",
            str(minutes),
            "--spike-minute",
            str(spike_minute),
            "--stock-cover",
            str(STOCK_COVER),
            "--products",
            str(products),
            "--cities",
            str(CITIES),
            "--warehouses",
            str(warehouses),
            "--seed",
            str(seed),
            "--rate",
            f"{rate:.4f}",
            "--json",
        ]
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=PROJECT_ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"calibration run failed: {done.stderr.strip()[-400:]}")
        text = done.stdout
        summary = json.loads(text[0 if text.startswith("{") else text.index("\n{") + 1 :])
        records = int(summary["records"])
        trials.append({"rate": round(rate, 4), "records": records, "took_s": round(time.monotonic() - t0, 1)})
        per_s = records / minutes / 60
        echo(f"  calibration: rate {rate:.2f} -> {records:,} records ({per_s:.0f}/s, target {records_per_s:g}/s)")
        if target <= records <= 1.03 * target:
            break
        if rate <= MIN_RATE and records > target:
            echo(f"  calibration: {records_per_s:g} records/s is below what this catalogue writes at any rate")
            break
        # after the last trial: unchecked, the best estimate
        rate = next_rate([(x["rate"], x["records"]) for x in trials], target * 1.015)  # the band's middle
    return {"rate": round(rate, 4), "target_records": round(target), "trials": trials}


def _stderr(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


def _archive_attempts(s, since: float) -> tuple[list[dict], int]:
    """ARCHIVE_RESULT of each archival task attempt logged after ``since``, with the attempt's duration
    (its log's first to last record); and the number of unreadable result lines."""
    from bench.bench_pipeline import result_lines

    out, bad = [], 0
    for f in (s.airflow_home / "logs" / "dag_id=flashsale_archive").rglob("*.log"):
        try:
            if f.stat().st_mtime < since:
                continue
            lines = f.read_text(errors="replace").splitlines()
        except OSError:
            continue
        found, skipped = result_lines(lines, ("ARCHIVE_RESULT ",))
        bad += skipped
        stamps = []
        for line in (lines[0], lines[-1]) if lines else ():
            try:
                stamps.append(epoch(str(json.loads(line)["timestamp"]).replace("Z", "+00:00")))
            except (ValueError, KeyError, TypeError):
                continue
        task_s = stamps[-1] - stamps[0] if len(stamps) == 2 else None
        for _, res, _ in found[-1:]:  # one result per attempt: its last
            out.append({"log": str(f), "result": res, "task_s": task_s})
    return out, bad


def _active_runs(s, dag_id: str) -> int | None:
    """Queued or running runs of a DAG (the stop marks them failed: not the pipeline's failures)."""
    from cluster import airflow_api

    try:
        return sum(1 for r in airflow_api.dag_runs(s, dag_id, limit=10) if r["state"] in ("queued", "running"))
    except Exception:  # noqa: BLE001 - a figure, not a step
        return None


def _wait_archive_idle(s, timeout: float) -> str:
    """Wait for the archival DAG's queued or running runs to end (the DAG is paused: no new ones)."""
    from cluster import airflow_api

    deadline = time.time() + timeout
    while time.time() < deadline:
        active = [
            r for r in airflow_api.dag_runs(s, "flashsale_archive", limit=5) if r["state"] in ("queued", "running")
        ]
        if not active:
            return "idle"
        time.sleep(5)
    return f"still running after {timeout:.0f} s"


def _archive_leftover_sealed(s, echo) -> list[str]:
    """A run cut off mid-batch leaves sealed buckets (and maybe an uncommitted partition): one more
    archival run finishes them (flashsale/archive_layout.py), so the ids are counted once."""
    from bench.bench_faults import FACTS
    from bench.bench_pipeline import final_archival
    from cluster import airflow_api
    from flashsale.hot_layout import existing_sealed
    from flashsale.stores import mongo_client

    with mongo_client(s) as c:
        names = c.get_default_database().list_collection_names()
    if not any(existing_sealed(f, names) for f in FACTS):
        return []
    echo("  sealed buckets left by an interrupted archival run: one more archival run")
    airflow_api.set_paused(s, ["flashsale_archive"], paused=False)
    try:
        return final_archival(s, timeout=1800, max_runs=3)
    finally:
        airflow_api.set_paused(s, ["flashsale_archive"], paused=True)


def dag_run_states(s, dag_id: str, since: float, page: int = 100) -> dict:
    """Runs of a DAG started after ``since`` by state, page by page (Airflow's API returns at most
    ``maximum_page_limit``, 100, runs a call: a day has 1,440 minute runs)."""
    from cluster import airflow_api

    states: dict[str, int] = {}
    offset = 0
    while True:
        runs = airflow_api.call(s, "GET", f"dags/{dag_id}/dagRuns?order_by=-run_after&limit={page}&offset={offset}")[
            "dag_runs"
        ]
        recent = [r for r in runs if r.get("start_date") and epoch(r["start_date"].replace("Z", "+00:00")) >= since]
        for r in recent:
            states[r["state"]] = states.get(r["state"], 0) + 1
        if len(runs) < page or len(recent) < len([r for r in runs if r.get("start_date")]):
            break  # the last page, or older runs begin
        offset += page
    return {"runs": sum(states.values()), "states": states}


def _kpi_stats(s, t0: float, minutes: int) -> dict:
    from bench.bench_pipeline import _pct, kpi_cycles

    stats: dict = {}
    cycles = kpi_cycles(s, t0, stats)
    results = [c for c in cycles if c["kind"] == "KPI_RESULT"]
    out: dict = {
        "kpi_results_logged": len(results),
        "kpi_refreshes_logged": len(cycles) - len(results),
        "submit_to_snapshot_s": {
            "p50": _pct([c["submit_to_snapshot_s"] for c in results if "submit_to_snapshot_s" in c], 50),
            "p95": _pct([c["submit_to_snapshot_s"] for c in results if "submit_to_snapshot_s" in c], 95),
        },
        "unparsable_log_lines": stats.get("unparsable_lines", 0),
    }
    # a warm app's refresh cycles (kpi_job --refresh): what each step of a cycle took, p50 / p95 / max
    refreshes = [c for c in cycles if c["kind"] == "KPI_REFRESH"]
    quantiles = (("p50", 50), ("p95", 95), ("max", 100))
    out["refresh_cycle_s"] = {
        step: {q: _pct([c[step] for c in refreshes if step in c], v) for q, v in quantiles}
        for step in ("cycle_s", "read_facts_s", "validate_s", "spark_compute_s", "assemble_s")
    }
    try:
        out["minute_dag_runs"] = dag_run_states(s, "flashsale_kpi_minute", t0)
        out["archive_dag_runs"] = dag_run_states(s, "flashsale_archive", t0)
    except Exception as exc:  # noqa: BLE001 - Airflow's API down: the logs still count
        out["dag_runs_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _series(samples: list[dict], key: str, t0: float) -> list[tuple[float, float]]:
    return [(row["t"] - t0, float(row[key])) for row in samples if row.get(key) is not None]


def summarize(result: dict, sampler: Sampler, t0: float, refresh_s: float) -> None:
    """The figures from what was sampled (pure given the sampler's data): publications, share, freshness,
    slopes and the 24-hour projection, written into ``result``."""
    marks = result.get("marks", {})
    pubs = publications((p["computed_at"], p["data_as_of"]) for p in sampler.points.values())
    gen_end = marks.get("generator_end") or marks.get("stop") or time.time()
    end = marks.get("stop") or time.time()
    share = published_share(pubs, gen_end)
    result["published_share"] = share["share"]
    result["published_share_detail"] = share
    result["snapshots_published"] = len(pubs)
    lags = [t - a for t, a in pubs]  # publish time - data as-of: negative = data ahead of the wall clock
    result["publish_minus_data_as_of_s"] = {
        "p50": _round(weighted_quantile(lags, [1.0] * len(lags), 0.5)),
        "max": _round(max(lags, default=None)),
        "min": _round(min(lags, default=None)),
    }
    result["snapshots_seen"] = len(sampler.points)
    sim_start = marks.get("sim_start")
    sim_minutes = result.get("simulated_minutes") or result.get("minutes")
    if pubs and sim_start is not None and sim_minutes:
        data_end = sim_start + sim_minutes * 60
        lo = max(pubs[0][0], sim_start)
        hi = min(data_end - 60, gen_end)  # the last minute: the run's end, not the pipeline's pace
        uniform = visibility(pubs, lo, hi, end, refresh_s)
        by_orders = visibility(pubs, lo, hi, end, refresh_s, minute_weight(sampler.orders_per_minute))
        s_lo = max(lo, sim_start + result["spike_minute"] * 60)
        s_hi = min(hi, sim_start + (result["spike_minute"] + SPIKE_WINDOW_MIN) * 60)
        spike = visibility(pubs, s_lo, s_hi, end, refresh_s, minute_weight(sampler.orders_per_minute))
        written = write_time(sim_start, marks.get("generator_start") or sim_start)
        from_write = visibility(pubs, lo, hi, end, refresh_s, origin=written)
        result["freshness_p50_s"] = uniform["p50"]
        result["freshness_p95_s"] = uniform["p95"]
        result["freshness_max_s"] = uniform["max"]
        result["freshness"] = {
            "uniform_in_time": uniform,
            "by_orders": by_orders,
            "spike_by_orders": {
                **spike,
                "event_minutes": [result["spike_minute"], result["spike_minute"] + SPIKE_WINDOW_MIN],
            },
            "from_write": {
                **from_write,
                "note": "from when the generator wrote the record (its minute's start, taken from the "
                "generator process's start: a few seconds early), not from its event time",
            },
            "includes_dashboard_refresh_s": refresh_s,
            "event_time_span": [_iso(lo), _iso(hi)],
        }
        result["freshness_spike_p95_s"] = spike["p95"]
        result["freshness_from_write_p95_s"] = from_write["p95"]
    hot = _series(sampler.samples, "hot_records", t0)
    slope = slope_per_min(last_half(hot))
    result["hot_store_slope_last_half"] = _round(slope, 1)
    gen_hot = [(t, v) for t, v in hot if t <= gen_end - t0]  # projections: while the generator ran
    result["projection_24h"] = {
        "hot_store_records": projection(gen_hot),
        "hotstore_sqlite_bytes": projection(
            [
                (r["t"] - t0, float(r["db_bytes"] + r["wal_bytes"]))
                for r in sampler.samples
                if "db_bytes" in r and r["t"] <= gen_end
            ]
        ),
        "run_dir_bytes": projection([(t, v) for t, v in _series(sampler.samples, "run_dir_bytes", t0)]),
        "memory_used_mb": projection([(t, v) for t, v in _series(sampler.samples, "mem_used_mb", t0)]),
        "horizon_min": HORIZON_MIN,
    }
    result["series"] = {
        "columns": [
            "t_s",
            "hot_records",
            "mem_used_mb",
            "db_bytes",
            "wal_bytes",
            "hotstore_dir_bytes",
            "run_dir_bytes",
            "load_1",
        ],
        "rows": [
            [
                round(r["t"] - t0),
                r.get("hot_records"),
                r.get("mem_used_mb"),
                r.get("db_bytes"),
                r.get("wal_bytes"),
                r.get("dir_bytes"),
                r.get("run_dir_bytes"),
                r.get("load_1"),
            ]
            for r in sampler.samples
        ],
    }
    result["memory_peak_mb"] = max((v for _, v in _series(sampler.samples, "mem_used_mb", t0)), default=None)
    result["wal_peak_bytes"] = max((v for _, v in _series(sampler.samples, "wal_bytes", t0)), default=None)
    result["hot_store_peak_records"] = max((v for _, v in hot), default=None)
    result["sampler_errors"] = dict(sampler.errors)
    result["publications"] = [[round(t - t0, 1), _iso(a)] for t, a in pubs]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def run_sustained(
    *,
    minutes: int,
    records_per_s: float,
    products: int,
    warehouses: int,
    seed: int,
    spike_minute: int | None,
    min_age: int | None,
    settings: dict[str, str],
    keep_stack: bool,
    result: dict,
    echo=_stderr,
) -> None:
    """The whole bench; fills ``result`` as it goes (the caller writes it whatever happens)."""
    import shutil
    import tempfile

    from bench.bench_faults import _pipeline_processes, compare_ids, regenerated_ids, stored_ids
    from bench.bench_pipeline import _machine, _overrides
    from cluster import stack
    from flashsale.settings import load_settings
    from radar import pipeline

    spike = spike_minute if spike_minute is not None else default_spike_minute(minutes)
    result.update(minutes=minutes, asked_records_per_s=records_per_s, products=products, warehouses=warehouses)
    result.update(seed=seed, spike_minute=spike, speed=1.0, machine=_machine())
    marks: dict = result.setdefault("marks", {})

    if refused := pipeline.refusal(load_settings(profile="cluster")):  # someone else's run: touch nothing
        raise pipeline.PipelineRefused(refused)
    echo(f"calibrating the rate for {records_per_s:g} records/s over {minutes} minutes (spike at minute {spike})")
    cal = calibrate(records_per_s, minutes, spike, products, warehouses, seed, echo)
    result["calibration"] = cal

    stack_settings = load_settings(profile="cluster")
    s = stack_settings
    sampler: Sampler | None = None
    try:
        stack.up(stack_settings, echo=lambda *_: None)
        stack_settings = load_settings(profile="cluster")  # secrets exist from here on
        age = {} if min_age is None else {"archive_min_age_minutes": min_age}
        overrides = _overrides(stack_settings, "sustained", **age, **settings)
        result["settings"] = overrides
        s = load_settings(profile="cluster", **overrides)
        result["effective"] = {
            k: getattr(s, k)
            for k in ("archive_min_age_minutes", "hot_bucket_minutes", "kpi_window_minutes", "archive_max_hot_records")
            if hasattr(s, k)
        }
        pipeline.discard_data(s)
        opts = pipeline.RunOptions(
            speed=1.0,
            minutes=minutes,
            spike_minute=spike,
            products=products,
            warehouses=warehouses,
            seed=seed,
            rate=cal["rate"],
            settings=overrides,
        )
        sampler = Sampler(s)
        t0 = time.time()
        marks["t0"] = t0
        result["_sampler"] = sampler  # summarized in the caller's finally
        work = Path(tempfile.mkdtemp(prefix="fsr-sustained-"))
        result["work_dir"] = str(work)
        gen_cmd = _run_pipeline(s, opts, sampler, marks, echo)
        summary = pipeline.generator_summary(s)
        result["generator"] = summary
        if summary:
            result["simulated_minutes"] = summary.get("simulated_minutes")
            gen_s = summary.get("elapsed_seconds") or (marks["generator_end"] - marks["generator_start"])
            # at speed 1 the generator writes each simulated minute at that minute's start: its records
            # arrive over simulated_minutes x 60 wall seconds, though the process ends ~a minute earlier
            span_s = max(float(gen_s), (summary.get("simulated_minutes") or 0) * 60.0)
            result["records"] = summary["records"]
            result["generate_s"] = round(gen_s, 1)
            result["intake_span_s"] = round(span_s, 1)
            result["records_per_s"] = round(summary["records"] / span_s, 1) if span_s else None
            result["records_per_generator_wall_s"] = round(summary["records"] / gen_s, 1) if gen_s else None
        result["archive_idle"] = _wait_archive_idle(s, ARCHIVE_IDLE_TIMEOUT_S)
        result["final_archive_runs"] = _archive_leftover_sealed(s, echo)
        result["kpi"] = _kpi_stats(s, t0, minutes)
        attempts, bad = _archive_attempts(s, t0)
        arch = archive_runs(attempts)
        arch["unparsable_log_lines"] = bad
        result["archive"] = arch
        intake = result.get("records_per_s")
        per_s = arch["records_per_task_s"]
        result["archive_to_intake"] = round(per_s / intake, 2) if per_s and intake else None
        result["reconciled"] = False
        if not summary:
            result["reconciliation"] = {"error": "the generator left no summary"}
            return
        echo("reconciling by id (regenerating the reference)")
        expected = regenerated_ids(gen_cmd, summary["simulated_minutes"], work, timeout=900 + 30 * minutes)
        rec = compare_ids(summary, expected, stored_ids(s))
        del expected
        result["reconciliation"] = rec
        result["reconciled"] = rec["reconciled"]
        if rec["reconciled"]:
            pipeline.discard_data(s)
            shutil.rmtree(work, ignore_errors=True)  # the regenerated reference
            result["work_dir"] = None
        else:
            echo(f"NOT reconciled: kept database {s.mongo_db} and {s.archive_root} for inspection")
    finally:
        if sampler is not None:
            sampler.halt.set()
        if pipeline.running(s):  # an error before the normal stop
            pipeline.stop(s, echo=echo, stop_stack=False)
        if not keep_stack:
            stack.down(stack_settings, echo=echo)
            time.sleep(2)
            result["left_running"] = _pipeline_processes(s)
        else:  # the stack stays, by request: only the pipeline's own processes count
            result["left_running"] = [p for p in _pipeline_processes(s) if str(s.run_dir) not in p]


def _run_pipeline(s, opts, sampler: Sampler, marks: dict, echo) -> list[str]:
    """Start the pipeline, wait for the generator's minutes and their publication, stop the pipeline (the
    stack stays up for the reconciliation). Returns the generator's command line."""
    from cluster import process
    from radar import pipeline

    sampler.start()
    try:
        s, sim_start = pipeline.start(s, opts, echo=echo)
        marks["sim_start"] = sim_start.timestamp()
        gen = process.live_process(s.run_dir, pipeline.GENERATOR)
        gen_cmd = gen.cmdline() if gen is not None else pipeline.generator_command(s, opts, sim_start)
        marks["generator_start"] = time.time()
        echo(f"running for {opts.minutes} minutes (data from {sim_start:%H:%M} UTC, rate {opts.rate:.2f})")
        deadline = marks["generator_start"] + opts.minutes * 60 + 120
        while process.live_process(s.run_dir, pipeline.GENERATOR) is not None and time.time() < deadline:
            time.sleep(5)
        marks["generator_end"] = time.time()
        if failed := pipeline.generator_failure(s):
            marks["generator_failure"] = failed
        # the last minutes' publication: up to GRACE_S for data up to the generator's last whole minute
        data_end = sim_start.timestamp() + opts.minutes * 60 - 60
        until = time.time() + GRACE_S
        while time.time() < until:
            if any(p["data_as_of"] >= data_end for p in list(sampler.points.values())):
                break
            time.sleep(5)
        marks["stop"] = time.time()
        marks["kpi_runs_ended_by_the_stop"] = _active_runs(s, pipeline.KPI_DAG)
    finally:
        sampler.halt.set()
        pipeline.stop(s, echo=echo, stop_stack=False)
    return gen_cmd


def sustained(
    minutes: int = typer.Option(60, help="wall (= simulated) minutes the generator runs"),
    records_per_s: float = typer.Option(
        800.0, help="orders + inventory events per second, averaged over the run including the spike"
    ),
    products: int = typer.Option(20_000),
    warehouses: int = typer.Option(20),
    seed: int = typer.Option(1111),
    spike_minute: int | None = typer.Option(None, help="simulated minute of the flash spike (default: a third in)"),
    min_age: int | None = typer.Option(
        None,
        help="archive_min_age_minutes for this run (default: the pipeline's own setting): buckets this long "
        "past their end are archived",
    ),
    setting: list[str] = typer.Option(  # noqa: B008 - typer's way of a repeatable option
        [], "--setting", help="KEY=VALUE: a setting every pipeline process sees (repeatable)"
    ),
    label: str | None = typer.Option(None, help="result file sustained_<label>.json (default sustained.json)"),
    keep_stack: bool = typer.Option(False, "--keep-stack", help="leave the stack running at the end"),
    as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object"),
):
    """The whole scheduled pipeline in real time at the seed's volume: snapshots published per minute,
    order-to-dashboard freshness, hot-store slope, archival vs intake, memory, disk, reconciliation by id.
    Writes bench/results/sustained[_<label>].json. Exit 1 if the bench failed or the ids do not reconcile."""
    extra = {}
    for pair in setting:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--setting expects KEY=VALUE, got {pair!r}")
        extra[key.strip()] = value
    result: dict = {"bench": "sustained", "measured_at": datetime.now(UTC).isoformat(), "label": label}
    out = RESULTS / (f"sustained_{label}.json" if label else "sustained.json")
    try:
        run_sustained(
            minutes=minutes,
            records_per_s=records_per_s,
            products=products,
            warehouses=warehouses,
            seed=seed,
            spike_minute=spike_minute,
            min_age=min_age,
            settings=extra,
            keep_stack=keep_stack,
            result=result,
        )
    except BaseException as exc:  # noqa: BLE001 - Ctrl-C included: the figures so far are written below
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-4000:]
    finally:
        finish(result, out, as_json)
    if result.get("error") or not result.get("reconciled"):
        raise typer.Exit(1)


HEADLINE = (
    "records_per_s",
    "published_share",
    "freshness_p50_s",
    "freshness_p95_s",
    "freshness_max_s",
    "freshness_spike_p95_s",
    "freshness_from_write_p95_s",
    "archive_to_intake",
    "hot_store_slope_last_half",
    "reconciled",
    "minutes",
)


def finish(result: dict, out: Path, as_json: bool) -> None:
    """Summarize what was sampled and write the result file; print it. Never raises."""
    sampler = result.pop("_sampler", None)
    try:
        if sampler is not None:
            from flashsale.settings import load_settings

            refresh = load_settings(profile="cluster").dashboard_refresh_seconds
            summarize(result, sampler, result.get("marks", {}).get("t0", time.time()), refresh)
    except Exception:  # noqa: BLE001 - the raw figures are still written
        result["summary_error"] = traceback.format_exc()[-2000:]
    result["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    for k in HEADLINE:
        result.setdefault(k, None)
    ordered = {k: result[k] for k in HEADLINE} | {k: v for k, v in result.items() if k not in HEADLINE}
    try:
        RESULTS.mkdir(exist_ok=True)
        out.write_text(json.dumps(ordered, indent=2, default=str))
        ordered["result_file"] = str(out)
    except OSError as exc:
        ordered["result_file_error"] = str(exc)
    shown = {k: v for k, v in ordered.items() if k not in ("series", "publications", "traceback")}
    if as_json:
        print(json.dumps(shown, default=str))
    else:
        for k in HEADLINE:
            print(f"{k:28} {ordered.get(k)}")
        print(f"{'result file':28} {ordered.get('result_file')}")
        if ordered.get("error"):
            print(f"{'error':28} {ordered['error']}")


if __name__ == "__main__":
    typer.run(sustained)
