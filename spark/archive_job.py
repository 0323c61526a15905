"""Archive cold hours of the hot store to Parquet (HDFS or a local directory), exactly once.

    spark-submit ... spark/archive_job.py [--now ISO] [--max-batches N] [--force]
                     [--mongo-db DB] [--archive-root URL] [--crash-at STEP]

Executors read the hot-store buckets of an hour themselves (mapInArrow over bucket names, pymongo
inside), so on YARN the Parquet is written from the NodeManager/DataNode hosts. Malformed documents
go to <root>/quarantine/ with their reason, never silently dropped: source = archived + quarantined.
The write/verify/commit/delete protocol is in spark/archive_plan.py. ``--crash-at STEP`` (or
FLASHSALE_ARCHIVE_CRASH_AT) kills the driver right after STEP, for crash-injection tests. The last
stdout line is ``ARCHIVE_RESULT {json}``; every log line carries the batch id (lineage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone

from spark.job_args import add_settings_args, settings_from_args

UTC = timezone.utc
RESULT_PREFIX = "ARCHIVE_RESULT "
REASON, RAW = "_quarantine_reason", "_raw"


def parse_args(argv):
    ap = argparse.ArgumentParser("archive_job")
    ap.add_argument("--now", default=None, help="data clock (ISO UTC); default: end of the newest hot bucket")
    ap.add_argument("--max-batches", type=int, default=0, help="0 = all eligible hours")
    ap.add_argument("--force", action="store_true", help="archive eligible hours even below the thresholds")
    add_settings_args(ap)  # --profile, --mongo-db, --archive-root, ... (spark/job_args.py)
    ap.add_argument("--crash-at", default=os.environ.get("FLASHSALE_ARCHIVE_CRASH_AT"))
    return ap.parse_args(argv)


def log(batch_id: str, msg: str) -> None:
    print(f"[archive batch={batch_id}] {msg}", flush=True)


def crash_if(step: str, wanted: str | None, batch_id: str) -> None:
    if wanted == step:
        log(batch_id, f"crash injected after step {step}")
        os._exit(17)  # no cleanup, like a kill -9


def read_buckets_udf(mongo_url: str, db_name: str, fact: str):
    """mapInArrow function: bucket names in, contract rows (+ quarantined raw docs) out."""

    def run(batches):
        import pyarrow as pa
        import pymongo
        from bson import json_util

        from flashsale.contracts import CONTRACTS, ContractError, arrow_schema, validate

        contract = CONTRACTS[fact]
        schema = out_schema(arrow_schema(contract))
        client = pymongo.MongoClient(mongo_url, tz_aware=True)
        try:
            for names in batches:
                for name in names.column(0).to_pylist():
                    good, bad = [], []
                    for doc in client[db_name][name].find({}, batch_size=20_000):
                        try:
                            validate(contract, doc)
                            good.append({k: doc[k] for k in contract.column_names})
                        except ContractError as exc:
                            bad.append({RAW: json_util.dumps(doc), REASON: str(exc)})
                    rows = [{**g, REASON: None, RAW: None} for g in good] + [{**b} for b in bad]
                    if rows:
                        yield pa.RecordBatch.from_pylist(rows, schema=schema)
        finally:
            client.close()

    return run


def out_schema(contract_schema):
    import pyarrow as pa

    nullable = [pa.field(f.name, _spark_arrow_type(f.type), nullable=True) for f in contract_schema]
    return pa.schema(nullable + [pa.field(REASON, pa.string()), pa.field(RAW, pa.string())])


def checksum(df, columns) -> tuple[int, str]:
    """Row count and an order-independent content checksum (sum of per-row xxhash64, exact)."""
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.sum(F.xxhash64(*[F.col(c) for c in columns]).cast("decimal(38,0)")).alias("h")).first()
    return int(row["n"]), str(row["h"] or 0)


def archive_batch(spark, s, batch, fs, crash_at) -> dict:
    from pyspark.sql import functions as F

    from flashsale.contracts import CONTRACTS, arrow_schema
    from spark.archive_plan import Manifest, manifest_path

    contract = CONTRACTS[batch.fact]
    cols = contract.column_names
    bid = batch.batch_id
    mpath = manifest_path(s.archive_root, bid)
    if fs.exists(mpath):
        log(bid, "already committed: only dropping what is left in the hot store")
        return {"batch_id": bid, "rows": json.loads(fs.cat_file(mpath))["rows"], "resumed": True}

    t0 = time.monotonic()
    names = spark.createDataFrame([(b,) for b in batch.buckets], "bucket string").repartition(max(1, min(len(batch.buckets), 4)))
    raw = names.mapInArrow(read_buckets_udf(s.mongo_url, s.mongo_db, batch.fact), _spark_schema(out_schema(arrow_schema(contract)))).cache()
    good = raw.where(F.col(REASON).isNull()).select(*cols)
    bad = raw.where(F.col(REASON).isNotNull()).select(RAW, REASON)
    src_rows, src_sum = checksum(good, cols)
    n_bad = bad.count()
    files = max(1, src_rows // 2_000_000)  # compact: an hour is a few files, never one per bucket
    good.coalesce(files).write.mode("overwrite").parquet(batch.partition(s.archive_root))
    if n_bad:
        bad.coalesce(1).write.mode("overwrite").parquet(batch.quarantine_partition(s.archive_root))
    log(bid, f"wrote {src_rows} rows ({n_bad} quarantined) to {batch.partition(s.archive_root)}")
    crash_if("write", crash_at, bid)

    back = spark.read.schema(_spark_schema(arrow_schema(contract))).parquet(batch.partition(s.archive_root))
    dst_rows, dst_sum = checksum(back, cols)
    if (dst_rows, dst_sum) != (src_rows, src_sum):
        raise RuntimeError(f"batch {bid}: verification failed: source {src_rows}/{src_sum} != archive {dst_rows}/{dst_sum}")
    log(bid, f"verified {dst_rows} rows, checksum {dst_sum}")
    crash_if("verify", crash_at, bid)

    written = [f for f in fs.ls(batch.partition(s.archive_root), detail=False) if f.endswith(".parquet")]
    manifest = Manifest(bid, batch.fact, batch.hour.isoformat(), list(batch.buckets), src_rows, n_bad, src_sum,
                        sorted(written), _bucket_counts(s, batch), datetime.now(UTC).isoformat(timespec="seconds"))
    if sum(manifest.bucket_counts.values()) != src_rows + n_bad:
        raise RuntimeError(f"batch {bid}: the hot store changed while archiving; will retry next run")
    fs.makedirs(mpath.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(mpath + ".tmp", json.dumps(manifest.to_json(), indent=1).encode())
    fs.mv(mpath + ".tmp", mpath)
    log(bid, f"committed {mpath}")
    crash_if("commit", crash_at, bid)
    raw.unpersist()
    return {"batch_id": bid, "rows": src_rows, "quarantined": n_bad, "seconds": round(time.monotonic() - t0, 2)}


def _bucket_counts(s, batch) -> dict[str, int]:
    from flashsale.stores import mongo_client

    with mongo_client(s) as client:
        db = client[s.mongo_db]
        return {b: db[b].count_documents({}) for b in batch.buckets}


def drop_committed(s, batch, fs, crash_at) -> int:
    """Step 4: drop each hot bucket whose count still equals the manifest's."""
    from flashsale.stores import mongo_client
    from spark.archive_plan import manifest_path

    manifest = json.loads(fs.cat_file(manifest_path(s.archive_root, batch.batch_id)))
    dropped = 0
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        present = set(db.list_collection_names())
        for i, bucket in enumerate(manifest["buckets"]):
            if bucket not in present:
                continue
            count = db[bucket].count_documents({})
            if count != manifest["bucket_counts"].get(bucket, -1):
                raise RuntimeError(f"batch {batch.batch_id}: {bucket} holds {count} documents, manifest says "
                                   f"{manifest['bucket_counts'].get(bucket)}: not dropping")
            db[bucket].drop()
            dropped += count
            if i == 0:
                crash_if("delete", crash_at, batch.batch_id)
    log(batch.batch_id, f"dropped {dropped} documents from the hot store")
    return dropped


