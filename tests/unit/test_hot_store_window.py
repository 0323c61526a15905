"""The KPI window read's bookkeeping (flashsale/hot_store.py) without a server: which collections a window
reads (sealed buckets once, before their fresh namesake), the filter that also returns documents whose
time is missing or not a date, and how a running app's refresh reads only the buckets that changed,
keeping those documents counted exactly once. The filter's meaning on the real server is tested in
tests/services/test_kpi_window_quality.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flashsale import hot_layout as hl
from flashsale import hot_store
from flashsale.contracts import ORDERS_FACT, validate_batch

T = datetime(2026, 11, 11, 1, 0, tzinfo=UTC)


def _order(oid: str, ts) -> dict:
    d = {"order_id": oid, "product_id": 1, "seller_id": 1, "warehouse_id": 1, "city_id": 1, "order_qty": 1}
    d["order_value"] = 1.0
    if ts is not ...:
        d["order_ts"] = ts
    return d


class FakeDb:
    """Answers every find of a collection with its documents (the server applies the filter; here the
    documents are chosen to match it), and $collStats with their count; records the finds."""

    def __init__(self, docs: dict[str, list[dict]]):
        self.docs, self.finds = docs, []

    def __getitem__(self, name):
        db = self

        class Coll:
            def find(self, flt, projection=None, batch_size=None):
                db.finds.append((name, flt))
                return [dict(d) for d in db.docs.get(name, [])]

            def aggregate(self, pipeline):
                assert pipeline == [{"$collStats": {"count": {}}}]
                return [{"count": len(db.docs.get(name, []))}]

        return Coll()

    def list_collection_names(self):
        return list(self.docs)


def test_the_window_filter_keeps_undated_documents():
    f = hot_store.window_filter(ORDERS_FACT, T)
    assert f == {"order_ts": {"$not": {"$lt": T}}}  # $lt on a date matches dates only: $not keeps the rest


def test_sealed_bucket_in_the_window_is_read_once_before_its_namesake():
    b = hl.collection_for(ORDERS_FACT, T, 5)
    names = [b, hl.sealed_name(b), hl.collection_for(ORDERS_FACT, T - timedelta(hours=2), 5)]
    assert hot_store.window_collections(names, ORDERS_FACT, T, 5) == [hl.sealed_name(b), b]
    # a retried write landed in both: the window holds the record once
    docs = {hl.sealed_name(b): [_order("a", T), _order("b", T)], b: [_order("b", T), _order("c", T)]}
    read, cols = hot_store.read_window(FakeDb(docs), ORDERS_FACT, T, 5)
    assert [d["order_id"] for d in read] == ["a", "b", "c"] and cols == [hl.sealed_name(b), b]


def test_undated_documents_are_read_tagged_and_counted_once_per_refresh():
    b0 = hl.collection_for(ORDERS_FACT, T, 5)
    b1 = hl.collection_for(ORDERS_FACT, T + timedelta(minutes=5), 5)
    docs = {
        b0: [_order("d0", T + timedelta(minutes=1)), _order("missing", ...), _order("text", "2026-11-11")],
        b1: [_order("d1", T + timedelta(minutes=6)), _order("null", None)],
    }
    db = FakeDb(docs)
    first, _ = hot_store.read_window(db, ORDERS_FACT, T, 5)
    undated = {d["order_id"]: d[hot_store.UNDATED_BUCKET] for d in first if hot_store.UNDATED_BUCKET in d}
    assert undated == {"missing": b0, "text": b0, "null": b1}
    checked = validate_batch(ORDERS_FACT, first, as_of=T + timedelta(minutes=10))
    assert checked.quarantined == 3 and checked.by_reason["missing"] == 2 and checked.by_reason["wrong_type"] == 1
    # a refresh reads only the bucket whose count changed: b0's documents (undated ones too) come from the
    # last read, b1's from the store
    reads, _ = hot_store.read_buckets(db, ORDERS_FACT, T, 5)
    db.docs[b1] = db.docs[b1] + [_order("d2", T + timedelta(minutes=7))]
    db.finds.clear()
    reads, cols = hot_store.read_buckets(db, ORDERS_FACT, T, 5, previous=reads)
    assert cols == [b1] and [n for n, _ in db.finds] == [b1]
    again = hot_store.window_documents(reads, ORDERS_FACT, T)
    assert sorted(d["order_id"] for d in again) == ["d0", "d1", "d2", "missing", "null", "text"]
    db.finds.clear()  # nothing changed: nothing is read
    assert hot_store.read_buckets(db, ORDERS_FACT, T, 5, previous=reads)[1] == [] and db.finds == []
    # the window moved past b0: its documents, dated or not, leave the window
    later = hot_store.window_documents(
        hot_store.read_buckets(db, ORDERS_FACT, T + timedelta(minutes=5), 5, previous=reads)[0],
        ORDERS_FACT,
        T + timedelta(minutes=5),
    )
    assert sorted(d["order_id"] for d in later) == ["d1", "d2", "null"]
    # a window that starts earlier than a bucket's last read reads that bucket again
    db.finds.clear()
    hot_store.read_buckets(db, ORDERS_FACT, T - timedelta(minutes=1), 5, previous=reads)
    assert {n for n, _ in db.finds} == {b0, b1}


def test_a_bucket_with_the_same_count_but_an_older_read_is_trimmed_to_the_window():
    b0 = hl.collection_for(ORDERS_FACT, T, 5)
    db = FakeDb({b0: [_order("early", T + timedelta(minutes=1)), _order("late", T + timedelta(minutes=4))]})
    reads, _ = hot_store.read_buckets(db, ORDERS_FACT, T, 5)
    moved = T + timedelta(minutes=3)
    reads2, cols = hot_store.read_buckets(db, ORDERS_FACT, moved, 5, previous=reads)
    assert cols == [] and [d["order_id"] for d in hot_store.window_documents(reads2, ORDERS_FACT, moved)] == ["late"]
