"""flashsale/packed_rows.py: the hot-store writer's BSON documents are pymongo's, byte for byte."""

from __future__ import annotations

import bson
import numpy as np
import pyarrow as pa
import pytest

from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, to_document
from flashsale.packed_rows import Rows, bson_documents, pack, raw_bson_documents, string_array
from ray_gen import records


def _orders(n: int, rng) -> pa.RecordBatch:
    city = np.sort(rng.integers(0, 27, n))
    return records.orders_batch(
        "r1",
        1_762_812_000_000,
        17,
        city,
        np.arange(n),
        rng.integers(0, 20_000, n),
        rng.integers(0, 1_500, n),
        rng.integers(0, 20, n),
        rng.integers(1, 4, n),
        np.round(rng.random(n) * 1_000, 2),
        np.sort(rng.integers(0, 60_000, n)),
    )


def _inventory(rng) -> pa.RecordBatch:
    product = np.tile(np.sort(rng.choice(20_000, 300, replace=False)), 10)
    on_hand = rng.integers(0, 100, 3_000)
    on_hand[::7] = 3_000_000_000  # past int32: pymongo writes int64 for these rows only
    return records.inventory_batch(
        "r1",
        1_762_812_059_999,
        17,
        np.repeat(np.arange(10), 300),
        product,
        on_hand,
        rng.integers(0, 100, 3_000),
        np.round(rng.random(3_000) * 50, 3),
        rng.integers(0, 3, 3_000) * 40,
        rng.integers(0, 60, 3_000).astype(float),
    )


@pytest.mark.parametrize("which", ["orders", "inventory", "orders_slice", "shuffled"])
def test_documents_are_what_pymongo_encodes_for_to_document(which):
    rng = np.random.default_rng(5)
    contract, batch = (INVENTORY_FACT, _inventory(rng)) if which == "inventory" else (ORDERS_FACT, _orders(3_000, rng))
    if which == "orders_slice":  # a slice of a batch: Arrow buffers start at an offset
        batch = batch.slice(1_234, 777)
    if which == "shuffled":  # unsorted keys: short runs, same bytes
        batch = batch.take(pa.array(rng.permutation(batch.num_rows)))
    data, offsets = bson_documents(batch, contract.key)
    assert len(offsets) == batch.num_rows + 1
    for i, row in enumerate(batch.to_pylist()):
        assert data[offsets[i] : offsets[i + 1]] == bson.encode(to_document(contract, row)), i
    docs = raw_bson_documents(batch, contract.key)
    assert [d["_id"] for d in docs[:3]] == batch.column(contract.key).to_pylist()[:3]


def test_nulls_and_unknown_types_are_refused_and_empty_batches_are_empty():
    with pytest.raises(ValueError, match="nulls"):
        bson_documents(pa.record_batch({"k": pa.array(["a", None])}), "k")
    with pytest.raises(ValueError, match="no BSON encoding"):
        bson_documents(pa.record_batch({"k": pa.array(["a"]), "b": pa.array([True])}), "k")
    data, offsets = bson_documents(_orders(0, np.random.default_rng(0)), ORDERS_FACT.key)
    assert data == b"" and offsets.tolist() == [0]


def test_pack_fills_constant_and_per_row_pieces_in_order():
    m = np.frombuffer(b"ab\0\0cde\0", dtype=np.uint8).reshape(2, 4)
    data, offsets = pack(2, [b"<", Rows(m, np.array([2, 3])), b">"])
    assert string_array(data, offsets).to_pylist() == ["<ab>", "<cde>"]
