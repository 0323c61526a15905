"""Archive cold hours of the hot store to Parquet (HDFS or a local directory), exactly once.

    spark-submit ... spark/archive_job.py [--now ISO] [--max-batches N] [--force]
                     [--mongo-db DB] [--archive-root URL] [--crash-at STEP]

Executors read the hot-store buckets of an hour themselves (mapInArrow over bucket names, pymongo
inside), so on YARN the Parquet is written from the NodeManager/DataNode hosts. Malformed documents
go to <root>/quarantine/ with their reason, never silently dropped: source = archived + quarantined.
The seal/write/verify/commit/delete protocol, and the supplement that archives late records of a
committed hour (anti-join by id), are in flashsale/archive_layout.py. ``--crash-at STEP`` (or
FLASHSALE_ARCHIVE_CRASH_AT) kills the driver right after STEP, for crash-injection tests;
FLASHSALE_ARCHIVE_PAUSE_AT=STEP:PATH pauses it there (``pause_if``). The last stdout line is
``ARCHIVE_RESULT {json}``; every log line carries the batch id (lineage).

Where a batch's time goes, and why it is spent once: the hot store is the bottleneck (FerretDB
decodes ~18k documents/s per query here, and counts by reading every document), so each document
is read once. The executors validate it column-wise (flashsale/contracts.validate_batch, not per
document) and the valid rows stream into the Parquet writer while an ``Observation`` computes the
source's row count, content checksum and id checksum on the same rows (no separate pass). The
written files are then read back and their count, distinct ids and checksums compared with the
source's; meanwhile the driver counts each sealed bucket exactly (a sealed bucket cannot change: a
mismatch is a server fault). Two Spark jobs per batch (three when documents were quarantined), one
read and one count of the hot store. A renamed (sealed) bucket is what makes the drop safe: a late
write lands in a fresh bucket, never in what is being dropped.
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


def pause_if(step: str, batch_id: str) -> None:
    """Test hook: with FLASHSALE_ARCHIVE_PAUSE_AT=STEP:PATH the driver, right after STEP, creates
    PATH.reached and waits (at most 10 min) for PATH.go, so a test can write into the hot store there."""
    want, _, path = os.environ.get("FLASHSALE_ARCHIVE_PAUSE_AT", "").partition(":")
    if want != step or not path:
        return
    log(batch_id, f"paused after step {step} until {path}.go exists")
    open(path + ".reached", "w").close()
    deadline = time.monotonic() + 600
    while not os.path.exists(path + ".go") and time.monotonic() < deadline:
        time.sleep(0.2)


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


def seal(s, batch, crash_at) -> list[str]:
    """Step "seal": rename each live bucket of the hour to its sealed name (where that name is free), so
    that a late write lands in a fresh bucket with the original name instead of in what this batch
    reads and then drops; return the hour's sealed buckets (this run's and any a crash left)."""
    from pymongo.errors import OperationFailure

    from flashsale import hot_layout
    from flashsale.archive_layout import seal_renames
    from flashsale.contracts import CONTRACTS
    from flashsale.stores import mongo_client

    contract, bid = CONTRACTS[batch.fact], batch.batch_id
    renamed = []
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        names = db.list_collection_names()
        live = [n for t, n in hot_layout.existing_buckets(contract, names) if t.replace(minute=0) == batch.hour]
        for bucket, to in seal_renames(live, names):
            try:
                db[bucket].rename(to)  # renameCollection: FerretDB >= 1.10 (we build 1.24), MongoDB
            except OperationFailure as exc:
                if exc.code not in (26, 48):  # NamespaceNotFound (gone since listed), NamespaceExists
                    raise
                continue
            renamed.append(bucket)
            if len(renamed) == 1:
                crash_if("seal", crash_at, bid)  # after the first rename: a partly sealed hour
        names = db.list_collection_names()
    sealed = [n for t, n in hot_layout.existing_sealed(contract, names) if t.replace(minute=0) == batch.hour]
    log(bid, f"sealed {len(renamed)} buckets; {len(sealed)} sealed buckets to archive")
    if not renamed:
        crash_if("seal", crash_at, bid)
    return sealed


def id_hash(key: str):
    from pyspark.sql import functions as F

    return F.xxhash64(F.col(key)).cast("decimal(38,0)")


def write_and_verify(spark, s, batch, sealed, fs, crash_at, counter) -> dict:
    """Steps 1-2 of a batch whose hour is not committed yet (Spark: two jobs, three with quarantined
    documents), from the hour's sealed buckets. Starts the exact count of the sealed buckets on
    ``counter`` once the read is done; ``commit_and_drop`` checks it."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from flashsale.contracts import CONTRACTS, arrow_schema

    contract = CONTRACTS[batch.fact]
    cols, key = contract.column_names, contract.key
    bid = batch.batch_id
    part = batch.partition(s.archive_root)
    t0 = time.monotonic()
    # One task per output file (the plan's estimate sizes the compaction). Not persisted: the Parquet
    # writer consumes the rows while the executor's Python worker reads the next ones from the store.
    raw = hot_rows(spark, s, batch.fact, sealed, max(1, min(len(sealed), batch.rows // ROWS_PER_FILE)))
    good = F.col(REASON).isNull()
    source = Observation(f"source-{bid}")  # computed on the rows as they stream into the writer
    (
        raw.observe(
            source,
            F.count_if(good).alias("rows"),
            F.count_if(~good).alias("quarantined"),
            F.sum(F.when(good, row_hash(cols))).alias("checksum"),
            F.sum(F.when(good, id_hash(key))).alias("ids"),
            F.collect_set(BUCKET).alias("buckets"),
        )
        .where(good)
        .select(*cols)
        .write.mode("overwrite")
        .parquet(part)
    )
    observed = source.get
    src_rows, n_bad = int(observed["rows"]), int(observed["quarantined"])
    src_sum, src_ids = str(observed["checksum"] or 0), str(observed["ids"] or 0)
    qpart = batch.quarantine_partition(s.archive_root)
    if n_bad:  # rare: read again only the buckets holding them rather than keep the hour in memory
        quarantine = Observation(f"quarantine-{bid}")
        (
            hot_rows(spark, s, batch.fact, sorted(observed["buckets"]), 1)
            .where(~good)
            .observe(quarantine, F.count(F.lit(1)).alias("n"))
            .select(RAW, REASON)
            .write.mode("overwrite")
            .parquet(qpart)
        )
        if quarantine.get["n"] != n_bad:  # sealed buckets do not change: a server fault
            raise RuntimeError(f"batch {bid}: {quarantine.get['n']} quarantined documents on re-read, {n_bad} before")
    t_write = time.monotonic()
    log(bid, f"wrote {src_rows} rows ({n_bad} quarantined) to {part} in {t_write - t0:.1f} s")
    crash_if("write", crash_at, bid)

    # Counting only needs the read to be done: it runs while Spark reads the files back (and while
    # the next batch is read: FerretDB serves each query on one core).
    counting = counter.submit(exact_counts, s, sealed)
    back = spark.read.schema(_spark_schema(arrow_schema(contract))).parquet(part)
    row = back.agg(
        F.count(F.lit(1)).alias("n"),
        F.count_distinct(F.col(key)).alias("distinct"),
        F.sum(row_hash(cols)).alias("h"),
        F.sum(id_hash(key)).alias("ids"),
    ).first()
    dst = (int(row["n"]), int(row["distinct"]), str(row["h"] or 0), str(row["ids"] or 0))
    if dst != (src_rows, src_rows, src_sum, src_ids):
        raise RuntimeError(
            f"batch {bid}: verification failed: source rows/distinct ids/checksum/id checksum "
            f"{src_rows}/{src_rows}/{src_sum}/{src_ids} != archive {'/'.join(map(str, dst))}"
        )
    t_verify = time.monotonic()
    log(bid, f"verified {dst[0]} rows, {dst[1]} distinct ids, checksum {dst[2]} in {t_verify - t_write:.1f} s")
    crash_if("verify", crash_at, bid)
    pause_if("verify", bid)
    return {
        "rows": src_rows,
        "quarantined": n_bad,
        "checksum": src_sum,
        "counting": counting,
        "started": t0,
        "steps_s": {"read_validate_write": round(t_write - t0, 2), "verify": round(t_verify - t_write, 2)},
    }


def commit_and_drop(s, batch, sealed, fs, crash_at, done: dict) -> dict:
    """Steps 3-4: once the sealed buckets' exact counts add up to what was read (they cannot change:
    nothing writes to a sealed name), write the manifest, then drop the sealed buckets."""
    from flashsale.archive_layout import Manifest, manifest_path
    from flashsale.hot_layout import unsealed_name

    bid = batch.batch_id
    t0 = time.monotonic()
    counts = done["counting"].result()
    t_counted = time.monotonic()
    read = done["rows"] + done["quarantined"]
    if sum(counts.values()) != read:
        raise RuntimeError(
            f"batch {bid}: the sealed buckets hold {sum(counts.values())} documents, {read} were read; "
            "will retry next run"
        )
    part, mpath = batch.partition(s.archive_root), manifest_path(s.archive_root, bid)
    written = [f for f in fs.ls(part, detail=False) if f.endswith(".parquet")]
    qpart = batch.quarantine_partition(s.archive_root)
    qfiles = [f for f in fs.ls(qpart, detail=False) if f.endswith(".parquet")] if done["quarantined"] else []
    manifest = Manifest(
        bid,
        batch.fact,
        batch.hour.isoformat(),
        [unsealed_name(b) for b in sealed],
        done["rows"],
        done["quarantined"],
        done["checksum"],
        sorted(written),
        {unsealed_name(b): n for b, n in counts.items()},
        datetime.now(UTC).isoformat(timespec="seconds"),
        sorted(qfiles),
    )
    commit_manifest(fs, mpath, manifest)
    t_commit = time.monotonic()
    log(bid, f"committed {mpath}")
    crash_if("commit", crash_at, bid)
    dropped = drop_sealed(s, batch, sealed, crash_at, counts)
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


def commit_manifest(fs, mpath: str, manifest) -> None:
    fs.makedirs(mpath.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(mpath + ".tmp", json.dumps(manifest.to_json(), indent=1).encode())
    fs.mv(mpath + ".tmp", mpath)


def supplement(spark, s, batch, sealed, fs, crash_at) -> dict:
    """Steps 1-4 for an hour that is already committed: its sealed buckets hold late records (or, after
    a crash past the commit, records already archived). Only ids in neither the partition nor its
    quarantine are appended (anti-join by id); then every sealed id must be found there and the
    partition must hold each id once; the files no manifest names are recorded in a supplement
    manifest; the sealed buckets are dropped. The rows are cached: late records are few (and a
    resumed hour is read once here too)."""
    from pyspark.sql import functions as F

    from flashsale.archive_layout import Manifest, manifest_path, supplement_manifest_path, supplement_number, unclaimed
    from flashsale.contracts import CONTRACTS, arrow_schema
    from flashsale.hot_layout import unsealed_name

    contract = CONTRACTS[batch.fact]
    cols, key, bid = contract.column_names, contract.key, batch.batch_id
    part, qpart = batch.partition(s.archive_root), batch.quarantine_partition(s.archive_root)
    t0 = time.monotonic()
    good = F.col(REASON).isNull()
    raw = hot_rows(spark, s, batch.fact, sealed, 1).withColumn(
        "_k", F.when(good, F.col(key)).otherwise(F.get_json_object(F.col(RAW), "$._id"))
    )
    raw = raw.cache()
    per_bucket = exact_counts(s, sealed)  # frozen: for the manifest and the result

    def archived_ids():
        ids = spark.createDataFrame([], "_k string")
        if _parquet_files(fs, part):
            ids = ids.union(spark.read.schema(_spark_schema(arrow_schema(contract))).parquet(part).select(F.col(key)))
        if _parquet_files(fs, qpart):
            ids = ids.union(spark.read.parquet(qpart).select(F.get_json_object(F.col(RAW), "$._id")))
        return ids.toDF("_k")

    new = raw.join(archived_ids(), "_k", "left_anti").cache()
    n_new, n_new_bad = (int(x or 0) for x in new.agg(F.count_if(good), F.count_if(~good)).first())
    if n_new:
        new.where(good).select(*cols).write.mode("append").parquet(part)
    if n_new_bad:
        new.where(~good).select(RAW, REASON).write.mode("append").parquet(qpart)
    t_write = time.monotonic()
    log(
        bid,
        f"supplement: {sum(per_bucket.values())} sealed records, {n_new} new rows ({n_new_bad} quarantined) appended",
    )
    crash_if("write", crash_at, bid)

    missing = raw.select("_k").join(archived_ids(), "_k", "left_anti").count()
    n = distinct = 0
    if _parquet_files(fs, part):
        back = spark.read.schema(_spark_schema(arrow_schema(contract))).parquet(part)
        n, distinct = (int(x) for x in back.agg(F.count(F.lit(1)), F.count_distinct(F.col(key))).first())
    if missing or n != distinct:
        raise RuntimeError(
            f"batch {bid}: supplement verification failed: {missing} sealed ids not archived, "
            f"{n - distinct} duplicated ids in {part}"
        )
    t_verify = time.monotonic()
    log(bid, f"supplement verified by id: every sealed id archived once ({n} rows in the partition)")
    crash_if("verify", crash_at, bid)

    meta = manifest_path(s.archive_root, bid).rsplit("/", 1)[0]
    names = [f for f in fs.ls(meta, detail=False) if f.rsplit("/", 1)[-1].startswith(bid + ".")]
    manifests = [json.loads(fs.cat_file(f)) for f in names if f.endswith(".json")]
    files = unclaimed(_parquet_files(fs, part), manifests)
    qfiles = unclaimed(_parquet_files(fs, qpart), manifests, "quarantine_files")
    number = 0
    if files or qfiles:  # new rows, or rows a crashed supplement wrote: claimed now
        number = supplement_number(bid, names)
        rows = spark.read.parquet(*files).count() if files else 0
        quarantined = spark.read.parquet(*qfiles).count() if qfiles else 0
        mpath = supplement_manifest_path(s.archive_root, bid, number)
        commit_manifest(
            fs,
            mpath,
            Manifest(
                bid,
                batch.fact,
                batch.hour.isoformat(),
                [unsealed_name(b) for b in sealed],
                rows,
                quarantined,
                "",
                sorted(files),
                {unsealed_name(b): c for b, c in per_bucket.items()},
                datetime.now(UTC).isoformat(timespec="seconds"),
                sorted(qfiles),
                number,
            ),
        )
        log(bid, f"committed {mpath}: {rows} rows, {quarantined} quarantined")
    else:
        rows = quarantined = 0
    t_commit = time.monotonic()
    crash_if("commit", crash_at, bid)
    new.unpersist()
    raw.unpersist()
    dropped = drop_sealed(s, batch, sealed, crash_at, per_bucket)
    t_drop = time.monotonic()
    return {
        "batch_id": bid,
        "supplement": number,
        "rows": rows,
        "quarantined": quarantined,
        "dropped": dropped,
        "seconds": round(t_drop - t0, 2),
        "steps_s": {
            "read_antijoin_write": round(t_write - t0, 2),
            "verify_by_id": round(t_verify - t_write, 2),
            "commit": round(t_commit - t_verify, 2),
            "drop": round(t_drop - t_commit, 2),
        },
    }


def _parquet_files(fs, path: str) -> list[str]:
    try:
        return sorted(f for f in fs.ls(path, detail=False) if f.endswith(".parquet"))
    except FileNotFoundError:
        return []


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


def drop_sealed(s, batch, sealed, crash_at, counts: dict[str, int]) -> int:
    """Step 4: drop the hour's sealed buckets (archived: verified and committed). Nothing writes to a
    sealed name, so what was read is what is dropped; late records are in fresh buckets."""
    from flashsale.stores import mongo_client

    dropped = 0
    with mongo_client(s) as client:
        db = client[s.mongo_db]
        for i, bucket in enumerate(sealed):
            db[bucket].drop()
            dropped += counts.get(bucket, 0)
            if i == 0:
                crash_if("delete", crash_at, batch.batch_id)
    log(batch.batch_id, f"dropped {len(sealed)} sealed buckets ({dropped} documents) from the hot store")
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
    """(fact -> [(bucket start, name, count)]) for every fact bucket in the hot store, sealed ones (an
    archival batch a crash interrupted) included."""
    from flashsale import hot_layout, hot_store
    from flashsale.contracts import FACTS
    from flashsale.stores import mongo_client

    with mongo_client(s) as client:
        db = client[s.mongo_db]
        names = db.list_collection_names()
        return {
            c.name: [
                (t, n, hot_store.bucket_count(db, n))
                for t, n in sorted(hot_layout.existing_buckets(c, names) + hot_layout.existing_sealed(c, names))
            ]
            for c in FACTS
        }


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


def spike_clock(s, wall_now: datetime | None = None) -> datetime | None:
    """Buckets starting after this are live intake (a spike there defers archival): the run's clock now,
    less three buckets; None when the data has no clock (fast-forward or replayed loads)."""
    limit = s.data_clock_limit(wall_now or datetime.now(UTC))
    if limit is None:
        return None
    return limit - timedelta(seconds=s.kpi_future_skew_seconds, minutes=3 * s.hot_bucket_minutes)


def main(argv=None) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.sql import SparkSession

    from flashsale.archive_layout import in_spike, manifest_path, plan, should_archive
    from flashsale.contracts import CONTRACTS

    a = parse_args(argv if argv is not None else sys.argv[1:])
    s = settings_from_args(a)
    t0 = time.monotonic()
    inventory = hot_inventory(s)
    starts = [t for rows in inventory.values() for t, _, _ in rows]
    total = sum(c for rows in inventory.values() for _, _, c in rows)
    now = datetime.fromisoformat(a.now) if a.now else archive_now(s, starts)
    batches = [
        b
        for fact, rows in inventory.items()
        for b in plan(CONTRACTS[fact], rows, now, s.archive_min_age_minutes, s.hot_bucket_minutes)
    ]
    live_after = spike_clock(s)
    spike = any(in_spike(rows, s.archive_spike_factor, live_after) for rows in inventory.values())
    go, why = should_archive(
        total, sum(b.rows for b in batches), spike, s.archive_max_hot_records, s.archive_spike_defer_share
    )
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
                sealed = seal(s, batch, a.crash_at)
                if not sealed:
                    continue
                if fs.exists(manifest_path(s.archive_root, batch.batch_id)):  # late records of a committed hour
                    result["batches"].append(supplement(spark, s, batch, sealed, fs, a.crash_at))
                    continue
                done = write_and_verify(spark, s, batch, sealed, fs, a.crash_at, counter)
                if finishing is not None:
                    result["batches"].append(finishing.result())
                finishing = finisher.submit(commit_and_drop, s, batch, sealed, fs, a.crash_at, done)
            if finishing is not None:
                result["batches"].append(finishing.result())
        result["seconds"].update(spark_start=round(t2 - t1, 2), batches=round(time.monotonic() - t2, 2))
    finally:
        spark.stop()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
