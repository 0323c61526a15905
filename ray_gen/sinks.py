"""Where a shard's record batches go: the hot store (default), Parquet files, or nowhere (null).

A sink is built inside the process that writes (a Ray actor), from a small picklable SinkSpec.
Mongo writes are unordered insert_many of documents keyed by their deterministic id, so a batch
retried after an outage cannot duplicate: the already-stored ones come back as duplicate-key errors
(code 11000) and are counted as "already stored".
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from flashsale.contracts import CONTRACTS, validate

if TYPE_CHECKING:
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
SINK_KINDS = ("mongo", "parquet", "null")


@dataclass(frozen=True)
class SinkSpec:
    kind: str = "mongo"
    path: str | None = None  # parquet: output directory
    database: str | None = None  # mongo: None = settings.mongo_db (users authenticate there; others are writable)
    settings_overrides: dict = field(default_factory=dict)  # e.g. {"mongo_port": 28017} for a private store
    max_outage_seconds: float = 600.0  # give up (and fail loudly) after the store is gone this long

    def __post_init__(self):
        if self.kind not in SINK_KINDS:
            raise ValueError(f"sink: unknown kind {self.kind!r} (choose from {', '.join(SINK_KINDS)})")
        if self.kind == "parquet" and not self.path:
            raise ValueError("sink.path: the parquet sink needs an output directory")


@dataclass
class WriteCounts:
    written: int = 0  # newly stored by this run
    already_stored: int = 0  # duplicate-key on retry: stored by an earlier attempt
    retries: int = 0


class NullSink:
    def __init__(self, spec: SinkSpec, shard: str):
        self.counts: dict[str, WriteCounts] = {}

    def write(self, collection: str, batch: pa.RecordBatch) -> None:
        self.counts.setdefault(collection, WriteCounts()).written += batch.num_rows

    def close(self) -> None:
        pass


class ParquetSink:
    """One file per shard and collection: <path>/<collection>/<shard>.parquet, one row group per batch."""

    def __init__(self, spec: SinkSpec, shard: str):
        if spec.path is None:
            raise ValueError("sink.path: the parquet sink needs an output directory")
        self.root, self.shard = Path(spec.path), shard
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.counts: dict[str, WriteCounts] = {}

    def write(self, collection: str, batch: pa.RecordBatch) -> None:
        import pyarrow.parquet as pq

        if collection not in self.writers:
            out = self.root / collection / f"{self.shard}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            self.writers[collection] = pq.ParquetWriter(out, batch.schema, compression="zstd")
        self.writers[collection].write_batch(batch)
        self.counts.setdefault(collection, WriteCounts()).written += batch.num_rows

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()


class MongoSink:
    def __init__(self, spec: SinkSpec, shard: str):
        from contextlib import ExitStack

        from flashsale.settings import load_settings
        from flashsale.stores import mongo_client

        self.spec = spec
        self.settings = load_settings(**spec.settings_overrides)
        self._stack = ExitStack()
        # socket timeout: a store that hangs (not just refuses) must not hang the generator forever
        client = self._stack.enter_context(mongo_client(self.settings, timeout_ms=5000, socket_timeout_ms=20_000))
        self.db = client[spec.database or self.settings.mongo_db]
        self.counts: dict[str, WriteCounts] = {}
        self._known_buckets: set[str] = set()
        # one writer thread per shard: the shard simulates the next minute while the store ingests
        # this one (inserts release the GIL while waiting). A queue of 2 keeps memory bounded.
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"mongo-writer-{shard}", daemon=True)
        self._thread.start()

    def write(self, collection: str, batch: pa.RecordBatch) -> None:
        if self._failure:
            raise RuntimeError(f"hot store writer failed: {self._failure}") from self._failure
        self._queue.put((collection, batch))

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._failure is None:
                    self._write_now(*item)
            except BaseException as exc:  # surfaced to the shard on its next write or at close
                self._failure = exc

    def _write_now(self, collection: str, batch: pa.RecordBatch) -> None:
        """Facts go to their time-bucket collections (flashsale/hot_layout.py), as every reader expects."""
        from flashsale.hot_layout import split_by_bucket
        from flashsale.packed_rows import raw_bson_documents

        contract = CONTRACTS[collection]
        counts = self.counts.setdefault(collection, WriteCounts())
        for bucket, rows in split_by_bucket(contract, batch, self.settings.hot_bucket_minutes).items():
            self._ensure_bucket(bucket, counts)
            # to_document(contract, row) for every row, BSON-encoded column-wise: 7x less CPU than
            # to_pylist() + pymongo's encoder, CPU the store shares on a small machine
            docs = raw_bson_documents(rows, contract.key)
            self._insert_with_backoff(self.db[bucket], docs, counts)

    def _ensure_bucket(self, name: str, counts: WriteCounts) -> None:
        """Shard (on a sharded MongoDB) and index a bucket before its first insert; once per bucket."""
        from flashsale.sharding import ensure_sharded

        if name not in self._known_buckets:
            self._retrying(lambda: ensure_sharded(self.db, name, self._known_buckets), counts)

    def _insert_with_backoff(self, coll, docs: list, counts: WriteCounts) -> None:
        from pymongo.errors import BulkWriteError

        pending = {"docs": docs}

        def insert() -> None:
            batch = pending["docs"]
            try:
                coll.insert_many(batch, ordered=False)  # (inserted_ids is empty for raw documents)
                counts.written += len(batch)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                dups = sum(1 for e in errors if e.get("code") == DUPLICATE_KEY)
                counts.written += exc.details.get("nInserted", 0)
                counts.already_stored += dups  # stored by an earlier attempt whose reply was lost
                if dups != len(errors):  # something other than "already there": retry only those
                    failed = {e["index"] for e in errors if e.get("code") != DUPLICATE_KEY}
                    pending["docs"] = [d for i, d in enumerate(batch) if i in failed]
                    raise

        self._retrying(insert, counts)

    def _retrying(self, fn, counts: WriteCounts) -> None:
        """Run fn, backing off exponentially while the store is unreachable (up to max_outage_seconds)."""
        from pymongo.errors import PyMongoError
        from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

        def note_retry(state) -> None:
            counts.retries += 1
            log.warning("hot store write failed (%s); retry %d", state.outcome.exception(), state.attempt_number)

        for attempt in Retrying(
            # connection loss, timeouts and non-duplicate write errors; a bug (TypeError...) fails at once
            retry=retry_if_exception_type(PyMongoError),
            wait=wait_exponential(multiplier=0.25, max=5),
            stop=stop_after_delay(self.spec.max_outage_seconds),
            before_sleep=note_retry,
            reraise=True,
        ):
            with attempt:
                fn()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._stack.close()
        if self._failure:
            raise RuntimeError(f"hot store writer failed: {self._failure}") from self._failure


def make_sink(spec: SinkSpec, shard: str):
    return {"mongo": MongoSink, "parquet": ParquetSink, "null": NullSink}[spec.kind](spec, shard)


class ShardWriter:
    """Buffers one shard's batches per collection and hands the sink batches of about `batch_size` rows.

    Memory stays bounded: at most one partial batch per collection is held. The first record of every
    batch is checked against its contract, so a model bug fails loudly at the source, not in Spark.
    """

    def __init__(self, spec: SinkSpec, shard: str, batch_size: int):
        self.sink = make_sink(spec, shard)
        self.batch_size = batch_size
        self.pending: dict[str, list[pa.RecordBatch]] = {}
        self.pending_rows: dict[str, int] = {}
        self.generated: dict[str, int] = {}

    def add(self, collection: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.generated[collection] = self.generated.get(collection, 0) + batch.num_rows
        self.pending.setdefault(collection, []).append(batch)
        self.pending_rows[collection] = self.pending_rows.get(collection, 0) + batch.num_rows
        if self.pending_rows[collection] >= self.batch_size:
            self.flush(collection)

    def flush(self, collection: str | None = None) -> None:
        for name in [collection] if collection else list(self.pending):
            batches = self.pending.pop(name, [])
            self.pending_rows[name] = 0
            if not batches:
                continue
            table = pa.Table.from_batches(batches)
            for chunk in table.to_batches(max_chunksize=self.batch_size):
                validate(name, chunk.slice(0, 1).to_pylist()[0])
                self.sink.write(name, chunk)

    def close(self) -> dict[str, dict]:
        self.flush()
        self.sink.close()
        names = sorted(set(self.generated) | set(self.sink.counts))
        return {
            n: {"generated": self.generated.get(n, 0), **vars(self.sink.counts.get(n, WriteCounts()))} for n in names
        }