def _spark_arrow_type(t):
    import pyarrow as pa

    # Spark's Arrow bridge takes microsecond timestamps only (MongoDB's are milliseconds: lossless)
    return pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(t) else t


def _spark_schema(arrow_schema):
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(pa.schema([pa.field(f.name, _spark_arrow_type(f.type), f.nullable) for f in arrow_schema]))


def archive_fs(root: str):
    import fsspec

    from flashsale.stores import hdfs_filesystem

    return hdfs_filesystem() if root.startswith("hdfs://") else fsspec.filesystem("file")


def hot_inventory(s):
    """(fact -> [(bucket start, name, count)]) for every fact bucket in the hot store."""
    from flashsale import hot_layout
    from flashsale.contracts import FACTS
    from flashsale.stores import mongo_client

    with mongo_client(s) as client:
        db = client[s.mongo_db]
        names = db.list_collection_names()
        return {c.name: [(t, n, db[n].estimated_document_count()) for t, n in hot_layout.existing_buckets(c, names)]
                for c in FACTS}


def main(argv=None) -> int:
    from datetime import timedelta

    from pyspark.sql import SparkSession

    from flashsale.contracts import CONTRACTS
    from spark.archive_plan import plan, should_archive

    a = parse_args(argv if argv is not None else sys.argv[1:])
    s = settings_from_args(a)
    inventory = hot_inventory(s)
    starts = [t for rows in inventory.values() for t, _, _ in rows]
    total = sum(c for rows in inventory.values() for _, _, c in rows)
    now = datetime.fromisoformat(a.now) if a.now else (max(starts) + timedelta(minutes=s.hot_bucket_minutes) if starts else datetime.now(UTC))
    go, why = should_archive(total, min(starts) if starts else None, now, s.archive_max_hot_records, s.archive_min_age_minutes)
    batches = [b for fact, rows in inventory.items() for b in plan(CONTRACTS[fact], rows, now, s.archive_min_age_minutes)]
    batches.sort(key=lambda b: (b.hour, b.fact))
    if a.max_batches:
        batches = batches[: a.max_batches]
    result = {"trigger": why, "now": now.isoformat(), "hot_records": total, "batches": []}
    if not (go or a.force) or not batches:
        print(RESULT_PREFIX + json.dumps({**result, "skipped": True}), flush=True)
        return 0
    crash_if("plan", a.crash_at, batches[0].batch_id)
    spark = SparkSession.builder.appName("flashsale-archive").getOrCreate()
    fs = archive_fs(s.archive_root)
    try:
        for batch in batches:
            log(batch.batch_id, f"start: {len(batch.buckets)} buckets, {batch.rows} hot records ({why})")
            done = archive_batch(spark, s, batch, fs, a.crash_at)
            done["dropped"] = drop_committed(s, batch, fs, a.crash_at)
            result["batches"].append(done)
    finally:
        spark.stop()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
