"""Archival throughput: hot store -> verified HDFS partitions, against plain pyarrow writes of the same
rows to the same HDFS, in the same run.

    .venv/bin/python -m bench.bench_archive [--hours 2] [--per-bucket 8000] [--master yarn] [--out archive.json]

Needs the cluster stack (`flashsale stack up --profile cluster`). Uses its own database and its own
archive root, both removed afterwards. Writes bench/results/archive.json (or --out) and prints a table.
Baselines, same rows, same HDFS:
- ``pyarrow_write``: rows already in memory, one Parquet file per hour written with pyarrow (the floor
  the archive job's write cannot beat);
- ``read_and_write``: pymongo read of the hour's buckets + the same pyarrow write (what a plain script
  without verification or exactly-once bookkeeping would do).
The archive job is measured from spark-submit to exit (``archive_job``) and over its batch loop alone
(``archive_batches``: read, validate, write, verify, count, commit, drop; without planning, the
SparkSession/YARN start and stop), as the job reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flashsale import hot_layout
from flashsale.contracts import ORDERS_FACT, arrow_schema, to_document
from flashsale.settings import load_settings
from flashsale.stores import hdfs_client, hdfs_filesystem, mongo_client

RESULTS = Path(__file__).parent / "results"
T0 = datetime(2026, 11, 11, tzinfo=UTC)


def orders(hours: int, per_bucket: int) -> pa.Table:
    rows = []
    for b in range(hours * 12):
        for i in range(per_bucket):
            rows.append(
                {
                    "order_id": f"o-{b}-{i}",
                    "product_id": (i * 7919) % 20000,
                    "seller_id": i % 500,
                    "warehouse_id": i % 20,
                    "city_id": i % 27,
                    "order_qty": 1 + i % 3,
                    "order_value": 10.0 + i % 97,
                    "order_ts": T0 + timedelta(minutes=5 * b, seconds=(i * 7) % 300),
                }
            )
    return pa.Table.from_pylist(rows, schema=arrow_schema(ORDERS_FACT))


def load(s, table: pa.Table) -> None:
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        for bucket, part in hot_layout.split_by_bucket(ORDERS_FACT, table, s.hot_bucket_minutes).items():
            docs = [to_document(ORDERS_FACT, r) for r in part.to_pylist()]
            for i in range(0, len(docs), 2000):
                db[bucket].insert_many(docs[i : i + 2000], ordered=False)


def plain_write(s, table: pa.Table, root: str) -> float:
    fs = hdfs_filesystem(s)
    start = time.perf_counter()
    hours = sorted({ts.replace(minute=0, second=0) for ts in table["order_ts"].to_pylist()})
    for h in hours:
        import pyarrow.compute as pc

        part = table.filter(
            pc.equal(pc.floor_temporal(table["order_ts"], unit="hour"), pa.scalar(h, table["order_ts"].type))
        )
        pq.write_table(part, f"{root}/orders_fact/date={h:%Y-%m-%d}/hour={h:%H}/part-0.parquet", filesystem=fs)
    return time.perf_counter() - start


def read_and_write(s, root: str) -> float:
    fs = hdfs_filesystem(s)
    start = time.perf_counter()
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        by_hour: dict[datetime, list[str]] = {}
        for t, name in hot_layout.existing_buckets(ORDERS_FACT, db.list_collection_names()):
            by_hour.setdefault(t.replace(minute=0), []).append(name)
        for h, names in sorted(by_hour.items()):
            docs = [d for n in names for d in db[n].find({}, {"_id": 0})]
            part = pa.Table.from_pylist(docs, schema=arrow_schema(ORDERS_FACT))
            pq.write_table(part, f"{root}/orders_fact/date={h:%Y-%m-%d}/hour={h:%H}/part-0.parquet", filesystem=fs)
    return time.perf_counter() - start


def main() -> None:
    from cluster.spark_apps import run_archive

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--per-bucket", type=int, default=8000)
    ap.add_argument("--master", default="yarn")
    ap.add_argument("--out", default="archive.json", help="file name under bench/results/")
    a = ap.parse_args()
    stack = load_settings(profile="cluster")
    tag = uuid.uuid4().hex[:8]
    base = f"/flashsale/bench-archive-{tag}"
    s = load_settings(
        profile="cluster",
        mongo_db=f"flashsale_bench_archive_{tag}",
        mongo_auth_source=stack.mongo_db,
        archive_root=f"{stack.hdfs_url}{base}/job",
    )
    table = orders(a.hours, a.per_bucket)
    n = table.num_rows
    result: dict = {
        "bench": "archive",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": n,
        "hours": a.hours,
        "master": a.master,
    }
    try:
        t_plain = plain_write(s, table, f"{stack.hdfs_url}{base}/plain")
        load(s, table)
        t_read_write = read_and_write(s, f"{stack.hdfs_url}{base}/readwrite")
        now = (T0 + timedelta(hours=a.hours + 1)).isoformat()
        start = time.perf_counter()
        job = run_archive(s, master=a.master, now=now, force=True)
        t_job = time.perf_counter() - start
        archived = sum(b["rows"] for b in job["batches"])
        assert archived == n, f"archived {archived} of {n}"
        t_batches = job["seconds"]["batches"]
        result.update(
            {
                "seconds": {
                    "pyarrow_write": t_plain,
                    "read_and_write": t_read_write,
                    "archive_job": t_job,
                    "archive_batches": t_batches,
                },
                "records_per_s": {
                    "pyarrow_write": n / t_plain,
                    "read_and_write": n / t_read_write,
                    "archive_job": n / t_job,
                    "archive_batches": n / t_batches,
                },
                "job_seconds": job["seconds"],
                "archive_job_vs_pyarrow_write": t_plain / t_job,
                "archive_job_vs_read_and_write": t_read_write / t_job,
                "archive_batches_vs_pyarrow_write": t_plain / t_batches,
                "archive_batches_vs_read_and_write": t_read_write / t_batches,
                "batches": job["batches"],
            }
        )
    finally:
        hdfs_client(s).delete(base, recursive=True)
        with mongo_client(s) as client:
            client.drop_database(s.mongo_db)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / a.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"{n:,} orders, {a.hours} hours, archive job on {a.master}")
    for k, v in result["records_per_s"].items():
        print(f"  {k:<16} {v:>10,.0f} records/s  ({result['seconds'][k]:.1f} s)")
    print(
        f"  archive job / plain pyarrow write: {result['archive_job_vs_pyarrow_write']:.2f}x the throughput; "
        f"/ read+write: {result['archive_job_vs_read_and_write']:.2f}x"
    )
    print(
        f"  batch loop alone / plain pyarrow write: {result['archive_batches_vs_pyarrow_write']:.2f}x; "
        f"/ read+write: {result['archive_batches_vs_read_and_write']:.2f}x"
    )


if __name__ == "__main__":
    main()
