"""Archive cold hours of the hot store to Parquet (HDFS or a local directory), exactly once.

    spark-submit ... spark/archive_job.py [--now ISO] [--max-batches N] [--force]
                     [--mongo-db DB] [--archive-root URL] [--crash-at STEP]

Executors read the hot-store buckets of an hour themselves (mapInArrow over bucket names, pymongo
inside), so on YARN the Parquet is written from the NodeManager/DataNode hosts. Malformed documents
go to <root>/quarantine/ with their reason, never silently dropped: source = archived + quarantined.
The write/verify/commit/delete protocol is in flashsale/archive_layout.py. ``--crash-at STEP`` (or
FLASHSALE_ARCHIVE_CRASH_AT) kills the driver right after STEP, for crash-injection tests. The last
stdout line is ``ARCHIVE_RESULT {json}``; every log line carries the batch id (lineage).

Where a batch's time goes, and why it is spent once: the hot store is the bottleneck (FerretDB
decodes ~18k documents/s per query here, and counts by reading every document), so each document
is read once. The executors validate it column-wise (flashsale/contracts.validate_batch, not per
document) and the valid rows stream into the Parquet writer while an ``Observation`` computes the
source's row count and checksum on the same rows (no separate pass). The written files are then read
back and their count and checksum compared with the source's; meanwhile the driver counts each
bucket exactly, to catch documents that arrived during the read. Two Spark jobs per batch (three
when documents were quarantined), one read and one count of the hot store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta

from flashsale.job_args import ARCHIVE_RESULT_PREFIX as RESULT_PREFIX
from flashsale.job_args import add_settings_args, settings_from_args

REASON, RAW, BUCKET = "_quarantine_reason", "_raw", "_bucket"  # BUCKET: set on quarantined rows only


def parse_args(argv):
    ap = argparse.ArgumentParser("archive_job")
    ap.add_argument("--now", default=None, help="data clock (ISO UTC); default: end of the newest hot bucket")
    ap.add_argument("--max-batches", type=int, default=0, help="0 = all eligible hours")
    ap.add_argument("--force", action="store_true", help="archive eligible hours even below the thresholds")
    add_settings_args(ap)  # --profile, --mongo-db, --archive-root, ... (flashsale/job_args.py)
    ap.add_argument("--crash-at", default=os.environ.get("FLASHSALE_ARCHIVE_CRASH_AT"))
    return ap.parse_args(argv)


def log(batch_id: str, msg: str) -> None:
    print(f"[archive batch={batch_id}] {msg}", flush=True)


def crash_if(step: str, wanted: str | None, batch_id: str) -> None:
    if wanted == step:
        log(batch_id, f"crash injected after step {step}")
        os._exit(17)  # no cleanup, like a kill -9


ROWS_PER_FILE = 2_000_000  # compaction: an hour is a few files, never one per bucket
CHUNK = 20_000  # documents validated and handed to Spark at a time (bounds the executor's memory)


def read_buckets_udf(mongo_url: str, db_name: str, fact: str):
    """mapInArrow function: bucket names in, contract rows (+ quarantined raw docs) out."""

    def run(batches):
        from itertools import islice

        import pymongo

        from flashsale.contracts import CONTRACTS

        contract = CONTRACTS[fact]
        client = pymongo.MongoClient(mongo_url, tz_aware=True)
        try:
            for names in batches:
                for name in names.column(0).to_pylist():
                    cursor = client[db_name][name].find({}, batch_size=CHUNK)
                    while docs := list(islice(cursor, CHUNK)):
                        yield from arrow_rows(contract, docs, name)
        finally:
            client.close()

    return run


def arrow_rows(contract, docs: list[dict], bucket: str):
    """Whole hot-store documents as record batches of ``out_schema``: valid rows (reason null), then
    the rejected documents as extended JSON with their reason and bucket (contract columns null)."""
    import pyarrow as pa
    from bson import json_util

    from flashsale.contracts import arrow_schema, validate_batch

    schema = out_schema(arrow_schema(contract))
    fields = list(schema)[:-3]  # the contract columns (then REASON, RAW, BUCKET)
    checked = validate_batch(contract, docs, whole_documents=True)
    good, n = checked.valid, checked.valid.num_rows
    if n:
        yield pa.RecordBatch.from_arrays(
            [good.column(f.name).combine_chunks().cast(f.type) for f in fields] + [pa.nulls(n, pa.string())] * 3,
            schema=schema,
        )
    if checked.quarantined:
        k = checked.quarantined
        yield pa.RecordBatch.from_arrays(
            [pa.nulls(k, f.type) for f in fields]
            + [
                pa.array(checked.reasons, pa.string()),
                pa.array([json_util.dumps(docs[i]) for i in checked.rejected], pa.string()),
                pa.array([bucket] * k, pa.string()),
            ],
            schema=schema,
        )


def out_schema(contract_schema):
    import pyarrow as pa

    nullable = [pa.field(f.name, _spark_arrow_type(f.type), nullable=True) for f in contract_schema]
    return pa.schema(nullable + [pa.field(c, pa.string()) for c in (REASON, RAW, BUCKET)])


def hot_rows(spark, s, fact: str, buckets, partitions: int):
    """The buckets' documents as ``out_schema`` rows, read and validated by the executors (one task
    per partition, no shuffle)."""
    from flashsale.contracts import CONTRACTS, arrow_schema

    names = spark.createDataFrame(spark.sparkContext.parallelize([(b,) for b in buckets], partitions), "bucket string")
    return names.mapInArrow(
        read_buckets_udf(s.mongo_url, s.mongo_db, fact), _spark_schema(out_schema(arrow_schema(CONTRACTS[fact])))
    )


def row_hash(columns):
    """Per-row xxhash64 of the contract columns; summed as decimal(38,0), an exact, order-independent
    content checksum (the one definition both sides of the verification use)."""
    from pyspark.sql import functions as F

    return F.xxhash64(*[F.col(c) for c in columns]).cast("decimal(38,0)")


def checksum(df, columns) -> tuple[int, str]:
    """Row count and content checksum of a DataFrame (one job)."""
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(row_hash(columns)).alias("h")).first()
    return int(row["n"]), str(row["h"] or 0)


def write_and_verify(spark, s, batch, fs, crash_at, counter) -> dict:
    """Steps 1-2 of a batch (Spark: two jobs, three with quarantined documents). Starts the exact
    count of the hot buckets on ``counter`` once the read is done; ``commit_and_drop`` uses it."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from flashsale.archive_layout import manifest_path
    from flashsale.contracts import CONTRACTS, arrow_schema

    contract = CONTRACTS[batch.fact]
    cols = contract.column_names
    bid = batch.batch_id
    part = batch.partition(s.archive_root)
    if fs.exists(manifest_path(s.archive_root, bid)):
        log(bid, "already committed: only dropping what is left in the hot store")
        return {"resumed": True}

    t0 = time.monotonic()
    # One task per output file (the plan's estimate sizes the compaction). Not persisted: the Parquet
    # writer consumes the rows while the executor's Python worker reads the next ones from the store.
    raw = hot_rows(spark, s, batch.fact, batch.buckets, max(1, min(len(batch.buckets), batch.rows // ROWS_PER_FILE)))
    good = F.col(REASON).isNull()
    source = Observation(f"source-{bid}")  # computed on the rows as they stream into the writer
    (
        raw.observe(
            source,
            F.count_if(good).alias("rows"),
            F.count_if(~good).alias("quarantined"),
            F.sum(F.when(good, row_hash(cols))).alias("checksum"),
            F.collect_set(BUCKET).alias("buckets"),
        )
        .where(good)
        .select(*cols)
        .write.mode("overwrite")
        .parquet(part)
    )
    observed = source.get
    src_rows, n_bad, src_sum = int(observed["rows"]), int(observed["quarantined"]), str(observed["checksum"] or 0)
    if n_bad:  # rare: read again only the buckets holding them rather than keep the hour in memory
        quarantine = Observation(f"quarantine-{bid}")
        (
            hot_rows(spark, s, batch.fact, sorted(observed["buckets"]), 1)
            .where(~good)
            .observe(quarantine, F.count(F.lit(1)).alias("n"))
            .select(RAW, REASON)
            .write.mode("overwrite")
            .parquet(batch.quarantine_partition(s.archive_root))
        )
        if quarantine.get["n"] != n_bad:
            raise RuntimeError(
                f"batch {bid}: the hot store changed while archiving ({quarantine.get['n']} "
                f"quarantined documents, {n_bad} before); will retry next run"
            )
    t_write = time.monotonic()
    log(bid, f"wrote {src_rows} rows ({n_bad} quarantined) to {part} in {t_write - t0:.1f} s")
    crash_if("write", crash_at, bid)

    # Counting only needs the read to be done: it runs while Spark reads the files back (and while
    # the next batch is read: FerretDB serves each query on one core).
    counting = counter.submit(exact_counts, s, batch.buckets)
    back = spark.read.schema(_spark_schema(arrow_schema(contract))).parquet(part)
    dst_rows, dst_sum = checksum(back, cols)
    if (dst_rows, dst_sum) != (src_rows, src_sum):
        raise RuntimeError(
            f"batch {bid}: verification failed: source {src_rows}/{src_sum} != archive {dst_rows}/{dst_sum}"
        )
    t_verify = time.monotonic()
    log(bid, f"verified {dst_rows} rows, checksum {dst_sum} in {t_verify - t_write:.1f} s")
    crash_if("verify", crash_at, bid)
    return {
        "rows": src_rows,
        "quarantined": n_bad,
        "checksum": src_sum,
        "counting": counting,
        "started": t0,
        "steps_s": {"read_validate_write": round(t_write - t0, 2), "verify": round(t_verify - t_write, 2)},
    }


def commit_and_drop(s, batch, fs, crash_at, done: dict) -> dict:
    """Steps 3-4: once the buckets' exact counts still add up to what was read, write the manifest,
    then drop the buckets."""
    from flashsale.archive_layout import Manifest, manifest_path

    bid = batch.batch_id
    if done.get("resumed"):
        mpath = manifest_path(s.archive_root, bid)
        return {
            "batch_id": bid,
            "rows": json.loads(fs.cat_file(mpath))["rows"],
            "resumed": True,
            "dropped": drop_committed(s, batch, fs, crash_at),
        }
    t0 = time.monotonic()
    counts = done["counting"].result()
    t_counted = time.monotonic()
    read = done["rows"] + done["quarantined"]
    if sum(counts.values()) != read:
        raise RuntimeError(
            f"batch {bid}: the hot store changed while archiving ({sum(counts.values())} documents, "
            f"{read} read); will retry next run"
        )
    part, mpath = batch.partition(s.archive_root), manifest_path(s.archive_root, bid)
    written = [f for f in fs.ls(part, detail=False) if f.endswith(".parquet")]
    manifest = Manifest(
        bid,
        batch.fact,
        batch.hour.isoformat(),
        list(batch.buckets),
        done["rows"],
        done["quarantined"],
        done["checksum"],
        sorted(written),
        counts,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )
    fs.makedirs(mpath.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(mpath + ".tmp", json.dumps(manifest.to_json(), indent=1).encode())
    fs.mv(mpath + ".tmp", mpath)
    t_commit = time.monotonic()
    log(bid, f"committed {mpath}")
    crash_if("commit", crash_at, bid)
    dropped = drop_committed(s, batch, fs, crash_at, counted=counts)
    t_drop = time.monotonic()
    return {
        "batch_id": bid,
        "rows": done["rows"],
        "quarantined": done["quarantined"],
        "dropped": dropped,
        "seconds": round(t_drop - done["started"], 2),
        "steps_s": {
            **done["steps_s"],
            "wait_for_count": round(t_counted - t0, 2),
            "commit": round(t_commit - t_counted, 2),
            "drop": round(t_drop - t_commit, 2),
        },
    }


def exact_counts(s, buckets) -> dict[str, int]:
    """Exact document count of each bucket (two at a time: FerretDB counts one query per core).

    The ``count`` command with a predicate: exact on MongoDB (without one it answers from metadata,
    which an unclean shutdown can leave stale), and on FerretDB one pass over the documents, where
    pymongo's ``count_documents`` runs an aggregation that takes ~1.7x as long."""
    from concurrent.futures import ThreadPoolExecutor

    from flashsale.stores import mongo_client

    with mongo_client(s) as client, ThreadPoolExecutor(2) as pool:
        db = client[s.mongo_db]
        count = lambda b: int(db.command("count", b, query={"_id": {"$exists": True}})["n"])  # noqa: E731
        return dict(zip(buckets, pool.map(count, buckets)))


def drop_committed(s, batch, fs, crash_at, counted: dict[str, int] | None = None) -> int:
    """Step 4: drop each hot bucket whose count still equals the manifest's.

    ``counted``: the exact counts this run took once the read was done, just before the commit
    (they are the manifest's); a resumed run (crash after the commit) recounts each bucket."""
    from flashsale.archive_layout import manifest_path
    from flashsale.stores import mongo_client

    manifest = json.loads(fs.cat_file(manifest_path(s.archive_root, batch.batch_id)))
    dropped = 0
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        present = set(db.list_collection_names())
        for i, bucket in enumerate(manifest["buckets"]):
            if bucket not in present:
                continue
            count = counted[bucket] if counted is not None else exact_counts(s, [bucket])[bucket]
            if count == 0:  # dropped earlier, then re-created empty (by an index build): nothing to keep
                db[bucket].drop()
                continue
            if count != manifest["bucket_counts"].get(bucket, -1):
                raise RuntimeError(
                    f"batch {batch.batch_id}: {bucket} holds {count} documents, manifest says "
                    f"{manifest['bucket_counts'].get(bucket)}: not dropping (records written into "
                    "an hour after it was archived stay in the hot store; see README.md, Known limits)"
                )
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
        return {
            c.name: [(t, n, estimated_count(db, n)) for t, n in hot_layout.existing_buckets(c, names)] for c in FACTS
        }


def estimated_count(db, collection: str) -> int:
    """A bucket's document count from its statistics (summed over shards). Planning needs only an
    estimate (the trigger threshold, the files per hour), and FerretDB answers
    ``estimated_document_count`` by reading every document (~5 s per 100k): the whole hot store on
    every run of the archival DAG."""
    from pymongo.errors import OperationFailure

    try:
        return sum(int(d.get("count", 0)) for d in db[collection].aggregate([{"$collStats": {"count": {}}}]))
    except OperationFailure as exc:
        if exc.code == 26:  # NamespaceNotFound: dropped since it was listed
            return 0
        raise


def archive_now(s, bucket_starts: list[datetime], wall_now: datetime | None = None) -> datetime:
    """The archiver's "now": the end of the newest hot bucket, but never past the run's clock
    (Settings.data_clock_limit): one record stamped a day ahead (a pre-created bucket) must not make
    hours still inside the KPI window look old enough to archive."""
    wall_now = wall_now or datetime.now(UTC)
    if not bucket_starts:
        return wall_now
    newest_end = max(bucket_starts) + timedelta(minutes=s.hot_bucket_minutes)
    limit = s.data_clock_limit(wall_now)
    return newest_end if limit is None else min(newest_end, limit)


def main(argv=None) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.sql import SparkSession

    from flashsale.archive_layout import plan, should_archive
    from flashsale.contracts import CONTRACTS

    a = parse_args(argv if argv is not None else sys.argv[1:])
    s = settings_from_args(a)
    t0 = time.monotonic()
    inventory = hot_inventory(s)
    starts = [t for rows in inventory.values() for t, _, _ in rows]
    total = sum(c for rows in inventory.values() for _, _, c in rows)
    now = datetime.fromisoformat(a.now) if a.now else archive_now(s, starts)
    go, why = should_archive(
        total, min(starts) if starts else None, now, s.archive_max_hot_records, s.archive_min_age_minutes
    )
    batches = [
        b for fact, rows in inventory.items() for b in plan(CONTRACTS[fact], rows, now, s.archive_min_age_minutes)
    ]
    batches.sort(key=lambda b: (b.hour, b.fact))
    if a.max_batches:
        batches = batches[: a.max_batches]
    result = {
        "trigger": why,
        "now": now.isoformat(),
        "hot_records": total,
        "batches": [],
        "seconds": {"plan": round(time.monotonic() - t0, 2)},
    }
    if not (go or a.force) or not batches:
        print(RESULT_PREFIX + json.dumps({**result, "skipped": True}), flush=True)
        return 0
    crash_if("plan", a.crash_at, batches[0].batch_id)
    t1 = time.monotonic()
    spark = SparkSession.builder.appName("flashsale-archive").getOrCreate()
    assert s.archive_root is not None  # Settings fills archive_root from the profile
    fs = archive_fs(s.archive_root)
    t2 = time.monotonic()
    # Batch N is committed and dropped (after its exact count) on ``finisher`` while Spark writes
    # batch N+1; a batch's own steps stay in protocol order.
    try:
        with ThreadPoolExecutor(1) as counter, ThreadPoolExecutor(1) as finisher:
            finishing = None
            for batch in batches:
                log(batch.batch_id, f"start: {len(batch.buckets)} buckets, {batch.rows} hot records ({why})")
                done = write_and_verify(spark, s, batch, fs, a.crash_at, counter)
                if finishing is not None:
                    result["batches"].append(finishing.result())
                finishing = finisher.submit(commit_and_drop, s, batch, fs, a.crash_at, done)
            assert finishing is not None  # batches is not empty (checked above)
            result["batches"].append(finishing.result())
        result["seconds"].update(spark_start=round(t2 - t1, 2), batches=round(time.monotonic() - t2, 2))
    finally:
        spark.stop()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
