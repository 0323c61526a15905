"""Which FerretDB backend should the hot store use? Measure, in one run, on this machine:
unordered insert_many throughput (the generator's write path) and an indexed 15-minute range read
(the KPI job's read path) for FerretDB 1.24 on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.bench_hot_store_backend [--docs 100000] [--rounds 2]

Starts its own throw-away servers on spare loopback ports (never the stack's), writes
bench/results/hot_store_backend.json and prints a table. Needs Debian's postgresql for the
PostgreSQL side (initdb/postgres under /usr/lib/postgresql/*/bin).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import secrets
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo

from cluster import process
from cluster.services import ferretdb_binary
from flashsale.settings import load_settings

RESULTS = Path(__file__).parent / "results"
USER = "bench"


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit("PostgreSQL is not installed: apt-get install postgresql")
    return found[-1]


def as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not process.port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on {port}")
        time.sleep(0.2)


def start_postgres(work: Path, port: int, password: str) -> None:
    data = work / "pg"
    data.mkdir()
    pwfile = work / "pgpass"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(pwfile, "postgres")
    subprocess.run(
        as_postgres([pg_bin("initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}"]),
        check=True,
        capture_output=True,
    )
    process.start(
        work,
        "postgres",
        as_postgres(
            [
                pg_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(work),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
            ]
        ),
        dict(os.environ),
    )
    wait_port(port)
    env = {**os.environ, "PGPASSWORD": password}
    for _ in range(50):
        ok = subprocess.run(
            [
                pg_bin("psql") if Path(pg_bin("psql")).exists() else "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                USER,
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE ferretdb",
            ],
            env=env,
            capture_output=True,
        )
        if ok.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(ok.stderr.decode())


def start_ferretdb(work: Path, name: str, port: int, password: str, backend_args: list[str]) -> None:
    binary = ferretdb_binary(load_settings())
    (work / name).mkdir()
    process.start(
        work,
        name,
        [
            str(binary),
            *backend_args,
            f"--state-dir={work / name}",
            f"--listen-addr=127.0.0.1:{port}",
            f"--debug-addr=127.0.0.1:{port + 1}",
            "--telemetry=disable",
            "--log-level=WARN",
            "--test-enable-new-auth",
            "--setup-database=bench",
        ],
        {**os.environ, "FERRETDB_SETUP_USERNAME": USER, "FERRETDB_SETUP_PASSWORD": password},
    )
    wait_port(port)


def documents(n: int, t0: datetime) -> list[dict]:
    return [
        {
            "_id": f"o-{i}",
            "order_id": f"o-{i}",
            "product_id": (i * 7919) % 20000,
            "seller_id": i % 500,
            "warehouse_id": i % 20,
            "city_id": i % 27,
            "order_qty": 1 + i % 3,
            "order_value": 10.0 + (i % 97),
            "order_ts": t0 + timedelta(milliseconds=60 * i),
        }
        for i in range(n)
    ]


def measure(port: int, password: str, docs: list[dict], batch: int) -> dict:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://{USER}:{password}@127.0.0.1:{port}/bench?authMechanism=SCRAM-SHA-256",
        tz_aware=True,
        serverSelectionTimeoutMS=10000,
    )
    coll = client.bench.orders_fact
    coll.drop()
    coll.create_index("order_ts")
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        coll.insert_many(docs[i : i + batch], ordered=False)
    insert_s = time.perf_counter() - start
    # the KPI job's read: the last 15 simulated minutes on the indexed timestamp
    end_ts = docs[-1]["order_ts"]
    start = time.perf_counter()
    n = sum(1 for _ in coll.find({"order_ts": {"$gt": end_ts - timedelta(minutes=15)}}, batch_size=10000))
    read_s = time.perf_counter() - start
    client.close()
    return {"docs_per_s": len(docs) / insert_s, "window_rows": n, "window_read_s": read_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    password = secrets.token_urlsafe(16)
    docs = documents(args.docs, datetime(2026, 11, 11, tzinfo=UTC))
    work = Path(tempfile.mkdtemp(prefix="fsr-backend-"))
    os.chmod(work, 0o755)
    ports = {"postgres": 25433, "sqlite": 27517, "postgresql": 27519}
    results: dict[str, list[dict]] = {"sqlite": [], "postgresql": []}
    try:
        start_postgres(work, ports["postgres"], password)
        start_ferretdb(
            work,
            "ferretdb-sqlite",
            ports["sqlite"],
            password,
            ["--handler=sqlite", f"--sqlite-url=file:{work / 'ferretdb-sqlite'}/"],
        )
        start_ferretdb(
            work,
            "ferretdb-pg",
            ports["postgresql"],
            password,
            [
                "--handler=postgresql",
                f"--postgresql-url=postgres://{USER}:{password}@127.0.0.1:{ports['postgres']}/ferretdb",
            ],
        )
        for r in range(args.rounds):  # alternate, so drift on a noisy machine hits both
            for backend in ("sqlite", "postgresql") if r % 2 == 0 else ("postgresql", "sqlite"):
                results[backend].append(measure(ports[backend], password, docs, args.batch))
                print(f"round {r + 1} {backend:<10} {results[backend][-1]['docs_per_s']:>9,.0f} docs/s")
    finally:
        for name in ("ferretdb-sqlite", "ferretdb-pg", "postgres"):
            process.stop(work, name)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        b: {
            "docs_per_s_best": max(x["docs_per_s"] for x in rs),
            "docs_per_s_mean": sum(x["docs_per_s"] for x in rs) / len(rs),
            "window_read_s_best": min(x["window_read_s"] for x in rs),
            "window_rows": rs[0]["window_rows"],
        }
        for b, rs in results.items()
    }
    ratio = summary["sqlite"]["docs_per_s_best"] / summary["postgresql"]["docs_per_s_best"]
    report = {
        "bench": "hot_store_backend",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "docs": args.docs,
        "batch": args.batch,
        "rounds": args.rounds,
        "summary": summary,
        "sqlite_over_postgresql_insert_ratio": ratio,
        "rounds_detail": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hot_store_backend.json").write_text(json.dumps(report, indent=2))
    print(f"\n{'backend':<12}{'insert docs/s (best)':>22}{'15-min read s (best)':>22}")
    for b, x in summary.items():
        print(f"{b:<12}{x['docs_per_s_best']:>22,.0f}{x['window_read_s_best']:>22.3f}")
    print(f"SQLite / PostgreSQL insert throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
